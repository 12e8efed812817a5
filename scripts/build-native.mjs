// Builds the optional native addons (binding.gyp) with the node-gyp that npm bundles,
// against the headers of the running Node (its OpenSSL included). Offline by design.
// A failed build is not fatal: every native path has a pure-JS fallback, and
// `membrane bench` reports which backend it measured.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const npmBin = resolve(dirname(process.execPath), 'npm');
const candidates = [
  join(
    dirname(process.execPath),
    '..',
    'lib',
    'node_modules',
    'npm',
    'node_modules',
    'node-gyp',
    'bin',
    'node-gyp.js',
  ),
  existsSync(npmBin)
    ? join(
        dirname(npmBin),
        '..',
        'lib',
        'node_modules',
        'npm',
        'node_modules',
        'node-gyp',
        'bin',
        'node-gyp.js',
      )
    : '',
].filter(Boolean);
const gyp = candidates.find((p) => existsSync(p));

// Rebuild only when an input changed: keeps `npm test` re-runs fast.
const inputs = [
  'binding.gyp',
  ...JSON.stringify(readFileSync(join(root, 'binding.gyp'), 'utf8')).match(/[\w/-]+\.c\b/g),
];
const digest = createHash('sha256');
for (const f of inputs) digest.update(f).update(readFileSync(join(root, f)));
digest.update(process.version);
const stamp = join(root, 'build', '.membrane-native-stamp');
const want = digest.digest('hex');
if (
  existsSync(stamp) &&
  readFileSync(stamp, 'utf8') === want &&
  statSync(join(root, 'build', 'Release')).isDirectory()
) {
  process.exit(0);
}
if (!gyp) {
  console.warn('membrane: node-gyp not found; native addons not built (pure-JS fallback in use)');
  process.exit(0);
}
// Headers of the running Node (its OpenSSL included), found beside its binary: /usr here,
// /usr/local in the official images. Without them node-gyp would try to download them.
const prefix = resolve(dirname(process.execPath), '..');
const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
const r = spawnSync(process.execPath, [gyp, 'rebuild', ...nodedir], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'pipe'],
});
if (r.status !== 0) {
  console.warn(
    'membrane: native addon build failed; pure-JS fallback in use\n' + r.stderr.toString().slice(-2000),
  );
  process.exit(0);
}
writeFileSync(stamp, want);
