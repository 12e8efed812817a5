/**
 * Volume options: the contract with the runtime (`membrane up`) and the bench,
 * plus their validation and defaults. Misconfiguration fails the mount with
 * VOLUME_OPTIONS naming the volume and the field.
 */
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { MembraneError } from '../../policy/errors.js';
import { DEFAULT_FRAME_LENGTH, type Keyring, MAX_FRAME_LENGTH } from '../core/index.js';
import { VolumeErrorCode } from './errno.js';
import { type AuditSink, noopAudit, noopMetrics, type VolumeMetrics } from './hooks.js';
import { type OutputRules, OutputRulesPolicy } from './output-rules.js';
import type { SinkProvenance } from './sink-manifest.js';
import type { BlobStore } from './store/types.js';

/**
 * NO CRYPTO AT ALL — objects are read and written as plaintext and datasink
 * staging is plaintext on disk. Exists only so `membrane bench volume` can measure
 * the same FUSE code without crypto (the Node FUSE ceiling). Never produced from
 * a clean-room spec; the literal acknowledgement keeps it from being selected by
 * accident (e.g. by mapping a spec's mode string).
 */
export interface PassthroughProtection {
  mode: 'plaintext-passthrough';
  acknowledge: 'benchmark-ceiling-no-crypto';
}

export const PASSTHROUGH_PROTECTION: PassthroughProtection = Object.freeze({
  mode: 'plaintext-passthrough',
  acknowledge: 'benchmark-ceiling-no-crypto',
});

export type Protection =
  /** Datasource: objects sealed under this keyring (a DEK). Datasink: sealed with it. */
  | { mode: 'secure'; keyring: Keyring }
  /**
   * Datasink: sealed to the recipient (rsaKeyring({publicKey})); this volume cannot read
   * committed objects back. Datasource: objects sealed to an RSA key whose private half
   * `recipient` holds (e.g. a released KEK).
   */
  | { mode: 'trusted'; recipient: Keyring }
  /** Datasink: plaintext out, under output rules. Datasource: plaintext objects. */
  | { mode: 'open'; outputRules?: OutputRules }
  | PassthroughProtection;

export interface VolumeOptions {
  /** Datasource/datasink name: bound into every object's encryption context. */
  name: string;
  mountpoint: string;
  store: BlobStore;
  kind: 'datasource' | 'datasink';
  protection: Protection;
  /** Datasources: serve exactly the objects of the manifest with this digest (read from the store, or given). */
  pinnedManifest?: { digest: string; manifest?: string | Uint8Array };
  audit?: AuditSink;
  metrics?: VolumeMetrics;
  /** Frame cache size in bytes (default 64 MiB). */
  cacheBytes?: number;
  /** Largest read-ahead window in frames (default: 4 MiB worth of frames; 0 disables). */
  readAheadFrames?: number;
  /** Where datasinks stage files, encrypted (default <tmpdir>/membrane-staging). */
  stagingDir?: string;
  /** Datasinks: most staging files open at once (default 128); idle ones are closed and reopened. */
  stagingFds?: number;
  /** Datasinks: frame length of committed objects. Open/passthrough: read granularity. Default 64 KiB. */
  frameLength?: number;
  /** How long a directory listing is reused (default 3000 ms). */
  listingTtlMs?: number;
  /** Let users other than the mounting one access the mount (FUSE allow_other). */
  allowOther?: boolean;
  /** Where internal errors are logged (default: stderr). Never receives data or keys. */
  log?: (message: string) => void;
  /**
   * Secure and trusted datasinks: store objects under opaque names and write a signed
   * manifest of this run (sink-manifest.ts). `membrane up` always sets it; without it the
   * sink keeps plaintext names and no manifest (library use, tests, benchmarks).
   */
  provenance?: SinkProvenance;
}

export interface ResolvedOptions {
  name: string;
  mountpoint: string;
  store: BlobStore;
  kind: 'datasource' | 'datasink';
  protection: Protection;
  outputRules: OutputRulesPolicy | undefined;
  pinnedManifest: VolumeOptions['pinnedManifest'];
  audit: AuditSink;
  metrics: VolumeMetrics;
  cacheBytes: number;
  readAheadFrames: (frameLength: number) => number;
  stagingDir: string;
  stagingFds: number;
  frameLength: number;
  listingTtlMs: number;
  allowOther: boolean;
  log: (message: string) => void;
  provenance: SinkProvenance | undefined;
}

const READ_AHEAD_BYTES = 4 << 20;

export function resolveOptions(o: VolumeOptions): ResolvedOptions {
  const where = `volume '${o.name}'`;
  const bad = (field: string, message: string) =>
    new MembraneError(VolumeErrorCode.OPTIONS, `${field}: ${message}`, { where });
  if (typeof o.name !== 'string' || o.name === '') throw bad('name', 'must be a non-empty string');
  if (o.kind !== 'datasource' && o.kind !== 'datasink') throw bad('kind', `expected datasource or datasink`);
  if (!o.mountpoint) throw bad('mountpoint', 'required');
  const mode = (o.protection as { mode?: string } | undefined)?.mode;
  if (mode === 'plaintext-passthrough') {
    if ((o.protection as PassthroughProtection).acknowledge !== 'benchmark-ceiling-no-crypto')
      throw bad('protection', 'plaintext-passthrough is for benchmarks only and must be acknowledged');
  } else if (mode !== 'secure' && mode !== 'trusted' && mode !== 'open') {
    throw bad('protection.mode', `expected secure, trusted or open, got ${String(mode)}`);
  }
  const p = o.protection;
  if (p.mode === 'secure' && !p.keyring) throw bad('protection.keyring', 'required in secure mode');
  if (p.mode === 'trusted' && !p.recipient) throw bad('protection.recipient', 'required in trusted mode');
  if (o.pinnedManifest) {
    if (o.kind !== 'datasource') throw bad('pinnedManifest', 'applies to datasources only');
    if (p.mode !== 'secure' && p.mode !== 'trusted')
      throw bad('pinnedManifest', 'needs sealed objects (secure or trusted mode)');
    if (!/^[0-9a-fA-F]{64}$/.test(o.pinnedManifest.digest))
      throw bad('pinnedManifest.digest', 'expected 64 hex characters');
  }
  if (o.provenance) {
    if (o.kind !== 'datasink') throw bad('provenance', 'applies to datasinks only');
    if (p.mode !== 'secure' && p.mode !== 'trusted')
      throw bad(
        'provenance',
        'needs a sealed sink (secure or trusted mode); open sinks keep plaintext names',
      );
    if (o.provenance.publicKey?.length !== 32)
      throw bad('provenance.publicKey', 'expected a raw Ed25519 key');
  }
  const int = (
    field: string,
    v: number | undefined,
    dflt: number,
    min: number,
    max = Number.MAX_SAFE_INTEGER,
  ) => {
    if (v === undefined) return dflt;
    if (!Number.isSafeInteger(v) || v < min || v > max)
      throw bad(field, `expected an integer from ${min} to ${max}`);
    return v;
  };
  const frameLength = int('frameLength', o.frameLength, DEFAULT_FRAME_LENGTH, 1, MAX_FRAME_LENGTH);
  const cacheBytes = int('cacheBytes', o.cacheBytes, 64 << 20, 0);
  const raFixed =
    o.readAheadFrames === undefined ? undefined : int('readAheadFrames', o.readAheadFrames, 0, 0, 1 << 16);
  const listingTtlMs = int('listingTtlMs', o.listingTtlMs, 3000, 0);
  const mountpoint = resolve(o.mountpoint);
  const stagingDir = resolve(o.stagingDir ?? join(tmpdir(), 'membrane-staging'));
  const rel = relative(mountpoint, stagingDir);
  if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel)))
    throw bad('stagingDir', 'must not be inside the mountpoint');
  return {
    name: o.name,
    mountpoint,
    store: o.store,
    kind: o.kind,
    protection: p,
    outputRules:
      o.kind === 'datasink' && p.mode === 'open' ? new OutputRulesPolicy(p.outputRules ?? {}) : undefined,
    pinnedManifest: o.pinnedManifest,
    audit: o.audit ?? noopAudit,
    metrics: o.metrics ?? noopMetrics,
    cacheBytes,
    readAheadFrames: (F) => raFixed ?? Math.max(2, Math.ceil(READ_AHEAD_BYTES / F)),
    stagingDir,
    stagingFds: int('stagingFds', o.stagingFds, 128, 1, 1 << 16),
    frameLength,
    listingTtlMs,
    allowOther: o.allowOther === true,
    log: o.log ?? ((m) => process.stderr.write(`membrane volume: ${m}\n`)),
    provenance: o.provenance,
  };
}
