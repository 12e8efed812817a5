/**
 * Telemetry with OpenTelemetry JS: a span per lifecycle step (`span(name, fn)`) and
 * metrics for volume work. Off by default: then nothing of the SDK is loaded, `span()`
 * just calls `fn`, and the metrics are empty functions. When the spec enables it, spans
 * and metrics go to an OTLP/HTTP collector (`exporter: otlp`, JSON encoding) or to a
 * JSON-lines file (`exporter: file`).
 *
 * Nothing is registered globally (no global tracer/meter provider, no global context
 * manager): span nesting uses our own AsyncLocalStorage, so two instances (tests) or a
 * host application's own OpenTelemetry setup do not interfere.
 *
 * Metrics (all counters are monotonic sums; attribute `membrane.volume` when obtained
 * through `metricsFor(name)`):
 *   membrane.volume.decrypted.bytes   By        plaintext bytes returned by reads
 *   membrane.volume.decrypted.frames  {frame}   frames authenticated and decrypted
 *   membrane.volume.encrypted.bytes   By        plaintext bytes sealed by datasink writes
 *   membrane.volume.cache.hits        {frame}   frame-cache hits
 *   membrane.volume.cache.misses      {frame}   frame-cache misses
 *   membrane.volume.auth_failures     {object}  objects/frames that failed authentication
 *   membrane.store.request.duration   ms        histogram of blob-store request latency
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { type Attributes, context, type Span, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import type { TelemetrySpec } from '../policy/spec.js';

// The metrics hook is declared by the volume, which reports through it.
import type { VolumeMetrics } from '../proxies/blob-volume/hooks.js';

export type { VolumeMetrics };

const nothing = () => {};
export const noopMetrics: VolumeMetrics = Object.freeze({
  bytesDecrypted: nothing,
  framesDecrypted: nothing,
  cacheHit: nothing,
  cacheMiss: nothing,
  authFailure: nothing,
  storeRequest: nothing,
  bytesEncrypted: nothing,
});

export interface Telemetry {
  readonly enabled: boolean;
  /** A tracer for callers that need more than `span()`; a no-op tracer when disabled. */
  readonly tracer: Tracer;
  /** Volume metrics without a volume attribute. */
  readonly metrics: VolumeMetrics;
  /** Volume metrics carrying `membrane.volume: name`. */
  metricsFor(volume: string): VolumeMetrics;
  /** Runs `fn` inside a span named `name` (child of the enclosing `span()`, if any); records errors. */
  span<T>(name: string, fn: () => Promise<T> | T, attributes?: Attributes): Promise<T>;
  /** Exports what has been recorded so far. */
  flush(): Promise<void>;
  /** Flushes and stops; idempotent. */
  shutdown(): Promise<void>;
}

export const METRIC_NAMES = {
  bytesDecrypted: 'membrane.volume.decrypted.bytes',
  framesDecrypted: 'membrane.volume.decrypted.frames',
  bytesEncrypted: 'membrane.volume.encrypted.bytes',
  cacheHits: 'membrane.volume.cache.hits',
  cacheMisses: 'membrane.volume.cache.misses',
  authFailures: 'membrane.volume.auth_failures',
  storeRequestDuration: 'membrane.store.request.duration',
} as const;

/** Latency buckets (ms) for blob-store requests: loopback fs to cross-region blob. */
const LATENCY_BOUNDARIES_MS = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
const EXPORT_TIMEOUT_MS = 5000;

const disabled: Telemetry = Object.freeze({
  enabled: false,
  tracer: trace.getTracer('membrane'),
  metrics: noopMetrics,
  metricsFor: () => noopMetrics,
  span: async <T>(_name: string, fn: () => Promise<T> | T) => fn(),
  flush: async () => {},
  shutdown: async () => {},
});

export interface TelemetryOptions {
  /** service.version resource attribute. */
  version?: string;
}

export async function startTelemetry(
  cfg: TelemetrySpec | undefined,
  opts: TelemetryOptions = {},
): Promise<Telemetry> {
  if (!cfg?.enabled) return disabled;

  // Loaded only when enabled: keeps `membrane up` without telemetry free of the SDK.
  const [
    { BasicTracerProvider, BatchSpanProcessor },
    { MeterProvider, PeriodicExportingMetricReader },
    resources,
  ] = await Promise.all([
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/sdk-metrics'),
    import('@opentelemetry/resources'),
  ]);
  const resource = resources.resourceFromAttributes({
    'service.name': cfg.serviceName,
    'service.version': opts.version ?? '0.1.0',
    'process.pid': process.pid,
  });

  let spanExporter: import('@opentelemetry/sdk-trace-base').SpanExporter;
  let metricExporter: import('@opentelemetry/sdk-metrics').PushMetricExporter;
  let closeFile: () => Promise<void> = async () => {};
  if (cfg.exporter === 'file') {
    const { JsonLinesFile, FileSpanExporter, FileMetricExporter } = await import('./telemetry-file.js');
    const out = new JsonLinesFile(cfg.file!);
    spanExporter = new FileSpanExporter(out);
    metricExporter = new FileMetricExporter(out);
    closeFile = () => out.close();
  } else {
    const [{ OTLPTraceExporter }, { OTLPMetricExporter }] = await Promise.all([
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/exporter-metrics-otlp-http'),
    ]);
    const base = cfg.endpoint!.replace(/\/+$/, '');
    // keepAlive off: a finished runtime should not hold sockets to the collector open.
    spanExporter = new OTLPTraceExporter({
      url: `${base}/v1/traces`,
      timeoutMillis: EXPORT_TIMEOUT_MS,
      keepAlive: false,
    });
    metricExporter = new OTLPMetricExporter({
      url: `${base}/v1/metrics`,
      timeoutMillis: EXPORT_TIMEOUT_MS,
      keepAlive: false,
    });
  }

  const tracerProvider = new BasicTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(spanExporter, { exportTimeoutMillis: EXPORT_TIMEOUT_MS })],
  });
  const reader = new PeriodicExportingMetricReader({
    exporter: metricExporter,
    exportIntervalMillis: cfg.exportIntervalMs,
    exportTimeoutMillis: Math.min(EXPORT_TIMEOUT_MS, cfg.exportIntervalMs),
  });
  const meterProvider = new MeterProvider({ resource, readers: [reader] });
  const tracer = tracerProvider.getTracer('membrane', opts.version ?? '0.1.0');
  const meter = meterProvider.getMeter('membrane.volume', opts.version ?? '0.1.0');

  const c = {
    bytesDecrypted: meter.createCounter(METRIC_NAMES.bytesDecrypted, {
      unit: 'By',
      description: 'plaintext bytes returned by datasource reads',
    }),
    framesDecrypted: meter.createCounter(METRIC_NAMES.framesDecrypted, {
      unit: '{frame}',
      description: 'frames authenticated and decrypted',
    }),
    bytesEncrypted: meter.createCounter(METRIC_NAMES.bytesEncrypted, {
      unit: 'By',
      description: 'plaintext bytes sealed by datasink writes',
    }),
    cacheHits: meter.createCounter(METRIC_NAMES.cacheHits, {
      unit: '{frame}',
      description: 'frame cache hits',
    }),
    cacheMisses: meter.createCounter(METRIC_NAMES.cacheMisses, {
      unit: '{frame}',
      description: 'frame cache misses',
    }),
    authFailures: meter.createCounter(METRIC_NAMES.authFailures, {
      unit: '{object}',
      description:
        'objects or frames that failed authentication (tampered, misbound, not in the pinned manifest)',
    }),
    storeRequest: meter.createHistogram(METRIC_NAMES.storeRequestDuration, {
      unit: 'ms',
      description: 'blob store request latency',
      advice: { explicitBucketBoundaries: LATENCY_BOUNDARIES_MS },
    }),
  };
  const ok = (n: number) => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  const bound = (attrs: Attributes | undefined): VolumeMetrics => ({
    bytesDecrypted: (n) => ok(n) && c.bytesDecrypted.add(n, attrs),
    framesDecrypted: (n) => ok(n) && c.framesDecrypted.add(n, attrs),
    bytesEncrypted: (n) => ok(n) && c.bytesEncrypted.add(n, attrs),
    cacheHit: () => c.cacheHits.add(1, attrs),
    cacheMiss: () => c.cacheMisses.add(1, attrs),
    authFailure: () => c.authFailures.add(1, attrs),
    storeRequest: (ms) => ok(ms) && c.storeRequest.record(ms, attrs),
  });
  const perVolume = new Map<string, VolumeMetrics>();

  const current = new AsyncLocalStorage<Span>();
  let stopped: Promise<void> | undefined;

  return {
    enabled: true,
    tracer,
    metrics: bound(undefined),
    metricsFor(volume) {
      let m = perVolume.get(volume);
      if (!m) {
        m = bound({ 'membrane.volume': volume });
        perVolume.set(volume, m);
      }
      return m;
    },
    async span<T>(name: string, fn: () => Promise<T> | T, attributes?: Attributes): Promise<T> {
      const parent = current.getStore();
      const ctx = parent ? trace.setSpan(context.active(), parent) : context.active();
      const s = tracer.startSpan(name, { attributes }, ctx);
      return current.run(s, async () => {
        try {
          const r = await fn();
          s.setStatus({ code: SpanStatusCode.OK });
          return r;
        } catch (e) {
          const err = e instanceof Error ? e : new Error(String(e));
          s.recordException(err);
          s.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
          const code = (e as { code?: unknown }).code;
          if (typeof code === 'string') s.setAttribute('membrane.error.code', code);
          throw e;
        } finally {
          s.end();
        }
      });
    },
    async flush() {
      await Promise.all([tracerProvider.forceFlush(), meterProvider.forceFlush()]);
    },
    shutdown() {
      stopped ??= (async () => {
        // Export failures must not turn a clean stop into a crash: telemetry is best effort.
        await Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]);
        await closeFile();
      })();
      return stopped;
    },
  };
}
