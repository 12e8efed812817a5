/**
 * Streaming encryption into the object format. Memory is bounded by one frame of
 * plaintext plus the ciphertext of one input chunk. The last full frame is held
 * back until the input ends, so the final frame carries 1..frameLength bytes and
 * ciphertext size follows from plaintext size (FrameLayout.fromPlaintextSize).
 */
import { Duplex } from 'node:stream';
import { contextFor, type ObjectBinding } from './binding.js';
import { FormatErrorCode, formatError } from './errors.js';
import { FrameCipher } from './frame-cipher.js';
import { checkFrameLength } from './header.js';
import type { Keyring } from './keyrings.js';
import { startMessage } from './message-keys.js';
import { DEFAULT_FRAME_LENGTH, MAX_FRAMES } from './suite.js';

export interface SealOptions {
  keyring: Keyring;
  binding: ObjectBinding;
  frameLength?: number;
  /** Extra (non-secret!) encryption context entries, e.g. a content type. */
  context?: Record<string, string>;
}

export interface SealInfo {
  /** Hex message ID of the object produced. */
  messageId: string;
  plaintextBytes: number;
}

/**
 * Encrypts `source` chunk by chunk. `info`, when given, is filled in as the
 * generator runs (messageId at the start, plaintextBytes at the end).
 */
export async function* encryptIterable(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: SealOptions,
  info?: SealInfo,
): AsyncGenerator<Buffer> {
  const frameLength = opts.frameLength ?? DEFAULT_FRAME_LENGTH;
  checkFrameLength(frameLength);
  const ctx = contextFor(opts.binding, opts.context);
  const { header, messageId, secrets } = await startMessage(opts.keyring, ctx, frameLength);
  const frames = new FrameCipher(secrets.aead, messageId, frameLength);
  if (info) info.messageId = messageId.toString('hex');
  const regular = FrameCipher.frameSize(false, frameLength);
  let pending = Buffer.allocUnsafe(frameLength); // plaintext of the frame being filled
  let fill = 0;
  let index = 0;
  let total = 0;
  try {
    yield header;
    for await (const chunk of source) {
      total += chunk.length;
      let off = 0;
      // Frames completed by this chunk: all but a full frame that could still be the last.
      const completing = Math.floor((fill + chunk.length - 1) / frameLength);
      if (completing <= 0) {
        pending.set(chunk, fill);
        fill += chunk.length;
        continue;
      }
      if (index + completing > MAX_FRAMES)
        throw formatError(FormatErrorCode.USAGE, 'object exceeds 2^32-2 frames');
      const out = Buffer.allocUnsafe(completing * regular);
      for (let k = 0; k < completing; k++) {
        const take = frameLength - fill;
        if (fill === 0 && take <= chunk.length - off) {
          // Whole frame inside the chunk: seal straight from it, no copy.
          frames.seal(index++, false, chunk.subarray(off, off + frameLength), out.subarray(k * regular));
        } else {
          pending.set(chunk.subarray(off, off + take), fill);
          frames.seal(index++, false, pending, out.subarray(k * regular));
        }
        off += take;
        fill = 0;
      }
      pending.set(chunk.subarray(off), 0);
      fill = chunk.length - off;
      yield out;
    }
    const last = Buffer.allocUnsafe(FrameCipher.frameSize(true, fill));
    frames.seal(index, true, pending.subarray(0, fill), last);
    if (info) info.plaintextBytes = total;
    yield last;
  } finally {
    pending.fill(0);
    pending = Buffer.alloc(0);
    frames.destroy();
    secrets.key.fill(0);
  }
}

/** Node stream form (backpressure via Duplex.from over the async generator). */
export function createEncryptStream(opts: SealOptions, info?: SealInfo): Duplex {
  return Duplex.from(async function* (source: AsyncIterable<Uint8Array>) {
    yield* encryptIterable(source, opts, info);
  });
}

/** Encrypts a whole buffer. */
export async function sealBuffer(plaintext: Uint8Array, opts: SealOptions): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of encryptIterable([plaintext], opts)) parts.push(p);
  return Buffer.concat(parts);
}
