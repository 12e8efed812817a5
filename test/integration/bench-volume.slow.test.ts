/**
 * Smoke test of `membrane bench volume --quick`: the command mounts, loads and
 * unmounts every implementation, and its JSON report has the documented shape
 * (cases per implementation and operation, ratios, per-case detail, targets).
 * Run twice: as the machine is (gocryptfs compared when installed), and with
 * MEMBRANE_BENCH_NO_GOCRYPTFS=1, the path of a machine without gocryptfs.
 * No performance thresholds: the numbers are for people and the targets report.
 *
 * This process mounts nothing itself (the bench serves each mount from a child
 * process), so synchronous calls here are safe.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';

const root = resolve(import.meta.dirname, '..', '..', '..');
const bin = join(root, 'bin', 'membrane.mjs');
const T = { timeout: 300_000 };

type Case = Record<string, unknown> & { impl: string; op: string };
interface Report {
  suite: string;
  quick: boolean;
  gocryptfs: string | null;
  objectBytes: number;
  cases: Case[];
  targets: { name: string; value: number; target: number; met: boolean }[];
  notes: string[];
}
interface Run {
  code: number | null;
  out: string;
  err: string;
  report?: Report;
}

let dir: string;
let full: Run;
let hidden: Run;

function bench(name: string, args: string[], env: Record<string, string> = {}): Run {
  const json = join(dir, `${name}.json`);
  const r = spawnSync(
    process.execPath,
    [
      bin,
      'bench',
      'volume',
      '--quick',
      '--reps',
      '1',
      '--rand-seconds',
      '1',
      '--dir',
      dir,
      ...args,
      '--json',
      json,
    ],
    { encoding: 'utf8', cwd: root, timeout: 280_000, env: { ...process.env, ...env } },
  );
  const run: Run = { code: r.status, out: r.stdout, err: r.stderr };
  if (r.status === 0) run.report = JSON.parse(readFileSync(json, 'utf8')) as Report;
  return run;
}

function report(r: Run): Report {
  assert.equal(r.code, 0, `bench failed (${r.code}):\n${r.err}`);
  assert.ok(r.report);
  return r.report;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'membrane-bench-volume-test-'));
  full = bench('full', ['--size-mib', '16', '--stream-gib', '0.03125']);
  hidden = bench('hidden', ['--size-mib', '8'], { MEMBRANE_BENCH_NO_GOCRYPTFS: '1' });
});

after(() => rmSync(dir, { recursive: true, force: true }));

const OPS = ['seq-read', 'rand-read-4k', 'seq-write'];
const MEMBRANE = ['membrane-secure', 'membrane-passthrough'];
const ALWAYS = [...MEMBRANE, 'local-file'];

function checkCases(r: Report, impls: string[]): void {
  for (const impl of impls) {
    for (const op of OPS) {
      const c = r.cases.find((x) => x.impl === impl && x.op === op);
      assert.ok(c, `no ${impl} ${op} case`);
      const what = JSON.stringify(c);
      assert.equal(c.suite, 'volume', what);
      assert.ok(Number.isFinite(c.bytesPerSecond) && (c.bytesPerSecond as number) > 0, what);
      assert.ok(Number.isInteger(c.frameBytes) && (c.frameBytes as number) > 0, what);
      assert.ok(Number.isInteger(c.threads) && (c.threads as number) > 0, what);
      assert.equal(c.reps, 1, what);
      if (op === 'rand-read-4k') assert.ok((c.iops as number) > 0, `no IOPS: ${what}`);
      if (op !== 'rand-read-4k') assert.ok((c.inputBytes as number) >= r.objectBytes, what);
      if (MEMBRANE.includes(impl)) {
        assert.ok((c.ratioToPassthrough as number) > 0, `no ratio to passthrough: ${what}`);
        assert.ok((c.peakRssBytes as number) > 0, `no peak RSS: ${what}`);
        assert.ok((c.cpuBytesPerSecond as number) > 0, `no CPU figure: ${what}`);
        const d = c.detail as Record<string, number>;
        assert.ok(d.serverCpuSecondsPerGiB !== undefined && d.serverCpuSecondsPerGiB >= 0, what);
        assert.ok(d.serverMainThreadCpuSecondsPerGiB !== undefined, what);
      }
    }
  }
}

test('with gocryptfs as installed: every implementation and operation is measured', T, () => {
  const r = report(full);
  assert.equal(r.suite, 'volume');
  assert.equal(r.quick, true);
  assert.equal(r.objectBytes, 16 * 1024 * 1024);
  checkCases(r, ALWAYS);
  if (r.gocryptfs === null) {
    assert.ok(r.cases.every((c) => c.impl !== 'gocryptfs'));
    assert.ok(r.notes.some((n) => /gocryptfs is not installed/.test(n)));
    return;
  }
  checkCases(r, ['gocryptfs']);
  for (const op of OPS) {
    const secure = r.cases.find((c) => c.impl === 'membrane-secure' && c.op === op)!;
    assert.ok((secure.ratioToGocryptfs as number) > 0, `no ratio to gocryptfs for ${op}`);
  }
  const names = r.targets.map((t) => t.name).join('\n');
  assert.match(names, /sequential read .*gocryptfs/);
  assert.match(names, /random 4 KiB read IOPS .*gocryptfs/);
});

test('the RSS check streams an object and reports the mounting process peak', T, () => {
  const r = report(full);
  const c = r.cases.find((x) => x.op === 'stream-read');
  assert.ok(c, 'no stream-read case');
  assert.equal(c.impl, 'membrane-secure');
  assert.equal(c.inputBytes, 32 * 1024 * 1024);
  assert.ok((c.peakRssBytes as number) > 0);
  const t = r.targets.find((x) => /peak RSS/.test(x.name));
  assert.ok(t, 'no RSS target');
  assert.equal(t.target, 256 * 1024 * 1024);
  assert.equal(t.met, t.value < t.target);
});

test('targets carry name, value, target and met; the table has the ratio columns', T, () => {
  const r = report(full);
  for (const t of r.targets) {
    assert.equal(typeof t.name, 'string');
    assert.ok(Number.isFinite(t.value) && t.value > 0 && Number.isFinite(t.target));
    assert.equal(typeof t.met, 'boolean');
  }
  assert.match(full.out, /impl\s+op\s+frame\s+threads\s+MB\/s/);
  assert.match(full.out, /IOPS/);
  assert.match(full.out, /x passthrough/);
  if (r.gocryptfs !== null) assert.match(full.out, /x gocryptfs/);
  assert.match(full.out, /Targets \(quick run: indicative only/, 'quick runs never give verdicts');
  // Where the time goes: one line per measured case.
  assert.ok(r.notes.some((n) => /^seq-read membrane-secure: serving process .* CPU-s\/GiB/.test(n)));
});

test('with gocryptfs hidden: no gocryptfs cases or targets, and a note says so', T, () => {
  const r = report(hidden);
  assert.equal(r.gocryptfs, null);
  checkCases(r, ALWAYS);
  assert.ok(r.cases.every((c) => c.impl !== 'gocryptfs' && c.ratioToGocryptfs === undefined));
  assert.ok(r.targets.every((t) => !/gocryptfs/.test(t.name)));
  assert.ok(r.notes.some((n) => /MEMBRANE_BENCH_NO_GOCRYPTFS=1/.test(n)));
  assert.doesNotMatch(hidden.out, /x gocryptfs/);
});

test('nothing stays mounted and the work directories are removed', T, () => {
  report(full);
  report(hidden);
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  assert.doesNotMatch(mounts, /membrane-bench-volume-/);
  const left = readdirSync(dir).filter((n) => n.startsWith('membrane-bench-volume-'));
  assert.deepEqual(left, []);
});

test('bad option values are usage errors', T, () => {
  for (const args of [
    ['--size-mib', '0'],
    ['--reps', 'x'],
    ['--stream-gib', '-1'],
    ['--rand-jobs', '1.5'],
  ]) {
    const r = spawnSync(process.execPath, [bin, 'bench', 'volume', ...args], { encoding: 'utf8', cwd: root });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /\[USAGE\]/);
  }
});
