/**
 * The proxy kinds `membrane up` knows, in start order. Each row loads its module lazily
 * and only when the spec has entries of that kind, so `membrane keys` (and a clean room
 * without volumes) never loads FUSE code, and one without databases never loads the
 * PostgreSQL gate. To add a kind: write proxies/<kind>/kind.ts exporting a
 * `ProxyKindModule`, and add a row here (plus one row in test/contract/proxy-kinds.test.ts).
 */
import type { CleanRoomSpec } from '../policy/spec.js';
import type { ProxyKind, ProxyKindModule } from '../proxies/proxy.js';

export interface ProxyKindRow {
  readonly kind: ProxyKind;
  /** Pure and cheap: does the spec have entries of this kind? (Avoids loading the module.) */
  inSpec(spec: CleanRoomSpec): boolean;
  load(): Promise<ProxyKindModule>;
}

// The module's Entry type is its own business; the runtime only passes entries back to it.
const erase = <E>(m: ProxyKindModule<E>) => m as unknown as ProxyKindModule;

export const PROXY_KINDS: readonly ProxyKindRow[] = [
  {
    kind: 'blob-volume',
    inSpec: (spec) => spec.datasources.length + spec.datasinks.length > 0,
    load: async () => erase((await import('../proxies/blob-volume/kind.js')).blobVolumeKind),
  },
  // Network proxies start after the volumes: the app's outputs are mounted before it can call out.
  {
    kind: 'http-egress',
    inSpec: (spec) => spec.network?.http?.outbound !== undefined,
    load: async () => erase((await import('../proxies/http/kind.js')).httpEgressKind),
  },
  // { kind: 'sql-gate', inSpec: (spec) => ..., load: async () => erase((await import('../proxies/sql/kind.js')).sqlGateKind) },
];
