/**
 * Opened source objects, one per path at its current version (ETag). Opening a
 * sealed object reads and verifies its header once (binding to this datasource
 * and path, key unwrap, commitment, header tag) and, with a pinned manifest,
 * checks the ciphertext size (before any read) and the authenticated message ID.
 * The result — a SourceObject: the version's ETag, its frame codec and a
 * refcount — is shared by getattr (plaintext size) and every open handle.
 *
 * An integrity failure is remembered for that path+ETag and reported once:
 * repeated stats of a bad object do not flood the audit log, and it keeps
 * failing until the object is replaced.
 */
import { isMembraneError, MembraneError } from '../../policy/errors.js';
import { type Keyring, ObjectReader } from '../core/index.js';
import { type FrameCodec, PlainCodec, SealedCodec } from './codec.js';
import { isIntegrityError, VolumeErrorCode } from './errno.js';
import type { PinnedManifest } from './manifest.js';
import { hasPinnedReads, type VersionReader } from './metered-store.js';
import type { Reporter } from './report.js';
import type { BlobInfo, BlobStore } from './store/types.js';

export type CodecSpec = { kind: 'sealed'; keyring: Keyring } | { kind: 'plain'; frameLength: number };

let nextId = 1;

export class SourceObject {
  readonly id = nextId++;
  /** Set once any part of this version failed verification: nothing more of it is served. */
  failure: MembraneError | undefined;
  private refs = 1;
  /** Open handles; while there are any, reads go through one pinned-version reader if the store offers it. */
  private handles = 0;
  private pinned: Promise<VersionReader> | undefined;

  constructor(
    readonly path: string,
    readonly info: BlobInfo,
    readonly codec: FrameCodec,
    private readonly store: BlobStore,
    private readonly onClose: (o: SourceObject) => void,
  ) {}

  /** Stored bytes [start, end) of exactly this version (STORE_PRECONDITION once it is gone). */
  fetch(start: number, end: number): Promise<Buffer> {
    const store = this.store;
    if (this.handles > 0 && hasPinnedReads(store)) {
      this.pinned ??= store.openVersion(this.path, this.info.etag);
      return this.pinned.then((r) => r.read(start, end));
    }
    return store.read(this.path, start, end, { ifMatch: this.info.etag });
  }

  openHandle(): void {
    this.handles++;
  }

  closeHandle(): void {
    if (--this.handles > 0 || !this.pinned) return;
    const p = this.pinned;
    this.pinned = undefined;
    p.then(
      (r) => r.close(),
      () => {},
    ).catch(() => {});
  }

  get size(): number {
    return this.codec.size;
  }

  /** Takes a reference unless the object was already closed (then the caller opens it again). */
  tryRetain(): boolean {
    if (this.refs === 0) return false;
    this.refs++;
    return true;
  }

  release(): void {
    if (--this.refs === 0) {
      this.codec.close();
      this.onClose(this);
    }
  }
}

interface Slot {
  etag: string;
  obj?: SourceObject;
  error?: MembraneError;
}

export interface SourceObjectsOptions {
  store: BlobStore;
  /** Datasource/datasink name objects must be bound to. */
  binding: string;
  codec: CodecSpec;
  manifest?: PinnedManifest;
  report: Reporter;
  /** Versions kept open (default 4096); least recently used are released. */
  maxObjects?: number;
  /** Called when a version is finally closed (to drop its cached frames). */
  onClose?: (o: SourceObject) => void;
}

export class SourceObjects {
  private readonly slots = new Map<string, Slot>();
  private readonly opening = new Map<string, Promise<SourceObject>>();
  private readonly maxObjects: number;

  constructor(private readonly opts: SourceObjectsOptions) {
    this.maxObjects = opts.maxObjects ?? 4096;
  }

  /**
   * The verified object at `path` in version `info`, with a reference taken for
   * the caller, who must release() it.
   */
  async open(path: string, info: BlobInfo): Promise<SourceObject> {
    for (;;) {
      const obj = await this.shared(path, info);
      // Between resolution and here a newer version may have replaced (and closed) it.
      if (obj.tryRetain()) return obj;
    }
  }

  private async shared(path: string, info: BlobInfo): Promise<SourceObject> {
    const slot = this.slots.get(path);
    if (slot && slot.etag === info.etag) {
      this.slots.delete(path);
      this.slots.set(path, slot); // LRU touch
      if (slot.error) throw slot.error;
      if (slot.obj?.failure) throw slot.obj.failure;
      if (slot.obj) return slot.obj;
    }
    const key = `${path}\0${info.etag}`;
    let p = this.opening.get(key);
    if (!p) {
      p = this.create(path, info).finally(() => this.opening.delete(key));
      this.opening.set(key, p);
    }
    return p;
  }

  /** Marks the version failed (after a frame failed) so every later read refuses it. */
  fail(obj: SourceObject, e: MembraneError): void {
    if (obj.failure) return;
    obj.failure = e;
    this.opts.report.integrity(obj.path, e, { etag: obj.info.etag });
  }

  /** Forgets the cached version of `path` (e.g. it was deleted). */
  forget(path: string): void {
    const slot = this.slots.get(path);
    if (!slot) return;
    this.slots.delete(path);
    slot.obj?.release();
  }

  close(): void {
    for (const path of [...this.slots.keys()]) this.forget(path);
  }

  private async create(path: string, info: BlobInfo): Promise<SourceObject> {
    let codec: FrameCodec;
    try {
      codec = await this.openCodec(path, info);
    } catch (e) {
      if (isIntegrityError(e) && !isMembraneError(e, VolumeErrorCode.OBJECT_CHANGED)) {
        this.opts.report.integrity(path, e, { etag: info.etag });
        this.put(path, { etag: info.etag, error: e as MembraneError });
      }
      throw e;
    }
    const obj = new SourceObject(path, info, codec, this.opts.store, (o) => this.opts.onClose?.(o));
    this.put(path, { etag: info.etag, obj });
    return obj;
  }

  private put(path: string, slot: Slot): void {
    this.forget(path);
    this.slots.set(path, slot);
    while (this.slots.size > this.maxObjects) this.forget(this.slots.keys().next().value as string);
  }

  private async openCodec(path: string, info: BlobInfo): Promise<FrameCodec> {
    const spec = this.opts.codec;
    if (spec.kind === 'plain') return new PlainCodec(info.size, spec.frameLength);
    const pinned = this.opts.manifest?.get(path);
    if (this.opts.manifest) {
      if (!pinned) throw mismatch(path, 'object is not in the pinned manifest');
      // Cheap and before any read: a different size is a different object.
      if (info.size !== pinned.ciphertextBytes) {
        throw mismatch(
          path,
          `stored object has ${info.size} bytes, the pinned manifest says ${pinned.ciphertextBytes}`,
        );
      }
    }
    const fetch = (start: number, end: number) =>
      this.opts.store.read(path, start, Math.min(end, info.size), { ifMatch: info.etag });
    // A STORE_PRECONDITION here means the caller's version is stale (not an attack): it propagates
    // as such, and the caller looks the object up again.
    const reader = await ObjectReader.open(fetch, {
      keyring: spec.keyring,
      expect: { datasource: this.opts.binding, path },
      where: path,
    });
    try {
      const layout = reader.layout(info.size);
      if (
        pinned &&
        (reader.messageId !== pinned.messageId || layout.plaintextSize !== pinned.plaintextBytes)
      ) {
        throw mismatch(
          path,
          `stored object is message ${reader.messageId}, the pinned manifest says ${pinned.messageId}`,
        );
      }
      return new SealedCodec(reader, layout);
    } catch (e) {
      reader.close();
      throw e;
    }
  }
}

function mismatch(path: string, message: string): MembraneError {
  return new MembraneError(VolumeErrorCode.MANIFEST_MISMATCH, message, { where: path });
}

export function changed(path: string): MembraneError {
  return new MembraneError(
    VolumeErrorCode.OBJECT_CHANGED,
    'object changed in the store while it was being read',
    {
      where: path,
    },
  );
}
