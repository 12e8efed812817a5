/** Plain-text rendering of a bench report: the case table, the targets, the notes. */
import { formatSize } from './measure.js';
import type { BenchCase, BenchReport, Target } from './types.js';

const mbps = (bps: number) => (bps / 1e6).toFixed(bps >= 1e8 ? 0 : 1);
const ratio = (r: number | undefined) => (r === undefined ? '-' : r.toFixed(r >= 10 ? 1 : 2));
const mib = (b: number) => `${(b / (1024 * 1024)).toFixed(0)} MiB`;

function frameLabel(c: BenchCase): string {
  if (c.frameBytes === 0) return '-';
  return c.impl === 'node-crypto-oneshot' ? `1 x ${formatSize(c.frameBytes)}` : formatSize(c.frameBytes);
}

/** Aligned table; ratio and RSS columns appear only when some case has them. */
export function formatTable(cases: readonly BenchCase[]): string {
  const cols: { title: string; get: (c: BenchCase) => string; right?: boolean }[] = [
    { title: 'suite', get: (c) => c.suite },
    { title: 'impl', get: (c) => c.impl },
    { title: 'op', get: (c) => c.op },
    { title: 'frame', get: frameLabel, right: true },
    { title: 'threads', get: (c) => String(c.threads), right: true },
    { title: 'MB/s', get: (c) => mbps(c.bytesPerSecond), right: true },
  ];
  if (cases.some((c) => c.minBytesPerSecond !== undefined)) {
    cols.push({
      title: 'min..max',
      get: (c) =>
        c.minBytesPerSecond === undefined || c.maxBytesPerSecond === undefined
          ? '-'
          : `${mbps(c.minBytesPerSecond)}..${mbps(c.maxBytesPerSecond)}`,
      right: true,
    });
  }
  if (cases.some((c) => c.cpuBytesPerSecond !== undefined))
    cols.push({
      title: 'CPU MB/s',
      get: (c) => (c.cpuBytesPerSecond === undefined ? '-' : mbps(c.cpuBytesPerSecond)),
      right: true,
    });
  if (cases.some((c) => c.ratioToOpenssl !== undefined))
    cols.push({ title: 'x openssl', get: (c) => ratio(c.ratioToOpenssl), right: true });
  if (cases.some((c) => c.cpuRatioToOpenssl !== undefined))
    cols.push({ title: 'CPU x openssl', get: (c) => ratio(c.cpuRatioToOpenssl), right: true });
  if (cases.some((c) => c.ratioToSdk !== undefined))
    cols.push({ title: 'x SDK', get: (c) => ratio(c.ratioToSdk), right: true });
  if (cases.some((c) => c.iops !== undefined))
    cols.push({
      title: 'IOPS',
      get: (c) => (c.iops === undefined ? '-' : Math.round(c.iops).toString()),
      right: true,
    });
  if (cases.some((c) => c.ratioToGocryptfs !== undefined))
    cols.push({ title: 'x gocryptfs', get: (c) => ratio(c.ratioToGocryptfs), right: true });
  if (cases.some((c) => c.ratioToPassthrough !== undefined))
    cols.push({ title: 'x passthrough', get: (c) => ratio(c.ratioToPassthrough), right: true });
  if (cases.some((c) => c.peakRssBytes !== undefined))
    cols.push({
      title: 'peak RSS',
      get: (c) => (c.peakRssBytes === undefined ? '-' : mib(c.peakRssBytes)),
      right: true,
    });
  const opt = (title: string, get: (c: BenchCase) => number | undefined, fmt: (n: number) => string) => {
    if (cases.some((c) => get(c) !== undefined))
      cols.push({ title, get: (c) => (get(c) === undefined ? '-' : fmt(get(c) as number)), right: true });
  };
  opt(
    'req/s',
    (c) => c.requestsPerSecond,
    (n) => Math.round(n).toString(),
  );
  opt(
    'p50 ms',
    (c) => c.latencyP50Ms,
    (n) => n.toFixed(n < 0.1 ? 4 : 2),
  );
  opt(
    'p99 ms',
    (c) => c.latencyP99Ms,
    (n) => n.toFixed(n < 0.1 ? 4 : 2),
  );
  opt(
    'x tinyproxy',
    (c) => c.ratioToTinyproxy,
    (n) => ratio(n),
  );
  opt(
    'x direct',
    (c) => c.ratioToDirect,
    (n) => ratio(n),
  );
  opt(
    'proxy CPU us/req',
    (c) => c.proxyCpuMicrosPerRequest,
    (n) => n.toFixed(0),
  );
  const rows = cases.map((c) => cols.map((col) => col.get(c)));
  const widths = cols.map((col, i) => Math.max(col.title.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((s, i) => (cols[i]!.right ? s.padStart(widths[i]!) : s.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [
    line(cols.map((c) => c.title)),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map((r) => line(r)),
  ].join('\n');
}

/**
 * A --quick run is a smoke test (small inputs, few repetitions, cold buffers): its
 * figures are shown as indicative, never as a verdict on a target.
 */
export function formatTargets(targets: readonly Target[], quickSuite?: string): string {
  const quick = quickSuite !== undefined;
  if (targets.length === 0) return 'Targets: none evaluated.';
  const fmt = (n: number) => (Math.abs(n) >= 1e6 ? mib(n) : n.toFixed(2));
  const mark = (t: Target) => (quick ? (t.met ? 'above' : 'below') : t.met ? 'MET' : 'MISSED');
  return [
    quick
      ? `Targets (quick run: indicative only; run 'membrane bench ${quickSuite}' without --quick for the measurement):`
      : 'Targets:',
    ...targets.map((t) => `  [${mark(t)}] ${t.name}: measured ${fmt(t.value)}, target ${fmt(t.target)}`),
  ].join('\n');
}

export function formatReport(r: BenchReport): string {
  const m = r.machine;
  const head = [
    `membrane bench ${r.suite}${r.quick ? ' (quick)' : ''}: ${m.cpus} CPU(s) ${m.model}, node ${m.node}` +
      ` (OpenSSL ${m.nodeOpenssl}), openssl CLI: ${m.openssl ?? 'missing'}, load ${m.loadAverage.join(' ')}`,
  ];
  for (const [k, v] of Object.entries(r)) {
    if (
      ['suite', 'quick', 'startedAt', 'durationSeconds', 'machine', 'cases', 'targets', 'notes'].includes(k)
    )
      continue;
    head.push(`${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  const parts = [
    head.join('\n'),
    '',
    formatTable(r.cases),
    '',
    formatTargets(r.targets, r.quick ? r.suite : undefined),
  ];
  if (r.notes.length) parts.push('', 'Notes:', ...r.notes.map((n) => `  - ${n}`));
  parts.push(
    '',
    `MB/s = 10^6 bytes per wall-clock second, CPU MB/s = per CPU-second of the process; medians of ` +
      `repetitions. Run took ${r.durationSeconds} s.`,
  );
  return parts.join('\n');
}
