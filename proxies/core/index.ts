/**
 * proxies/core public surface: the object format and the streaming AES-256-GCM
 * engine. Callers deal in keyrings, bindings, layouts and frame indices; IVs,
 * derived keys and AAD never cross this boundary.
 */
export { aeadBackend } from './aead.js';
export {
  CONTEXT_DATASOURCE,
  CONTEXT_DIRECTION,
  CONTEXT_HOST,
  CONTEXT_METHOD,
  CONTEXT_PATH,
  contextFor,
  normalizeObjectPath,
  type ObjectBinding,
  type RequestBinding,
} from './binding.js';
export { createDecryptStream, decryptIterable, openBuffer } from './decrypt-stream.js';
export type { EncryptionContext } from './encryption-context.js';
export { FormatErrorCode } from './errors.js';
export { FrameLayout, type FrameSpan } from './frame-layout.js';
export {
  DEK_NAMESPACE,
  dekKeyId,
  dekKeyring,
  type Keyring,
  RSA_NAMESPACE,
  rsaKeyring,
  rsaThumbprint,
} from './keyrings.js';
export { allocShared, ParallelDecryptor, type ParallelOptions } from './parallel.js';
export { ObjectReader, type OpenOptions, type RangeFetcher } from './reader.js';
export { DEFAULT_FRAME_LENGTH, MAX_FRAME_LENGTH, SUITE_ID, SUITE_NAME } from './suite.js';
export {
  createEncryptStream,
  encryptIterable,
  type SealInfo,
  type SealOptions,
  sealBuffer,
} from './writer.js';
export { type AesKeyringNames, KeyringErrorCode, ZeroableAesKeyring } from './zeroable-keyring.js';
