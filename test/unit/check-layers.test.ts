/**
 * scripts/check-layers.mjs on small trees of its own: the arrows it already enforced and
 * the rule that one proxy never imports another (only proxies/core and the contract,
 * proxies/proxy.ts, are shared).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'scripts', 'check-layers.mjs');
const scratch = mkdtempSync(join(tmpdir(), 'membrane-layers-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A tree where every listed file exists; `files` maps a path to its import lines. */
function check(name: string, files: Record<string, string[]>): { status: number | null; out: string } {
  const root = join(scratch, name);
  const base: Record<string, string[]> = {
    'proxies/core/index.ts': [],
    'proxies/proxy.ts': ["import type { Keyring } from './core/index.js';"],
    'proxies/blob-volume/kind.ts': ["import type { ProxyKindModule } from '../proxy.js';"],
    'proxies/http/kind.ts': ["import type { ProxyKindModule } from '../proxy.js';"],
    'proxies/http/util.ts': [],
    'policy/glob.ts': [],
  };
  for (const [path, imports] of Object.entries({ ...base, ...files })) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), `${imports.join('\n')}\nexport const x = 1;\n`);
  }
  const r = spawnSync(process.execPath, [script, root], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const cases: Array<[string, Record<string, string[]>, RegExp | null]> = [
  [
    'a proxy may use the contract, proxies/core and policy/',
    {
      'proxies/http/proxy.ts': [
        "import type { RunningProxy } from '../proxy.js';",
        "import { x } from '../core/index.js';",
        "import { x as g } from '../../policy/glob.js';",
        "import { x as u } from './util.js';",
      ],
    },
    null,
  ],
  [
    'a proxy importing another proxy is rejected, naming both',
    {
      'proxies/http/proxy.ts': ["import { x } from '../blob-volume/kind.js';"],
    },
    /proxies\/http\/proxy\.ts: a proxy must not import another proxy \(proxies\/http -> proxies\/blob-volume/,
  ],
  [
    'a re-export from another proxy is rejected too',
    {
      'proxies/blob-volume/index.ts': ["export { x } from '../http/util.js';"],
    },
    /proxies\/blob-volume\/index\.ts: a proxy must not import another proxy/,
  ],
  [
    'a dynamic import of another proxy is rejected too',
    {
      'proxies/blob-volume/lazy.ts': ["const m = import('../http/kind.js');"],
    },
    /proxies\/blob-volume\/lazy\.ts: a proxy must not import another proxy/,
  ],
  [
    'the contract importing a proxy is rejected',
    {
      'proxies/proxy.ts': ["import type { x } from './blob-volume/kind.js';"],
    },
    /proxies\/proxy\.ts: a proxy must not import another proxy \(the contract -> proxies\/blob-volume/,
  ],
  [
    'proxies/core importing a proxy is rejected by the arrows',
    {
      'proxies/core/bad.ts': ["import { x } from '../http/util.js';"],
    },
    /proxies\/core\/bad\.ts: proxies\/core must not import proxies/,
  ],
  [
    'the runtime may import every proxy (it starts them)',
    {
      'runtime/up.ts': [
        "import { x } from '../proxies/http/kind.js';",
        "import { x as y } from '../proxies/blob-volume/kind.js';",
      ],
    },
    null,
  ],
];

for (const [name, files, expected] of cases) {
  test(`check-layers: ${name}`, () => {
    const r = check(name.replace(/\W+/g, '-'), files);
    if (expected === null) {
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /arrows and cycles OK/);
    } else {
      assert.equal(r.status, 1, r.out);
      assert.match(r.out, expected);
    }
  });
}

test('check-layers: the repository itself passes', () => {
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});
