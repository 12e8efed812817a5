/**
 * The privacy-proxy contract: the one thing the runtime knows about proxies.
 *
 * Types only. Every proxy kind (blob volume, HTTP egress filter, SQL gate) exports a
 * `ProxyKindModule`; `runtime/up.ts` starts every entry of every kind in one loop and
 * closes them in reverse. A proxy gets capabilities from the runtime (keyrings, tokens,
 * audit, metrics), never raw key bytes, so a proxy cannot leak what it never holds.
 */
import type { CleanRoomSpec } from '../policy/spec.js';
import type { Keyring } from './core/index.js';

export type ProxyKind = 'blob-volume' | 'http-egress' | 'sql-gate';
export type ProtectionMode = 'secure' | 'trusted' | 'open';

export type Endpoint =
  | { readonly type: 'mount'; readonly path: string }
  | {
      readonly type: 'listen';
      readonly host: string;
      readonly port: number;
      readonly protocol: 'http-proxy' | 'postgres';
    };

export interface AuditEvent {
  type: string;
  subject?: string;
  details?: Record<string, unknown>;
}

/** Synchronous enqueue; must never throw (auditing must not break I/O; the runtime fails closed on its own). */
export interface AuditSink {
  emit(e: AuditEvent): void;
}

/** Generic instruments; each proxy declares its own in a table (name, unit, description). */
export interface Counter {
  add(n: number, attributes?: Record<string, string>): void;
}
export interface Histogram {
  record(v: number, attributes?: Record<string, string>): void;
}
export interface InstrumentSpec {
  readonly name: string;
  readonly unit?: string;
  readonly description: string;
  /** Histograms: bucket boundaries (advice to the SDK); absent = the SDK's defaults. */
  readonly boundaries?: readonly number[];
}
export interface Meter {
  counter(spec: InstrumentSpec): Counter;
  histogram(spec: InstrumentSpec): Histogram;
}

/** One of Membrane's own listeners (health, other proxies): a proxy must never be made to dial one. */
export interface OwnListener {
  readonly host: string;
  readonly port: number;
}

/**
 * The run's output provenance: outputs are signed with a per-run key whose thumbprint is bound
 * into the attestation. The proxy gets a signing capability, never the private key.
 */
export interface OutputProvenance {
  /** This run (uuid), the same for every proxy of the run. */
  readonly runId: string;
  /** The run key's Ed25519 public key, raw 32 bytes. */
  readonly publicKey: Uint8Array;
  /** Ed25519 signature with the run key. */
  sign(data: Uint8Array): Uint8Array;
  /** The attestation token binding the run key (its thumbprint in x-ms-runtime), when one was made. */
  readonly attestation?: { readonly endpoint: string; readonly token: string };
  /** Clock (tests). */
  readonly now?: () => Date;
}

/** What the runtime hands a proxy: capabilities, never raw key bytes. */
export interface ProxyContext {
  readonly name: string;
  readonly audit: AuditSink;
  readonly meter: Meter;
  readonly log: (line: string) => void;
  /** A private directory (0700) for the proxy's working files; removed at stop. */
  readonly stateDir: string;
  /**
   * A keyring over the named DEK of the spec's keys section (the same one on every call).
   * Throws a typed error for an unknown name. Usable until the proxy is closed: then its key
   * copy is zeroed and any use throws KEYRING_DESTROYED.
   */
  dataKey(dekName: string): Keyring;
  /** A keyring that can only seal to the given RSA public key file. */
  recipient(publicKeyFile: string): Promise<Keyring>;
  /** A bearer token for `resource` from the named identity of the spec. */
  token(identity: string, resource: string): Promise<string>;
  /** Membrane's listeners that are up when the proxy starts (for self-connection checks). */
  ownListeners(): readonly OwnListener[];
  /** Signs what the proxy releases (sink manifests); absent when the runtime makes no run key. */
  readonly provenance?: OutputProvenance;
}

export interface RunningProxy {
  readonly name: string;
  readonly kind: ProxyKind;
  readonly mode: ProtectionMode;
  readonly endpoint: Endpoint;
  /** What the application's environment gains: HTTP_PROXY, PGHOST+PGPORT, CA bundle paths, … */
  readonly appEnv: Readonly<Record<string, string>>;
  /** Finish in-flight work (commits, requests); rejects naming what failed. */
  drain(): Promise<void>;
  /** Drain, then release everything (unmount, stop listening); idempotent. */
  close(): Promise<void>;
}

export interface ProxyKindModule<Entry = unknown> {
  readonly kind: ProxyKind;
  /** Pure: this kind's entries of the spec, in start order. */
  entries(spec: CleanRoomSpec): Entry[];
  /** The entry's name (for readiness markers, audit and errors before it runs). */
  entryName(entry: Entry): string;
  start(entry: Entry, ctx: ProxyContext): Promise<RunningProxy>;
}
