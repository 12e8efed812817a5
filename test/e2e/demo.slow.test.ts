/**
 * `npm run demo` is a contract: the whole two-party flow must keep working.
 * Runs the demo driver (without its benchmark step) and checks what it printed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

test('the demo runs unattended: attests, releases, mounts, reconciles, and the consumer reads the report', async () => {
  const { stdout } = await run(process.execPath, [join(repoRoot, 'scripts', 'demo.mjs'), '--no-bench'], {
    cwd: repoRoot,
    maxBuffer: 16 * 1024 * 1024,
  });
  assert.match(stdout, /reconcile: compared 2000 \+ 1981 records, \d+ mismatches/);
  assert.match(stdout, /\| mismatches: \d+/);
  assert.match(stdout, /TX00131,amount differs,/);
  assert.match(stdout, /audit chain intact, \d+ records/);
  assert.match(stdout, /Demo complete\./);
});
