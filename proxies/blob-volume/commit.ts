/**
 * The commit protocol of datasinks. A file's plaintext is streamed from its
 * encrypted staging through the sink's Sealer into ONE store.put(), which is
 * atomic (fs: temp file + fsync + rename; Azure: staged blocks + Put Block List):
 * a crash at any point leaves the previous object or the new one, never a part.
 *
 * Write-once: only objects this mount wrote (`owned`, path -> ETag) may be
 * replaced or deleted, and only in the version we wrote (If-Match); a first
 * commit uses If-None-Match: * so an object that appeared meanwhile is never
 * overwritten. Renames re-seal under the new path (the path is bound into the
 * encryption context), then delete the old object.
 */
import { isMembraneError, MembraneError } from '../../policy/errors.js';
import type { SealInfo } from '../core/index.js';
import { VolumeErrorCode } from './errno.js';
import { VolumeEvent } from './hooks.js';
import type { Reporter } from './report.js';
import type { Sealer } from './sealer.js';
import type { SinkFile } from './sink-file.js';
import type { BlobStore } from './store/types.js';

export class Committer {
  /** Objects this mount wrote and may replace or delete: path -> ETag of our version. */
  readonly owned = new Map<string, string>();
  /** Paths whose objects we deleted (a cached listing may still show them). */
  readonly gone = new Set<string>();

  private closed = false;

  constructor(
    private readonly store: BlobStore,
    private readonly sealer: Sealer,
    private readonly report: Reporter,
    private readonly mode: string,
  ) {}

  /**
   * No commit starts after this (issue 12, defect 6: a mount that could not be
   * unmounted kept committing after the keys were zeroed, without audit).
   */
  close(): void {
    this.closed = true;
  }

  /** Commits `file` if it changed since its last commit. */
  commit(file: SinkFile): Promise<void> {
    return file.lock.run(() => this.commitLocked(file));
  }

  /** The same, for callers already holding file.lock. */
  async commitLocked(file: SinkFile): Promise<void> {
    if (!file.dirty || file.detached) return;
    const path = file.path;
    if (this.closed) {
      this.report.event(VolumeEvent.COMMIT_FAILED, path, { code: VolumeErrorCode.CLOSED, bytes: file.size });
      throw new MembraneError(VolumeErrorCode.CLOSED, 'the volume is closed; nothing more is committed', {
        where: path,
      });
    }
    const info: SealInfo = { messageId: '', plaintextBytes: 0 };
    const prev = this.owned.get(path);
    let stored: Awaited<ReturnType<BlobStore['put']>>;
    try {
      stored = await this.store.put(
        path,
        this.sealer.seal(file.staging.chunks(), path, info),
        prev ? { ifMatch: prev } : { ifNoneMatch: '*' },
      );
    } catch (e) {
      const code = isMembraneError(e) ? e.code : 'IO';
      this.report.event(VolumeEvent.COMMIT_FAILED, path, { code, bytes: file.size });
      this.report.log(`${this.report.volume}: commit of ${path} failed [${code}]: ${(e as Error).message}`);
      throw new MembraneError(
        VolumeErrorCode.COMMIT_FAILED,
        code === 'STORE_PRECONDITION'
          ? 'another writer created or replaced this object; datasink objects are write-once'
          : `commit failed [${code}]`,
        { where: path, cause: e },
      );
    }
    if (this.sealer.encrypts) this.report.metrics.bytesEncrypted(info.plaintextBytes);
    this.owned.set(path, stored.etag);
    this.gone.delete(path);
    const old = file.committedPath;
    file.committedPath = path;
    file.dirty = false;
    this.report.event(VolumeEvent.COMMITTED, path, {
      mode: this.mode,
      plaintextBytes: info.plaintextBytes,
      storedBytes: stored.size,
      ...(this.sealer.encrypts ? { messageId: info.messageId } : {}),
    });
    // After a rename, the object under the old name goes only once the new one is safe.
    if (old !== undefined && old !== path) await this.remove(old);
    await file.staging.settle();
  }

  /** Deletes an object this mount wrote (in the version it wrote). */
  async remove(path: string): Promise<void> {
    const etag = this.owned.get(path);
    if (etag === undefined) return;
    try {
      await this.store.delete(path, { ifMatch: etag });
    } catch (e) {
      if (!isMembraneError(e, 'STORE_NOT_FOUND')) {
        this.report.log(`${this.report.volume}: delete of ${path} failed: ${(e as Error).message}`);
        throw e;
      }
    }
    this.owned.delete(path);
    this.gone.add(path);
    this.report.event(VolumeEvent.DELETED, path);
  }
}
