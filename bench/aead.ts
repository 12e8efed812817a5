/**
 * `membrane bench aead`: the object format's AES-256-GCM engine against its
 * references, side by side on the same data and frame lengths:
 *   - membrane-core: random-access decrypt (1 thread, and all cores through
 *     ParallelDecryptor), streaming decrypt and encrypt;
 *   - membrane-core-node-crypto: the same 1-thread decrypt with the pure
 *     node:crypto fallback backend (child process, MEMBRANE_AEAD=node-crypto);
 *   - @aws-crypto/client-node: the SDK that defines the format (the oracle);
 *   - node-crypto-oneshot: one createDecipheriv over the whole buffer (no framing);
 *   - openssl-speed: the machine's single-core ceiling.
 * Ratios are to openssl's 16 KiB single-core figure and to the SDK's same
 * operation at the same frame length. Targets come from issue 2.
 *
 * This module only orchestrates: every group of cases is measured in a fresh
 * child process (bench/aead-child.ts), openssl runs as a subprocess first.
 */
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { aeadBackend, DEFAULT_FRAME_LENGTH, SUITE_ID } from '../proxies/core/index.js';
import type { ChildOp, ChildRequest, ChildResponse } from './aead-child.js';
import { formatSize, GiB, KiB, MiB, type Rate } from './measure.js';
import { runOpensslSpeed } from './openssl.js';
import { positiveNumber } from './options.js';
import type { BenchCase, BenchSuite, SuiteResult, SuiteRunContext, Target } from './types.js';

export const FRAME_SIZES = [4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB];
const TARGET_FRAME = 64 * KiB;
const RSS_LIMIT = 256 * MiB;

export const IMPL = {
  core: 'membrane-core',
  coreFallback: 'membrane-core-node-crypto',
  sdk: '@aws-crypto/client-node',
  oneshot: 'node-crypto-oneshot',
  openssl: 'openssl-speed',
} as const;

interface Plan {
  objectBytes: number;
  frames: number[];
  reps: number;
  sdkBytes: number;
  sdkFrames: number[];
  fallbackBytes: number;
  fallbackFrames: number[];
  opensslSeconds: number;
}

function plan(quick: boolean, reps?: number): Plan {
  return quick
    ? {
        objectBytes: 32 * MiB,
        frames: [4 * KiB, 64 * KiB, 1 * MiB],
        reps: reps ?? 3,
        sdkBytes: 8 * MiB,
        sdkFrames: [64 * KiB],
        fallbackBytes: 16 * MiB,
        fallbackFrames: [64 * KiB],
        opensslSeconds: 1,
      }
    : {
        objectBytes: 256 * MiB,
        frames: FRAME_SIZES,
        reps: reps ?? 7,
        sdkBytes: 16 * MiB,
        sdkFrames: FRAME_SIZES,
        fallbackBytes: 64 * MiB,
        fallbackFrames: FRAME_SIZES,
        opensslSeconds: 3,
      };
}

const optionsHelp = `aead options:
  --stream-gib N   also stream N GiB of generated plaintext through encryptIterable ->
                   decryptIterable in a fresh process (no disk) and report its peak RSS
                   (sampled RSS and /proc/self/status VmHWM) and throughput (default: off)
  --reps N         timed repetitions per case (default 7, or 3 with --quick)`;

export const suite: BenchSuite = {
  name: 'aead',
  summary: 'AES-256-GCM object format: hot core vs @aws-crypto/client-node, node:crypto, openssl',
  options: { 'stream-gib': { type: 'string' }, reps: { type: 'string' } },
  optionsHelp,
  run,
};

function rateCase(
  impl: string,
  op: string,
  frameBytes: number,
  threads: number,
  r: Rate,
  inputBytes: number,
): BenchCase {
  return {
    suite: 'aead',
    impl,
    op,
    frameBytes,
    threads,
    bytesPerSecond: r.bytesPerSecond,
    minBytesPerSecond: r.minBytesPerSecond,
    maxBytesPerSecond: r.maxBytesPerSecond,
    cpuBytesPerSecond: r.cpuBytesPerSecond,
    reps: r.reps,
    inputBytes,
  };
}

async function run(ctx: SuiteRunContext): Promise<SuiteResult> {
  const reps = positiveNumber(ctx.values.reps, '--reps', true);
  const streamGib = positiveNumber(ctx.values['stream-gib'], '--stream-gib', false);
  const p = plan(ctx.quick, reps);
  const cases: BenchCase[] = [];
  const notes: string[] = [];
  const threads = availableParallelism();

  // The ceiling first, while nothing of ours is resident or running.
  ctx.progress(`openssl speed -evp aes-256-gcm -seconds ${p.opensslSeconds} (6 block sizes)`);
  const openssl = await runOpensslSpeed(p.opensslSeconds);
  if (openssl.ok) {
    for (const b of openssl.blocks) {
      cases.push({
        suite: 'aead',
        impl: IMPL.openssl,
        op: 'encrypt',
        frameBytes: b.bytes,
        threads: 1,
        bytesPerSecond: b.bytesPerSecond,
      });
    }
  } else {
    notes.push(`openssl ceiling not measured: ${openssl.reason}; ratios to openssl are omitted.`);
  }

  // Each group runs in a fresh child process (see bench/aead-child.ts for why).
  const jobs: { label: string; req: ChildRequest; env?: Record<string, string>; impl?: string }[] = [];
  for (const f of p.frames) {
    const obj = `${formatSize(f)} frames, ${formatSize(p.objectBytes)}`;
    jobs.push(
      {
        label: `${IMPL.core} ${obj}: decrypt, 1 and ${threads} threads`,
        req: cases1(['decrypt', 'decrypt-parallel'], f, p.objectBytes, p.reps),
      },
      {
        label: `${IMPL.core} ${obj}: decrypt-stream`,
        req: cases1(['decrypt-stream'], f, p.objectBytes, p.reps),
      },
      {
        label: `${IMPL.core} ${obj}: encrypt-stream`,
        req: cases1(['encrypt-stream'], f, p.objectBytes, p.reps),
      },
    );
  }
  for (const f of p.sdkFrames) {
    jobs.push({
      label: `${IMPL.sdk} ${formatSize(f)} frames, ${formatSize(p.sdkBytes)}: encrypt, decrypt`,
      req: cases1(['sdk-encrypt', 'sdk-decrypt'], f, p.sdkBytes, p.reps),
    });
  }
  for (const f of p.fallbackFrames) {
    jobs.push({
      label: `${IMPL.coreFallback} ${formatSize(f)} frames, ${formatSize(p.fallbackBytes)}: decrypt (MEMBRANE_AEAD=node-crypto)`,
      req: cases1(['decrypt'], f, p.fallbackBytes, p.reps),
      env: { MEMBRANE_AEAD: 'node-crypto' },
      impl: IMPL.coreFallback,
    });
  }
  jobs.push({
    label: `${IMPL.oneshot}: one AES-256-GCM call over ${formatSize(p.objectBytes)}`,
    req: cases1(['oneshot-decrypt', 'oneshot-encrypt'], DEFAULT_FRAME_LENGTH, p.objectBytes, p.reps),
  });
  for (const job of jobs) {
    ctx.progress(job.label);
    const res = await runChild(job.req, job.env);
    if (res.mode !== 'cases' || job.req.mode !== 'cases')
      throw new Error('bench child answered the wrong mode');
    const wantBackend = job.impl === IMPL.coreFallback ? 'node-crypto' : aeadBackend;
    if (res.backend !== wantBackend) notes.push(`${job.label}: ran with AEAD backend ${res.backend}`);
    for (const { op, rate } of res.results) cases.push(caseFor(op, job.req, res.threads, rate, job.impl));
  }

  if (streamGib !== undefined) {
    const total = Math.round(streamGib * GiB);
    ctx.progress(`RSS check: streaming ${streamGib} GiB encrypt -> decrypt in a fresh process`);
    const s = await runChild({ mode: 'stream', totalBytes: total, frameLength: DEFAULT_FRAME_LENGTH });
    if (s.mode === 'stream') {
      const peak = Math.max(s.peakRssSampled, s.vmHwm ?? 0);
      cases.push({
        suite: 'aead',
        impl: IMPL.core,
        op: 'stream-roundtrip',
        frameBytes: DEFAULT_FRAME_LENGTH,
        threads: 1,
        bytesPerSecond: s.bytes / s.seconds,
        cpuBytesPerSecond: s.bytes / s.cpuSeconds,
        peakRssBytes: peak,
        inputBytes: s.bytes,
        reps: 1,
        note:
          `encryptIterable -> decryptIterable, ${formatSize(1 * MiB)} chunks; RSS sampled peak ` +
          `${(s.peakRssSampled / MiB).toFixed(1)} MiB, VmHWM ${s.vmHwm === undefined ? 'n/a' : `${(s.vmHwm / MiB).toFixed(1)} MiB`}, ` +
          `RSS at start ${(s.rssAtStart / MiB).toFixed(1)} MiB`,
      });
      if (s.vmHwm === undefined)
        notes.push('VmHWM unavailable (not Linux): peak RSS is the sampled maximum.');
    }
  }

  const opensslRef = openssl.ok ? openssl.blocks.find((b) => b.bytes === 16384)?.bytesPerSecond : undefined;
  if (openssl.ok && opensslRef === undefined)
    notes.push('openssl printed no 16384-byte column; ratios omitted.');
  addRatios(cases, opensslRef);
  notes.push(
    `Sizes: core cases ${formatSize(p.objectBytes)} in memory (streaming in 1 MiB chunks), SDK ${formatSize(p.sdkBytes)}, ` +
      `node-crypto fallback ${formatSize(p.fallbackBytes)}; each group of cases in a fresh process, ` +
      `1 warm-up + ${p.reps} timed repetitions, cases within a group interleaved.`,
    `openssl speed measures encryption of in-cache blocks per CPU-second (user time); the core's figures ` +
      `include framing, AAD, tag checks and memory traffic over buffers far larger than the caches. ` +
      `"MB/s" is per wall-clock second; "CPU MB/s" per CPU-second of the process (all its threads), ` +
      `comparable to openssl's method and immune to time stolen by neighbours.`,
  );
  if (ctx.machine.cpus <= 2 || ctx.machine.loadAverage[0]! > 0.5) {
    notes.push(
      `Shared machine (${ctx.machine.cpus} CPUs, load ${ctx.machine.loadAverage[0]} at start): expect noise, ` +
        `see min..max; the all-cores figure competes with every other process.`,
    );
  }
  return {
    cases: order(cases),
    targets: targets(cases, opensslRef, streamGib),
    notes,
    meta: { backend: aeadBackend, suiteId: `0x${SUITE_ID.toString(16).padStart(4, '0')}` },
    ...(opensslRef
      ? { chartReference: { label: 'openssl 16 KiB, 1 core', bytesPerSecond: opensslRef } }
      : {}),
  };
}

function cases1(ops: ChildOp[], frameLength: number, objectBytes: number, reps: number): ChildRequest {
  return { mode: 'cases', ops, frameLength, objectBytes, reps };
}

/** Maps a child's result to a report row. */
function caseFor(
  op: ChildOp,
  req: ChildRequest & { mode: 'cases' },
  threads: number,
  r: Rate,
  impl?: string,
): BenchCase {
  const row = (i: string, o: string, frame: number, t: number) =>
    rateCase(i, o, frame, t, r, req.objectBytes);
  switch (op) {
    case 'decrypt':
      return {
        ...row(impl ?? IMPL.core, 'decrypt', req.frameLength, 1),
        ...(impl ? { note: 'backend node-crypto' } : {}),
      };
    case 'decrypt-parallel':
      return row(IMPL.core, 'decrypt', req.frameLength, threads);
    case 'decrypt-stream':
    case 'encrypt-stream':
      return row(IMPL.core, op, req.frameLength, 1);
    case 'sdk-encrypt':
      return row(IMPL.sdk, 'encrypt', req.frameLength, 1);
    case 'sdk-decrypt':
      return row(IMPL.sdk, 'decrypt', req.frameLength, 1);
    case 'oneshot-decrypt':
      return row(IMPL.oneshot, 'decrypt', req.objectBytes, 1);
    case 'oneshot-encrypt':
      return row(IMPL.oneshot, 'encrypt', req.objectBytes, 1);
  }
}

/** Runs bench/aead-child.js with `req`; its stderr (progress) goes to ours. */
function runChild(req: ChildRequest, env: Record<string, string> = {}): Promise<ChildResponse> {
  const script = fileURLToPath(new URL('./aead-child.js', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, JSON.stringify(req)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line) {
        reject(new Error(`bench child (${req.mode}) failed with exit code ${code}`));
        return;
      }
      try {
        resolve(JSON.parse(line) as ChildResponse);
      } catch (e) {
        reject(new Error(`bench child (${req.mode}) printed no JSON result`, { cause: e }));
      }
    });
  });
}

const sdkOp = (op: string) =>
  op === 'decrypt' || op === 'decrypt-stream' ? 'decrypt' : op === 'encrypt-stream' ? 'encrypt' : undefined;

function addRatios(cases: BenchCase[], opensslRef: number | undefined): void {
  const sdk = new Map(
    cases.filter((c) => c.impl === IMPL.sdk).map((c) => [`${c.op}:${c.frameBytes}`, c.bytesPerSecond]),
  );
  for (const c of cases) {
    if (opensslRef) {
      c.ratioToOpenssl = c.bytesPerSecond / opensslRef;
      if (c.cpuBytesPerSecond !== undefined) c.cpuRatioToOpenssl = c.cpuBytesPerSecond / opensslRef;
    }
    const op = c.impl === IMPL.core || c.impl === IMPL.coreFallback ? sdkOp(c.op) : undefined;
    const ref = op && sdk.get(`${op}:${c.frameBytes}`);
    if (ref) c.ratioToSdk = c.bytesPerSecond / ref;
  }
}

function order(cases: BenchCase[]): BenchCase[] {
  const implRank = [IMPL.core, IMPL.coreFallback, IMPL.sdk, IMPL.oneshot, IMPL.openssl] as string[];
  const opRank = ['decrypt', 'decrypt-stream', 'encrypt-stream', 'encrypt', 'stream-roundtrip'];
  const group = (c: BenchCase) =>
    c.impl === IMPL.openssl ? 2 : c.impl === IMPL.oneshot ? 1 : c.op === 'stream-roundtrip' ? 3 : 0;
  return [...cases].sort(
    (a, b) =>
      group(a) - group(b) ||
      a.frameBytes - b.frameBytes ||
      implRank.indexOf(a.impl) - implRank.indexOf(b.impl) ||
      opRank.indexOf(a.op) - opRank.indexOf(b.op) ||
      a.threads - b.threads,
  );
}

function targets(
  cases: BenchCase[],
  opensslRef: number | undefined,
  streamGib: number | undefined,
): Target[] {
  const find = (impl: string, op: string, frame: number, threads: number) =>
    cases.find((c) => c.impl === impl && c.op === op && c.frameBytes === frame && c.threads === threads);
  const out: Target[] = [];
  const one = find(IMPL.core, 'decrypt', TARGET_FRAME, 1);
  const threads = availableParallelism();
  const all = find(IMPL.core, 'decrypt', TARGET_FRAME, threads);
  const sdk = find(IMPL.sdk, 'decrypt', TARGET_FRAME, 1);
  const ge = (name: string, value: number, target: number) =>
    out.push({ name, value, target, met: value >= target });
  if (opensslRef && one)
    ge('decrypt 64 KiB frames, 1 thread / openssl 16 KiB single-core', one.bytesPerSecond / opensslRef, 0.7);
  if (opensslRef && one?.cpuBytesPerSecond)
    ge(
      'decrypt 64 KiB frames, 1 thread, CPU-time basis as openssl speed measures / openssl 16 KiB single-core',
      one.cpuBytesPerSecond / opensslRef,
      0.7,
    );
  if (opensslRef && all)
    ge(
      `decrypt 64 KiB frames, all cores (${threads}) / openssl 16 KiB single-core`,
      all.bytesPerSecond / opensslRef,
      1.2,
    );
  if (one && sdk)
    ge(
      'decrypt 64 KiB frames, 1 thread / @aws-crypto/client-node decrypt 64 KiB',
      one.bytesPerSecond / sdk.bytesPerSecond,
      10,
    );
  if (one?.cpuBytesPerSecond && sdk?.cpuBytesPerSecond)
    ge(
      'decrypt 64 KiB frames, 1 thread / @aws-crypto/client-node decrypt 64 KiB, CPU-time basis',
      one.cpuBytesPerSecond / sdk.cpuBytesPerSecond,
      10,
    );
  const rt = cases.find((c) => c.op === 'stream-roundtrip');
  if (streamGib !== undefined && rt?.peakRssBytes !== undefined) {
    out.push({
      name: `stream ${streamGib} GiB encrypt -> decrypt: peak RSS bytes (< target)`,
      value: rt.peakRssBytes,
      target: RSS_LIMIT,
      met: rt.peakRssBytes < RSS_LIMIT,
    });
  }
  return out;
}
