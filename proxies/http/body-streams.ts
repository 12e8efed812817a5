/**
 * Streaming stages for request bodies: a byte limit and the open-mode inspector.
 * Nothing buffers a whole body. The inspector stage forwards only bytes the scanner has
 * released (no open candidate starts before them; a fixed HOLD_BACK window for a scanner
 * that does not say), so a card number split across chunks is found before any of its
 * digits have left.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { InspectSettings } from '../../policy/egress/types.js';
import { HttpErrorCode } from './errors.js';
import type { Finding, Inspector } from './ports.js';
import { Refusal } from './refusals.js';

export const HOLD_BACK = 256;

/** Counts bytes through; errors with 413 past `max` (the excess is never passed on). */
export function byteLimit(max: number, what: string, onBytes: (n: number) => void): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > max) return cb(new Refusal(HttpErrorCode.BODY_TOO_LARGE, `${what} exceeds ${max} bytes`));
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
}

function describe(f: Finding): string {
  return `request body contains ${f.kind === 'schema' ? 'a document failing the schema' : `a ${f.kind} value`} (${f.rule ?? f.kind} at byte ${f.offset})`;
}

/**
 * Runs the body through the inspector. On a finding with action `block` the stream
 * errors (the upstream request is aborted, its connection destroyed); with `report`
 * the finding is handed to `onReport` once and the body flows on.
 */
export function inspecting(
  inspector: Inspector,
  settings: InspectSettings,
  onReport: (f: Finding, sentence: string) => void,
): Transform {
  let held: Buffer = Buffer.alloc(0);
  let heldFrom = 0; // raw offset of held[0]
  let seen = 0;
  let reported = false;
  const judge = (f: Finding | undefined): Refusal | undefined => {
    if (!f) return undefined;
    if (settings.action === 'block') return new Refusal(HttpErrorCode.INSPECTION_BLOCKED, describe(f));
    if (!reported) {
      reported = true;
      onReport(f, describe(f));
    }
    return undefined;
  };
  const verdictOf = (step: () => Finding | undefined): Refusal | undefined => {
    try {
      return judge(step());
    } catch (e) {
      return new Refusal(HttpErrorCode.INSPECTION_BLOCKED, `inspection failed: ${(e as Error).message}`);
    }
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      const verdict = verdictOf(() => inspector.push(chunk));
      if (verdict) return cb(verdict);
      seen += chunk.length;
      held = held.length ? Buffer.concat([held, chunk]) : chunk;
      // The scanner says how far no candidate is open; without that, keep a fixed window.
      const upTo = Math.min(seen, inspector.releasable ?? seen - HOLD_BACK);
      const n = upTo - heldFrom;
      if (n <= 0) return cb();
      const out = held.subarray(0, n);
      held = Buffer.from(held.subarray(n));
      heldFrom = upTo;
      cb(null, out);
    },
    flush(cb: TransformCallback) {
      const verdict = verdictOf(() => inspector.end());
      if (verdict) return cb(verdict);
      cb(null, held.length ? held : undefined);
    },
  });
}
