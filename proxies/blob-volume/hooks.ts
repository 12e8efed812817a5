/**
 * The two observation hooks a volume reports through. The audit sink is the proxy
 * contract's (one vocabulary for all proxies); VolumeMetrics is the volume's own view of
 * its instruments (instruments.ts builds it over the contract's generic Meter).
 */
import type { AuditSink } from '../proxy.js';

export type { AuditEvent, AuditSink } from '../proxy.js';

export interface VolumeMetrics {
  bytesDecrypted(n: number): void;
  framesDecrypted(n: number): void;
  cacheHit(): void;
  cacheMiss(): void;
  authFailure(): void;
  storeRequest(ms: number): void;
  bytesEncrypted(n: number): void;
}

export const noopMetrics: VolumeMetrics = {
  bytesDecrypted() {},
  framesDecrypted() {},
  cacheHit() {},
  cacheMiss() {},
  authFailure() {},
  storeRequest() {},
  bytesEncrypted() {},
};

export const noopAudit: AuditSink = { emit() {} };

/** Audit events the volume emits (documented in docs/blob-volume.md). */
export const VolumeEvent = {
  AUTH_FAILURE: 'object.auth_failure',
  MANIFEST_MISMATCH: 'object.manifest_mismatch',
  MISSING: 'object.missing',
  CHANGED: 'object.changed',
  OUTPUT_DENIED: 'output.denied',
  COMMITTED: 'object.committed',
  COMMIT_FAILED: 'object.commit_failed',
  DELETED: 'object.deleted',
  /** The app tried to create or rename to a name Membrane reserves. */
  NAME_RESERVED: 'name.reserved',
  /** The app tried to create or rename to a name the store cannot hold. */
  NAME_TOO_LONG: 'name.too_long',
} as const;

/** An audit sink that tags every event with the volume and never lets the sink's failure escape. */
export function volumeAudit(
  sink: AuditSink,
  volume: string,
): (type: string, subject: string, details?: Record<string, unknown>) => void {
  return (type, subject, details = {}) => {
    try {
      sink.emit({ type, subject, details: { volume, ...details } });
    } catch {
      // The contract says emit() never throws; if one does, I/O still must not fail because of it.
    }
  };
}
