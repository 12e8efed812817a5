// Enforces the architecture's arrows (DEVELOPERS.md): runtime -> proxies -> proxies/core;
// runtime -> skr-client; everyone -> policy; bench measures proxies and skr-client.
// Also rejects import cycles between modules, any I/O module imported by policy/, and one
// proxy importing another (proxies/<a>/ -> proxies/<b>/): proxies share only proxies/core
// and the contract, proxies/proxy.ts, so each kind can be reviewed, loaded and removed alone.
//   node scripts/check-layers.mjs [ROOT]   (ROOT defaults to the repository; tests pass a tree)
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = process.argv[2]
  ? resolve(process.argv[2])
  : resolve(dirname(new URL(import.meta.url).pathname), '..');
const layers = ['policy', 'proxies/core', 'proxies', 'skr-client', 'bench', 'runtime', 'test'];
// What each layer may import (besides itself).
const allowed = {
  policy: [],
  'proxies/core': ['policy'],
  proxies: ['proxies/core', 'policy'],
  'skr-client': ['policy'],
  bench: ['proxies', 'proxies/core', 'skr-client', 'policy'],
  runtime: ['proxies', 'proxies/core', 'skr-client', 'policy', 'bench'],
  test: layers,
};
const policyForbidden =
  /^node:(fs|net|http|https|child_process|worker_threads|dgram|tls|dns)(\/|$)|^(undici|fuse-native)$/;

const layerOf = (file) => layers.find((l) => file === l || file.startsWith(l + '/'));
// The proxy a file belongs to: 'blob-volume' for proxies/blob-volume/x.ts; undefined for
// proxies/core/ and the files directly in proxies/ (the contract), which every proxy may use.
const proxyOf = (file) => {
  const m = /^proxies\/([^/]+)\//.exec(file);
  return m && m[1] !== 'core' ? m[1] : undefined;
};
const files = [];
const walk = (d) => {
  for (const n of readdirSync(join(root, d))) {
    const p = join(d, n);
    if (statSync(join(root, p)).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) files.push(p);
  }
};
for (const l of ['policy', 'proxies', 'skr-client', 'bench', 'runtime', 'test'])
  if (existsSync(join(root, l))) walk(l);

const errors = [];
const graph = new Map();
const importRe =
  /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
for (const f of files) {
  const src = readFileSync(join(root, f), 'utf8');
  const from = layerOf(f);
  const deps = [];
  for (const m of src.matchAll(importRe)) {
    const spec = m[1] ?? m[2];
    if (from === 'policy' && policyForbidden.test(spec))
      errors.push(`${f}: policy/ must stay free of I/O, imports ${spec}`);
    if (!spec.startsWith('.')) continue;
    const target = relative(root, resolve(root, dirname(f), spec)).replace(/\.js$/, '.ts');
    const to = layerOf(target);
    if (!to) continue;
    deps.push(target);
    if (to !== from && !allowed[from].includes(to))
      errors.push(`${f}: ${from} must not import ${to} (${spec})`);
    const [pa, pb] = [proxyOf(f), proxyOf(target)];
    if (pb && pa !== pb && from === 'proxies')
      errors.push(
        `${f}: a proxy must not import another proxy (${pa ? `proxies/${pa}` : 'the contract'} -> proxies/${pb}: ${spec}); share code through proxies/core or policy/`,
      );
  }
  graph.set(f, deps);
}
// Cycle detection (Tarjan-free DFS with colours is enough at this size).
const colour = new Map();
const stack = [];
const visit = (n) => {
  colour.set(n, 1);
  stack.push(n);
  for (const d of graph.get(n) ?? []) {
    if (colour.get(d) === 1)
      errors.push(`import cycle: ${[...stack.slice(stack.indexOf(d)), d].join(' -> ')}`);
    else if (!colour.get(d)) visit(d);
  }
  stack.pop();
  colour.set(n, 2);
};
for (const n of graph.keys()) if (!colour.get(n)) visit(n);
if (errors.length) {
  console.error(errors.join('\n'));
  process.exit(1);
}
console.log(`check-layers: ${files.length} modules, arrows and cycles OK`);
