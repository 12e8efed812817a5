/**
 * Smoke test of `membrane bench egress --quick`: the command runs end to end on loopback
 * (upstream, tinyproxy, Membrane's proxy, wrk) and its JSON report has the documented shape.
 * No performance thresholds: a slow or busy machine must not fail CI.
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
  dir = mkdtempSync(join(tmpdir(), 'membrane-bench-egress-test-'));
  const json = join(dir, 'bench.json');
  const r = spawnSync(
    process.execPath,
    [
      bin,
      'bench',
      'egress',
      '--quick',
      '--seconds',
      '1',
      '--reps',
      '1',
      '--connect-mib',
      '8',
      '--json',
      json,
      '--chart',
      join(dir, 'bench.svg'),
    ],
    { encoding: 'utf8', cwd: root, timeout: 300_000 },
  );
  run = { code: r.status, out: r.stdout, err: r.stderr };
  assert.equal(run.code, 0, `bench failed:\n${run.err}`);
  report = JSON.parse(readFileSync(json, 'utf8')) as Record<string, unknown>;
});

after(() => rmSync(dir, { recursive: true, force: true }));

type Case = Record<string, unknown>;
const cases = () => report.cases as Case[];
const tools = () => report.tools as { wrk: string | null; tinyproxy: string | null };
const find = (impl: string, op: string) => cases().find((c) => c.impl === impl && c.op === op);

test('the report names the suite, the machine and the tools', () => {
  assert.equal(report.suite, 'egress');
  assert.equal(report.quick, true);
  const m = report.machine as Record<string, unknown>;
  assert.ok(Number.isInteger(m.cpus) && (m.cpus as number) >= 1);
  assert.ok(tools().wrk === null || /^wrk /.test(tools().wrk as string));
  assert.ok(tools().tinyproxy === null || /tinyproxy/.test(tools().tinyproxy as string));
  assert.equal(report.connections, 16);
});

test('every case has the common fields', () => {
  assert.ok(cases().length > 0);
  for (const c of cases()) {
    const what = JSON.stringify(c);
    assert.equal(c.suite, 'egress', what);
    for (const k of ['impl', 'op']) assert.ok(typeof c[k] === 'string' && (c[k] as string).length > 0, what);
    assert.ok(Number.isInteger(c.frameBytes) && (c.frameBytes as number) >= 0, what);
    assert.equal(c.threads, 1, what);
    assert.ok(Number.isFinite(c.bytesPerSecond) && (c.bytesPerSecond as number) >= 0, what);
  }
});

test('the policy decision cost is measured with p50 and p99', () => {
  const d = find('membrane-policy', 'decide');
  assert.ok(d, 'no decision case');
  assert.ok((d.latencyP50Ms as number) > 0 && (d.latencyP99Ms as number) >= (d.latencyP50Ms as number));
  assert.ok((d.requestsPerSecond as number) > 0);
});

test('the inspector is measured per core', () => {
  const i = find('membrane-inspector', 'inspect');
  assert.ok(i && (i.cpuBytesPerSecond as number) > 0 && (i.bytesPerSecond as number) > 0);
});

const requestCases: [impl: string, op: string, needs: 'wrk' | 'tinyproxy'][] = [
  ['direct', 'GET keep-alive', 'wrk'],
  ['membrane-open', 'GET keep-alive', 'wrk'],
  ['tinyproxy', 'GET keep-alive', 'tinyproxy'],
  ['direct', 'POST keep-alive', 'wrk'],
  ['membrane-open', 'POST keep-alive', 'wrk'],
  ['membrane-open-pii', 'POST keep-alive', 'wrk'],
  ['tinyproxy', 'POST keep-alive', 'tinyproxy'],
];
for (const [impl, op, needs] of requestCases) {
  test(`request case ${impl} ${op}: req/s, p50, p99 and no errors`, (t) => {
    if (tools().wrk === null || (needs === 'tinyproxy' && tools().tinyproxy === null)) {
      assert.ok((report.notes as string[]).some((n) => /not installed/.test(n)));
      t.skip('tool not installed; the report says so');
      return;
    }
    const c = find(impl, op);
    assert.ok(c, `no ${impl} ${op} case`);
    assert.ok((c.requestsPerSecond as number) > 0);
    assert.ok((c.latencyP50Ms as number) > 0 && (c.latencyP99Ms as number) >= (c.latencyP50Ms as number));
    // Every request passed: a refusal (403 from a policy mistake) would show as errors.
    assert.equal(c.errors, 0);
    if (impl !== 'direct') {
      assert.ok((c.ratioToDirect as number) > 0);
      assert.ok((c.proxyCpuMicrosPerRequest as number) > 0);
    }
    if (impl.startsWith('membrane') && tools().tinyproxy !== null)
      assert.ok((c.ratioToTinyproxy as number) > 0);
  });
}

test('CONNECT upload: direct, and through the proxies with a ratio to direct', () => {
  assert.ok((find('direct', 'CONNECT upload')?.bytesPerSecond as number) > 0);
  const via = ['membrane-open', ...(tools().tinyproxy === null ? [] : ['tinyproxy'])];
  for (const impl of via) {
    const c = find(impl, 'CONNECT upload');
    assert.ok(c, `no CONNECT case via ${impl}`);
    assert.ok((c.bytesPerSecond as number) > 0 && (c.ratioToDirect as number) > 0);
  }
});

test('targets are the issue five, shown as indicative in a quick run', () => {
  const targets = report.targets as { name: string; value: number; target: number; met: boolean }[];
  for (const t of targets) {
    assert.ok(Number.isFinite(t.value) && Number.isFinite(t.target), t.name);
    assert.equal(typeof t.met, 'boolean');
  }
  const names = targets.map((t) => t.name).join('\n');
  for (const re of [/decision p50/, /inspection MB\/s per core/, /CONNECT upload MB\/s/])
    assert.match(names, re);
  if (tools().tinyproxy !== null && tools().wrk !== null)
    for (const re of [/GET req\/s.*tinyproxy/, /GET p99.*tinyproxy/]) assert.match(names, re);
  assert.match(run.out, /Targets \(quick run: indicative only/);
  assert.doesNotMatch(run.out, /\[(MET|MISSED)\]/);
  assert.match(run.out, /req\/s\s+p50 ms\s+p99 ms/);
});

test('the chart draws the cases that have a byte rate', () => {
  const svg = readFileSync(join(dir, 'bench.svg'), 'utf8');
  assert.match(svg, /^<svg /);
  assert.match(svg, /CONNECT upload/);
});

test('bad option values are usage errors', () => {
  for (const args of [
    ['bench', 'egress', '--seconds', '0'],
    ['bench', 'egress', '--connections', 'x'],
    ['bench', 'egress', '--bogus'],
  ]) {
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /\[USAGE\]/);
  }
});
