/**
 * Encryption context: the authenticated, unencrypted key/value map in the header.
 * Membrane uses it to bind an object to where it belongs (see binding.ts).
 *
 * Wire form (ESDK): u16 count, then per entry u16 keyLen, key, u16 valueLen, value,
 * entries sorted by key bytes; an empty context is serialized as zero bytes
 * (the header's AAD length is then 0 and no count is written).
 */
import { FormatErrorCode, formatError } from './errors.js';

export type EncryptionContext = Readonly<Record<string, string>>;

const compareBytes = (a: Buffer, b: Buffer) => Buffer.compare(a, b);

export function serializeEncryptionContext(ctx: EncryptionContext): Buffer {
  const entries = Object.entries(ctx).map(
    ([k, v]) => [Buffer.from(k, 'utf8'), Buffer.from(v, 'utf8')] as const,
  );
  entries.sort((a, b) => compareBytes(a[0], b[0]));
  return serializeEntries(entries);
}

/**
 * The same wire form with the entries in the order given. Only the Raw AES keyring needs
 * it, to rebuild the AAD the JavaScript SDK's keyring used before it sorted by bytes
 * (see zeroable-keyring.ts); everything else goes through serializeEncryptionContext.
 */
export function serializeEntries(entries: readonly (readonly [Buffer, Buffer])[]): Buffer {
  if (entries.length === 0) return Buffer.alloc(0);
  if (entries.length > 0xffff)
    throw formatError(FormatErrorCode.USAGE, 'encryption context has too many entries');
  const parts: Buffer[] = [u16(entries.length)];
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > 0xffff || v.length > 0xffff) {
      throw formatError(
        FormatErrorCode.USAGE,
        'encryption context key must be 1..65535 bytes and value at most 65535 bytes',
      );
    }
    parts.push(u16(k.length), k, u16(v.length), v);
  }
  const out = Buffer.concat(parts);
  if (out.length > 0xffff)
    throw formatError(FormatErrorCode.USAGE, 'serialized encryption context exceeds 65535 bytes');
  return out;
}

/** Parses the AAD section; rejects duplicates, unsorted entries and leftover bytes (one canonical form only). */
export function parseEncryptionContext(buf: Buffer, where?: string): EncryptionContext {
  if (buf.length === 0) return {};
  const bad = (what: string) => formatError(FormatErrorCode.MALFORMED, `encryption context: ${what}`, where);
  if (buf.length < 2) throw bad('too short');
  const count = buf.readUInt16BE(0);
  if (count === 0) throw bad('count is 0 but the section is not empty');
  let off = 2;
  const out: Record<string, string> = Object.create(null);
  let prev: Buffer | undefined;
  for (let i = 0; i < count; i++) {
    const k = readField(buf, off, () => bad(`entry ${i} key overruns the section`));
    off = k.next;
    const v = readField(buf, off, () => bad(`entry ${i} value overruns the section`));
    off = v.next;
    if (prev && compareBytes(prev, k.bytes) >= 0) throw bad(`entry ${i} is duplicated or out of order`);
    prev = k.bytes;
    const key = k.bytes.toString('utf8');
    out[key] = v.bytes.toString('utf8');
  }
  if (off !== buf.length) throw bad(`${buf.length - off} unexpected bytes after ${count} entries`);
  return Object.freeze({ ...out });
}

function readField(buf: Buffer, off: number, err: () => Error): { bytes: Buffer; next: number } {
  if (off + 2 > buf.length) throw err();
  const len = buf.readUInt16BE(off);
  if (off + 2 + len > buf.length) throw err();
  return { bytes: buf.subarray(off + 2, off + 2 + len), next: off + 2 + len };
}

function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n, 0);
  return b;
}
