/**
 * The one message format Membrane reads and writes: AWS Encryption SDK message
 * format version 2.0, algorithm suite ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY
 * (0x0478: key-committing, no signature), framed content. See docs/format.md.
 *
 * Limits below are ours, not the SDK's: they bound memory for input an attacker
 * controls (a storage operator can hand us any bytes).
 */
export const MESSAGE_VERSION = 0x02;
export const SUITE_ID = 0x0478;
export const SUITE_NAME = 'ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY';
export const CONTENT_TYPE_FRAMED = 0x02;
export const CONTENT_TYPE_NON_FRAMED = 0x01;

export const KEY_LENGTH = 32;
export const IV_LENGTH = 12;
export const TAG_LENGTH = 16;
export const MESSAGE_ID_LENGTH = 32;
export const COMMITMENT_LENGTH = 32;

/** Default frame length; chosen from `membrane bench aead` (see docs/format.md). */
export const DEFAULT_FRAME_LENGTH = 64 * 1024;
/**
 * Largest frame we accept. A frame is the unit of authentication, so a reader must
 * hold a whole frame in memory before releasing any of it; 16 MiB keeps several
 * frames in flight well under the 256 MiB RSS budget (and equals the chunk size
 * of the Azure clean room's blobfuse CSE format).
 */
export const MAX_FRAME_LENGTH = 16 * 1024 * 1024;
/** Header size cap (encryption context + EDKs); real headers are a few hundred bytes. */
export const MAX_HEADER_LENGTH = 1024 * 1024;
/** Most EDKs one message may carry (the SDK's "maxEncryptedDataKeys" idea). */
export const MAX_ENCRYPTED_DATA_KEYS = 64;
/** ESDK limit: a message has at most 2^32 - 1 frames (sequence numbers are u32, 0 unused). */
export const MAX_FRAMES = 0xffff_fffe;

/** Signing and non-committing suites we refuse by name, for a clear error. */
export const KNOWN_SUITES: Record<number, string> = {
  20: 'ALG_AES128_GCM_IV12_TAG16 (no KDF, non-committing)',
  70: 'ALG_AES192_GCM_IV12_TAG16 (no KDF, non-committing)',
  120: 'ALG_AES256_GCM_IV12_TAG16 (no KDF, non-committing)',
  276: 'ALG_AES128_GCM_IV12_TAG16_HKDF_SHA256 (non-committing)',
  326: 'ALG_AES192_GCM_IV12_TAG16_HKDF_SHA256 (non-committing)',
  376: 'ALG_AES256_GCM_IV12_TAG16_HKDF_SHA256 (non-committing)',
  532: 'ALG_AES128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256 (signing, non-committing)',
  838: 'ALG_AES192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384 (signing, non-committing)',
  888: 'ALG_AES256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384 (signing, non-committing)',
  1144: SUITE_NAME,
  1400: 'ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY_ECDSA_P384 (signing)',
};
