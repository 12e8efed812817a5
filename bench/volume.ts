/**
 * `membrane bench volume`: the FUSE blob volume on one object (1 GiB by default),
 * side by side in the same run with
 *   membrane-passthrough — the same FUSE code without crypto (the Node FUSE ceiling),
 *   gocryptfs            — when installed (hidden by MEMBRANE_BENCH_NO_GOCRYPTFS=1),
 *   local-file           — the plaintext file on the local disk (page-cache reference).
 * Operations: sequential read (fio, 1 MiB), random 4 KiB reads (fio, time-bounded,
 * several jobs) and sequential write (dd, 1 MiB, fsync; a datasink's commit to the
 * store is inside the figure). Every repetition mounts afresh (cold frame cache);
 * repetitions are interleaved across implementations so a noisy neighbour spreads
 * over all of them. With --stream-gib an application streams an N GiB object and
 * the mounting process's RSS is sampled (the RSS target).
 *
 * Besides throughput, each case records where the time goes: CPU seconds of the
 * process serving the mount (and of its main thread, where Node runs the FUSE
 * handlers), CPU of the load generator, and the volume's own counters (frame
 * cache hits, store reads, bytes decrypted per byte delivered).
 */

import { randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MembraneError } from '../policy/errors.js';
import { DEFAULT_FRAME_LENGTH } from '../proxies/core/index.js';
import { formatSize, KiB, MiB } from './measure.js';
import { positiveNumber } from './options.js';
import type { BenchSuite, SuiteResult, SuiteRunContext } from './types.js';
import {
  fileChunks,
  fillGocryptfs,
  gocryptfsImpl,
  IMPL,
  type Impl,
  initGocryptfs,
  localImpl,
  membraneImpl,
  OBJECT,
  pseudoRandom,
  type Served,
  SOURCE_NAME,
  sealIntoStore,
  writePlaintext,
} from './volume-impls.js';
import {
  cpuOf,
  detachIfMounted,
  dropFromPageCache,
  initClockTicks,
  type LoadResult,
  mountPoints,
  RssSampler,
  runDdWrite,
  runFioRead,
  runNodeStreamReader,
  toolVersion,
  warmPageCache,
} from './volume-load.js';
import type { VolumeCounters } from './volume-mount.js';
import {
  buildCases,
  caveats,
  evaluateTargets,
  explain,
  NO_GOCRYPTFS_ENV,
  OPS,
  type Op,
  type Plan,
  RAND_BLOCK,
  type Sample,
  SEQ_BLOCK,
  type VolumeCase,
} from './volume-results.js';

const optionsHelp = `volume options:
  --size-mib N      size of the object (default 1024, or 64 with --quick)
  --reps N          timed repetitions per case, each on a fresh mount (default 3, or 2 with --quick)
  --rand-seconds N  duration of each random-read run (default 10, or 2 with --quick)
  --rand-jobs N     concurrent fio jobs for random reads (default 4)
  --frame-kib N     frame length of the sealed object and of the volume's reads (default ${DEFAULT_FRAME_LENGTH / KiB})
  --direct          sequential reads with O_DIRECT too (default: buffered, as applications read)
  --rand-buffered   random reads buffered (default: O_DIRECT, so that every 4 KiB read reaches the
                    file system instead of pages that fio already pulled into the mount's page cache)
  --cold            drop the files behind each mount from the host page cache before each read
                    repetition (default: they stay cached, so the disk is not what is measured)
  --stream-gib N    also seal an N GiB object, let an application stream it through the mount and
                    report the mounting process's peak RSS (default: off)
  --dir DIR         where to create the work directory (default: the OS temp dir; needs about
                    4x the object size free, plus N GiB for --stream-gib)
Requires Linux FUSE (/dev/fuse, fusermount), fio and dd; gocryptfs is used when installed
(set ${NO_GOCRYPTFS_ENV}=1 to leave it out).`;

export const suite: BenchSuite = {
  name: 'volume',
  summary: 'FUSE blob volume: sequential/random reads and writes vs the no-crypto ceiling and gocryptfs',
  options: {
    'size-mib': { type: 'string' },
    reps: { type: 'string' },
    'rand-seconds': { type: 'string' },
    'rand-jobs': { type: 'string' },
    'frame-kib': { type: 'string' },
    direct: { type: 'boolean' },
    'rand-buffered': { type: 'boolean' },
    cold: { type: 'boolean' },
    'stream-gib': { type: 'string' },
    dir: { type: 'string' },
  },
  optionsHelp,
  run,
};

function plan(ctx: SuiteRunContext): Plan {
  const v = ctx.values;
  const q = ctx.quick;
  const frameKib = positiveNumber(v['frame-kib'], '--frame-kib', true) ?? DEFAULT_FRAME_LENGTH / KiB;
  const streamGib = positiveNumber(v['stream-gib'], '--stream-gib', false);
  let streamBytes: number | undefined;
  if (streamGib !== undefined) {
    // Whole MiB: the object is generated in 1 MiB chunks.
    streamBytes = Math.max(1, Math.round(streamGib * 1024)) * MiB;
  }
  return {
    objectBytes: (positiveNumber(v['size-mib'], '--size-mib', true) ?? (q ? 64 : 1024)) * MiB,
    reps: positiveNumber(v.reps, '--reps', true) ?? (q ? 2 : 3),
    randSeconds: positiveNumber(v['rand-seconds'], '--rand-seconds', true) ?? (q ? 2 : 10),
    randJobs: positiveNumber(v['rand-jobs'], '--rand-jobs', true) ?? 4,
    frameLength: frameKib * KiB,
    seqDirect: v.direct === true,
    randDirect: v['rand-buffered'] !== true,
    cold: v.cold === true,
    ...(streamBytes !== undefined ? { streamBytes } : {}),
    dir: resolve(typeof v.dir === 'string' ? v.dir : tmpdir()),
  };
}

/** One repetition of one case. */
async function run(ctx: SuiteRunContext): Promise<SuiteResult> {
  const p = plan(ctx);
  const notes: string[] = [];
  await preflight();
  await initClockTicks();
  const hideGocryptfs = process.env[NO_GOCRYPTFS_ENV] === '1';
  const gocryptfsVersion = hideGocryptfs ? null : await toolVersion('gocryptfs', ['-version']);
  if (gocryptfsVersion === null) {
    notes.push(
      hideGocryptfs
        ? `gocryptfs hidden by ${NO_GOCRYPTFS_ENV}=1: no gocryptfs cases, the two gocryptfs targets are not evaluated.`
        : 'gocryptfs is not installed (apt-get install gocryptfs, or scripts/setup.sh): no gocryptfs cases, ' +
            'the two gocryptfs targets are not evaluated.',
    );
  }

  await mkdir(p.dir, { recursive: true });
  const work = await mkdtemp(join(p.dir, 'membrane-bench-volume-'));
  const dek = randomBytes(32);
  const impls: Impl[] = [];
  const samples = new Map<string, Sample[]>();
  const mountOptions: Record<string, string> = {};
  let stream: VolumeCase | undefined;
  try {
    const plaintext = join(work, 'store-passthrough', OBJECT);
    await mkdir(join(work, 'store-passthrough'), { recursive: true });
    ctx.progress(`generating a ${formatSize(p.objectBytes)} pseudo-random object`);
    await writePlaintext(plaintext, p.objectBytes);
    ctx.progress(`sealing it with a DEK (${formatSize(p.frameLength)} frames) into an fs store`);
    await sealIntoStore(
      join(work, 'store-secure'),
      SOURCE_NAME,
      OBJECT,
      fileChunks(plaintext),
      dek,
      p.frameLength,
    );
    impls.push(membraneImpl('secure', { work, dek, frameLength: p.frameLength }));
    impls.push(membraneImpl('passthrough', { work, frameLength: p.frameLength }));
    if (gocryptfsVersion !== null) {
      ctx.progress(`gocryptfs (${gocryptfsVersion}): init and copy the object in`);
      const g = await initGocryptfs(work);
      const impl = gocryptfsImpl(g.cipherDir, g.mountpoint);
      await fillGocryptfs(impl, plaintext);
      impls.push(impl);
    }
    impls.push(localImpl(work, plaintext));

    if (!p.cold) {
      for (const impl of impls) for (const f of await impl.lowerFiles()) await warmPageCache(f);
    }
    for (let rep = 0; rep < p.reps; rep++) {
      for (const op of OPS) {
        for (const impl of impls) {
          ctx.progress(`rep ${rep + 1}/${p.reps}: ${op} ${impl.name}`);
          const s = await measure(impl, op, p, rep, mountOptions);
          const key = `${impl.name}|${op}`;
          samples.set(key, [...(samples.get(key) ?? []), s]);
        }
      }
    }

    if (p.streamBytes !== undefined) {
      stream = await streamCase(ctx, work, dek, p);
    }
  } finally {
    dek.fill(0);
    // Nothing of ours may stay mounted, whatever failed.
    const mounted = await mountPoints();
    for (const mp of mounted) if (mp.startsWith(`${work}/`)) await detachIfMounted(mp);
    await rm(work, { recursive: true, force: true }).catch((e: unknown) =>
      notes.push(`could not remove the work directory ${work}: ${(e as Error).message}`),
    );
  }

  const cases = buildCases(samples, p);
  if (stream) cases.push(stream);
  const targets = evaluateTargets(cases, p);
  notes.push(...explain(cases, targets, p));
  notes.push(...caveats(ctx, p));
  return {
    cases,
    targets,
    notes,
    meta: {
      objectBytes: p.objectBytes,
      frameLength: p.frameLength,
      gocryptfs: gocryptfsVersion,
      fio: await toolVersion('fio', ['--version']),
      load: {
        seqRead: `fio --rw=read --bs=${SEQ_BLOCK} --ioengine=psync --numjobs=1 --direct=${p.seqDirect ? 1 : 0} --invalidate=1`,
        randRead: `fio --rw=randread --bs=${RAND_BLOCK} --ioengine=psync --numjobs=${p.randJobs} --direct=${p.randDirect ? 1 : 0} --invalidate=1 --time_based --runtime=${p.randSeconds} --norandommap --randrepeat=0`,
        seqWrite: `dd if=/dev/zero bs=${SEQ_BLOCK} conv=fsync (timed from start to exit, close included)`,
      },
      pageCache: p.cold ? 'dropped before each read repetition' : 'backing files kept in the host page cache',
      mountOptions,
    },
  };
}

/** Fails early, with one clear message, when the machine cannot run the suite. */
async function preflight(): Promise<void> {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push('Linux');
  await access('/dev/fuse').catch(() => missing.push('/dev/fuse'));
  if ((await toolVersion('fusermount', ['-V'])) === null) missing.push('fusermount (Debian: fuse)');
  if ((await toolVersion('fio', ['--version'])) === null) missing.push('fio');
  if ((await toolVersion('dd', ['--version'])) === null) missing.push('dd');
  if (missing.length > 0) {
    throw new MembraneError(
      'BENCH_UNAVAILABLE',
      `the volume bench needs ${missing.join(', ')} (run scripts/setup.sh as root on Debian)`,
    );
  }
}

async function measure(
  impl: Impl,
  op: Op,
  p: Plan,
  rep: number,
  mountOptions: Record<string, string>,
): Promise<Sample> {
  if (p.cold && op !== 'seq-write') for (const f of await impl.lowerFiles()) await dropFromPageCache(f);
  const served: Served = op === 'seq-write' ? await impl.sink() : await impl.source();
  let sample: Sample;
  try {
    if (served.pid !== undefined && mountOptions[impl.name] === undefined)
      mountOptions[impl.name] = await superOptions(served.dir);
    const pid = served.pid;
    const groups: Record<string, number[]> = served.threads
      ? { v8: served.threads.v8, libuv: served.threads.libuv }
      : {};
    const cpu0 = pid !== undefined ? await cpuOf(pid, groups) : undefined;
    const c0 = served.counters ? await served.counters() : undefined;
    const rss = pid !== undefined ? new RssSampler(pid) : undefined;
    let r: LoadResult;
    let peakRss: number | undefined;
    try {
      r = await load(op, served.dir, p, rep);
    } finally {
      peakRss = rss?.stop();
    }
    const cpu1 = pid !== undefined ? await cpuOf(pid, groups) : undefined;
    const c1 = served.counters ? await served.counters() : undefined;
    sample = {
      bytes: r.bytes,
      seconds: r.seconds,
      ...(peakRss !== undefined ? { peakRss } : {}),
      ...(r.ios !== undefined ? { ios: r.ios } : {}),
      ...(r.loadCpuSeconds !== undefined ? { loadCpu: r.loadCpuSeconds } : {}),
      ...(cpu0 && cpu1
        ? {
            serverCpu: cpu1.process - cpu0.process,
            serverMainCpu: cpu1.mainThread - cpu0.mainThread,
            ...(served.threads
              ? {
                  serverV8Cpu: (cpu1.groups.v8 ?? 0) - (cpu0.groups.v8 ?? 0),
                  serverLibuvCpu: (cpu1.groups.libuv ?? 0) - (cpu0.groups.libuv ?? 0),
                }
              : {}),
          }
        : {}),
      ...(c0 && c1 ? { counters: diff(c0, c1) } : {}),
    };
  } finally {
    await served.close();
  }
  if (op === 'seq-write') await impl.clearSink();
  return sample;
}

function load(op: Op, dir: string, p: Plan, rep: number): Promise<LoadResult> {
  switch (op) {
    case 'seq-read':
      return runFioRead({
        filename: join(dir, OBJECT),
        rw: 'read',
        blockBytes: SEQ_BLOCK,
        sizeBytes: p.objectBytes,
        numjobs: 1,
        direct: p.seqDirect,
      });
    case 'rand-read-4k':
      return runFioRead({
        filename: join(dir, OBJECT),
        rw: 'randread',
        blockBytes: RAND_BLOCK,
        sizeBytes: p.objectBytes,
        numjobs: p.randJobs,
        runtimeSeconds: p.randSeconds,
        direct: p.randDirect,
      });
    case 'seq-write':
      return runDdWrite(join(dir, `written-${rep}.bin`), p.objectBytes);
  }
}

function diff(a: VolumeCounters, b: VolumeCounters): VolumeCounters {
  const out = { ...b };
  for (const k of Object.keys(out) as (keyof VolumeCounters)[]) out[k] = b[k] - a[k];
  return out;
}

/** The kernel's view of a FUSE mount (e.g. max_read), from /proc/self/mountinfo. */
async function superOptions(mountpoint: string): Promise<string> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f[4] === mountpoint) {
      const dash = f.indexOf('-');
      return `${f[5] ?? ''} ${f.slice(dash + 1).join(' ')}`.trim();
    }
  }
  return 'unknown';
}

/** The RSS check: seal N GiB straight from a generator, stream it through a fresh mount. */
async function streamCase(ctx: SuiteRunContext, work: string, dek: Buffer, p: Plan): Promise<VolumeCase> {
  const bytes = p.streamBytes!;
  const storeDir = join(work, 'store-stream');
  ctx.progress(`RSS check: sealing a ${formatSize(bytes)} object (generated, never on disk as plaintext)`);
  await sealIntoStore(storeDir, SOURCE_NAME, OBJECT, pseudoRandom(bytes), dek, p.frameLength);
  const impl = membraneImpl('secure', { work, dek, frameLength: p.frameLength, sourceStore: storeDir });
  ctx.progress(`RSS check: an application streams ${formatSize(bytes)} through the mount`);
  const served = await impl.source();
  let r: LoadResult;
  let peak: number;
  let cpu: number | undefined;
  try {
    const cpu0 = await cpuOf(served.pid!);
    const rss = new RssSampler(served.pid!, 50);
    try {
      r = await runNodeStreamReader(join(served.dir, OBJECT));
    } finally {
      peak = rss.stop();
    }
    const cpu1 = await cpuOf(served.pid!);
    cpu = cpu0 && cpu1 ? cpu1.process - cpu0.process : undefined;
  } finally {
    await served.close();
    await rm(storeDir, { recursive: true, force: true });
  }
  if (r.bytes !== bytes) {
    throw new MembraneError('BENCH_LOAD_FAILED', `the stream reader got ${r.bytes} bytes, expected ${bytes}`);
  }
  return {
    suite: 'volume',
    impl: IMPL.secure,
    op: 'stream-read',
    frameBytes: SEQ_BLOCK,
    threads: 1,
    bytesPerSecond: r.bytes / r.seconds,
    ...(cpu ? { cpuBytesPerSecond: r.bytes / cpu } : {}),
    peakRssBytes: peak,
    inputBytes: r.bytes,
    reps: 1,
    note:
      'a Node application streams the object (createReadStream, 1 MiB chunks); peak RSS of the mounting ' +
      'process = max(sampled VmRSS every 50 ms, VmHWM)',
  };
}
