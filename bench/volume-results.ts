/**
 * The volume bench's results: per-case medians and ratios from the raw
 * repetitions, the targets, and the notes that say where the time went.
 * Pure (no I/O), so the arithmetic is easy to follow and to test.
 */
import { formatSize, GiB, KiB, MiB, median } from './measure.js';
import type { BenchCase, SuiteRunContext, Target } from './types.js';
import type { VolumeCounters } from './volume-counters.js';
import { IMPL, type ImplName } from './volume-impls.js';

export const OPS = ['seq-read', 'rand-read-4k', 'seq-write'] as const;
export type Op = (typeof OPS)[number];
export const RSS_LIMIT = 256 * MiB;
export const SEQ_BLOCK = 1 * MiB;
export const RAND_BLOCK = 4 * KiB;
export const NO_GOCRYPTFS_ENV = 'MEMBRANE_BENCH_NO_GOCRYPTFS';

export interface Plan {
  objectBytes: number;
  reps: number;
  randSeconds: number;
  randJobs: number;
  frameLength: number;
  /** O_DIRECT for sequential reads (default off: applications read buffered). */
  seqDirect: boolean;
  /** O_DIRECT for random reads (default on: otherwise re-read pages come from the mount's page cache). */
  randDirect: boolean;
  cold: boolean;
  streamBytes?: number;
  dir: string;
}

export interface Sample {
  bytes: number;
  seconds: number;
  ios?: number;
  loadCpu?: number;
  serverCpu?: number;
  serverMainCpu?: number;
  serverV8Cpu?: number;
  serverLibuvCpu?: number;
  peakRss?: number;
  counters?: VolumeCounters;
}

/** Per-case figures about where the time went (medians over repetitions), kept in the JSON. */
export interface VolumeDetail {
  /** CPU seconds of the process serving the mount, per GiB delivered. */
  serverCpuSecondsPerGiB?: number;
  /** Of which on its main thread (Node: JavaScript, the FUSE handlers, crypto calls). */
  serverMainThreadCpuSecondsPerGiB?: number;
  /** Membrane: of which on V8's platform threads (garbage collection, compilation). */
  serverV8ThreadsCpuSecondsPerGiB?: number;
  /** Membrane: of which on libuv's thread pool (the fs store's reads and writes, staging I/O). */
  serverLibuvThreadsCpuSecondsPerGiB?: number;
  /** Membrane: the rest — libfuse's threads (reading requests from /dev/fuse, writing replies). */
  serverFuseThreadsCpuSecondsPerGiB?: number;
  /** Share of the wall time the serving process / its main thread was on a CPU (1 = one full core). */
  serverCpuBusy?: number;
  serverMainThreadBusy?: number;
  /** CPU seconds of the load generator (fio), per GiB. */
  loadCpuSecondsPerGiB?: number;
  /** Membrane: frame cache hits / (hits + misses). */
  frameCacheHitRatio?: number;
  /** Membrane: plaintext bytes decrypted per byte the application received. */
  decryptedPerDeliveredByte?: number;
  /** Membrane: store requests per MiB delivered and their mean latency. */
  storeRequestsPerMiB?: number;
  storeRequestMeanMs?: number;
  /**
   * Membrane: summed store request time / wall time. For seq-write this is the
   * commit (seal + put + fsync + rename) as a share of the whole write.
   */
  storeTimeShare?: number;
}

export interface VolumeCase extends BenchCase {
  detail?: VolumeDetail;
}

const IMPL_ORDER: ImplName[] = [IMPL.secure, IMPL.passthrough, IMPL.gocryptfs, IMPL.local];

export function buildCases(samples: Map<string, Sample[]>, p: Plan): VolumeCase[] {
  const cases: VolumeCase[] = [];
  for (const op of OPS) {
    for (const impl of IMPL_ORDER) {
      const ss = samples.get(`${impl}|${op}`);
      if (!ss || ss.length === 0) continue;
      const rates = ss.map((s) => s.bytes / s.seconds);
      const med = (f: (s: Sample) => number | undefined) => {
        const v = ss.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
        return v.length === ss.length ? median(v) : undefined;
      };
      const perGiB = (x: number | undefined, s: Sample) =>
        x === undefined ? undefined : x / (s.bytes / GiB);
      const c: VolumeCase = {
        suite: 'volume',
        impl,
        op,
        frameBytes: op === 'rand-read-4k' ? RAND_BLOCK : SEQ_BLOCK,
        threads: op === 'rand-read-4k' ? p.randJobs : 1,
        bytesPerSecond: median(rates),
        minBytesPerSecond: Math.min(...rates),
        maxBytesPerSecond: Math.max(...rates),
        inputBytes: Math.round(median(ss.map((s) => s.bytes))),
        reps: ss.length,
      };
      if (op === 'rand-read-4k') {
        const iops = med((s) => (s.ios === undefined ? undefined : s.ios / s.seconds));
        if (iops !== undefined) c.iops = iops;
      }
      const cpuRate = med((s) => (s.serverCpu ? s.bytes / s.serverCpu : undefined));
      if (cpuRate !== undefined) c.cpuBytesPerSecond = cpuRate;
      const peaks = ss.map((s) => s.peakRss ?? 0);
      if (Math.max(...peaks) > 0) c.peakRssBytes = Math.max(...peaks);
      const d: VolumeDetail = {};
      const set = (k: keyof VolumeDetail, v: number | undefined) => {
        if (v !== undefined && Number.isFinite(v)) d[k] = round(v);
      };
      set(
        'serverCpuSecondsPerGiB',
        med((s) => perGiB(s.serverCpu, s)),
      );
      set(
        'serverMainThreadCpuSecondsPerGiB',
        med((s) => perGiB(s.serverMainCpu, s)),
      );
      set(
        'serverV8ThreadsCpuSecondsPerGiB',
        med((s) => perGiB(s.serverV8Cpu, s)),
      );
      set(
        'serverLibuvThreadsCpuSecondsPerGiB',
        med((s) => perGiB(s.serverLibuvCpu, s)),
      );
      set(
        'serverFuseThreadsCpuSecondsPerGiB',
        med((s) =>
          s.serverCpu === undefined || s.serverV8Cpu === undefined || s.serverLibuvCpu === undefined
            ? undefined
            : perGiB(Math.max(0, s.serverCpu - (s.serverMainCpu ?? 0) - s.serverV8Cpu - s.serverLibuvCpu), s),
        ),
      );
      set(
        'serverCpuBusy',
        med((s) => (s.serverCpu === undefined ? undefined : s.serverCpu / s.seconds)),
      );
      set(
        'serverMainThreadBusy',
        med((s) => (s.serverMainCpu === undefined ? undefined : s.serverMainCpu / s.seconds)),
      );
      set(
        'loadCpuSecondsPerGiB',
        med((s) => perGiB(s.loadCpu, s)),
      );
      set(
        'frameCacheHitRatio',
        med((s) => {
          const n = s.counters ? s.counters.cacheHits + s.counters.cacheMisses : 0;
          return n > 0 ? s.counters!.cacheHits / n : undefined;
        }),
      );
      if (impl === IMPL.secure && op !== 'seq-write')
        set(
          'decryptedPerDeliveredByte',
          med((s) => (s.counters ? s.counters.bytesDecrypted / s.bytes : undefined)),
        );
      set(
        'storeRequestsPerMiB',
        med((s) => (s.counters ? s.counters.storeRequests / (s.bytes / MiB) : undefined)),
      );
      set(
        'storeRequestMeanMs',
        med((s) =>
          s.counters && s.counters.storeRequests > 0
            ? s.counters.storeMs / s.counters.storeRequests
            : undefined,
        ),
      );
      set(
        'storeTimeShare',
        med((s) => (s.counters ? s.counters.storeMs / 1000 / s.seconds : undefined)),
      );
      if (Object.keys(d).length > 0) c.detail = d;
      cases.push(c);
    }
  }
  // Ratios within each operation (IOPS for random reads: the same block size, so the same ratio).
  for (const op of OPS) {
    const of = (impl: ImplName) => cases.find((c) => c.op === op && c.impl === impl);
    const figure = (c: BenchCase) =>
      op === 'rand-read-4k' && c.iops !== undefined ? c.iops : c.bytesPerSecond;
    const g = of(IMPL.gocryptfs);
    const pt = of(IMPL.passthrough);
    for (const c of cases.filter((x) => x.op === op)) {
      if (g && c.impl !== IMPL.local) c.ratioToGocryptfs = figure(c) / figure(g);
      if (pt && (c.impl === IMPL.secure || c.impl === IMPL.passthrough))
        c.ratioToPassthrough = figure(c) / figure(pt);
    }
  }
  return cases;
}

const round = (v: number) => Math.round(v * 1000) / 1000;

export function evaluateTargets(cases: VolumeCase[], p: Plan): Target[] {
  const out: Target[] = [];
  const secure = (op: string) => cases.find((c) => c.impl === IMPL.secure && c.op === op);
  const seq = secure('seq-read');
  if (seq?.ratioToGocryptfs !== undefined)
    out.push({
      name: `sequential read ${formatSize(p.objectBytes)}: membrane-secure / gocryptfs`,
      value: seq.ratioToGocryptfs,
      target: 1.0,
      met: seq.ratioToGocryptfs >= 1.0,
    });
  const rnd = secure('rand-read-4k');
  if (rnd?.ratioToGocryptfs !== undefined)
    out.push({
      name: `random 4 KiB read IOPS (${p.randJobs} jobs): membrane-secure / gocryptfs`,
      value: rnd.ratioToGocryptfs,
      target: 0.8,
      met: rnd.ratioToGocryptfs >= 0.8,
    });
  const st = cases.find((c) => c.op === 'stream-read');
  if (st?.peakRssBytes !== undefined)
    out.push({
      name: `an application streams ${formatSize(st.inputBytes ?? 0)}: peak RSS bytes of the mounting process (< target)`,
      value: st.peakRssBytes,
      target: RSS_LIMIT,
      met: st.peakRssBytes < RSS_LIMIT,
    });
  return out;
}

const f2 = (v: number | undefined) => (v === undefined ? 'n/a' : v.toFixed(2));
const pct = (v: number | undefined) => (v === undefined ? 'n/a' : `${Math.round(v * 100)}%`);

/** One line per measured case saying where its time went; a headline when a target was missed. */
export function explain(cases: VolumeCase[], targets: Target[], p: Plan): string[] {
  const out: string[] = [];
  for (const t of targets) {
    if (!t.met) out.push(`MISSED: ${t.name} (see the per-case lines below for where the time goes).`);
  }
  for (const c of cases) {
    const d = c.detail;
    if (!d || c.impl === IMPL.local) continue;
    const parts = [
      `${c.op} ${c.impl}: serving process ${f2(d.serverCpuSecondsPerGiB)} CPU-s/GiB ` +
        `(busy ${pct(d.serverCpuBusy)} of a core` +
        (d.serverMainThreadBusy !== undefined
          ? `; main thread ${f2(d.serverMainThreadCpuSecondsPerGiB)} CPU-s/GiB, busy ${pct(d.serverMainThreadBusy)})`
          : ')'),
    ];
    if (d.serverFuseThreadsCpuSecondsPerGiB !== undefined)
      parts.push(
        `other threads: libfuse ${f2(d.serverFuseThreadsCpuSecondsPerGiB)}, libuv pool (store I/O) ` +
          `${f2(d.serverLibuvThreadsCpuSecondsPerGiB)}, V8 (GC) ${f2(d.serverV8ThreadsCpuSecondsPerGiB)} CPU-s/GiB`,
      );
    if (d.loadCpuSecondsPerGiB !== undefined) parts.push(`fio ${f2(d.loadCpuSecondsPerGiB)} CPU-s/GiB`);
    if (d.frameCacheHitRatio !== undefined) parts.push(`frame cache hits ${pct(d.frameCacheHitRatio)}`);
    if (d.decryptedPerDeliveredByte !== undefined)
      parts.push(`${f2(d.decryptedPerDeliveredByte)} bytes decrypted per byte delivered`);
    if (c.op === 'seq-write' && d.storeTimeShare !== undefined)
      parts.push(
        `commit (seal + store put) ${pct(d.storeTimeShare)} of the wall time, staging writes the rest`,
      );
    else if (d.storeRequestsPerMiB !== undefined)
      parts.push(`${f2(d.storeRequestsPerMiB)} store requests/MiB, mean ${f2(d.storeRequestMeanMs)} ms`);
    out.push(parts.join('; '));
  }
  for (const op of OPS) {
    const get = (impl: ImplName) => cases.find((c) => c.op === op && c.impl === impl)?.detail;
    const sec = get(IMPL.secure)?.serverCpuSecondsPerGiB;
    const pt = get(IMPL.passthrough)?.serverCpuSecondsPerGiB;
    const g = get(IMPL.gocryptfs)?.serverCpuSecondsPerGiB;
    if (sec === undefined || pt === undefined) continue;
    out.push(
      `${op} CPU budget per GiB: membrane-secure ${f2(sec)} CPU-s; the same FUSE path without crypto ` +
        `${f2(pt)}, so crypto and its buffers ~${f2(sec - pt)} (noise when near or below zero)` +
        (g !== undefined
          ? `; gocryptfs ${f2(g)} CPU-s in all (membrane-secure uses ${f2(sec / g)}x as much)`
          : '') +
        '.',
    );
  }
  const seq = cases.find((c) => c.op === 'seq-read' && c.impl === IMPL.passthrough)?.detail;
  if (seq?.serverMainThreadCpuSecondsPerGiB !== undefined) {
    // The kernel sends FUSE reads of at most 128 KiB here (libfuse 2 negotiates no larger max_pages).
    const us = (seq.serverMainThreadCpuSecondsPerGiB / (GiB / (128 * KiB))) * 1e6;
    out.push(
      `seq-read membrane-passthrough: about ${Math.round(us)} us of main-thread CPU per 128 KiB read request ` +
        '(the largest FUSE read the kernel sends to a libfuse 2 file system).',
    );
  }
  const rnd = cases.find((c) => c.op === 'rand-read-4k' && c.impl === IMPL.secure);
  if (p.randDirect && rnd?.detail?.serverMainThreadCpuSecondsPerGiB !== undefined) {
    const us = (rnd.detail.serverMainThreadCpuSecondsPerGiB / (GiB / RAND_BLOCK)) * 1e6;
    out.push(
      `rand-read-4k membrane-secure: about ${Math.round(us)} us of main-thread CPU per 4 KiB read request.`,
    );
  }
  const st = cases.find((c) => c.op === 'stream-read');
  if (st) out.push(`stream-read: ${st.note}`);
  return out;
}

export function caveats(ctx: SuiteRunContext, p: Plan): string[] {
  const out = [
    `Object ${formatSize(p.objectBytes)}, ${p.reps} repetition(s) per case, interleaved across implementations; ` +
      `every repetition on a fresh mount (a new serving process: cold frame cache, own CPU and RSS figures). ` +
      `No untimed warm-up run.`,
    p.cold
      ? 'Backing files were dropped from the host page cache before each read repetition (dd iflag=nocache): ' +
        'reads include the disk.'
      : 'Page cache: the files behind every mount (fs store objects, gocryptfs ciphertext, the local file) stay ' +
        'in the host page cache, so reads compare the FUSE and crypto paths, not the disk; local-file buffered ' +
        'reads are page-cache copies (its O_DIRECT random reads go to the disk itself). fio --invalidate=1 ' +
        "drops the mount's own cache of the file before each run; --cold drops the backing files too.",
    `seq-read: fio, 1 MiB reads of the whole object, 1 job, ${p.seqDirect ? 'O_DIRECT' : 'buffered (kernel read-ahead on the mount)'}. ` +
      `rand-read-4k: fio, ${p.randJobs} jobs of 4 KiB random reads for ${p.randSeconds} s, ` +
      `${p.randDirect ? 'O_DIRECT (each read is one FUSE request; without it most reads hit pages already cached)' : 'buffered (re-read pages come from the page cache of the mount)'}. ` +
      'seq-write: dd 1 MiB blocks of zeros + fsync, timed to process exit: membrane datasinks stage ' +
      'encrypted, then seal and commit the object to the store (fsync + rename) inside that time.',
    `membrane frames: ${formatSize(p.frameLength)} (a random 4 KiB read decrypts at least one whole frame); ` +
      'gocryptfs: 4 KiB blocks. "CPU MB/s" here = bytes per CPU-second of the process serving the mount.',
  ];
  if (ctx.machine.cpus <= 2 || (ctx.machine.loadAverage[0] ?? 0) > 0.5) {
    out.push(
      `Shared machine (${ctx.machine.cpus} CPUs, load ${ctx.machine.loadAverage[0]} at start): the load generator, ` +
        'the serving process and any neighbour compete for the same cores; see min..max.',
    );
  }
  return out;
}
