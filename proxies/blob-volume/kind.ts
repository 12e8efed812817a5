/**
 * The blob volume as a kind of the privacy-proxy contract (proxies/proxy.ts): one entry
 * per datasource, then one per datasink (the order `membrane up` always mounted them in,
 * so the runtime's reverse close still unmounts sinks — and commits their outputs — first).
 *
 * Everything secret comes from the context as a capability: a keyring over a named DEK,
 * a seal-only keyring over a recipient's public key, bearer tokens for the store. This
 * module never sees key bytes.
 */
import { readFile } from 'node:fs/promises';
import type { CleanRoomSpec, DataSinkSpec, DataSourceSpec, StoreSpec } from '../../policy/spec.js';
import type { ProxyContext, ProxyKindModule, RunningProxy } from '../proxy.js';
import { volumeMetrics } from './instruments.js';
import type { Protection } from './options.js';
import { openStore, type StoreConfig } from './store/index.js';
import { mountVolume } from './volume.js';

export type BlobVolumeEntry =
  | { readonly role: 'datasource'; readonly spec: DataSourceSpec }
  | { readonly role: 'datasink'; readonly spec: DataSinkSpec };

/** The token audience of Azure Storage (bearer auth of azure-blob stores). */
const STORAGE_RESOURCE = 'https://storage.azure.com';

export const blobVolumeKind: ProxyKindModule<BlobVolumeEntry> = {
  kind: 'blob-volume',
  entries: (spec: CleanRoomSpec) => [
    ...spec.datasources.map((s) => ({ role: 'datasource' as const, spec: s })),
    ...spec.datasinks.map((s) => ({ role: 'datasink' as const, spec: s })),
  ],
  entryName: (e) => e.spec.name,
  start,
};

async function start(entry: BlobVolumeEntry, ctx: ProxyContext): Promise<RunningProxy> {
  const { spec } = entry;
  const p = spec.protection;
  const v = await mountVolume({
    name: spec.name,
    mountpoint: spec.mount,
    kind: entry.role,
    store: openStore(await storeConfig(spec.store, ctx)),
    protection: await protection(entry, ctx),
    pinnedManifest: p.pinnedManifestDigest ? { digest: p.pinnedManifestDigest } : undefined,
    audit: ctx.audit,
    metrics: volumeMetrics(ctx.meter, spec.name),
    log: ctx.log,
    // Sealed sinks keep opaque store names and a signed manifest; open sinks stay plain by design.
    provenance: entry.role === 'datasink' && p.mode !== 'open' ? ctx.provenance : undefined,
  });
  return {
    name: v.name,
    kind: 'blob-volume',
    mode: p.mode,
    endpoint: { type: 'mount', path: v.mountpoint },
    appEnv: {},
    drain: () => v.flush(),
    // unmount() flushes first and is idempotent (one shared promise).
    close: () => v.unmount(),
  };
}

async function protection(entry: BlobVolumeEntry, ctx: ProxyContext): Promise<Protection> {
  const p = entry.spec.protection;
  switch (p.mode) {
    case 'secure':
      // The spec schema requires `key` in secure mode; an unknown name is the context's typed error.
      return { mode: 'secure', keyring: ctx.dataKey(p.key ?? '') };
    case 'trusted':
      return { mode: 'trusted', recipient: await ctx.recipient(p.recipientPublicKey ?? '') };
    case 'open':
      return {
        mode: 'open',
        outputRules: { allow: p.outputRules?.allow, maxObjectBytes: p.outputRules?.maxObjectBytes },
      };
  }
}

async function storeConfig(s: StoreSpec, ctx: ProxyContext): Promise<StoreConfig> {
  if (s.type === 'fs') return { type: 'fs', path: s.path };
  const base = { type: 'azure-blob' as const, url: s.url, container: s.container, prefix: s.prefix };
  if (s.identity) {
    const identity = s.identity;
    return { ...base, auth: { kind: 'bearer', token: () => ctx.token(identity, STORAGE_RESOURCE) } };
  }
  if (s.sas) return { ...base, auth: { kind: 'sas', sas: s.sas } };
  if (s.sasFile) return { ...base, auth: { kind: 'sas', sas: (await readFile(s.sasFile, 'utf8')).trim() } };
  if (s.sharedKey) {
    const key = s.sharedKey.key ?? (await readFile(s.sharedKey.keyFile ?? '', 'utf8')).trim();
    return { ...base, auth: { kind: 'shared-key', account: s.sharedKey.account, key } };
  }
  return { ...base, auth: { kind: 'anonymous' } };
}
