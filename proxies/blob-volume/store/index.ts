/**
 * Store factory: one config shape for every backend, so the runtime turns a
 * spec's `store` section into a BlobStore without knowing which kind it is.
 */
import { MembraneError } from '../../../policy/errors.js';
import { type AzureBlobConfig, AzureBlobStore, type AzureBlobTuning } from './azure-blob.js';
import { FsStore } from './fs-store.js';
import type { BlobStore } from './types.js';

export {
  type AzureBlobConfig,
  AzureBlobStore,
  type AzureBlobTuning,
  AzureStoreError,
  STORE_CONFIG,
} from './azure-blob.js';
export { type AccountSasOptions, accountSas, type ContainerSasOptions, containerSas } from './azure-sas.js';
export type { AzureAuth } from './azure-transport.js';
export { FsStore } from './fs-store.js';
export { storePath } from './paths.js';
export { type BlobInfo, type BlobStore, type NameLimits, type PutOptions, StoreErrorCode } from './types.js';

export type StoreConfig = { type: 'fs'; path: string } | ({ type: 'azure-blob' } & AzureBlobConfig);

/** Opens the store `cfg` names. Azure tuning (block size, retries) is for tests and benchmarks. */
export function openStore(cfg: StoreConfig, tuning?: AzureBlobTuning): BlobStore {
  switch (cfg.type) {
    case 'fs':
      return new FsStore(cfg.path);
    case 'azure-blob': {
      const { type: _type, ...azure } = cfg;
      return new AzureBlobStore(azure, tuning);
    }
    default:
      throw new MembraneError(
        'STORE_CONFIG',
        `unknown store type '${(cfg as { type?: unknown }).type}' (expected fs or azure-blob)`,
      );
  }
}
