/**
 * Shapes shared by every bench suite and the `membrane bench` command. A suite
 * measures; the command parses flags, prints the table and writes JSON/SVG. New
 * suites (e.g. `volume`) register in bench/suites.ts and return a SuiteResult.
 */
import type { ParseArgsConfig } from 'node:util';

/** One measured configuration. `bytesPerSecond` is always a median over repetitions. */
export interface BenchCase {
  suite: string;
  /** What was measured: 'membrane-core', '@aws-crypto/client-node', 'openssl-speed', ... */
  impl: string;
  /** 'decrypt', 'encrypt', 'decrypt-stream', ... */
  op: string;
  /** Frame length (or block size for openssl, whole buffer for one-shot cases). */
  frameBytes: number;
  threads: number;
  bytesPerSecond: number;
  /**
   * Median bytes per CPU-second of the measuring process (user + system, all threads),
   * the way `openssl speed` divides by CPU user time. Equals bytesPerSecond on an idle
   * machine for single-thread cases; for multi-thread cases it is per-core throughput.
   */
  cpuBytesPerSecond?: number;
  /** Ratio to the openssl single-core 16 KiB figure; absent when openssl is unavailable. */
  ratioToOpenssl?: number;
  /** cpuBytesPerSecond / the openssl figure. */
  cpuRatioToOpenssl?: number;
  /** Ratio to the SDK's same operation at the same frame length, where the SDK was measured. */
  ratioToSdk?: number;
  /** Peak resident set size of the process that ran the case (RSS checks only). */
  peakRssBytes?: number;
  /** Completed I/O requests per second (volume: random reads). */
  iops?: number;
  /** Volume suite: ratio to gocryptfs's same operation (IOPS for random reads, else bytes/s). */
  ratioToGocryptfs?: number;
  /** Volume suite: ratio to the same FUSE code without crypto (the Node FUSE ceiling). */
  ratioToPassthrough?: number;
  /** Bytes processed per repetition. */
  inputBytes?: number;
  /** Repetitions behind the median (warm-up excluded). */
  reps?: number;
  /** Slowest and fastest repetition, to show the noise around the median. */
  minBytesPerSecond?: number;
  maxBytesPerSecond?: number;
  /** Egress suite: completed requests (or policy decisions) per second, median over repetitions. */
  requestsPerSecond?: number;
  /** Egress suite: latency percentiles in milliseconds (medians of each repetition's). */
  latencyP50Ms?: number;
  latencyP99Ms?: number;
  /** Egress suite: req/s ratio to tinyproxy on the same operation. */
  ratioToTinyproxy?: number;
  /** Egress suite: ratio to the direct path (req/s, or MB/s for CONNECT). */
  ratioToDirect?: number;
  /** Egress suite: CPU microseconds of the proxy process per request (where the time goes). */
  proxyCpuMicrosPerRequest?: number;
  /** Egress suite: socket errors and non-2xx answers over all repetitions (0 for a valid run). */
  errors?: number;
  /** Free-form detail (e.g. the AEAD backend a child process used). */
  note?: string;
}

export interface Target {
  name: string;
  /** Measured value in the target's unit (a ratio, or bytes). */
  value: number;
  target: number;
  /** Whether `value` satisfies the target (>= target, or < target for upper bounds). */
  met: boolean;
}

export interface MachineInfo {
  cpus: number;
  model: string;
  node: string;
  /** Version of the `openssl` command used for the ceiling, or null when missing. */
  openssl: string | null;
  /** OpenSSL bundled in Node (the one the core's native backend links against). */
  nodeOpenssl: string;
  platform: string;
  arch: string;
  /** 1/5/15-minute load averages when the run started: a noisy neighbour shows here. */
  loadAverage: number[];
}

export interface SuiteResult {
  cases: BenchCase[];
  targets: Target[];
  /** Caveats to print and keep with the data (missing tools, noise, skipped cases). */
  notes: string[];
  /** Suite-specific top-level JSON fields (e.g. aead: `backend`). */
  meta: Record<string, unknown>;
  /** A reference line for the chart (e.g. the openssl ceiling). */
  chartReference?: { label: string; bytesPerSecond: number };
}

export interface BenchReport extends Record<string, unknown> {
  suite: string;
  quick: boolean;
  startedAt: string;
  durationSeconds: number;
  machine: MachineInfo;
  cases: BenchCase[];
  targets: Target[];
  notes: string[];
}

export type SuiteOptions = NonNullable<ParseArgsConfig['options']>;

export interface SuiteRunContext {
  quick: boolean;
  /** Values of the suite's own options (see BenchSuite.options). */
  values: Record<string, string | boolean | undefined>;
  machine: MachineInfo;
  /** Progress line for a human (stderr); never part of the results. */
  progress(message: string): void;
}

export interface BenchSuite {
  name: string;
  summary: string;
  /** Extra command-line options of this suite (parseArgs config). */
  options: SuiteOptions;
  /** Help text lines for those options. */
  optionsHelp: string;
  run(ctx: SuiteRunContext): Promise<SuiteResult>;
}
