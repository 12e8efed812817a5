/**
 * File exporters for telemetry `exporter: file`: finished spans and metric data points
 * appended as JSON lines to one file (mode 0600), for laptops and CI where no collector
 * runs. Loaded only when that exporter is configured. Line shapes are documented in
 * docs/spec-reference.md (telemetry).
 */
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import type { Attributes, HrTime } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';

/** ExportResultCode of @opentelemetry/core (not a direct dependency): SUCCESS 0, FAILED 1. */
type ExportResult = { code: number; error?: Error };
const SUCCESS = 0;
const FAILED = 1;

const iso = (t: HrTime) => new Date(t[0] * 1000 + Math.floor(t[1] / 1e6)).toISOString();
const ms = (t: HrTime) => t[0] * 1000 + t[1] / 1e6;
const STATUS = ['UNSET', 'OK', 'ERROR'] as const;

/** Serialised appends to one file, opened on first use. */
export class JsonLinesFile {
  private fh: Promise<fsp.FileHandle> | undefined;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(readonly path: string) {}

  append(records: unknown[]): Promise<void> {
    if (records.length === 0) return this.chain;
    const text = records.map((r) => `${JSON.stringify(r)}\n`).join('');
    const next = this.chain.then(async () => {
      if (this.closed) throw new Error('telemetry file is closed');
      this.fh ??= fsp
        .mkdir(dirname(this.path), { recursive: true })
        .then(() => fsp.open(this.path, 'a', 0o600));
      await (await this.fh).appendFile(text, 'utf8');
    });
    // Keep the chain alive after a failure; the caller sees the rejection.
    this.chain = next.catch(() => {});
    return next;
  }

  async close(): Promise<void> {
    await this.chain;
    this.closed = true;
    if (this.fh) await (await this.fh.catch(() => undefined))?.close();
  }
}

export class FileSpanExporter implements SpanExporter {
  constructor(private readonly out: JsonLinesFile) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    const lines = spans.map((s) => ({
      kind: 'span',
      name: s.name,
      traceId: s.spanContext().traceId,
      spanId: s.spanContext().spanId,
      ...(s.parentSpanContext ? { parentSpanId: s.parentSpanContext.spanId } : {}),
      start: iso(s.startTime),
      end: iso(s.endTime),
      durationMs: Math.round(ms(s.duration) * 1000) / 1000,
      status: STATUS[s.status.code] ?? 'UNSET',
      ...(s.status.message ? { statusMessage: s.status.message } : {}),
      attributes: s.attributes,
      ...(s.events.length
        ? {
            events: s.events.map((e) => ({
              name: e.name,
              time: iso(e.time),
              attributes: e.attributes ?? {},
            })),
          }
        : {}),
      resource: s.resource.attributes,
    }));
    this.out.append(lines).then(
      () => done({ code: SUCCESS }),
      (error: Error) => done({ code: FAILED, error }),
    );
  }

  async forceFlush(): Promise<void> {
    await this.out.append([]);
  }

  async shutdown(): Promise<void> {
    await this.out.append([]);
  }
}

export class FileMetricExporter implements PushMetricExporter {
  constructor(private readonly out: JsonLinesFile) {}

  export(metrics: ResourceMetrics, done: (result: ExportResult) => void): void {
    const lines: unknown[] = [];
    const resource = metrics.resource.attributes;
    for (const scope of metrics.scopeMetrics) {
      for (const m of scope.metrics) {
        const type =
          m.dataPointType === DataPointType.SUM
            ? 'sum'
            : m.dataPointType === DataPointType.GAUGE
              ? 'gauge'
              : m.dataPointType === DataPointType.HISTOGRAM
                ? 'histogram'
                : 'exponential_histogram';
        for (const dp of m.dataPoints) {
          const v = dp.value as
            | number
            | { count: number; sum?: number; min?: number; max?: number; buckets?: unknown };
          lines.push({
            kind: 'metric',
            name: m.descriptor.name,
            unit: m.descriptor.unit,
            type,
            temporality: m.aggregationTemporality === AggregationTemporality.DELTA ? 'delta' : 'cumulative',
            start: iso(dp.startTime),
            time: iso(dp.endTime),
            attributes: dp.attributes as Attributes,
            value:
              typeof v === 'number'
                ? v
                : { count: v.count, sum: v.sum, min: v.min, max: v.max, buckets: v.buckets },
            resource,
          });
        }
      }
    }
    this.out.append(lines).then(
      () => done({ code: SUCCESS }),
      (error: Error) => done({ code: FAILED, error }),
    );
  }

  async forceFlush(): Promise<void> {
    await this.out.append([]);
  }

  async shutdown(): Promise<void> {
    await this.out.append([]);
  }
}
