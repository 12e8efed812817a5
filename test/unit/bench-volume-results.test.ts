/**
 * The volume bench's arithmetic, without FUSE: medians and ratios per case,
 * per-GiB CPU detail, the three targets (met and missed), and the notes that
 * say where the time went.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MachineInfo, SuiteRunContext } from '../../bench/types.js';
import { type VolumeCounters, zeroCounters } from '../../bench/volume-counters.js';
import {
  buildCases,
  caveats,
  evaluateTargets,
  explain,
  type Plan,
  type Sample,
  type VolumeCase,
} from '../../bench/volume-results.js';

const MiB = 1 << 20;
const GiB = 1 << 30;
const plan: Plan = {
  objectBytes: GiB,
  reps: 3,
  randSeconds: 10,
  randJobs: 4,
  frameLength: 64 * 1024,
  seqDirect: false,
  randDirect: true,
  cold: false,
  dir: '/tmp',
};
const counters = (o: Partial<VolumeCounters>): VolumeCounters => ({ ...zeroCounters(), ...o });

/** Three repetitions moving `bytes` in the given seconds. */
function reps(bytes: number, seconds: number[], extra: Partial<Sample> = {}): Sample[] {
  return seconds.map((s) => ({ bytes, seconds: s, ...extra }));
}

function samples(secureSeq: number[], gocryptfsSeq: number[]): Map<string, Sample[]> {
  const m = new Map<string, Sample[]>();
  m.set(
    'membrane-secure|seq-read',
    reps(GiB, secureSeq, {
      serverCpu: 2,
      serverMainCpu: 1,
      serverV8Cpu: 0.25,
      serverLibuvCpu: 0.25,
      peakRss: 150 * MiB,
      counters: counters({
        cacheHits: 3,
        cacheMisses: 1,
        bytesDecrypted: GiB,
        storeRequests: 512,
        storeMs: 1024,
      }),
    }),
  );
  m.set('membrane-passthrough|seq-read', reps(GiB, [1, 1, 1], { serverCpu: 1.5, serverMainCpu: 0.5 }));
  m.set('gocryptfs|seq-read', reps(GiB, gocryptfsSeq, { serverCpu: 1, serverMainCpu: 0.1 }));
  m.set('local-file|seq-read', reps(GiB, [0.5, 0.5, 0.5]));
  const rand = (ios: number) => reps(ios * 4096, [10, 10, 10], { ios, serverCpu: 5, serverMainCpu: 2 });
  m.set('membrane-secure|rand-read-4k', rand(70_000));
  m.set('membrane-passthrough|rand-read-4k', rand(100_000));
  m.set('gocryptfs|rand-read-4k', rand(100_000));
  return m;
}

test('medians, min..max, IOPS and ratios to gocryptfs and to passthrough', () => {
  const cases = buildCases(samples([2, 4, 1], [1, 1, 1]), plan);
  const seq = cases.find((c) => c.impl === 'membrane-secure' && c.op === 'seq-read')!;
  assert.equal(seq.bytesPerSecond, GiB / 2);
  assert.equal(seq.minBytesPerSecond, GiB / 4);
  assert.equal(seq.maxBytesPerSecond, GiB);
  assert.equal(seq.ratioToGocryptfs, 0.5);
  assert.equal(seq.ratioToPassthrough, 0.5);
  assert.equal(seq.peakRssBytes, 150 * MiB);
  assert.equal(seq.cpuBytesPerSecond, GiB / 2);
  assert.equal(seq.reps, 3);
  assert.deepEqual(
    { ...seq.detail },
    {
      serverCpuSecondsPerGiB: 2,
      serverMainThreadCpuSecondsPerGiB: 1,
      serverV8ThreadsCpuSecondsPerGiB: 0.25,
      serverLibuvThreadsCpuSecondsPerGiB: 0.25,
      serverFuseThreadsCpuSecondsPerGiB: 0.5,
      serverCpuBusy: 1,
      serverMainThreadBusy: 0.5,
      frameCacheHitRatio: 0.75,
      decryptedPerDeliveredByte: 1,
      storeRequestsPerMiB: 0.5,
      storeRequestMeanMs: 2,
      storeTimeShare: 0.512, // 1024 ms of store requests in the median 2 s
    },
  );
  const rnd = cases.find((c) => c.impl === 'membrane-secure' && c.op === 'rand-read-4k')!;
  assert.equal(rnd.iops, 7000);
  assert.equal(rnd.threads, 4);
  assert.equal(rnd.frameBytes, 4096);
  assert.equal(rnd.ratioToGocryptfs, 0.7);
  // The reference rows: no ratio to themselves where it means nothing.
  const local = cases.find((c) => c.impl === 'local-file' && c.op === 'seq-read')!;
  assert.equal(local.ratioToGocryptfs, undefined);
  assert.equal(local.ratioToPassthrough, undefined);
  assert.equal(local.detail, undefined);
  const g = cases.find((c) => c.impl === 'gocryptfs' && c.op === 'seq-read')!;
  assert.equal(g.ratioToGocryptfs, 1);
  assert.equal(g.ratioToPassthrough, undefined);
  // Operations nobody measured produce no rows.
  assert.ok(!cases.some((c) => c.op === 'seq-write'));
});

const targetTable: [name: string, secureSeq: number[], want: { seq: boolean; rand: boolean }][] = [
  ['seq faster than gocryptfs, IOPS 0.7x', [0.5, 0.5, 0.5], { seq: true, rand: false }],
  ['seq at half of gocryptfs', [2, 2, 2], { seq: false, rand: false }],
];
for (const [name, secureSeq, want] of targetTable) {
  test(`targets: ${name}`, () => {
    const cases = buildCases(samples(secureSeq, [1, 1, 1]), plan);
    const t = evaluateTargets(cases, plan);
    assert.equal(t.length, 2, 'no RSS target without a stream case');
    assert.equal(t[0]!.met, want.seq);
    assert.equal(t[0]!.target, 1);
    assert.equal(t[1]!.met, want.rand);
    assert.equal(t[1]!.target, 0.8);
    const notes = explain(cases, t, plan);
    assert.equal(
      notes.filter((n) => n.startsWith('MISSED:')).length,
      [want.seq, want.rand].filter((x) => !x).length,
    );
    assert.ok(
      notes.some((n) =>
        /^seq-read CPU budget per GiB: membrane-secure 2\.00 CPU-s; .* 1\.50, so crypto and its buffers ~0\.50 .*gocryptfs 1\.00 CPU-s .* 2\.00x as much/.test(
          n,
        ),
      ),
    );
  });
}

test('the RSS target: below 256 MiB is met, at or above is missed', () => {
  for (const [peak, met] of [
    [200 * MiB, true],
    [256 * MiB, false],
  ] as const) {
    const stream: VolumeCase = {
      suite: 'volume',
      impl: 'membrane-secure',
      op: 'stream-read',
      frameBytes: MiB,
      threads: 1,
      bytesPerSecond: 1,
      peakRssBytes: peak,
      inputBytes: 4 * GiB,
    };
    const t = evaluateTargets([stream], plan);
    assert.equal(t.length, 1);
    assert.match(t[0]!.name, /streams 4 GiB: peak RSS/);
    assert.equal(t[0]!.met, met);
  }
});

test('without gocryptfs there are no gocryptfs ratios or targets', () => {
  const m = samples([1, 1, 1], [1, 1, 1]);
  for (const k of [...m.keys()]) if (k.startsWith('gocryptfs|')) m.delete(k);
  const cases = buildCases(m, plan);
  assert.ok(cases.every((c) => c.ratioToGocryptfs === undefined));
  assert.deepEqual(evaluateTargets(cases, plan), []);
});

test('caveats name the load and flag a shared machine', () => {
  const machine: MachineInfo = {
    cpus: 2,
    model: 'x',
    node: 'v20',
    openssl: null,
    nodeOpenssl: '3',
    platform: 'linux',
    arch: 'x64',
    loadAverage: [3, 3, 3],
  };
  const ctx: SuiteRunContext = { quick: false, values: {}, machine, progress: () => {} };
  const c = caveats(ctx, plan).join('\n');
  assert.match(c, /O_DIRECT/);
  assert.match(c, /Shared machine/);
  assert.match(c, /page cache/);
});
