/**
 * The blob volume's metrics as a table of instruments, and the VolumeMetrics hook the
 * volume reports through, built over the generic Meter of the proxy contract. The runtime
 * knows nothing volume-specific: it hands every proxy a Meter tagged `membrane.proxy`; we
 * add `membrane.volume` as well so that dashboards written against earlier releases keep
 * working. Metric names are unchanged from before the contract.
 */
import type { Counter, Histogram, InstrumentSpec, Meter } from '../proxy.js';
import type { VolumeMetrics } from './hooks.js';

/** Latency buckets (ms) for blob-store requests: loopback fs to cross-region blob. */
const LATENCY_BOUNDARIES_MS = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

export const VOLUME_COUNTERS = {
  bytesDecrypted: {
    name: 'membrane.volume.decrypted.bytes',
    unit: 'By',
    description: 'plaintext bytes returned by datasource reads',
  },
  framesDecrypted: {
    name: 'membrane.volume.decrypted.frames',
    unit: '{frame}',
    description: 'frames authenticated and decrypted',
  },
  bytesEncrypted: {
    name: 'membrane.volume.encrypted.bytes',
    unit: 'By',
    description: 'plaintext bytes sealed by datasink writes',
  },
  cacheHits: { name: 'membrane.volume.cache.hits', unit: '{frame}', description: 'frame cache hits' },
  cacheMisses: { name: 'membrane.volume.cache.misses', unit: '{frame}', description: 'frame cache misses' },
  authFailures: {
    name: 'membrane.volume.auth_failures',
    unit: '{object}',
    description:
      'objects or frames that failed authentication (tampered, misbound, not in the pinned manifest)',
  },
} as const satisfies Record<string, InstrumentSpec>;

export const VOLUME_HISTOGRAMS = {
  storeRequestDuration: {
    name: 'membrane.store.request.duration',
    unit: 'ms',
    description: 'blob store request latency',
    boundaries: LATENCY_BOUNDARIES_MS,
  },
} as const satisfies Record<string, InstrumentSpec>;

/** Every metric name the volume reports, for docs and tests. */
export const VOLUME_METRIC_NAMES = {
  ...Object.fromEntries(Object.entries(VOLUME_COUNTERS).map(([k, v]) => [k, v.name])),
  ...Object.fromEntries(Object.entries(VOLUME_HISTOGRAMS).map(([k, v]) => [k, v.name])),
} as Readonly<Record<keyof typeof VOLUME_COUNTERS | keyof typeof VOLUME_HISTOGRAMS, string>>;

/** The volume's hook over a Meter; every point carries `membrane.volume: volume`. */
export function volumeMetrics(meter: Meter, volume: string): VolumeMetrics {
  const attrs = { 'membrane.volume': volume };
  const c = Object.fromEntries(
    Object.entries(VOLUME_COUNTERS).map(([k, spec]) => [k, meter.counter(spec)]),
  ) as Record<keyof typeof VOLUME_COUNTERS, Counter>;
  const storeRequest: Histogram = meter.histogram(VOLUME_HISTOGRAMS.storeRequestDuration);
  return {
    bytesDecrypted: (n) => c.bytesDecrypted.add(n, attrs),
    framesDecrypted: (n) => c.framesDecrypted.add(n, attrs),
    bytesEncrypted: (n) => c.bytesEncrypted.add(n, attrs),
    cacheHit: () => c.cacheHits.add(1, attrs),
    cacheMiss: () => c.cacheMisses.add(1, attrs),
    authFailure: () => c.authFailures.add(1, attrs),
    storeRequest: (ms) => storeRequest.record(ms, attrs),
  };
}
