/**
 * All offset arithmetic of the framed body, in one place (gocryptfs style), so that
 * random access, size reporting and streaming agree and can be tested exhaustively.
 *
 *   regular frame i:  seq u32 | iv[12] | content[F]            | tag[16]   = F + 32 bytes
 *   final frame:      0xFFFFFFFF | seq u32 | iv[12] | len u32 | content[r] | tag[16] = r + 40, 0 <= r <= F
 *
 * Frame index i (0-based) carries sequence number i + 1; the final frame is the last one.
 * Given header length H and frame length F, a ciphertext size determines the frame count
 * and the final frame's content length uniquely (r < F + 32), hence the plaintext size:
 * sizes are derived from ciphertext sizes without reading the body. A size that fits no
 * layout, or a truncation that makes a regular frame look final, is caught either here
 * or by the final frame's marker and tag.
 */
import { FormatErrorCode, formatError } from './errors.js';
import { IV_LENGTH, MAX_FRAMES, TAG_LENGTH } from './suite.js';

export const REGULAR_FRAME_OVERHEAD = 4 + IV_LENGTH + TAG_LENGTH; // 32
export const FINAL_FRAME_OVERHEAD = 4 + 4 + IV_LENGTH + 4 + TAG_LENGTH; // 40
export const FINAL_FRAME_MARKER = 0xffff_ffff;

export interface FrameSpan {
  /** First and last frame index touched (inclusive). */
  readonly first: number;
  readonly last: number;
  /** Ciphertext byte range [ctStart, ctEnd) holding those frames. */
  readonly ctStart: number;
  readonly ctEnd: number;
}

export class FrameLayout {
  /** Number of frames, final included (>= 1). */
  readonly frameCount: number;
  /** Content length of the final frame (0..frameLength). */
  readonly finalContentLength: number;
  readonly plaintextSize: number;
  readonly ciphertextSize: number;
  readonly regularFrameSize: number;

  private constructor(
    readonly headerLength: number,
    readonly frameLength: number,
    frameCount: number,
    finalContentLength: number,
  ) {
    this.frameCount = frameCount;
    this.finalContentLength = finalContentLength;
    this.regularFrameSize = frameLength + REGULAR_FRAME_OVERHEAD;
    this.plaintextSize = (frameCount - 1) * frameLength + finalContentLength;
    this.ciphertextSize =
      headerLength + (frameCount - 1) * this.regularFrameSize + FINAL_FRAME_OVERHEAD + finalContentLength;
    if (!Number.isSafeInteger(this.ciphertextSize)) {
      throw formatError(FormatErrorCode.USAGE, 'object is larger than this platform can address');
    }
  }

  /** Layout of a message of `ciphertextSize` bytes, or a typed error if no layout has that size. */
  static fromCiphertextSize(
    headerLength: number,
    frameLength: number,
    ciphertextSize: number,
    where?: string,
  ): FrameLayout {
    const body = ciphertextSize - headerLength;
    if (body < FINAL_FRAME_OVERHEAD) {
      throw formatError(
        FormatErrorCode.TRUNCATED,
        `object ends ${body < 0 ? 'inside the header' : 'before its final frame'} (${ciphertextSize} bytes)`,
        where,
      );
    }
    const regular = frameLength + REGULAR_FRAME_OVERHEAD;
    const fullFrames = Math.floor((body - FINAL_FRAME_OVERHEAD) / regular);
    const finalLen = body - FINAL_FRAME_OVERHEAD - fullFrames * regular;
    if (finalLen > frameLength) {
      // Between "n full frames + a final frame" layouts: bytes were cut or added.
      throw formatError(
        FormatErrorCode.TRUNCATED,
        `object size ${ciphertextSize} matches no frame layout (frame length ${frameLength}): truncated or padded`,
        where,
      );
    }
    if (fullFrames + 1 > MAX_FRAMES) throw formatError(FormatErrorCode.MALFORMED, 'too many frames', where);
    return new FrameLayout(headerLength, frameLength, fullFrames + 1, finalLen);
  }

  /** Layout a writer produces for `plaintextSize` bytes: full frames, then a final frame of 1..F bytes (0 only when empty). */
  static fromPlaintextSize(headerLength: number, frameLength: number, plaintextSize: number): FrameLayout {
    if (!Number.isSafeInteger(plaintextSize) || plaintextSize < 0) {
      throw formatError(FormatErrorCode.USAGE, `invalid plaintext size ${plaintextSize}`);
    }
    const frameCount = Math.max(1, Math.ceil(plaintextSize / frameLength));
    if (frameCount > MAX_FRAMES)
      throw formatError(FormatErrorCode.USAGE, 'plaintext needs more than 2^32-2 frames');
    return new FrameLayout(
      headerLength,
      frameLength,
      frameCount,
      plaintextSize - (frameCount - 1) * frameLength,
    );
  }

  isFinal(index: number): boolean {
    return index === this.frameCount - 1;
  }

  /** Ciphertext offset where frame `index` starts. */
  frameOffset(index: number): number {
    this.checkIndex(index);
    return this.headerLength + index * this.regularFrameSize;
  }

  /** Ciphertext bytes of frame `index`. */
  frameSize(index: number): number {
    return this.isFinal(index) ? FINAL_FRAME_OVERHEAD + this.finalContentLength : this.regularFrameSize;
  }

  /** Plaintext bytes carried by frame `index`. */
  contentLength(index: number): number {
    this.checkIndex(index);
    return this.isFinal(index) ? this.finalContentLength : this.frameLength;
  }

  /** Plaintext offset where frame `index` begins. */
  plaintextOffset(index: number): number {
    return index * this.frameLength;
  }

  /**
   * Frames covering plaintext [start, end). `end` is clamped to the plaintext size;
   * an empty range yields undefined (nothing to read).
   */
  span(start: number, end: number): FrameSpan | undefined {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw formatError(FormatErrorCode.USAGE, `invalid plaintext range [${start}, ${end})`);
    }
    const stop = Math.min(end, this.plaintextSize);
    if (start >= stop) return undefined;
    const first = Math.floor(start / this.frameLength);
    const last = Math.min(Math.floor((stop - 1) / this.frameLength), this.frameCount - 1);
    return {
      first,
      last,
      ctStart: this.frameOffset(first),
      ctEnd: this.frameOffset(last) + this.frameSize(last),
    };
  }

  /** Every frame, the final one included (even when it carries no bytes). */
  all(): FrameSpan {
    return { first: 0, last: this.frameCount - 1, ctStart: this.headerLength, ctEnd: this.ciphertextSize };
  }

  private checkIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.frameCount) {
      throw formatError(FormatErrorCode.USAGE, `frame index ${index} outside 0..${this.frameCount - 1}`);
    }
  }
}
