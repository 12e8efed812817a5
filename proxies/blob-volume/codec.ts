/**
 * How the frames of one stored object map to ciphertext and back to plaintext.
 * The read path (source-reader.ts) works only in frame indices and this
 * interface, so caching, coalescing and read-ahead are the same code with or
 * without crypto:
 *   SealedCodec — the object format: FrameLayout for offsets, ObjectReader to decrypt.
 *   PlainCodec  — stored bytes are the plaintext, cut into fixed "frames"; used by
 *                 open-mode volumes and the no-crypto benchmark ceiling.
 */
import { MembraneError } from '../../policy/errors.js';
import { FormatErrorCode, type FrameLayout, type FrameSpan, type ObjectReader } from '../core/index.js';

export interface FrameCodec {
  readonly sealed: boolean;
  /** Plaintext bytes. */
  readonly size: number;
  readonly frameLength: number;
  /** Frames that carry plaintext (0 for an empty object). */
  readonly frameCount: number;
  /** Stored byte range [start, end) holding frames first..last. */
  ctRange(first: number, last: number): { start: number; end: number };
  /** Plaintext bytes carried by frame i. */
  contentLength(i: number): number;
  /**
   * Verifies and decodes frames first..last from `ct` (exactly their stored bytes)
   * into `out` (exactly their plaintext length). All or nothing: on failure `out`
   * is zeroed and a FORMAT_* error is thrown.
   */
  decode(first: number, last: number, ct: Buffer, out: Uint8Array): void;
  close(): void;
}

/** Plaintext length of frames first..last. */
export function spanLength(c: FrameCodec, first: number, last: number): number {
  return (last - first) * c.frameLength + c.contentLength(last);
}

export class SealedCodec implements FrameCodec {
  readonly sealed = true;
  readonly size: number;
  readonly frameLength: number;
  readonly frameCount: number;

  constructor(
    private readonly reader: ObjectReader,
    private readonly layout: FrameLayout,
  ) {
    this.size = layout.plaintextSize;
    this.frameLength = layout.frameLength;
    // A trailing empty final frame carries no plaintext; reads never need it.
    this.frameCount = Math.ceil(layout.plaintextSize / layout.frameLength);
  }

  ctRange(first: number, last: number): { start: number; end: number } {
    return {
      start: this.layout.frameOffset(first),
      end: this.layout.frameOffset(last) + this.layout.frameSize(last),
    };
  }

  contentLength(i: number): number {
    return this.layout.contentLength(i);
  }

  decode(first: number, last: number, ct: Buffer, out: Uint8Array): void {
    const { start, end } = this.ctRange(first, last);
    const span: FrameSpan = { first, last, ctStart: start, ctEnd: end };
    this.reader.decryptSpan(this.layout, span, ct, out);
  }

  close(): void {
    this.reader.close();
  }
}

export class PlainCodec implements FrameCodec {
  readonly sealed = false;
  readonly frameCount: number;

  constructor(
    readonly size: number,
    readonly frameLength: number,
  ) {
    this.frameCount = Math.ceil(size / frameLength);
  }

  ctRange(first: number, last: number): { start: number; end: number } {
    return { start: first * this.frameLength, end: Math.min(this.size, (last + 1) * this.frameLength) };
  }

  contentLength(i: number): number {
    return Math.max(0, Math.min(this.frameLength, this.size - i * this.frameLength));
  }

  decode(first: number, _last: number, ct: Buffer, out: Uint8Array): void {
    if (ct.length !== out.length) {
      out.fill(0);
      throw new MembraneError(FormatErrorCode.TRUNCATED, `object ends early near frame ${first}`);
    }
    out.set(ct, 0);
  }

  close(): void {}
}
