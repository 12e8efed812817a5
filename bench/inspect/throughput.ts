/**
 * Inspection throughput for `membrane bench egress`: MB/s of the open-mode PII inspector on one
 * core, over a body that looks like API traffic (JSON with numbers, ids, dates, words, hex digests)
 * and holds no PII, so every detector runs over every byte and no finding stops the scan early.
 */
import type { InspectSettings } from '../../policy/egress/types.js';
import { createInspector } from '../../policy/inspect/index.js';

/** A deterministic JSON-lines corpus of about `bytes` bytes (no PII: the scan never stops early). */
export function inspectionCorpus(bytes: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  let seed = 0x2545f491;
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (let i = 0; size < bytes; i++) {
    const line = JSON.stringify({
      id: `ord-${100000 + i}`,
      ts: `2024-0${1 + rnd(9)}-1${rnd(10)}T10:${10 + rnd(50)}:00Z`,
      amount: rnd(100000) / 100,
      ratio: Math.sqrt(i + 1) / 7,
      account: `acct_${rnd(1e9)}`,
      status: ['settled', 'pending', 'refunded', 'failed'][rnd(4)],
      note: 'reconciled against the ledger; see batch 42 for details',
      digest: (seed.toString(16) + 'deadbeefcafe0123456789abcdef').repeat(2),
      phone: `+1 415-555-0${100 + rnd(900)}`,
      tags: ['q3', 'eu-west', 'v2.1.0'],
    });
    lines.push(line);
    size += line.length + 1;
  }
  return Buffer.from(lines.join('\n') + '\n').subarray(0, bytes);
}

export interface InspectionThroughput {
  readonly bytes: number;
  /** Wall-clock seconds. */
  readonly seconds: number;
  /** CPU seconds of this (single-threaded) scan: the per-core figure, unaffected by other load. */
  readonly cpuSeconds: number;
  readonly mbPerSec: number;
  /** MB per CPU second: inspection MB/s per core. */
  readonly mbPerCpuSec: number;
  readonly findings: number;
}

/** Scans `corpus` `rounds` times in `chunkSize` pieces (as the proxy sees a body) on this thread. */
export function measureInspection(
  settings: InspectSettings,
  corpus: Buffer,
  { chunkSize = 16 * 1024, rounds = 5, contentType = 'application/json' } = {},
): InspectionThroughput {
  let findings = 0;
  const run = () => {
    const ins = createInspector(settings, contentType);
    for (let o = 0; o < corpus.length; o += chunkSize) ins.push(corpus.subarray(o, o + chunkSize));
    ins.end();
    findings += ins.count;
  };
  run(); // warm-up: lets V8 optimise the detectors before the clock starts
  findings = 0;
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) run();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  const cpuSeconds = (c.user + c.system) / 1e6;
  const bytes = corpus.length * rounds;
  return {
    bytes,
    seconds,
    cpuSeconds,
    mbPerSec: bytes / 1e6 / seconds,
    mbPerCpuSec: bytes / 1e6 / cpuSeconds,
    findings,
  };
}
