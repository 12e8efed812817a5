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

export interface DecisionRecord {
  readonly id: string;
  readonly time: string;
  readonly kind: 'request' | 'tunnel' | 'inner-request';
  readonly method: string;
  readonly host: string;
  readonly port: number;
  /** Path without the query; absent for tunnels. */
  readonly path?: string;
  readonly rule: string;
  readonly verdict: Verdict;
  readonly reason: string;
  readonly mode?: string;
  readonly status: number;
  readonly address: { readonly ip: string; readonly class: AddressClass | string } | null;
  readonly bytes: { readonly up: number; readonly down: number };
  readonly timings: { readonly decideMs: number; readonly resolveMs: number; readonly totalMs: number };
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
