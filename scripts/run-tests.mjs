// Runs the compiled test files with Node's own test runner.
//   node scripts/run-tests.mjs            -> every suite (unit, contract, integration, e2e; slow ones included)
//   node scripts/run-tests.mjs contract   -> only test/contract (likewise unit, integration, e2e)
//   MEMBRANE_SKIP_SLOW=1 ...              -> leaves out files named *.slow.test.ts (local quick runs only;
//                                            CI always runs them)
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const base = join(root, 'dist', 'test');
const only = process.argv.slice(2);

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.js') ? [p] : [];
  });
}

let files = walk(base).sort();
if (only.length) files = files.filter((f) => only.some((o) => relative(base, f).startsWith(o)));
if (process.env.MEMBRANE_SKIP_SLOW === '1') files = files.filter((f) => !f.endsWith('.slow.test.js'));
if (files.length === 0) {
  console.error('run-tests: no test files found');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  cwd: root,
});
process.exit(r.status ?? 1);
