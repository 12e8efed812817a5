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

test('the demo runs unattended: attests, releases, mounts, reconciles, posts its summary over the proxy, is refused an unknown host, and the consumer reads the report', async () => {
  const { stdout } = await run(process.execPath, [join(repoRoot, 'scripts', 'demo.mjs'), '--no-bench'], {
    cwd: repoRoot,
    maxBuffer: 16 * 1024 * 1024,
  });
  assert.match(stdout, /reconcile: compared 2000 \+ 1981 records, \d+ mismatches/);
  assert.match(stdout, /\| mismatches: \d+/);
  assert.match(stdout, /TX00131,amount differs,/);
  // The app's HTTP calls: the summary reaches the consumer API over the proxy (trusted mode),
  // the upload to a host the spec does not allow is refused by rule, and the refusal is audited.
  assert.match(stdout, /reconcile: summary counts posted to the consumer API: HTTP 200/);
  assert.match(
    stdout,
    /the consumer API received over verified TLS: POST \/summary \{"recordsA":2000,"recordsB":1981,/,
  );
  assert.match(
    stdout,
    /reconcile: sending a ledger row to exfil\.example\.net: HTTP 403, Membrane-Reason: .+/,
  );
  assert.match(stdout, /#\d+ \S+ http\.denied exfil\.example\.net:80/);
  // The audited record is canonical JSON (keys sorted): check its fields, not their order.
  const audited = /the refusal, as audited:\n {2}(\{.*\})\n/.exec(stdout)?.[1];
  assert.ok(audited, 'the demo prints the refusal as audited');
  const record = JSON.parse(audited) as { type?: string; details?: { rule?: string } };
  assert.equal(record.type, 'http.denied');
  assert.equal(record.details?.rule, 'default-deny');
  assert.match(stdout, /audit chain intact, \d+ records/);
  assert.match(stdout, /Demo complete\./);
});
