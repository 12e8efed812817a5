/**
 * Defects 12.4 (audit fails open) and 12.14 (the audit lock's liveness check): the audit
 * log refuses what is not a regular audit log file, never rewrites a foreign file, reports
 * a write failure to the runtime, and its lock is released by the kernel with its holder.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { isMembraneError } from '../../../policy/errors.js';
import { AuditLog, verifyAuditLog } from '../../../runtime/audit.js';

const run = promisify(execFile);
const bin = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../bin/membrane.mjs');
const dir = mkdtempSync(join(tmpdir(), 'membrane-audit-hardening-'));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL'); // process groups (flock + its sleep)
    } catch {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
  }
  rmSync(dir, { recursive: true, force: true });
});
let n = 0;
const fresh = () => {
  const d = join(dir, `case-${++n}`);
  mkdirSync(d);
  return join(d, 'audit.log');
};
const quiet = { log: () => {} };

test('defect 12.4: auditLog /dev/null is refused (an audit log must be a regular file)', async () => {
  await assert.rejects(AuditLog.open('/dev/null', quiet), (e: unknown) =>
    isMembraneError(e, 'AUDIT_UNUSABLE'),
  );
});

test('defect 12.4: a file that is not an audit log is refused and left byte for byte as it was', async () => {
  const cases: Array<[string, Buffer]> = [
    ['a key file without a trailing newline', Buffer.from('-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq')],
    ['a text file with lines', Buffer.from('hello\nworld\n')],
    ['binary bytes', Buffer.from([0, 1, 2, 3, 0xff, 0x0a, 9])],
    ['JSON that is not a first record', Buffer.from('{"seq":1}\n')],
  ];
  for (const [what, bytes] of cases) {
    const file = fresh();
    writeFileSync(file, bytes, { mode: 0o600 });
    await assert.rejects(
      AuditLog.open(file, quiet),
      (e: unknown) => isMembraneError(e, 'AUDIT_NOT_A_LOG'),
      what,
    );
    assert.deepEqual(readFileSync(file), bytes, `${what} is unchanged`);
  }
});

test('defect 12.4: a write failure is reported once to the runtime (onWriteError) and flush rejects', async () => {
  const file = fresh();
  const failures: string[] = [];
  const log = await AuditLog.open(file, { ...quiet, onWriteError: (e) => failures.push(e.code) });
  log.emit({ type: 'first' });
  await log.flush();
  // Make the next append fail: the descriptor underneath is closed (as if the disk went away).
  await (log as unknown as { fh: { close(): Promise<void> } }).fh.close();
  log.emit({ type: 'second' });
  await assert.rejects(log.flush(), (e: unknown) => isMembraneError(e, 'AUDIT_WRITE_FAILED'));
  assert.deepEqual(failures, ['AUDIT_WRITE_FAILED']);
  assert.equal((await verifyAuditLog(file)).records, 1);
});

test('defect 12.5: audit verify --file on /dev/zero or a FIFO fails at once with exit 1', async () => {
  const fifo = join(dir, 'verify.fifo');
  await run('mkfifo', [fifo]);
  for (const f of ['/dev/zero', fifo]) {
    const r = await run(process.execPath, [bin, 'audit', 'verify', '--file', f], { timeout: 30_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(r.code, 1, f);
    assert.match(r.stderr, /regular file.*\[AUDIT_UNREADABLE\]/, f);
  }
});

/** A child that holds `file` open and flocked until killed; resolves once the lock is taken. */
async function holdLock(lockFile: string): Promise<ChildProcess> {
  // -o: only flock itself holds the lock (its command does not inherit the descriptor), so
  // killing flock is killing the holder. The shell's output is closed once the line is read.
  const c = spawn('flock', ['-o', '-x', lockFile, '-c', 'echo locked; exec sleep 600 >/dev/null'], {
    stdio: ['ignore', 'pipe', 'ignore'],
    detached: true, // its own process group: the test kills flock and its sleep together
  });
  children.push(c);
  await new Promise<void>((res, rej) => {
    c.stdout!.once('data', () => {
      c.stdout!.destroy();
      res();
    });
    c.once('exit', () => rej(new Error('flock child exited')));
  });
  return c;
}

test('defect 12.14: a lock file naming a live but unrelated process (PID reuse, zombie) does not block', async () => {
  const file = fresh();
  const other = spawn('sleep', ['600'], { stdio: 'ignore', detached: true });
  children.push(other);
  writeFileSync(`${file}.lock`, `${other.pid}\n`);
  const log = await AuditLog.open(file, quiet);
  log.emit({ type: 'ok' });
  await log.close();
  process.kill(-other.pid!, 'SIGKILL');
  assert.equal((await verifyAuditLog(file)).records, 1);
});

test('defect 12.14: a lock held by a running process refuses; once it is killed the log opens', async () => {
  const file = fresh();
  const holder = await holdLock(`${file}.lock`);
  await assert.rejects(AuditLog.open(file, quiet), (e: unknown) => isMembraneError(e, 'AUDIT_LOCKED'));
  const gone = new Promise((r) => holder.once('exit', r));
  process.kill(-holder.pid!, 'SIGKILL');
  await gone;
  const log = await AuditLog.open(file, quiet);
  await log.close();
});

test('defect 12.14: two opens in one process still exclude each other, and close releases', async () => {
  const file = fresh();
  const a = await AuditLog.open(file, quiet);
  await assert.rejects(AuditLog.open(file, quiet), (e: unknown) => isMembraneError(e, 'AUDIT_LOCKED'));
  await a.close();
  const b = await AuditLog.open(file, quiet);
  await b.close();
});
