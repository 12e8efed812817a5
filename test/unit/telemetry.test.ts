import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { TelemetrySpec } from '../../policy/spec.js';
import { VOLUME_METRIC_NAMES as METRIC_NAMES, volumeMetrics } from '../../proxies/blob-volume/instruments.js';
import { noopMeter, startTelemetry } from '../../runtime/telemetry.js';

const dir = mkdtempSync(join(tmpdir(), 'membrane-telemetry-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const fileCfg = (file: string): TelemetrySpec => ({
  enabled: true,
  exporter: 'file',
  file,
  serviceName: 'membrane-test',
  exportIntervalMs: 600_000, // only the final export at shutdown
});

test('off by default: spans just run, metrics are no-ops, nothing is written', async () => {
  for (const cfg of [undefined, { ...fileCfg(join(dir, 'off.jsonl')), enabled: false }]) {
    const t = await startTelemetry(cfg);
    assert.equal(t.enabled, false);
    assert.equal(t.meter(), noopMeter);
    assert.equal(t.meter({ 'membrane.proxy': 'v' }), noopMeter);
    assert.equal(await t.span('x', async () => 42), 42);
    await assert.rejects(
      t.span('y', () => Promise.reject(new Error('boom'))),
      /boom/,
    );
    volumeMetrics(t.meter(), 'v').bytesDecrypted(10);
    await t.shutdown();
  }
  assert.equal(existsSync(join(dir, 'off.jsonl')), false);
});

interface Line {
  kind: string;
  name: string;
  [k: string]: unknown;
}

test('file exporter: finished spans and metric points land in the file as JSON lines', async () => {
  const file = join(dir, 'sub', 'telemetry.jsonl');
  const t = await startTelemetry(fileCfg(file));
  assert.equal(t.enabled, true);

  const result = await t.span(
    'up',
    async () => {
      await t.span('consent', async () => 'enabled');
      await assert.rejects(
        t.span('keys', async () => {
          throw Object.assign(new Error('release refused'), { code: 'AKV_RELEASE_DENIED' });
        }),
      );
      return 'done';
    },
    { 'membrane.spec': 'demo' },
  );
  assert.equal(result, 'done');

  // As the runtime wires a proxy: a meter tagged with the proxy, the volume's instruments over it.
  const m = volumeMetrics(t.meter({ 'membrane.proxy': 'ledger-a' }), 'ledger-a');
  m.bytesDecrypted(4096);
  m.bytesDecrypted(1000);
  m.framesDecrypted(2);
  m.cacheHit();
  m.cacheHit();
  m.cacheMiss();
  m.authFailure();
  m.storeRequest(3.5);
  m.storeRequest(120);
  m.bytesDecrypted(Number.NaN); // ignored, not thrown
  volumeMetrics(t.meter({ 'membrane.proxy': 'out' }), 'out').bytesEncrypted(777);
  await t.shutdown();
  await t.shutdown(); // idempotent

  assert.equal(statSync(file).mode & 0o777, 0o600);
  const lines = readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Line);

  const spans = new Map(lines.filter((l) => l.kind === 'span').map((l) => [l.name, l]));
  assert.deepEqual([...spans.keys()].sort(), ['consent', 'keys', 'up']);
  const up = spans.get('up')!;
  assert.equal(up.status, 'OK');
  assert.deepEqual(up.attributes, { 'membrane.spec': 'demo' });
  assert.equal(up.parentSpanId, undefined);
  for (const child of ['consent', 'keys']) {
    assert.equal(spans.get(child)!.parentSpanId, up.spanId, `${child} is a child of up`);
    assert.equal(spans.get(child)!.traceId, up.traceId);
  }
  const keys = spans.get('keys')!;
  assert.equal(keys.status, 'ERROR');
  assert.equal(keys.statusMessage, 'release refused');
  assert.equal((keys.attributes as Record<string, unknown>)['membrane.error.code'], 'AKV_RELEASE_DENIED');
  assert.equal((keys.events as Array<{ name: string }>)[0]!.name, 'exception');
  assert.equal((up.resource as Record<string, unknown>)['service.name'], 'membrane-test');
  assert.ok(typeof up.durationMs === 'number' && up.durationMs >= 0);

  const metric = (name: string, volume?: string) =>
    lines.find(
      (l) =>
        l.kind === 'metric' &&
        l.name === name &&
        (l.attributes as Record<string, unknown>)['membrane.volume'] === volume,
    );
  assert.equal(metric(METRIC_NAMES.bytesDecrypted, 'ledger-a')?.value, 5096);
  assert.equal(metric(METRIC_NAMES.bytesDecrypted, 'ledger-a')?.unit, 'By');
  assert.equal(metric(METRIC_NAMES.framesDecrypted, 'ledger-a')?.value, 2);
  assert.equal(metric(METRIC_NAMES.cacheHits, 'ledger-a')?.value, 2);
  assert.equal(metric(METRIC_NAMES.cacheMisses, 'ledger-a')?.value, 1);
  assert.equal(metric(METRIC_NAMES.authFailures, 'ledger-a')?.value, 1);
  assert.equal(metric(METRIC_NAMES.bytesEncrypted, 'out')?.value, 777);
  const tagged = metric(METRIC_NAMES.bytesDecrypted, 'ledger-a')?.attributes as Record<string, unknown>;
  assert.equal(tagged['membrane.proxy'], 'ledger-a', 'the runtime tags every point with its proxy');
  const h = metric(METRIC_NAMES.storeRequestDuration, 'ledger-a')!;
  assert.equal(h.type, 'histogram');
  const hv = h.value as {
    count: number;
    sum: number;
    min: number;
    max: number;
    buckets: { boundaries: number[]; counts: number[] };
  };
  assert.equal(hv.count, 2);
  assert.equal(hv.sum, 123.5);
  assert.equal(hv.min, 3.5);
  assert.equal(hv.max, 120);
  assert.equal(
    hv.buckets.counts.reduce((a, b) => a + b, 0),
    2,
  );
});

test('OTLP exporter: spans and metrics are POSTed to the collector', async () => {
  const posts: Array<{ url: string; type?: string; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      posts.push({ url: req.url!, type: req.headers['content-type'], body });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const t = await startTelemetry({
      enabled: true,
      exporter: 'otlp',
      endpoint,
      serviceName: 'membrane-otlp',
      exportIntervalMs: 600_000,
    });
    await t.span('mount ledger-a', async () => {});
    volumeMetrics(t.meter({ 'membrane.proxy': 'ledger-a' }), 'ledger-a').framesDecrypted(3);
    await t.shutdown();

    const traces = posts.filter((p) => p.url === '/v1/traces');
    const metrics = posts.filter((p) => p.url === '/v1/metrics');
    assert.equal(traces.length, 1, JSON.stringify(posts.map((p) => p.url)));
    assert.ok(metrics.length >= 1);
    assert.match(traces[0]!.type ?? '', /application\/json/);
    const tj = JSON.parse(traces[0]!.body);
    const span = tj.resourceSpans[0].scopeSpans[0].spans[0];
    assert.equal(span.name, 'mount ledger-a');
    assert.ok(
      tj.resourceSpans[0].resource.attributes.some(
        (a: { key: string; value: { stringValue?: string } }) =>
          a.key === 'service.name' && a.value.stringValue === 'membrane-otlp',
      ),
    );
    const mj = JSON.parse(metrics[metrics.length - 1]!.body);
    const all = mj.resourceMetrics[0].scopeMetrics.flatMap(
      (s: { metrics: Array<{ name: string }> }) => s.metrics,
    );
    const frames = all.find((m: { name: string }) => m.name === METRIC_NAMES.framesDecrypted);
    assert.ok(frames, all.map((m: { name: string }) => m.name).join(','));
    assert.equal(Number(frames.sum.dataPoints[0].asInt ?? frames.sum.dataPoints[0].asDouble), 3);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});
