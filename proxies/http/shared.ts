/**
 * What the request and tunnel handlers share: the injected ports, the limits and their
 * accounting, upstream pools, and the evidence sinks (decision log, audit, metrics).
 * `finish` is the one place a request's outcome becomes evidence, so every path —
 * allowed, reported, refused, failed — leaves exactly one decision line.
 */
import type { ServerResponse } from 'node:http';
import type { Keyring } from '../core/index.js';
import type { AuditSink, OwnListener } from '../proxy.js';
import type { DecisionLog, DecisionRecord } from './decision-log.js';
import { HttpErrorCode } from './errors.js';
import type { HttpInstruments } from './instruments.js';
import type { ByteBudget, EgressLimits, RateLimiter, Slots } from './limits.js';
import type { Dialer, EgressEngine, InspectorFactory, Resolver, RunCa, TlsToolkit } from './ports.js';
import type { Refusal } from './refusals.js';
import type { UpstreamPools } from './upstream.js';

export interface Shared {
  readonly engine: EgressEngine;
  readonly resolver: Resolver;
  readonly dial: Dialer;
  readonly toolkit: TlsToolkit | undefined;
  readonly inspector: InspectorFactory | undefined;
  /** The keyring that seals for a secure rule; throws a typed error for an unknown DEK. */
  readonly keyringFor: (dek: string | undefined) => Keyring;
  readonly limits: EgressLimits;
  readonly self: () => readonly OwnListener[];
  readonly pools: UpstreamPools;
  readonly rate: RateLimiter;
  readonly requests: Slots;
  readonly tunnels: Slots;
  readonly budget: ByteBudget;
  readonly ca: RunCa | undefined;
  readonly instruments: HttpInstruments;
  readonly audit: AuditSink;
  readonly decisions: DecisionLog;
  readonly log: (line: string) => void;
  nextId(): string;
}

/** A record being filled in, plus what metrics need but the record does not carry. */
export type Draft = {
  -readonly [K in keyof DecisionRecord]: DecisionRecord[K];
} & { kind: 'request' | 'tunnel' | 'inner-request'; mode?: string };

export function draft(sh: Shared, kind: Draft['kind'], method: string, host: string, port: number): Draft {
  return {
    v: 1,
    kind,
    id: sh.nextId(),
    time: new Date().toISOString(),
    method,
    host,
    port,
    rule: '-',
    verdict: 'deny',
    reason: '',
    status: 0,
    address: null,
    bytes: { sent: 0, received: 0 },
    timings: {},
    policy: sh.engine.digest,
  };
}

/** Writes the decision line, counts it, and audits refusals (`http.denied`). */
export function finish(sh: Shared, d: Draft, started: number, refusal?: Refusal): void {
  d.timings = { ...d.timings, total: round(performance.now() - started) };
  if (refusal) {
    d.verdict = 'deny';
    d.status = refusal.status;
    d.reason = refusal.reason;
    if (d.rule === '-' || refusal.code !== HttpErrorCode.DENIED) d.rule = refusal.check;
    sh.instruments.denied.add(1, { check: refusal.check.split('.')[0] ?? refusal.check });
    sh.audit.emit({
      type: 'http.denied',
      subject: `${d.host}:${d.port}`,
      details: {
        id: d.id,
        kind: d.kind,
        method: d.method,
        ...(d.path !== undefined ? { path: d.path } : {}),
        rule: d.rule,
        status: d.status,
        reason: d.reason,
        ...(d.address ? { address: d.address } : {}),
      },
    });
  }
  sh.instruments.requests.add(1, { verdict: d.verdict, mode: d.mode ?? 'none' });
  sh.instruments.bytesUp.add(d.bytes.sent);
  sh.instruments.bytesDown.add(d.bytes.received);
  sh.instruments.duration.record(d.timings.total ?? 0, { kind: d.kind });
  const { kind: _k, mode: _m, ...record } = d;
  sh.decisions.write(record);
}

export const round = (ms: number) => Math.round(ms * 1000) / 1000;

/** Sends the refusal to the app: status, Membrane-Reason, a one-line text body. */
export function sendRefusal(res: ServerResponse, r: Refusal): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${r.reason}\n`;
  res.writeHead(r.status, {
    'membrane-reason': r.reason,
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...(r.status === 407 ? { 'proxy-authenticate': 'Basic realm="membrane"' } : {}),
  });
  res.end(body);
}
