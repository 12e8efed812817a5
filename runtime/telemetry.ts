/**
 * Telemetry with OpenTelemetry JS: a span per lifecycle step (`span(name, fn)`) and a
 * generic Meter (the proxy contract's counters and histograms) that each proxy fills from
 * its own table of instruments (e.g. proxies/blob-volume/instruments.ts). Off by default:
 * then nothing of the SDK is loaded, `span()` just calls `fn`, and instruments are no-ops. When the spec enables it, spans
 * and metrics go to an OTLP/HTTP collector (`exporter: otlp`, JSON encoding) or to a
 * JSON-lines file (`exporter: file`).
 *
 * Nothing is registered globally (no global tracer/meter provider, no global context
 * manager): span nesting uses our own AsyncLocalStorage, so two instances (tests) or a
 * host application's own OpenTelemetry setup do not interfere.
 *
 * Counters are monotonic sums: a negative or non-finite value is dropped, never thrown
 * (a metric must not break I/O). `meter(attributes)` binds attributes to every point;
 * the runtime gives each proxy a meter with `membrane.proxy: <name>`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { type Attributes, context, type Span, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import type { TelemetrySpec } from '../policy/spec.js';
import type { Counter, Histogram, InstrumentSpec, Meter } from '../proxies/proxy.js';

const nothing = () => {};
const noopCounter: Counter = Object.freeze({ add: nothing });
const noopHistogram: Histogram = Object.freeze({ record: nothing });
export const noopMeter: Meter = Object.freeze({
  counter: () => noopCounter,
  histogram: () => noopHistogram,
});

export interface Telemetry {
  readonly enabled: boolean;
  /** A tracer for callers that need more than `span()`; a no-op tracer when disabled. */
  readonly tracer: Tracer;
  /** Generic instruments whose points all carry `attributes` (noopMeter when disabled). */
  meter(attributes?: Readonly<Record<string, string>>): Meter;
  /** Runs `fn` inside a span named `name` (child of the enclosing `span()`, if any); records errors. */
  span<T>(name: string, fn: () => Promise<T> | T, attributes?: Attributes): Promise<T>;
  /** Exports what has been recorded so far. */
  flush(): Promise<void>;
  /** Flushes and stops; idempotent. */
  shutdown(): Promise<void>;
}

const EXPORT_TIMEOUT_MS = 5000;

const disabled: Telemetry = Object.freeze({
  enabled: false,
  tracer: trace.getTracer('membrane'),
  meter: () => noopMeter,
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
  const otelMeter = meterProvider.getMeter('membrane', opts.version ?? '0.1.0');

  // One SDK instrument per name, whoever asks for it (two volumes share the counters and
  // differ by attributes); the first description wins, as in the SDK itself.
  type OtelCounter = ReturnType<typeof otelMeter.createCounter>;
  type OtelHistogram = ReturnType<typeof otelMeter.createHistogram>;
  const counters = new Map<string, OtelCounter>();
  const histograms = new Map<string, OtelHistogram>();
  const counterOf = (spec: InstrumentSpec) => {
    let c = counters.get(spec.name);
    if (!c) {
      c = otelMeter.createCounter(spec.name, { unit: spec.unit, description: spec.description });
      counters.set(spec.name, c);
    }
    return c;
  };
  const histogramOf = (spec: InstrumentSpec) => {
    let h = histograms.get(spec.name);
    if (!h) {
      h = otelMeter.createHistogram(spec.name, {
        unit: spec.unit,
        description: spec.description,
        ...(spec.boundaries ? { advice: { explicitBucketBoundaries: [...spec.boundaries] } } : {}),
      });
      histograms.set(spec.name, h);
    }
    return h;
  };
  const ok = (n: number) => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  const boundMeter = (base: Readonly<Record<string, string>> = {}): Meter => ({
    counter(spec) {
      const c = counterOf(spec);
      return { add: (n, attrs) => ok(n) && c.add(n, { ...base, ...attrs }) };
    },
    histogram(spec) {
      const h = histogramOf(spec);
      return { record: (v, attrs) => ok(v) && h.record(v, { ...base, ...attrs }) };
    },
  });

  const current = new AsyncLocalStorage<Span>();
  let stopped: Promise<void> | undefined;

  return {
    enabled: true,
    tracer,
    meter: boundMeter,
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
