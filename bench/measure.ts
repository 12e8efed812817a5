/**
 * Repetition and statistics. Each case runs once untimed (JIT, page faults on
 * fresh buffers, worker start-up), then `reps` times; the median rate is what we
 * report because a shared machine produces one-sided outliers (a neighbour
 * stealing the core makes a run slower, never faster). Wall-clock and CPU time
 * are both recorded; see Rate.
 */

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of nothing');
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface Rate {
  /** Median over repetitions of bytes per wall-clock second. */
  bytesPerSecond: number;
  minBytesPerSecond: number;
  maxBytesPerSecond: number;
  /**
   * Median of bytes per CPU-second of this process (user + system, all threads).
   * Time a busy neighbour steals from us does not count, which is how `openssl
   * speed` measures by default (CPU user time as the divisor); on a shared
   * machine this is the stable figure for single-thread cases.
   */
  cpuBytesPerSecond: number;
  reps: number;
}

export interface Measured {
  /** Bytes processed per call. */
  bytes: number;
  fn: () => unknown;
}

/**
 * Times several cases round-robin: one untimed warm-up call each, then `reps`
 * rounds in which every case runs once. Interleaving spreads a neighbour's
 * bursts over all cases instead of penalising whichever ran at the time.
 */
export async function measureInterleaved(items: readonly Measured[], reps: number): Promise<Rate[]> {
  if (!(reps >= 1)) throw new Error('reps must be >= 1');
  for (const it of items) await it.fn();
  const wall: number[][] = items.map(() => []);
  const cpu: number[][] = items.map(() => []);
  for (let r = 0; r < reps; r++) {
    for (const [i, it] of items.entries()) {
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      await it.fn();
      const ns = Number(process.hrtime.bigint() - t0);
      const c = process.cpuUsage(c0);
      wall[i]!.push(it.bytes / (Math.max(ns, 1) / 1e9));
      cpu[i]!.push(it.bytes / (Math.max(c.user + c.system, 1) / 1e6));
    }
  }
  return items.map((_, i) => ({
    bytesPerSecond: median(wall[i]!),
    minBytesPerSecond: Math.min(...wall[i]!),
    maxBytesPerSecond: Math.max(...wall[i]!),
    cpuBytesPerSecond: median(cpu[i]!),
    reps,
  }));
}

/** Times `fn` (which processes `bytes` bytes per call) after one warm-up call. */
export async function measureRate(bytes: number, reps: number, fn: () => unknown): Promise<Rate> {
  return (await measureInterleaved([{ bytes, fn }], reps))[0]!;
}

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** 4096 -> "4 KiB", 1048576 -> "1 MiB"; other sizes in bytes. */
export function formatSize(n: number): string {
  if (n >= GiB && n % GiB === 0) return `${n / GiB} GiB`;
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  if (n >= KiB && n % KiB === 0) return `${n / KiB} KiB`;
  return `${n} B`;
}
