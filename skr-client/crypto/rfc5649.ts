/**
 * AES Key Wrap with Padding (RFC 5649) for 128/192/256-bit KEKs.
 *
 * Written on the AES block primitive (AES-ECB on one block at a time) rather
 * than OpenSSL's id-aes*-wrap-pad so that every integrity failure (AIV, MLI,
 * padding) gives the same typed error and the algorithm is visible here; the
 * unit tests cross-check it against OpenSSL and the RFC's section 6 vectors.
 * Key Vault / Managed HSM use it inside CKM_RSA_AES_KEY_WRAP for `key_hsm`.
 */
import { createCipheriv, createDecipheriv, timingSafeEqual } from 'node:crypto';
import { MembraneError } from '../../policy/errors.js';

/** Alternative initial value, RFC 5649 section 3. */
const AIV = Buffer.from([0xa6, 0x59, 0x59, 0xa6]);

function ecbName(kek: Buffer): string {
  if (kek.length !== 16 && kek.length !== 24 && kek.length !== 32)
    throw new MembraneError(
      'KEYWRAP_INVALID',
      `AES key wrap needs a 128, 192 or 256-bit KEK, got ${kek.length * 8} bits`,
    );
  return `aes-${kek.length * 8}-ecb`;
}

function aesBlock(kek: Buffer, block: Buffer, decrypt: boolean): Buffer {
  const name = ecbName(kek);
  const c = decrypt ? createDecipheriv(name, kek, null) : createCipheriv(name, kek, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(block), c.final()]);
}

/** Wraps `key` (1 .. 2^32-1 octets) under `kek`. Output is 8 bytes longer than the padded key. */
export function aesKeyWrapPad(kek: Buffer, key: Buffer): Buffer {
  ecbName(kek);
  if (key.length === 0 || key.length > 0xffffffff)
    throw new MembraneError('KEYWRAP_INVALID', 'AES key wrap needs 1 to 2^32-1 octets of key data');
  const mli = Buffer.alloc(4);
  mli.writeUInt32BE(key.length);
  const a0 = Buffer.concat([AIV, mli]);
  const padded = Buffer.alloc(Math.ceil(key.length / 8) * 8);
  key.copy(padded);
  const n = padded.length / 8;
  if (n === 1) {
    // Exactly one 64-bit block: a single AES-ECB encryption of AIV|MLI|P (RFC 5649 section 4.1).
    return aesBlock(kek, Buffer.concat([a0, padded]), false);
  }
  // Otherwise the RFC 3394 wrapping process with the AIV as the initial value.
  let a: Buffer = a0;
  const r: Buffer[] = [];
  for (let i = 0; i < n; i++) r.push(padded.subarray(i * 8, i * 8 + 8));
  for (let j = 0; j <= 5; j++) {
    for (let i = 1; i <= n; i++) {
      const b = aesBlock(kek, Buffer.concat([a, r[i - 1]!]), false);
      a = xorT(b.subarray(0, 8), n * j + i);
      r[i - 1] = Buffer.from(b.subarray(8, 16));
    }
  }
  return Buffer.concat([a, ...r]);
}

/** Unwraps and checks integrity (AIV, MLI range, zero padding); throws KEYWRAP_INTEGRITY on any mismatch. */
export function aesKeyUnwrapPad(kek: Buffer, wrapped: Buffer): Buffer {
  ecbName(kek);
  if (wrapped.length < 16 || wrapped.length % 8 !== 0)
    throw new MembraneError(
      'KEYWRAP_INVALID',
      `wrapped key must be a multiple of 8 bytes and at least 16, got ${wrapped.length}`,
    );
  const n = wrapped.length / 8 - 1;
  let a: Buffer;
  let p: Buffer;
  if (n === 1) {
    const b = aesBlock(kek, wrapped, true);
    a = b.subarray(0, 8);
    p = b.subarray(8, 16);
  } else {
    a = Buffer.from(wrapped.subarray(0, 8));
    const r: Buffer[] = [];
    for (let i = 1; i <= n; i++) r.push(Buffer.from(wrapped.subarray(i * 8, i * 8 + 8)));
    for (let j = 5; j >= 0; j--) {
      for (let i = n; i >= 1; i--) {
        const b = aesBlock(kek, Buffer.concat([xorT(a, n * j + i), r[i - 1]!]), true);
        a = b.subarray(0, 8);
        r[i - 1] = Buffer.from(b.subarray(8, 16));
      }
    }
    p = Buffer.concat(r);
  }
  // One error for every check so a failed unwrap reveals nothing about which part was wrong.
  const fail = () =>
    new MembraneError(
      'KEYWRAP_INTEGRITY',
      'AES key unwrap integrity check failed (wrong key-encryption key or tampered data)',
    );
  if (!timingSafeEqual(a.subarray(0, 4), AIV)) throw fail();
  const mli = a.readUInt32BE(4);
  if (mli <= 8 * (n - 1) || mli > 8 * n) throw fail();
  let pad = 0;
  for (let i = mli; i < p.length; i++) pad |= p[i]!;
  if (pad !== 0) throw fail();
  return Buffer.from(p.subarray(0, mli));
}

/** A XOR t, with t as a 64-bit big-endian integer (RFC 3394 section 2.2.1). */
function xorT(a: Buffer, t: number): Buffer {
  const out = Buffer.from(a);
  const tb = Buffer.alloc(8);
  tb.writeBigUInt64BE(BigInt(t));
  for (let k = 0; k < 8; k++) out[k] = out[k]! ^ tb[k]!;
  return out;
}
