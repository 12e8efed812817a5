/**
 * `membrane up` without volumes (no FUSE needed), for the runtime's hardening:
 * defect 12.2 (core dumps off for the runtime and its application), 12.4 (an audit
 * write failure stops the clean room) and 12.5 (a failing application start tears down
 * instead of hanging).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isMembraneError } from '../../policy/errors.js';
import { verifyAuditLog } from '../../runtime/audit.js';
import { up } from '../../runtime/up.js';

const bin = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bin/membrane.mjs');
const root = mkdtempSync(join(tmpdir(), 'membrane-up-hardening-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A clean room with no keys and no volumes: attestation is never needed. */
function cleanRoom(command: string[]): { dir: string; spec: string; audit: string } {
  const dir = join(root, `room-${++n}`);
  const audit = join(dir, 'audit.log');
  const spec = join(dir, 'cleanroom.yaml');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'policy.rego'), 'package policy\n');
  writeFileSync(
    spec,
    `version: 1
name: hardening
attestation: { provider: virtual, allowInsecureVirtual: true, virtualPolicyFile: ${join(dir, 'policy.rego')} }
keys: { keks: [], deks: [] }
application: { command: ${JSON.stringify(command)} }
runtime: { statusDir: ${join(dir, 'status')}, healthPort: 0, auditLog: ${audit} }
`,
  );
  return { dir, spec, audit };
}

/** Runs the CLI through /bin/sh so limits can be set first; never longer than the timeout. */
function sh(script: string, cwd: string): Promise<{ code: number; stderr: string }> {
  return new Promise((res) => {
    execFile('/bin/sh', ['-c', script], { cwd, timeout: 90_000 }, (err, _stdout, stderr) => {
      res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr });
    });
  });
}

test('defect 12.2: membrane up runs with core dumps off; its application sees a core limit of 0', async () => {
  const room = cleanRoom([
    '/bin/sh',
    '-c',
    'ulimit -c > core-limit; grep "Max core file size" /proc/$PPID/limits > parent-limits',
  ]);
  const r = await sh(
    `ulimit -c unlimited 2>/dev/null; MEMBRANE_ALLOW_CORE_DUMPS= exec "${process.execPath}" "${bin}" up -f "${room.spec}"`,
    room.dir,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(join(room.dir, 'core-limit'), 'utf8').trim(), '0');
  assert.match(readFileSync(join(room.dir, 'parent-limits'), 'utf8'), /Max core file size\s+0\s+0\s/);
});

test('defect 12.4: an audit write failure stops the clean room: application stopped, exit 1, reason logged', async () => {
  const marker = 'app-finished';
  const room = cleanRoom([
    process.execPath,
    '-e',
    `setTimeout(() => require('fs').writeFileSync(${JSON.stringify(marker)}, ''), 20000)`,
  ]);
  // RLIMIT_FSIZE makes the audit append fail (EFBIG) once the log passes 1000 bytes, which is
  // after the first records and before "application.started" is complete.
  const r = await sh(
    `exec prlimit --fsize=1000 "${process.execPath}" "${bin}" up -f "${room.spec}"`,
    room.dir,
  );
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /stopping the clean room: the audit log could not be written/);
  assert.match(r.stderr, /\[AUDIT_WRITE_FAILED\]/);
  assert.equal(existsSync(join(room.dir, marker)), false, 'the application did not run to its end');
});

test('defect 12.5: an application that cannot be spawned ends the run (exit 127), torn down and audited', async () => {
  const room = cleanRoom([join(root, 'no-such-program')]);
  const r = await sh(`exec "${process.execPath}" "${bin}" up -f "${room.spec}"`, room.dir);
  assert.equal(r.code, 127, r.stderr);
  const types = readFileSync(room.audit, 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { type: string }).type);
  assert.deepEqual(types.slice(-2), ['application.exited', 'cleanroom.stopped']);
});

test('defect 12.5: a spawn that throws (NUL in an argument) tears down and rejects with a typed error', async () => {
  const room = cleanRoom(['/bin/true']);
  await assert.rejects(up(room.spec, { command: ['/bin/echo', 'a\0b'], log: () => {} }), (e: unknown) =>
    isMembraneError(e, 'APP_START_FAILED'),
  );
  const v = await verifyAuditLog(room.audit);
  assert.equal(v.ok, true);
  const last = JSON.parse(readFileSync(room.audit, 'utf8').trim().split('\n').pop()!) as { type: string };
  assert.equal(last.type, 'cleanroom.stopped');
  assert.equal(existsSync(join(room.dir, 'status', 'hardening.volume.ready')), false);
});
