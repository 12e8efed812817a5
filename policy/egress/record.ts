/**
 * The decision record: one canonical JSON line (RFC 8785, so equal records are equal bytes
 * and can be hashed or diffed) per proxied request or refusal. The proxy fills it; this file
 * fixes its shape so that every proxy and every reader agree.
 */
import canonicalizeModule from 'canonicalize';
import type { AddressClass, Verdict } from './types.js';

const canonicalize = ((canonicalizeModule as unknown as { default?: unknown }).default ??
  canonicalizeModule) as unknown as (input: unknown) => string | undefined;

export interface EgressDecisionRecord {
  /** Record format version. */
  readonly v: 1;
  /** Request id, unique within the run (local: never sent upstream). */
  readonly id: string;
  /** ISO 8601 time the request arrived. */
  readonly time: string;
  readonly method: string;
  /** Normalised host (RequestDecision.host). */
  readonly host: string;
  readonly port: number;
  /** Path without query (queries carry data; they are not logged). Absent for CONNECT. */
  readonly path?: string;
  readonly verdict: Verdict;
  readonly rule: string;
  readonly reason: string;
  /** The address dialled or refused; null when none was reached (denied before DNS). */
  readonly address: { readonly ip: string; readonly class: AddressClass } | null;
  /** HTTP status sent to the app. */
  readonly status?: number;
  readonly bytes: { readonly sent: number; readonly received: number };
  /** Milliseconds: decision, DNS, connect, total (absent when the step did not happen). */
  readonly timings: Readonly<Partial<Record<'decision' | 'dns' | 'connect' | 'total', number>>>;
  /** CompiledEgressPolicy.digest: which policy decided. */
  readonly policy: string;
}

/** The record as one canonical JSON line (no trailing newline). */
export function decisionLine(r: EgressDecisionRecord): string {
  const s = canonicalize(r);
  /* c8 ignore next: a record is plain data */
  if (s === undefined) throw new TypeError('decision record is not serialisable');
  return s;
}
