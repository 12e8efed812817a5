/**
 * Random-access reading of one sealed object. The header is parsed and verified
 * once (binding, EDK unwrap, commitment, header tag); after that any frame is
 * decrypted by index, with offsets computed by FrameLayout from the ciphertext
 * size alone. Plaintext is written into caller-owned buffers and only after the
 * frame's tag verified; on failure the destination range is zeroed.
 */
import { checkBinding, type ObjectBinding } from './binding.js';
import type { EncryptionContext } from './encryption-context.js';
import { FormatErrorCode, formatError } from './errors.js';
import { FrameCipher } from './frame-cipher.js';
import { FrameLayout, type FrameSpan } from './frame-layout.js';
import { type Header, parseHeader } from './header.js';
import type { Keyring } from './keyrings.js';
import { type MessageSecrets, recoverMessage } from './message-keys.js';

export interface OpenOptions {
  keyring: Keyring;
  /** Where the caller expects this object to belong; a different binding is an error. */
  expect: ObjectBinding;
  /** Name of the object for error messages (defaults to the expected path). */
  where?: string;
}

/** Fetches ciphertext bytes [start, end) of the object (shorter only at end of object). */
export type RangeFetcher = (start: number, end: number) => Promise<Buffer>;

const secretsOf = new WeakMap<ObjectReader, MessageSecrets>();
/** Module-internal: the parallel decryptor needs the frame key for its workers. */
export function internalSecrets(r: ObjectReader): MessageSecrets {
  const s = secretsOf.get(r);
  if (!s) throw formatError(FormatErrorCode.USAGE, 'object reader is closed');
  return s;
}

export class ObjectReader {
  readonly headerLength: number;
  readonly frameLength: number;
  readonly encryptionContext: EncryptionContext;
  /** Message ID, hex: identifies this exact ciphertext (manifests pin it). */
  readonly messageId: string;
  readonly where: string;
  private readonly frames: FrameCipher;
  readonly messageIdBytes: Buffer;

  private constructor(header: Header, secrets: MessageSecrets, where: string) {
    this.headerLength = header.length;
    this.frameLength = header.frameLength;
    this.encryptionContext = header.encryptionContext;
    this.messageIdBytes = header.messageId;
    this.messageId = header.messageId.toString('hex');
    this.where = where;
    this.frames = new FrameCipher(secrets.aead, header.messageId, header.frameLength);
    secretsOf.set(this, secrets);
  }

  /** Opens from a buffer that starts with the complete header. */
  static async fromHeaderBytes(bytes: Buffer, opts: OpenOptions): Promise<ObjectReader> {
    const where = opts.where ?? opts.expect.path;
    const parsed = parseHeader(bytes, where);
    if ('needBytes' in parsed) {
      throw formatError(
        FormatErrorCode.TRUNCATED,
        `object ends inside its header (${bytes.length} bytes)`,
        where,
      );
    }
    checkBinding(parsed.header.encryptionContext, opts.expect, where);
    const secrets = await recoverMessage(parsed.header, opts.keyring, where);
    return new ObjectReader(parsed.header, secrets, where);
  }

  /** Opens by fetching just the header through `fetch` (one read in the common case). */
  static async open(fetch: RangeFetcher, opts: OpenOptions): Promise<ObjectReader> {
    const where = opts.where ?? opts.expect.path;
    let want = 4096;
    for (;;) {
      const bytes = await fetch(0, want);
      const parsed = parseHeader(bytes, where);
      if ('header' in parsed) return ObjectReader.fromHeaderBytes(bytes, opts);
      if (bytes.length < want) {
        throw formatError(
          FormatErrorCode.TRUNCATED,
          `object ends inside its header (${bytes.length} bytes)`,
          where,
        );
      }
      want = Math.max(parsed.needBytes, want * 2);
    }
  }

  /** Layout for an object of `ciphertextSize` bytes (plaintext size, frame offsets). */
  layout(ciphertextSize: number): FrameLayout {
    return FrameLayout.fromCiphertextSize(this.headerLength, this.frameLength, ciphertextSize, this.where);
  }

  /**
   * Decrypts frames span.first..span.last from `ciphertext` (exactly bytes
   * [span.ctStart, span.ctEnd)) into `out`, which receives their whole plaintext
   * (length = sum of their content lengths). Throws on the first failing frame;
   * `out` is then zeroed entirely, so nothing of the range is released.
   */
  decryptSpan(layout: FrameLayout, span: FrameSpan, ciphertext: Buffer, out: Uint8Array): void {
    this.checkLayout(layout);
    if (ciphertext.length !== span.ctEnd - span.ctStart) {
      throw formatError(
        FormatErrorCode.TRUNCATED,
        `expected ${span.ctEnd - span.ctStart} ciphertext bytes, got ${ciphertext.length}`,
        this.where,
      );
    }
    let ct = 0;
    let pt = 0;
    try {
      for (let i = span.first; i <= span.last; i++) {
        const size = layout.frameSize(i);
        const len = layout.contentLength(i);
        this.frames.open(
          i,
          layout.isFinal(i),
          ciphertext.subarray(ct, ct + size),
          out.subarray(pt, pt + len),
          this.where,
        );
        ct += size;
        pt += len;
      }
    } catch (e) {
      out.fill(0);
      throw e;
    }
  }

  /** Reads plaintext [start, end) (clamped to the object's size) through `fetch`. */
  async read(layout: FrameLayout, start: number, end: number, fetch: RangeFetcher): Promise<Buffer> {
    const span = layout.span(start, end);
    if (!span) return Buffer.alloc(0);
    const ct = await fetch(span.ctStart, span.ctEnd);
    const plain = Buffer.allocUnsafeSlow(plainLength(layout, span)); // unpooled, see decrypt-stream.ts
    this.decryptSpan(layout, span, ct, plain);
    const from = start - layout.plaintextOffset(span.first);
    return plain.subarray(from, from + Math.min(end, layout.plaintextSize) - start);
  }

  /** Zeroes and releases the frame key. The reader is unusable afterwards. */
  close(): void {
    const s = secretsOf.get(this);
    if (!s) return;
    secretsOf.delete(this);
    this.frames.destroy();
    s.key.fill(0);
  }

  private checkLayout(layout: FrameLayout): void {
    if (layout.headerLength !== this.headerLength || layout.frameLength !== this.frameLength) {
      throw formatError(FormatErrorCode.USAGE, 'layout belongs to another object', this.where);
    }
    if (!secretsOf.has(this)) throw formatError(FormatErrorCode.USAGE, 'object reader is closed', this.where);
  }

  /** Module-internal: opens one frame (streaming decryptor). */
  openFrame(index: number, final: boolean, frame: Buffer, out: Uint8Array): void {
    if (!secretsOf.has(this)) throw formatError(FormatErrorCode.USAGE, 'object reader is closed', this.where);
    this.frames.open(index, final, frame, out, this.where);
  }
}

/** Plaintext bytes carried by a span's frames. */
export function plainLength(layout: FrameLayout, span: FrameSpan): number {
  return (span.last - span.first) * layout.frameLength + layout.contentLength(span.last);
}
