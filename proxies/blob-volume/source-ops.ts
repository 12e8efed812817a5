/**
 * A datasource: read-only view of sealed (or, in open mode, plain) objects.
 * getattr reports plaintext sizes (from the pinned manifest, or from one header
 * read per object version); open re-checks the object's current version in the
 * store (close-to-open consistency: a replaced or tampered object is noticed at
 * the next open) and pins it for the handle; reads go through SourceReader.
 * Every write operation is EROFS.
 */
import { isMembraneError, MembraneError } from '../../policy/errors.js';
import { VolumeErrorCode } from './errno.js';
import type { Attr, FsOps, Statfs } from './fuse-adapter.js';
import { Handles } from './handles.js';
import type { PinnedManifest } from './manifest.js';
import type { SourceObject, SourceObjects } from './objects.js';
import { ReadAhead } from './read-ahead.js';
import type { Reporter } from './report.js';
import type { SourceReader } from './source-reader.js';
import type { BlobInfo, BlobStore } from './store/types.js';
import type { Listing } from './tree.js';

const O_ACCMODE = 3;
const O_RDONLY = 0;
const O_TRUNC = 0o1000;

interface SourceHandle {
  obj: SourceObject;
  ra: ReadAhead;
}

export interface SourceVolumeParts {
  store: BlobStore;
  listing: Listing;
  objects: SourceObjects;
  reader: SourceReader;
  report: Reporter;
  manifest?: PinnedManifest;
  /** Read-ahead window for one object, in frames, from its frame length. */
  readAheadFrames: (frameLength: number) => number;
}

export const notFound = (path: string) =>
  new MembraneError(VolumeErrorCode.NOT_FOUND, 'no such file', { where: path });
const readOnly = (path: string) =>
  new MembraneError(VolumeErrorCode.READ_ONLY, 'datasources are read-only', { where: path });

export class SourceVolume implements FsOps {
  private readonly handles = new Handles<SourceHandle>();
  private readonly mounted = new Date();
  /** Pinned objects found missing, reported once until they reappear. */
  private readonly reportedMissing = new Set<string>();

  constructor(private readonly p: SourceVolumeParts) {}

  async getattr(path: string): Promise<Attr> {
    const entry = (await this.p.listing.snapshot()).lookup(path);
    if (!entry) throw notFound(path);
    if (entry.kind === 'dir') return { kind: 'dir', size: 0, perm: 0o555, mtime: this.mounted };
    const mtime = entry.info?.lastModified ?? this.mounted;
    const pinned = this.p.manifest?.get(path);
    // A pinned size is authoritative (the open verifies the object against it).
    if (pinned) return { kind: 'file', size: pinned.plaintextBytes, perm: 0o444, mtime };
    if (!entry.info) throw notFound(path);
    const obj = await this.objectAt(path, entry.info);
    const size = obj.size;
    obj.release();
    return { kind: 'file', size, perm: 0o444, mtime };
  }

  async readdir(path: string): Promise<string[]> {
    const snap = await this.p.listing.snapshot();
    const names = snap.children(path);
    if (names) return names;
    if (snap.lookup(path))
      throw new MembraneError(VolumeErrorCode.NOT_DIR, 'not a directory', { where: path });
    throw notFound(path);
  }

  async open(path: string, flags: number): Promise<number> {
    if ((flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0) throw readOnly(path);
    const entry = (await this.p.listing.snapshot()).lookup(path);
    if (!entry) throw notFound(path);
    if (entry.kind === 'dir')
      throw new MembraneError(VolumeErrorCode.IS_DIR, 'is a directory', { where: path });
    const info = await this.p.store.stat(path);
    if (!info) {
      if (this.p.manifest?.get(path)) throw this.missing(path);
      this.p.listing.invalidate();
      throw notFound(path);
    }
    this.reportedMissing.delete(path);
    const obj = await this.objectAt(path, info);
    obj.openHandle();
    const ra = new ReadAhead({ maxFrames: this.p.readAheadFrames(obj.codec.frameLength) });
    return this.handles.add({ obj, ra });
  }

  async read(_path: string, fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handles.get(fh);
    return this.p.reader.read(h.obj, h.ra, buf, len, pos);
  }

  async release(_path: string, fh: number): Promise<void> {
    const h = this.handles.take(fh);
    h?.obj.closeHandle();
    h?.obj.release();
  }

  async flush(): Promise<void> {}
  async fsync(): Promise<void> {}

  async statfs(): Promise<Statfs> {
    const snap = await this.p.listing.snapshot();
    let files = 0;
    for (const _ of snap.paths()) files++;
    return { blocks: 0, bfree: 0, files, ffree: 0 };
  }

  async create(path: string): Promise<number> {
    throw readOnly(path);
  }
  async write(path: string): Promise<number> {
    throw readOnly(path);
  }
  async truncate(path: string): Promise<void> {
    throw readOnly(path);
  }
  async ftruncate(path: string): Promise<void> {
    throw readOnly(path);
  }
  async unlink(path: string): Promise<void> {
    throw readOnly(path);
  }
  async rename(path: string): Promise<void> {
    throw readOnly(path);
  }
  async mkdir(path: string): Promise<void> {
    throw readOnly(path);
  }
  async rmdir(path: string): Promise<void> {
    throw readOnly(path);
  }
  async setattr(path: string): Promise<void> {
    throw readOnly(path);
  }
  async unsupported(path: string): Promise<void> {
    throw readOnly(path);
  }

  /** Releases every handle (unmount). */
  close(): void {
    for (const h of this.handles.values()) {
      h.obj.closeHandle();
      h.obj.release();
    }
  }

  /** The object version `info`, or its current version when the listing was stale. */
  private async objectAt(path: string, info: BlobInfo): Promise<SourceObject> {
    try {
      return await this.p.objects.open(path, info);
    } catch (e) {
      if (!isMembraneError(e, 'STORE_PRECONDITION') && !isMembraneError(e, 'STORE_NOT_FOUND')) throw e;
    }
    this.p.listing.invalidate();
    const fresh = await this.p.store.stat(path);
    if (!fresh) {
      if (this.p.manifest?.get(path)) throw this.missing(path);
      throw notFound(path);
    }
    return this.p.objects.open(path, fresh);
  }

  private missing(path: string): MembraneError {
    const e = new MembraneError(
      VolumeErrorCode.OBJECT_MISSING,
      'object pinned by the manifest is missing from the store',
      { where: path },
    );
    if (!this.reportedMissing.has(path)) {
      this.reportedMissing.add(path);
      this.p.report.integrity(path, e);
    }
    return e;
  }
}
