/**
 * Optional store capabilities the volume uses when a store offers them, and a
 * BlobStore wrapper that times every request for the volume metrics.
 *
 *   sweep()       — removes leftovers of interrupted put()s (e.g. FsStore temp
 *                   files); called when a datasink mounts.
 *   openVersion() — a reader pinned to one object version for repeated ranged
 *                   reads (FsStore: one open descriptor; checked against the ETag
 *                   once, then plain preads). Without it every ranged read is a
 *                   full store.read(..., {ifMatch}) — for FsStore open + fstat +
 *                   read + close, four thread-pool round trips, which dominate
 *                   random 4 KiB reads.
 */
import type { VolumeMetrics } from './hooks.js';
import type { BlobInfo, BlobStore, NameLimits, PutOptions } from './store/types.js';

export interface Sweepable {
  sweep(): Promise<number>;
}

export interface VersionReader {
  /** Bytes [start, end) of the pinned version (shorter only at its end). */
  read(start: number, end: number): Promise<Buffer>;
  close(): Promise<void>;
}

export interface PinnedReads {
  /** Throws STORE_PRECONDITION if `etag` is not the current version, STORE_NOT_FOUND if absent. */
  openVersion(path: string, etag: string): Promise<VersionReader>;
}

export function isSweepable(s: BlobStore): s is BlobStore & Sweepable {
  return typeof (s as Partial<Sweepable>).sweep === 'function';
}

export function hasPinnedReads(s: BlobStore): s is BlobStore & PinnedReads {
  return typeof (s as Partial<PinnedReads>).openVersion === 'function';
}

class MeteredStore implements BlobStore {
  readonly kind: string;
  readonly description: string;
  readonly limits: NameLimits | undefined;

  constructor(
    readonly inner: BlobStore,
    protected readonly metrics: VolumeMetrics,
  ) {
    this.kind = inner.kind;
    this.description = inner.description;
    this.limits = inner.limits;
  }

  protected async timed<T>(fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.metrics.storeRequest(performance.now() - t0);
    }
  }

  list(prefix?: string): AsyncIterable<BlobInfo> {
    return this.inner.list(prefix);
  }

  stat(path: string): Promise<BlobInfo | undefined> {
    return this.timed(() => this.inner.stat(path));
  }

  read(path: string, start: number, end: number, opts?: { ifMatch?: string }): Promise<Buffer> {
    return this.timed(() => this.inner.read(path, start, end, opts));
  }

  put(path: string, source: AsyncIterable<Uint8Array> | Uint8Array, opts?: PutOptions): Promise<BlobInfo> {
    return this.timed(() => this.inner.put(path, source, opts));
  }

  delete(path: string, opts?: { ifMatch?: string }): Promise<void> {
    return this.timed(() => this.inner.delete(path, opts));
  }
}

class MeteredPinnedStore extends MeteredStore implements PinnedReads {
  constructor(
    private readonly pinned: BlobStore & PinnedReads,
    metrics: VolumeMetrics,
  ) {
    super(pinned, metrics);
  }

  async openVersion(path: string, etag: string): Promise<VersionReader> {
    const r = await this.timed(() => this.pinned.openVersion(path, etag));
    return { read: (start, end) => this.timed(() => r.read(start, end)), close: () => r.close() };
  }
}

/** `store`, with every request timed into metrics.storeRequest (capabilities preserved, except sweep). */
export function metered(store: BlobStore, metrics: VolumeMetrics): BlobStore {
  return hasPinnedReads(store) ? new MeteredPinnedStore(store, metrics) : new MeteredStore(store, metrics);
}
