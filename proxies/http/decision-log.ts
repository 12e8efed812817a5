/**
 * Decisions as evidence: one canonical JSON line (RFC 8785, keys sorted) per request
 * or tunnel, appended to a 0600 file. Lines carry what was decided and why, the
 * address class, byte counts and timings, and the digest of the policy that decided —
 * never bodies, query strings or header values.
 */
import { constants, createWriteStream, openSync, type WriteStream } from 'node:fs';
import { decisionLine, type EgressDecisionRecord } from '../../policy/egress/index.js';
import { MembraneError } from '../../policy/errors.js';
import { HttpErrorCode } from './errors.js';

/** The record's shape is policy/egress's, so every proxy and every reader agree on one format. */
export type DecisionRecord = EgressDecisionRecord;

export interface DecisionLog {
  write(r: DecisionRecord): void;
  /** Set once a write failed: the proxy then refuses every request (no decision without evidence). */
  readonly failed?: Error;
  close(): Promise<void>;
}

/** Opens (creates 0600) the log now, so a log that cannot be written is a failed start, not a first request. */
export function openDecisionLog(file: string): DecisionLog {
  let fd: number;
  try {
    fd = openSync(
      file,
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
      0o600,
    );
  } catch (e) {
    throw new MembraneError(
      HttpErrorCode.PROXY_UNAVAILABLE,
      `cannot open the decision log: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      { where: file, cause: e },
    );
  }
  const out: WriteStream = createWriteStream('', { fd });
  // A failing log must not crash the proxy: the error is kept, every later request is refused
  // (server.ts admit), and it surfaces at close.
  let failure: Error | undefined;
  out.on('error', (e) => {
    failure ??= e;
  });
  let closed = false;
  return {
    get failed() {
      return failure;
    },
    write(r) {
      if (closed || failure) return;
      out.write(`${decisionLine(r)}\n`);
    },
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise((resolve, reject) => out.end(() => (failure ? reject(failure) : resolve())));
    },
  };
}

export const nullDecisionLog: DecisionLog = { write() {}, close: async () => {} };
