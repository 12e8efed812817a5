/**
 * Smoke test of `membrane bench aead --quick`: the command runs end to end and its
 * JSON report has the documented shape. No performance thresholds: a slow or busy
 * machine must not fail CI; the numbers are for people and the targets report.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';

// dist/test/integration -> repository root
const root = resolve(import.meta.dirname, '..', '..', '..');
const bin = join(root, 'bin', 'membrane.mjs');

let dir: string;
let run: { code: number | null; out: string; err: string };
let report: Record<string, unknown>;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'membrane-bench-'));
  const json = join(dir, 'bench.json');
  const chart = join(dir, 'bench.svg');
  const r = spawnSync(
    process.execPath,
    [
      bin,
      'bench',
      'aead',
      '--quick',
      '--reps',
      '1',
      '--stream-gib',
      '0.0625',
      '--json',
      json,
      '--chart',
      chart,
    ],
    { encoding: 'utf8', cwd: root, timeout: 180_000 },
  );
  run = { code: r.status, out: r.stdout, err: r.stderr };
  assert.equal(run.code, 0, `bench failed:\n${run.err}`);
  report = JSON.parse(readFileSync(json, 'utf8')) as Record<string, unknown>;
});

after(() => rmSync(dir, { recursive: true, force: true }));

type Case = Record<string, unknown>;
const cases = () => report.cases as Case[];
const opensslPresent = () => (report.machine as { openssl: unknown }).openssl !== null;

test('machine, backend and suite are described', () => {
  const m = report.machine as Record<string, unknown>;
  assert.equal(report.suite, 'aead');
  assert.equal(report.quick, true);
  assert.ok(Number.isInteger(m.cpus) && (m.cpus as number) >= 1);
  for (const k of ['model', 'node']) assert.equal(typeof m[k], 'string', k);
  assert.ok(m.openssl === null || typeof m.openssl === 'string');
  assert.ok(['openssl-native', 'node-crypto'].includes(report.backend as string));
});

test('every case has the required fields with positive numbers', () => {
  assert.ok(cases().length > 0);
  for (const c of cases()) {
    const what = JSON.stringify(c);
    assert.equal(c.suite, 'aead', what);
    for (const k of ['impl', 'op']) assert.ok(typeof c[k] === 'string' && (c[k] as string).length > 0, what);
    for (const k of ['frameBytes', 'threads'])
      assert.ok(Number.isInteger(c[k]) && (c[k] as number) > 0, what);
    assert.ok(Number.isFinite(c.bytesPerSecond) && (c.bytesPerSecond as number) > 0, what);
    if (opensslPresent()) assert.ok((c.ratioToOpenssl as number) > 0, `ratioToOpenssl missing: ${what}`);
    else assert.equal(c.ratioToOpenssl, undefined, what);
    if (c.ratioToSdk !== undefined) assert.ok((c.ratioToSdk as number) > 0, what);
    // Measured cases (everything but the openssl subprocess) also carry the CPU-time figure.
    if (c.impl !== 'openssl-speed') assert.ok((c.cpuBytesPerSecond as number) > 0, `no CPU figure: ${what}`);
  }
});

const expected: [impl: string, op: string, threads?: 'one' | 'all'][] = [
  ['membrane-core', 'decrypt', 'one'],
  ['membrane-core', 'decrypt', 'all'],
  ['membrane-core', 'decrypt-stream', 'one'],
  ['membrane-core', 'encrypt-stream', 'one'],
  ['membrane-core', 'stream-roundtrip', 'one'],
  ['membrane-core-node-crypto', 'decrypt', 'one'],
  ['@aws-crypto/client-node', 'decrypt', 'one'],
  ['@aws-crypto/client-node', 'encrypt', 'one'],
  ['node-crypto-oneshot', 'decrypt', 'one'],
  ['node-crypto-oneshot', 'encrypt', 'one'],
];
for (const [impl, op, threads] of expected) {
  test(`case present: ${impl} ${op} (${threads} thread${threads === 'all' ? 's' : ''})`, () => {
    const cpus = (report.machine as { cpus: number }).cpus;
    const want = threads === 'all' ? cpus : 1;
    const found = cases().filter((c) => c.impl === impl && c.op === op && c.threads === want);
    assert.ok(found.length > 0, `no ${impl} ${op} case with ${want} thread(s)`);
  });
}

test('the core is compared with the SDK at the same frame length (64 KiB)', () => {
  const c = cases().find(
    (x) => x.impl === 'membrane-core' && x.op === 'decrypt' && x.threads === 1 && x.frameBytes === 65536,
  );
  assert.ok(c, 'no 64 KiB single-thread core decrypt');
  assert.ok((c.ratioToSdk as number) > 0);
});

test('the fallback child really ran on node:crypto', () => {
  const c = cases().find((x) => x.impl === 'membrane-core-node-crypto');
  assert.match(String(c?.note), /backend node-crypto/);
});

test('openssl ceiling: 16 KiB column parsed, or its absence reported', () => {
  const rows = cases().filter((c) => c.impl === 'openssl-speed');
  if (opensslPresent()) assert.ok(rows.some((c) => c.frameBytes === 16384));
  else assert.ok((report.notes as string[]).some((n) => /openssl/.test(n)));
});

test('the RSS check reports a peak', () => {
  const c = cases().find((x) => x.op === 'stream-roundtrip');
  assert.ok(c && (c.peakRssBytes as number) > 0);
  assert.ok((report.targets as { name: string }[]).some((t) => /RSS/.test(t.name)));
});

test('targets carry name, value, target and met', () => {
  const targets = report.targets as Record<string, unknown>[];
  assert.ok(targets.length >= (opensslPresent() ? 4 : 2));
  for (const t of targets) {
    assert.equal(typeof t.name, 'string');
    assert.ok(Number.isFinite(t.value) && Number.isFinite(t.target));
    assert.equal(typeof t.met, 'boolean');
  }
});

test('table and chart are produced', () => {
  assert.match(run.out, /impl\s+op\s+frame\s+threads\s+MB\/s/);
  // A --quick run is a smoke test: targets are shown as indicative, never as verdicts.
  assert.match(run.out, /Targets \(quick run: indicative only/);
  assert.match(run.out, /\[(above|below)\] decrypt 64 KiB frames/);
  assert.doesNotMatch(run.out, /\[(MET|MISSED)\]/);
  const svg = readFileSync(join(dir, 'bench.svg'), 'utf8');
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.ok(svg.trimEnd().endsWith('</svg>'));
});

test('unknown suite and bad option values are usage errors', () => {
  for (const args of [
    ['bench', 'nope'],
    ['bench', 'aead', '--reps', '0'],
    ['bench', 'aead', '--stream-gib', 'x'],
    ['bench', 'aead', '--bogus'],
  ]) {
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /\[USAGE\]/);
  }
});
