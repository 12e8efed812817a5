/**
 * Where the volume reports what happened: audit events (security-relevant facts
 * an auditor needs), metrics, and a log line for unexpected internal errors.
 * Integrity failures are reported once per object version, as the right event
 * type, and counted as authentication failures.
 */
import { isMembraneError } from '../../policy/errors.js';
import { VolumeErrorCode } from './errno.js';
import { type AuditSink, VolumeEvent, type VolumeMetrics, volumeAudit } from './hooks.js';

export type Logger = (message: string) => void;

export class Reporter {
  private readonly emit: ReturnType<typeof volumeAudit>;

  constructor(
    readonly volume: string,
    audit: AuditSink,
    readonly metrics: VolumeMetrics,
    readonly log: Logger,
  ) {
    this.emit = volumeAudit(audit, volume);
  }

  event(type: string, subject: string, details?: Record<string, unknown>): void {
    this.emit(type, subject, details);
  }

  /** An object failed verification (authentication, binding, pin, or changed under us). */
  integrity(path: string, e: unknown, details: Record<string, unknown> = {}): void {
    const code = isMembraneError(e) ? e.code : 'UNKNOWN';
    const type =
      code === VolumeErrorCode.MANIFEST_MISMATCH
        ? VolumeEvent.MANIFEST_MISMATCH
        : code === VolumeErrorCode.OBJECT_MISSING
          ? VolumeEvent.MISSING
          : code === VolumeErrorCode.OBJECT_CHANGED
            ? VolumeEvent.CHANGED
            : VolumeEvent.AUTH_FAILURE;
    this.metrics.authFailure();
    this.emit(type, path, { code, reason: e instanceof Error ? e.message : String(e), ...details });
    this.log(`${this.volume}: ${path}: ${type} [${code}]`);
  }
}
