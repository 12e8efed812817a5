/**
 * Streaming stages for request bodies: a byte limit and the open-mode inspector.
 * Nothing buffers a whole body. The inspector stage holds back the last HOLD_BACK bytes
 * until the scanner has seen what follows them, so a card number split across chunks
 * is found before any of its digits have left (the scanner keeps its own bounded
 * carry-over for matching; this hold-back is about what has been *sent*).
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { InspectSettings } from '../../policy/egress/types.js';
import type { Finding, Inspector } from './ports.js';
import { Refusal } from './refusals.js';

export const HOLD_BACK = 256;

/** Counts bytes through; errors with 413 past `max` (the excess is never passed on). */
export function byteLimit(max: number, what: string, onBytes: (n: number) => void): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > max) return cb(new Refusal('HTTP_BODY_TOO_LARGE', `${what} exceeds ${max} bytes`));
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
  let reported = false;
  const judge = (f: Finding | undefined): Refusal | undefined => {
    if (!f) return undefined;
    if (settings.action === 'block') return new Refusal('HTTP_INSPECTION_BLOCKED', describe(f));
    if (!reported) {
      reported = true;
      onReport(f, describe(f));
    }
    return undefined;
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      let verdict: Refusal | undefined;
      try {
        verdict = judge(inspector.push(chunk));
      } catch (e) {
        verdict = new Refusal('HTTP_INSPECTION_BLOCKED', `inspection failed: ${(e as Error).message}`);
      }
      if (verdict) return cb(verdict);
      held = held.length ? Buffer.concat([held, chunk]) : chunk;
      if (held.length <= HOLD_BACK) return cb();
      const out = held.subarray(0, held.length - HOLD_BACK);
      held = Buffer.from(held.subarray(held.length - HOLD_BACK));
      cb(null, out);
    },
    flush(cb: TransformCallback) {
      let verdict: Refusal | undefined;
      try {
        verdict = judge(inspector.end());
      } catch (e) {
        verdict = new Refusal('HTTP_INSPECTION_BLOCKED', `inspection failed: ${(e as Error).message}`);
      }
      if (verdict) return cb(verdict);
      cb(null, held.length ? held : undefined);
    },
  });
}
