/**
 * The `key_hsm` blob of a Key Vault / Managed HSM key release, both directions
 * (open for the client, seal for the local Key Vault emulator), so the format
 * is defined once.
 *
 * key_hsm = base64url(JSON {schema_version:"1.0.0", header:{kid, alg:"dir", enc}, ciphertext})
 * ciphertext = base64url( RSA-OAEP(runtime public key, ephemeral AES key)   // modulus-size bytes
 *                      || AES-KWP(ephemeral AES key, key material) )        // RFC 5649
 * This is PKCS#11 CKM_RSA_AES_KEY_WRAP; the OAEP hash (and MGF1 hash) is SHA-1 for
 * CKM_RSA_AES_KEY_WRAP, SHA-256 for RSA_AES_KEY_WRAP_256, SHA-384 for RSA_AES_KEY_WRAP_384
 * (as microsoft/confidential-sidecar-containers pkg/skr unwraps it and the BYOK
 * specification describes the transfer blob). Key material is the raw key for
 * oct/oct-HSM and PKCS#8 DER for RSA/EC.
 */
import { constants, type KeyObject, privateDecrypt, publicEncrypt, randomBytes } from 'node:crypto';
import { MembraneError } from '../../policy/errors.js';
import { aesKeyUnwrapPad, aesKeyWrapPad } from '../crypto/rfc5649.js';

export type KeyExportEnc = 'CKM_RSA_AES_KEY_WRAP' | 'RSA_AES_KEY_WRAP_256' | 'RSA_AES_KEY_WRAP_384';
export const KEY_EXPORT_ENCS: readonly KeyExportEnc[] = [
  'CKM_RSA_AES_KEY_WRAP',
  'RSA_AES_KEY_WRAP_256',
  'RSA_AES_KEY_WRAP_384',
];
/** Key Vault's default when the release request names no `enc`. */
export const DEFAULT_KEY_EXPORT_ENC: KeyExportEnc = 'CKM_RSA_AES_KEY_WRAP';

const OAEP_HASH: Record<KeyExportEnc, string> = {
  CKM_RSA_AES_KEY_WRAP: 'sha1',
  RSA_AES_KEY_WRAP_256: 'sha256',
  RSA_AES_KEY_WRAP_384: 'sha384',
};

export function isKeyExportEnc(v: unknown): v is KeyExportEnc {
  return typeof v === 'string' && (KEY_EXPORT_ENCS as readonly string[]).includes(v);
}

export interface KeyHsmHeader {
  kid: string;
  alg: string;
  enc: string;
}

/** Seals `material` to `wrappingKey` (an RSA public key). Returns the base64url key_hsm string. */
export function sealKeyHsm(opts: {
  material: Buffer;
  wrappingKey: KeyObject;
  enc: KeyExportEnc;
  /** kid of the wrapping key, recorded in the header. */
  kid: string;
  /** Ephemeral AES key size; PKCS#11 allows 128/192/256. Default 256. */
  aesKeyBits?: 128 | 192 | 256;
}): string {
  const aesKey = randomBytes((opts.aesKeyBits ?? 256) / 8);
  try {
    const encryptedKey = publicEncrypt(
      { key: opts.wrappingKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: OAEP_HASH[opts.enc] },
      aesKey,
    );
    const ciphertext = Buffer.concat([encryptedKey, aesKeyWrapPad(aesKey, opts.material)]);
    const blob = {
      schema_version: '1.0.0',
      header: { kid: opts.kid, alg: 'dir', enc: opts.enc },
      ciphertext: ciphertext.toString('base64url'),
    };
    return Buffer.from(JSON.stringify(blob), 'utf8').toString('base64url');
  } finally {
    aesKey.fill(0);
  }
}

/**
 * Opens a key_hsm blob with the runtime (ephemeral) private key. `enc` is the
 * algorithm the release response says was used; the blob's own header must agree.
 */
export function openKeyHsm(
  keyHsm: string,
  privateKey: KeyObject,
  enc: KeyExportEnc | undefined,
): { material: Buffer; header: KeyHsmHeader; enc: KeyExportEnc } {
  const bad = (msg: string, cause?: unknown) =>
    new MembraneError('AKV_RELEASE_UNWRAP', `released key_hsm ${msg}`, {
      where: 'response.key.key.key_hsm',
      cause,
    });
  let blob: { schema_version?: unknown; header?: Partial<KeyHsmHeader>; ciphertext?: unknown };
  try {
    blob = JSON.parse(Buffer.from(keyHsm, 'base64url').toString('utf8'));
  } catch (e) {
    throw bad('is not base64url-encoded JSON', e);
  }
  if (typeof blob !== 'object' || blob === null || typeof blob.ciphertext !== 'string')
    throw bad('has no ciphertext');
  const header = (blob.header ?? {}) as Partial<KeyHsmHeader>;
  if (header.alg !== undefined && header.alg !== 'dir')
    throw bad(`header alg is ${String(header.alg)}, expected "dir"`);
  const headerEnc = header.enc;
  if (headerEnc !== undefined && !isKeyExportEnc(headerEnc))
    throw bad(`uses unsupported enc ${String(headerEnc)} (supported: ${KEY_EXPORT_ENCS.join(', ')})`);
  if (enc !== undefined && headerEnc !== undefined && enc !== headerEnc)
    throw bad(`header enc ${headerEnc} disagrees with the release response's enc ${enc}`);
  const useEnc: KeyExportEnc = headerEnc ?? enc ?? DEFAULT_KEY_EXPORT_ENC;

  const ciphertext = Buffer.from(blob.ciphertext, 'base64url');
  const modulusBits = privateKey.asymmetricKeyDetails?.modulusLength;
  if (privateKey.asymmetricKeyType !== 'rsa' || !modulusBits)
    throw new MembraneError('AKV_RELEASE_UNWRAP', 'the runtime key must be an RSA private key');
  const n = modulusBits / 8;
  if (ciphertext.length < n + 16 || (ciphertext.length - n) % 8 !== 0)
    throw bad(
      `ciphertext is ${ciphertext.length} bytes, which does not fit a ${modulusBits}-bit RSA-OAEP block plus an AES key wrap — was it wrapped to a different key?`,
    );
  let aesKey: Buffer;
  try {
    aesKey = privateDecrypt(
      { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: OAEP_HASH[useEnc] },
      ciphertext.subarray(0, n),
    );
  } catch (e) {
    throw bad(
      `could not be decrypted with the runtime key (RSA-OAEP, ${useEnc}) — wrapped to another key?`,
      e,
    );
  }
  try {
    if (aesKey.length !== 16 && aesKey.length !== 24 && aesKey.length !== 32)
      throw bad(`carries a ${aesKey.length * 8}-bit wrapping key; expected AES-128/192/256`);
    const material = aesKeyUnwrapPad(aesKey, ciphertext.subarray(n));
    return { material, header: { kid: String(header.kid ?? ''), alg: 'dir', enc: useEnc }, enc: useEnc };
  } catch (e) {
    if (e instanceof MembraneError && e.code === 'AKV_RELEASE_UNWRAP') throw e;
    throw bad('failed the AES key-unwrap integrity check (tampered or corrupt)', e);
  } finally {
    aesKey.fill(0);
  }
}
