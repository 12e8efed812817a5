import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isMembraneError } from '../../policy/errors.js';
import { AuditLog, GENESIS_PREV, recordHash, verifyAuditLog } from '../../runtime/audit.js';
import { GovernanceClient } from '../../runtime/governance.js';

const dir = mkdtempSync(join(tmpdir(), 'membrane-audit-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(dir, `audit-${++n}`, 'audit.log');
const quiet = { log: () => {} };

async function writeLog(file: string, count: number): Promise<string[]> {
  const log = await AuditLog.open(file, quiet);
  for (let i = 1; i <= count; i++)
    log.emit({ type: 'test.event', subject: `s${i}`, details: { i, note: 'x' } });
  await log.close();
  return readFileSync(file, 'utf8').split('\n').slice(0, -1);
}

test('records are appended as a hash chain and verify', async () => {
  const file = fresh();
  const log = await AuditLog.open(file, quiet);
  log.emit({ type: 'cleanroom.starting', subject: 'demo', details: { healthPort: 8290, when: new Date(0) } });
  log.emit({ type: 'volume.mounted', subject: 'ledger-a' });
  log.emit({ type: 'cleanroom.stopped' });
  await log.flush();
  assert.equal(statSync(file).mode & 0o777, 0o600);
  await log.close();

  const lines = readFileSync(file, 'utf8').split('\n');
  assert.equal(lines.pop(), '', 'every line ends with a newline');
  const recs = lines.map((l) => JSON.parse(l));
  assert.deepEqual(
    recs.map((r) => [r.seq, r.type, r.subject]),
    [
      [1, 'cleanroom.starting', 'demo'],
      [2, 'volume.mounted', 'ledger-a'],
      [3, 'cleanroom.stopped', undefined],
    ],
  );
  assert.equal(recs[0].prev, GENESIS_PREV);
  assert.deepEqual(recs[0].details, { healthPort: 8290, when: '1970-01-01T00:00:00.000Z' });
  for (let i = 0; i < recs.length; i++) {
    assert.equal(recs[i].hash, recordHash(recs[i]));
    if (i > 0)
      assert.equal(
        recs[i].prev,
        createHash('sha256')
          .update(lines[i - 1]!)
          .digest('hex'),
      );
    assert.match(recs[i].time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  }
  const v = await verifyAuditLog(file);
  assert.deepEqual(v, { ok: true, records: 3, head: recs[2].hash });
});

test('reopening continues the chain', async () => {
  const file = fresh();
  await writeLog(file, 2);
  const log = await AuditLog.open(file, quiet);
  log.emit({ type: 'again' });
  await log.close();
  const v = await verifyAuditLog(file);
  assert.equal(v.ok, true);
  assert.equal(v.records, 3);
  const last = JSON.parse(readFileSync(file, 'utf8').trim().split('\n')[2]!);
  assert.equal(last.seq, 3);
});

test('an empty log verifies with zero records', async () => {
  const file = fresh();
  await (await AuditLog.open(file, quiet)).close();
  assert.deepEqual(await verifyAuditLog(file), { ok: true, records: 0 });
});

// ------------------------------------------------------------------ tampering

const rehash = (line: string, edit: (r: Record<string, unknown>) => void): string => {
  const r = JSON.parse(line) as Record<string, unknown>;
  edit(r);
  // Keys stay in canonical (sorted) order because JSON.parse keeps the line's order.
  return JSON.stringify(r);
};

const tampers: Array<[string, (lines: string[]) => string, number, RegExp]> = [
  [
    'edit a field of record 3',
    (l) => {
      l[2] = rehash(l[2]!, (r) => {
        r.subject = 'forged';
      });
      return `${l.join('\n')}\n`;
    },
    3,
    /hash does not match/,
  ],
  [
    'edit record 3 and recompute its own hash',
    (l) => {
      l[2] = rehash(l[2]!, (r) => {
        r.subject = 'forged';
        r.hash = recordHash(r as never);
      });
      return `${l.join('\n')}\n`;
    },
    4,
    /prev does not match/,
  ],
  [
    'whitespace added to record 2',
    (l) => {
      l[1] = l[1]!.replace('{', '{ ');
      return `${l.join('\n')}\n`;
    },
    2,
    /canonical form/,
  ],
  ['delete record 4', (l) => `${l.filter((_, i) => i !== 3).join('\n')}\n`, 4, /sequence number 5 where 4/],
  [
    'swap records 2 and 3',
    (l) => `${[l[0], l[2], l[1], ...l.slice(3)].join('\n')}\n`,
    2,
    /sequence number 3 where 2/,
  ],
  [
    'duplicate record 2',
    (l) => `${[l[0], l[1], l[1], ...l.slice(2)].join('\n')}\n`,
    3,
    /sequence number 2 where 3/,
  ],
  [
    'truncate the last line partially',
    (l) => {
      const all = `${l.join('\n')}\n`;
      return all.slice(0, all.length - 20);
    },
    6,
    /incomplete final line/,
  ],
  [
    'garbage line replaces record 5',
    (l) => `${[...l.slice(0, 4), 'not json', l[5]].join('\n')}\n`,
    5,
    /not valid JSON/,
  ],
  ['blank line inserted after record 1', (l) => `${[l[0], '', ...l.slice(1)].join('\n')}\n`, 2, /empty line/],
  [
    'unknown field added to record 6',
    (l) => {
      l[5] = rehash(l[5]!, (r) => {
        r.zz = 1;
      });
      return `${l.join('\n')}\n`;
    },
    6,
    /unexpected field "zz"/,
  ],
];

for (const [name, tamper, badRecord, reason] of tampers) {
  test(`tamper detected: ${name} -> record ${badRecord}`, async () => {
    const file = fresh();
    const lines = await writeLog(file, 6);
    assert.equal((await verifyAuditLog(file)).ok, true);
    writeFileSync(file, tamper([...lines]));
    const v = await verifyAuditLog(file);
    assert.equal(v.ok, false);
    assert.equal(v.firstBadRecord, badRecord, v.reason);
    assert.equal(v.records, badRecord - 1);
    assert.match(v.reason!, reason);
  });
}

test('cutting whole records off the end keeps a valid chain but changes the head', async () => {
  const file = fresh();
  const lines = await writeLog(file, 6);
  const before = await verifyAuditLog(file);
  writeFileSync(file, `${lines.slice(0, 5).join('\n')}\n`);
  const afterCut = await verifyAuditLog(file);
  assert.equal(afterCut.ok, true);
  assert.equal(afterCut.records, 5);
  assert.notEqual(afterCut.head, before.head);
});

test('opening refuses a broken chain; a torn final line from a crash is discarded and recorded', async () => {
  const broken = fresh();
  const lines = await writeLog(broken, 3);
  writeFileSync(broken, `${[lines[0], lines[2]].join('\n')}\n`);
  await assert.rejects(AuditLog.open(broken, quiet), (e: unknown) => {
    assert.ok(isMembraneError(e, 'AUDIT_CHAIN_BROKEN'));
    assert.match(e.message, /record 2/);
    return true;
  });

  const torn = fresh();
  await writeLog(torn, 3);
  const tail = '{"details":{"i":4},"hash":"ab';
  appendFileSync(torn, tail);
  const log = await AuditLog.open(torn, quiet);
  log.emit({ type: 'after.crash' });
  await log.close();
  const v = await verifyAuditLog(torn);
  assert.equal(v.ok, true, v.reason);
  assert.equal(v.records, 5);
  const recs = readFileSync(torn, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(recs[3].type, 'audit.torn_tail_discarded');
  assert.equal(recs[3].details.bytes, tail.length);
  assert.equal(recs[3].details.sha256, createHash('sha256').update(tail).digest('hex'));
  assert.equal(recs[4].type, 'after.crash');
});

test('emit never throws and never blocks on bad input; after close it counts drops', async () => {
  const file = fresh();
  const log = await AuditLog.open(file, quiet);
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  log.emit({ type: 'big', details: { n: 10n } as unknown as Record<string, unknown> });
  log.emit({ type: 'loop', details: circular });
  log.emit({ type: 'undef', details: { a: undefined, b: 1 } });
  log.emit(null as unknown as { type: string });
  await log.close();
  log.emit({ type: 'late' });
  assert.equal(log.stats().dropped, 2); // the null event and the one after close
  const recs = readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    recs.map((r) => [r.type, r.details]),
    [
      ['big', { unserializable: true }],
      ['loop', { unserializable: true }],
      ['undef', { b: 1 }],
    ],
  );
  assert.equal((await verifyAuditLog(file)).ok, true);
});

test('one writer per log: a second open is refused, a stale lock is taken over', async () => {
  const file = fresh();
  const log = await AuditLog.open(file, quiet);
  await assert.rejects(AuditLog.open(file, quiet), (e: unknown) => isMembraneError(e, 'AUDIT_LOCKED'));
  await log.close();
  // A lock left by a process that no longer exists.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  });
  writeFileSync(`${file}.lock`, `${dead.stdout}\n`);
  const again = await AuditLog.open(file, quiet);
  again.emit({ type: 'ok' });
  await again.close();
  assert.equal((await verifyAuditLog(file)).records, 1);
});

// ------------------------------------------------------------------ governance forwarding

async function sidecar(handler: (req: IncomingMessage, body: string) => [number, string]) {
  const seen: Array<{ method: string; url: string; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, body });
      const [status, text] = handler(req, body);
      res.writeHead(status, { 'content-type': 'application/json' }).end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, seen, close: () => new Promise<void>((r) => server.close(() => r())) };
}

test('records are forwarded to governance in order, after they are on disk', async () => {
  const gov = await sidecar(() => [200, '']);
  try {
    const file = fresh();
    const client = new GovernanceClient({ auditUrl: gov.url, auditId: 'recon', auditScope: 'membrane' });
    const log = await AuditLog.open(file, { ...quiet, governance: client });
    for (let i = 1; i <= 4; i++) log.emit({ type: 'e', subject: String(i) });
    await log.close();
    assert.equal(gov.seen.length, 4);
    for (const [i, r] of gov.seen.entries()) {
      assert.equal(r.method, 'PUT');
      assert.equal(r.url, '/events?id=recon&scope=membrane');
      const body = JSON.parse(r.body);
      assert.equal(body.source, 'membrane');
      assert.equal(body.seq, i + 1);
      assert.equal(body.subject, String(i + 1));
    }
    const disk = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      gov.seen.map((r) => JSON.parse(r.body).hash),
      disk.map((r) => r.hash),
    );
    assert.deepEqual(log.stats(), { written: 4, dropped: 0, forwarded: 4, forwardFailures: 0 });
  } finally {
    await gov.close();
  }
});

test('governance failures are counted, not fatal, and stop being retried for a while', async () => {
  const gov = await sidecar(() => [400, '{"error":{"code":"BadRequest","message":"nope"}}']);
  const lines: string[] = [];
  try {
    const file = fresh();
    const client = new GovernanceClient({ auditUrl: gov.url, auditId: 'x', eventRetries: 0 });
    const log = await AuditLog.open(file, { log: (l) => lines.push(l), governance: client });
    for (let i = 0; i < 6; i++) log.emit({ type: 'e' });
    await log.close();
    const s = log.stats();
    assert.equal(s.written, 6);
    assert.equal(s.forwarded, 0);
    assert.equal(s.forwardFailures, 6);
    assert.equal(gov.seen.length, 3, 'the breaker stops after 3 consecutive failures');
    assert.ok(lines.some((l) => /not forwarding for 30 s/.test(l)));
    assert.equal((await verifyAuditLog(file)).records, 6);
  } finally {
    await gov.close();
  }
});

// ------------------------------------------------------------------ the CLI

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'membrane.mjs');

test('membrane audit verify: exit 0 when intact, 1 naming the first bad record', async () => {
  const file = fresh();
  const lines = await writeLog(file, 4);
  const ok = spawnSync(process.execPath, [bin, 'audit', 'verify', '--file', file, '--json'], {
    encoding: 'utf8',
  });
  assert.equal(ok.status, 0, ok.stderr);
  const j = JSON.parse(ok.stdout);
  assert.equal(j.ok, true);
  assert.equal(j.records, 4);

  const head = spawnSync(
    process.execPath,
    [bin, 'audit', 'verify', '--file', file, '--head', 'f'.repeat(64)],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(head.status, 1);
  assert.match(head.stderr, /not the expected head/);

  writeFileSync(file, `${lines.filter((_, i) => i !== 1).join('\n')}\n`);
  const bad = spawnSync(process.execPath, [bin, 'audit', 'verify', '--file', file], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /BROKEN at record 2: sequence number 3 where 2 was expected/);
});
