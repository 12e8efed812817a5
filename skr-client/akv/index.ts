/** Azure Key Vault / Managed HSM client: token sources, secure key release, secrets. */
export {
  DEFAULT_KEY_EXPORT_ENC,
  isKeyExportEnc,
  KEY_EXPORT_ENCS,
  type KeyExportEnc,
  openKeyHsm,
  sealKeyHsm,
} from './key-hsm.js';
export {
  KEY_VAULT_API_VERSION,
  parseKid,
  type ReleasedKey,
  type ReleaseKeyOptions,
  releaseKey,
} from './release.js';
export { getSecret, type KeyVaultSecret, unwrapDekWithKek } from './secrets.js';
export {
  MANAGED_HSM_RESOURCE,
  type ManagedIdentityOptions,
  managedIdentity,
  resourceForVault,
  staticToken,
  type TokenSource,
  VAULT_RESOURCE,
  type WorkloadIdentityOptions,
  workloadIdentity,
} from './token.js';
export { azureTrustAnchors, verifyX5cJws } from './x5c.js';
