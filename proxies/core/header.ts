/**
 * ESDK v2.0 message header: serialization and strict, incremental parsing.
 *
 *   version u8 (0x02) | suite u16 | messageId[32] | aadLen u16 | aad[aadLen]
 *   | edkCount u16 | edk* | contentType u8 | frameLength u32 | suiteData[32]   <- header body
 *   | headerAuthTag[16]                                                        <- v2: IV is implicit zeros
 *   edk = u16 len, providerId | u16 len, providerInfo | u16 len, ciphertext
 *
 * Parsing is pure: it does not authenticate anything (see message-keys.ts).
 */
import {
  type EncryptionContext,
  parseEncryptionContext,
  serializeEncryptionContext,
} from './encryption-context.js';
import { FormatErrorCode, formatError } from './errors.js';
import {
  COMMITMENT_LENGTH,
  CONTENT_TYPE_FRAMED,
  CONTENT_TYPE_NON_FRAMED,
  KNOWN_SUITES,
  MAX_ENCRYPTED_DATA_KEYS,
  MAX_FRAME_LENGTH,
  MAX_HEADER_LENGTH,
  MESSAGE_ID_LENGTH,
  MESSAGE_VERSION,
  SUITE_ID,
  TAG_LENGTH,
} from './suite.js';

export interface EncryptedDataKeyBytes {
  readonly providerId: string;
  /** Raw provider info (binary for the Raw AES keyring). */
  readonly providerInfo: Buffer;
  readonly ciphertext: Buffer;
}

export interface Header {
  readonly messageId: Buffer;
  readonly encryptionContext: EncryptionContext;
  readonly encryptedDataKeys: readonly EncryptedDataKeyBytes[];
  readonly frameLength: number;
  /** Key commitment (algorithm suite data). */
  readonly commitment: Buffer;
  /** Exact header body bytes: the AAD of the header auth tag. */
  readonly body: Buffer;
  readonly authTag: Buffer;
  /** Total header length in bytes, auth tag included: the first frame starts here. */
  readonly length: number;
}

export type ParseResult = { header: Header } | { needBytes: number };

/** Serializes the header body (everything the header auth tag covers). */
export function serializeHeaderBody(h: {
  messageId: Buffer;
  encryptionContext: EncryptionContext;
  encryptedDataKeys: readonly EncryptedDataKeyBytes[];
  frameLength: number;
  commitment: Buffer;
}): Buffer {
  const aad = serializeEncryptionContext(h.encryptionContext);
  const parts: Buffer[] = [
    Buffer.from([MESSAGE_VERSION, SUITE_ID >> 8, SUITE_ID & 0xff]),
    h.messageId,
    u16(aad.length),
    aad,
  ];
  parts.push(u16(h.encryptedDataKeys.length));
  for (const edk of h.encryptedDataKeys) {
    const id = Buffer.from(edk.providerId, 'utf8');
    parts.push(
      u16(id.length),
      id,
      u16(edk.providerInfo.length),
      edk.providerInfo,
      u16(edk.ciphertext.length),
      edk.ciphertext,
    );
  }
  const tail = Buffer.alloc(1 + 4);
  tail.writeUInt8(CONTENT_TYPE_FRAMED, 0);
  tail.writeUInt32BE(h.frameLength, 1);
  parts.push(tail, h.commitment);
  return Buffer.concat(parts);
}

/**
 * Parses a header from the start of `buf`. Returns `needBytes` (a lower bound on the
 * bytes required) when `buf` is a valid prefix that is too short — streaming readers
 * feed more and retry — and throws a typed error as soon as anything is invalid.
 */
export function parseHeader(buf: Buffer, where?: string): ParseResult {
  const r = new Reader(buf, where);
  const version = r.u8();
  if (version === undefined) return { needBytes: 1 };
  if (version === 0x01) {
    throw formatError(
      FormatErrorCode.UNSUPPORTED,
      'message format version 1 is not supported (only 2.0, committing)',
      where,
    );
  }
  if (version !== MESSAGE_VERSION) {
    throw formatError(
      FormatErrorCode.MALFORMED,
      `not an encrypted object: unknown format version 0x${version.toString(16)}`,
      where,
    );
  }
  const suite = r.u16();
  if (suite === undefined) return r.need();
  if (suite !== SUITE_ID) {
    const name = KNOWN_SUITES[suite];
    throw formatError(
      FormatErrorCode.UNSUPPORTED,
      name
        ? `algorithm suite 0x${hex4(suite)} ${name} is not accepted; only 0x0478 (committing, unsigned) is`
        : `unknown algorithm suite 0x${hex4(suite)}`,
      where,
    );
  }
  const messageId = r.bytes(MESSAGE_ID_LENGTH);
  if (!messageId) return r.need();
  const aadLen = r.u16();
  if (aadLen === undefined) return r.need();
  const aad = r.bytes(aadLen);
  if (!aad) return r.need();
  const encryptionContext = parseEncryptionContext(aad, where);
  const edkCount = r.u16();
  if (edkCount === undefined) return r.need();
  if (edkCount === 0)
    throw formatError(FormatErrorCode.MALFORMED, 'header has no encrypted data keys', where);
  if (edkCount > MAX_ENCRYPTED_DATA_KEYS) {
    throw formatError(
      FormatErrorCode.MALFORMED,
      `header has ${edkCount} encrypted data keys (limit ${MAX_ENCRYPTED_DATA_KEYS})`,
      where,
    );
  }
  const encryptedDataKeys: EncryptedDataKeyBytes[] = [];
  for (let i = 0; i < edkCount; i++) {
    const id = r.field();
    if (!id) return r.need();
    const info = r.field();
    if (!info) return r.need();
    const ct = r.field();
    if (!ct) return r.need();
    encryptedDataKeys.push({
      providerId: id.toString('utf8'),
      providerInfo: Buffer.from(info),
      ciphertext: Buffer.from(ct),
    });
  }
  const contentType = r.u8();
  if (contentType === undefined) return r.need();
  if (contentType === CONTENT_TYPE_NON_FRAMED) {
    throw formatError(
      FormatErrorCode.UNSUPPORTED,
      'non-framed content is not supported (random access needs frames)',
      where,
    );
  }
  if (contentType !== CONTENT_TYPE_FRAMED) {
    throw formatError(FormatErrorCode.MALFORMED, `unknown content type ${contentType}`, where);
  }
  const frameLength = r.u32();
  if (frameLength === undefined) return r.need();
  checkFrameLength(frameLength, where);
  const commitment = r.bytes(COMMITMENT_LENGTH);
  if (!commitment) return r.need();
  const bodyEnd = r.offset;
  const authTag = r.bytes(TAG_LENGTH);
  if (!authTag) return r.need();
  return {
    header: {
      messageId: Buffer.from(messageId),
      encryptionContext,
      encryptedDataKeys,
      frameLength,
      commitment: Buffer.from(commitment),
      body: Buffer.from(buf.subarray(0, bodyEnd)),
      authTag: Buffer.from(authTag),
      length: r.offset,
    },
  };
}

export function checkFrameLength(frameLength: number, where?: string): void {
  if (!Number.isInteger(frameLength) || frameLength <= 0 || frameLength > MAX_FRAME_LENGTH) {
    throw formatError(
      FormatErrorCode.FRAME_LENGTH,
      `frame length ${frameLength} is out of range (1..${MAX_FRAME_LENGTH} bytes)`,
      where,
    );
  }
}

/** Bounds-checked cursor; every read returns undefined when the buffer is too short. */
class Reader {
  offset = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly where?: string,
  ) {}
  private take(n: number): Buffer | undefined {
    if (this.offset + n > MAX_HEADER_LENGTH) {
      throw formatError(
        FormatErrorCode.MALFORMED,
        `header is larger than ${MAX_HEADER_LENGTH} bytes`,
        this.where,
      );
    }
    if (this.offset + n > this.buf.length) {
      this.missing = this.offset + n;
      return undefined;
    }
    const b = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }
  missing = 0;
  need(): { needBytes: number } {
    return { needBytes: this.missing };
  }
  u8(): number | undefined {
    return this.take(1)?.readUInt8(0);
  }
  u16(): number | undefined {
    return this.take(2)?.readUInt16BE(0);
  }
  u32(): number | undefined {
    return this.take(4)?.readUInt32BE(0);
  }
  bytes(n: number): Buffer | undefined {
    return this.take(n);
  }
  field(): Buffer | undefined {
    const start = this.offset;
    const len = this.u16();
    if (len === undefined) return undefined;
    const b = this.take(len);
    if (!b) this.offset = start;
    return b;
  }
}

function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n, 0);
  return b;
}
const hex4 = (n: number) => n.toString(16).padStart(4, '0');
