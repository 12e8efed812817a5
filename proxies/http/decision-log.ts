/**
 * Decisions as evidence: one canonical JSON line (RFC 8785, keys sorted) per request
 * or tunnel, appended to a 0600 file. Lines carry what was decided and why, the
 * address class, byte counts and timings, and the digest of the policy that decided —
 * never bodies, query strings or header values.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import canonicalizeImport from 'canonicalize';
import type { AddressClass, Verdict } from '../../policy/egress/types.js';

type Canonicalize = (input: unknown) => string | undefined;
// canonicalize is CommonJS typed as an ES default export; accept either shape at runtime.
const jcs = ((canonicalizeImport as unknown as { default?: Canonicalize }).default ??
  canonicalizeImport) as unknown as Canonicalize;

/**
 * The decision record. Its shape is policy/egress's EgressDecisionRecord (record.ts on
 * the egress-policy branch), field for field, so every reader agrees on one format.
 * TODO(merge): import that type and its decisionLine() instead of this copy.
 */
export interface DecisionRecord {
  readonly v: 1;
  readonly id: string;
  readonly time: string;
  readonly method: string;
  readonly host: string;
  readonly port: number;
  /** Path without the query (queries carry data); absent for CONNECT. */
  readonly path?: string;
  readonly verdict: Verdict;
  readonly rule: string;
  readonly reason: string;
  /** The address dialed or refused; null when none was reached (denied before DNS). */
  readonly address: { readonly ip: string; readonly class: AddressClass } | null;
  /** HTTP status sent to the app. */
  readonly status?: number;
  readonly bytes: { readonly sent: number; readonly received: number };
  readonly timings: Readonly<Partial<Record<'decision' | 'dns' | 'connect' | 'total', number>>>;
  readonly policy: string;
}

export interface DecisionLog {
  write(r: DecisionRecord): void;
  close(): Promise<void>;
}

export function openDecisionLog(file: string): DecisionLog {
  const out: WriteStream = createWriteStream(file, { flags: 'a', mode: 0o600 });
  // A failing log must not crash the proxy; the error is kept and surfaces at close.
  let failure: Error | undefined;
  out.on('error', (e) => {
    failure ??= e;
  });
  let closed = false;
  return {
    write(r) {
      if (closed || failure) return;
      out.write(`${jcs(r)}\n`);
    },
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise((resolve, reject) => out.end(() => (failure ? reject(failure) : resolve())));
    },
  };
}

export const nullDecisionLog: DecisionLog = { write() {}, close: async () => {} };
