/**
 * Seals and opens single frames of one message. Owns everything per-frame that
 * must never be chosen by a caller: the IV (= the frame's sequence number, left-
 * padded with zeros, as the ESDK defines it) and the frame AAD
 * (messageId | "AWSKMSEncryptionClient [Final ]Frame" | seq u32 | contentLength u64).
 * Module-internal: callers name frames by index, never by nonce.
 *
 * Scratch IV/AAD buffers are reused so the hot path allocates nothing.
 */
import type { Aead } from './aead.js';
import { FormatErrorCode, formatError } from './errors.js';
import { FINAL_FRAME_MARKER, FINAL_FRAME_OVERHEAD, REGULAR_FRAME_OVERHEAD } from './frame-layout.js';
import { IV_LENGTH, MESSAGE_ID_LENGTH, TAG_LENGTH } from './suite.js';

const FRAME_LABEL = Buffer.from('AWSKMSEncryptionClient Frame', 'utf8');
const FINAL_LABEL = Buffer.from('AWSKMSEncryptionClient Final Frame', 'utf8');

export class FrameCipher {
  private readonly iv = Buffer.alloc(IV_LENGTH);
  private readonly aadRegular: Buffer;
  private readonly aadFinal: Buffer;

  constructor(
    private readonly aead: Aead,
    messageId: Buffer,
    readonly frameLength: number,
  ) {
    if (messageId.length !== MESSAGE_ID_LENGTH) throw new Error('message id must be 32 bytes');
    this.aadRegular = Buffer.concat([messageId, FRAME_LABEL, Buffer.alloc(12)]);
    this.aadFinal = Buffer.concat([messageId, FINAL_LABEL, Buffer.alloc(12)]);
  }

  /** Bytes frame `index` occupies when it carries `contentLength` bytes. */
  static frameSize(final: boolean, contentLength: number): number {
    return (final ? FINAL_FRAME_OVERHEAD : REGULAR_FRAME_OVERHEAD) + contentLength;
  }

  private prepare(index: number, final: boolean, contentLength: number): Buffer {
    const seq = index + 1;
    this.iv.writeUInt32BE(seq, IV_LENGTH - 4);
    const aad = final ? this.aadFinal : this.aadRegular;
    const at = aad.length - 12;
    aad.writeUInt32BE(seq, at);
    aad.writeUInt32BE(Math.floor(contentLength / 0x1_0000_0000), at + 4);
    aad.writeUInt32BE(contentLength >>> 0, at + 8);
    return aad;
  }

  /** Writes frame `index` sealing `plaintext` into `out`; returns bytes written. */
  seal(index: number, final: boolean, plaintext: Uint8Array, out: Buffer): number {
    if (!final && plaintext.length !== this.frameLength)
      throw new Error('regular frames carry exactly frameLength bytes');
    if (plaintext.length > this.frameLength) throw new Error('frame content exceeds frameLength');
    const aad = this.prepare(index, final, plaintext.length);
    let off = 0;
    if (final) off = out.writeUInt32BE(FINAL_FRAME_MARKER, 0);
    off = out.writeUInt32BE(index + 1, off);
    this.iv.copy(out, off);
    off += IV_LENGTH;
    if (final) off = out.writeUInt32BE(plaintext.length, off);
    const ct = out.subarray(off, off + plaintext.length);
    const tag = out.subarray(off + plaintext.length, off + plaintext.length + TAG_LENGTH);
    this.aead.seal(this.iv, aad, plaintext, tag, ct);
    return off + plaintext.length + TAG_LENGTH;
  }

  /**
   * Opens frame `index` from exactly its bytes into `out` (length = content length).
   * Checks the stored sequence number, IV and (final) length against what the
   * position demands before the tag, so reordering and splicing are named as such.
   * On any failure `out` holds zeros.
   */
  open(index: number, final: boolean, frame: Buffer, out: Uint8Array, where?: string): void {
    const seq = index + 1;
    const fail = (what: string) => {
      out.fill(0);
      return formatError(FormatErrorCode.FRAME_AUTH, `frame ${index} ${what}`, where);
    };
    let off = 0;
    if (final) {
      if (frame.length < FINAL_FRAME_OVERHEAD) throw fail('is shorter than a final frame');
      if (frame.readUInt32BE(0) !== FINAL_FRAME_MARKER) {
        throw formatError(
          FormatErrorCode.TRUNCATED,
          `object ends without a final frame (frame ${index} is not final)`,
          where,
        );
      }
      off = 4;
    } else if (frame.length >= 4 && frame.readUInt32BE(0) === FINAL_FRAME_MARKER) {
      throw formatError(
        FormatErrorCode.TRAILING_DATA,
        `data follows the final frame (frame ${index} is final)`,
        where,
      );
    }
    const contentLength = final ? frame.readUInt32BE(off + 4 + IV_LENGTH) : this.frameLength;
    const expected = FrameCipher.frameSize(final, contentLength);
    if (final && contentLength <= this.frameLength && frame.length !== expected) {
      // The stored length is authenticated (AAD) and says where the message ends.
      throw frame.length > expected
        ? formatError(
            FormatErrorCode.TRAILING_DATA,
            `${frame.length - expected} bytes follow the final frame`,
            where,
          )
        : formatError(
            FormatErrorCode.TRUNCATED,
            `final frame is cut short by ${expected - frame.length} bytes`,
            where,
          );
    }
    if (frame.length !== expected || contentLength !== out.length) {
      throw fail(
        `has length ${frame.length}, its position requires ${FrameCipher.frameSize(final, out.length)}`,
      );
    }
    const storedSeq = frame.readUInt32BE(off);
    if (storedSeq !== seq)
      throw fail(`carries sequence number ${storedSeq}, expected ${seq} (reordered or spliced)`);
    off += 4;
    const aad = this.prepare(index, final, contentLength);
    if (!frame.subarray(off, off + IV_LENGTH).equals(this.iv))
      throw fail('IV does not match its sequence number');
    off += IV_LENGTH + (final ? 4 : 0);
    const ct = frame.subarray(off, off + contentLength);
    const tag = frame.subarray(off + contentLength, off + contentLength + TAG_LENGTH);
    if (!this.aead.open(this.iv, aad, ct, tag, out)) {
      throw formatError(FormatErrorCode.FRAME_AUTH, `frame ${index} failed authentication`, where);
    }
  }

  destroy(): void {
    this.aead.destroy();
  }
}
