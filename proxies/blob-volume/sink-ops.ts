/**
 * A datasink: the app creates, writes, renames and deletes files; each file is
 * staged encrypted (staging.ts) and committed to the store as one atomic object
 * on close, fsync, or when a path operation completes it (commit.ts).
 *
 * What the view contains, and who may change what:
 *   - files this mount created (SinkFile, `files`): fully read-write;
 *   - directories this mount created (`dirs`) and directories implied by stored objects;
 *   - objects already in the store that this mount did not write ("foreign"):
 *     write-once, so never overwritten, truncated, renamed or deleted (EACCES);
 *     readable in secure and open mode, unreadable in trusted mode.
 * Open mode adds the output rules: a name that matches no allowed pattern cannot be
 * created or renamed to (EACCES), a file cannot grow beyond the size limit (EFBIG);
 * each refusal is an `output.denied` audit event.
 *
 * libfuse (high-level API, without hard_remove) unlinks a file that is still open
 * by renaming it to `.fuse_hidden…` and unlinking that name on release: such a
 * rename detaches the file (its object is deleted, it is never committed again).
 */
import { MembraneError } from '../../policy/errors.js';
import { MANIFEST_NAME } from '../../policy/manifest.js';
import type { Committer } from './commit.js';
import { VolumeErrorCode } from './errno.js';
import type { Attr, FsOps, Statfs } from './fuse-adapter.js';
import { Handles } from './handles.js';
import { VolumeEvent } from './hooks.js';
import type { SourceObject, SourceObjects } from './objects.js';
import type { OutputRulesPolicy } from './output-rules.js';
import { baseName, isWithin, join, parentOf, ROOT, rebase } from './paths.js';
import { ReadAhead } from './read-ahead.js';
import type { Reporter } from './report.js';
import { SinkFile } from './sink-file.js';
import { notFound } from './source-ops.js';
import type { SourceReader } from './source-reader.js';
import { Staging } from './staging.js';
import type { BlockCipher } from './staging-cipher.js';
import type { FdPool } from './staging-fds.js';
import type { BlobInfo, BlobStore } from './store/types.js';
import type { Listing, TreeSnapshot } from './tree.js';

const O_ACCMODE = 3;
const O_RDONLY = 0;
const O_TRUNC = 0o1000;
const HIDDEN_PREFIX = '.fuse_hidden';
const MANY = 0xffff_ffff;

type Handle =
  /** `wrote`: this handle wrote or truncated (only such a handle's flush commits, see flush()). */
  | { kind: 'sink'; file: SinkFile; writable: boolean; wrote: boolean }
  | { kind: 'source'; obj: SourceObject; ra: ReadAhead };

type Resolved =
  | { kind: 'dir' }
  | { kind: 'ours'; file: SinkFile }
  | { kind: 'foreign'; info: BlobInfo }
  | { kind: 'none' };

export interface ForeignReader {
  objects: SourceObjects;
  reader: SourceReader;
  readAheadFrames: (frameLength: number) => number;
}

export interface SinkVolumeParts {
  store: BlobStore;
  listing: Listing;
  committer: Committer;
  report: Reporter;
  /** Open mode only. */
  outputRules?: OutputRulesPolicy;
  stagingDir: string;
  /** Staging descriptors, shared by this sink's files (bounded; defect 6). */
  fds?: FdPool;
  /** A fresh staging cipher (one key per staging file). */
  cipher: () => BlockCipher;
  /** Reads objects this mount did not write; absent when the sink cannot read them (trusted). */
  foreign?: ForeignReader;
}

/**
 * Names Membrane keeps for itself in a sink (issue 12, defect 11): any segment starting
 * with `.membrane-` (store temp files `.membrane-tmp-*`, hidden from listings and swept
 * at the next mount) and `manifest.json` at the root (read by `membrane unprotect`).
 */
export const RESERVED_SEGMENT_PREFIX = '.membrane-';
export const RESERVED_ROOT_NAMES: readonly string[] = [MANIFEST_NAME];

export function isReservedName(path: string): boolean {
  return (
    RESERVED_ROOT_NAMES.includes(path) || path.split('/').some((s) => s.startsWith(RESERVED_SEGMENT_PREFIX))
  );
}

const err = (code: string, message: string, path: string) =>
  new MembraneError(code, message, { where: path });
const writeOnce = (path: string) =>
  err(VolumeErrorCode.WRITE_ONCE, 'object existed before this mount; datasink objects are write-once', path);

export class SinkVolume implements FsOps {
  private readonly files = new Map<string, SinkFile>();
  private readonly dirs = new Set<string>();
  /** Names under each directory contributed by `files` and `dirs` (the store listing adds the rest). */
  private readonly local = new Map<string, Set<string>>();
  private readonly handles = new Handles<Handle>();
  private readonly mounted = new Date();

  constructor(private readonly p: SinkVolumeParts) {}

  // ---- view ----

  private resolve(path: string, snap: TreeSnapshot): Resolved {
    if (path === ROOT) return { kind: 'dir' };
    const f = this.files.get(path);
    if (f) return { kind: 'ours', file: f };
    if (this.dirs.has(path)) return { kind: 'dir' };
    const e = snap.lookup(path);
    if (e?.kind === 'dir') return { kind: 'dir' };
    const { owned, gone } = this.p.committer;
    if (e?.kind === 'file' && e.info && !gone.has(path) && !owned.has(path))
      return { kind: 'foreign', info: e.info };
    return { kind: 'none' };
  }

  private children(dir: string, snap: TreeSnapshot): string[] {
    const names = new Set<string>();
    for (const name of snap.children(dir) ?? []) {
      const r = this.resolve(join(dir, name), snap);
      if (r.kind !== 'none' && !(r.kind === 'ours' && r.file.detached)) names.add(name);
    }
    for (const name of this.local.get(dir) ?? []) {
      const f = this.files.get(join(dir, name));
      if (!f?.detached) names.add(name);
    }
    return [...names];
  }

  private addLocal(path: string): void {
    const dir = parentOf(path);
    const s = this.local.get(dir) ?? new Set<string>();
    this.local.set(dir, s);
    s.add(baseName(path));
  }

  private removeLocal(path: string): void {
    const dir = parentOf(path);
    const s = this.local.get(dir);
    s?.delete(baseName(path));
    if (s?.size === 0) this.local.delete(dir);
  }

  private async parentDir(path: string, snap: TreeSnapshot): Promise<void> {
    const parent = this.resolve(parentOf(path), snap);
    if (parent.kind === 'none') throw notFound(parentOf(path));
    if (parent.kind !== 'dir') throw err(VolumeErrorCode.NOT_DIR, 'not a directory', parentOf(path));
  }

  /**
   * Every name the app gives (create, mkdir, rename): one the store cannot hold fails
   * now with ENAMETOOLONG instead of at commit (defect 3); Membrane's own names fail
   * with EACCES (defect 11); open sinks then apply their output rules.
   */
  private checkName(path: string): void {
    this.checkLength(path);
    if (isReservedName(path)) {
      this.p.report.event(VolumeEvent.NAME_RESERVED, path);
      throw err(VolumeErrorCode.RESERVED_NAME, 'this name is reserved for Membrane', path);
    }
    const rules = this.p.outputRules;
    if (rules && !rules.allowsName(path)) {
      this.p.report.event(VolumeEvent.OUTPUT_DENIED, path, { rule: 'name', allow: rules.rules.allow ?? [] });
      throw err(VolumeErrorCode.OUTPUT_NAME, 'output rules do not allow this object name', path);
    }
  }

  private checkLength(path: string): void {
    const lim = this.p.store.limits;
    if (!lim) return;
    const segs = path.split('/');
    const why =
      Buffer.byteLength(path) > lim.pathBytes
        ? `paths in this store hold at most ${lim.pathBytes} bytes`
        : segs.length > lim.segments
          ? `paths in this store have at most ${lim.segments} segments`
          : segs.some((s) => Buffer.byteLength(s) > lim.segmentBytes)
            ? `names in this store hold at most ${lim.segmentBytes} bytes`
            : undefined;
    if (why === undefined) return;
    this.p.report.event(VolumeEvent.NAME_TOO_LONG, path.slice(0, 256), { bytes: Buffer.byteLength(path) });
    throw err(VolumeErrorCode.NAME_TOO_LONG, why, path.slice(0, 256));
  }

  private checkSize(path: string, bytes: number): void {
    const rules = this.p.outputRules;
    if (rules && !rules.allowsSize(bytes)) {
      this.p.report.event(VolumeEvent.OUTPUT_DENIED, path, {
        rule: 'size',
        limit: rules.maxObjectBytes,
        attempted: bytes,
      });
      throw err(
        VolumeErrorCode.OUTPUT_SIZE,
        `output rules limit objects to ${rules.maxObjectBytes} bytes`,
        path,
      );
    }
  }

  // ---- attributes and directories ----

  async getattr(path: string): Promise<Attr> {
    const snap = await this.p.listing.snapshot();
    const r = this.resolve(path, snap);
    switch (r.kind) {
      case 'dir':
        return { kind: 'dir', size: 0, perm: 0o755, mtime: this.mounted };
      case 'ours':
        return { kind: 'file', size: r.file.size, perm: 0o644, mtime: r.file.mtime };
      case 'foreign': {
        const fr = this.p.foreign;
        if (!fr) return { kind: 'file', size: r.info.size, perm: 0o000, mtime: r.info.lastModified };
        const obj = await fr.objects.open(path, r.info);
        const size = obj.size;
        obj.release();
        return { kind: 'file', size, perm: 0o444, mtime: r.info.lastModified };
      }
      default:
        throw notFound(path);
    }
  }

  async readdir(path: string): Promise<string[]> {
    const snap = await this.p.listing.snapshot();
    const r = this.resolve(path, snap);
    if (r.kind === 'none') throw notFound(path);
    if (r.kind !== 'dir') throw err(VolumeErrorCode.NOT_DIR, 'not a directory', path);
    return this.children(path, snap);
  }

  async mkdir(path: string, _mode?: number): Promise<void> {
    const snap = await this.p.listing.snapshot();
    if (this.resolve(path, snap).kind !== 'none') throw err(VolumeErrorCode.EXISTS, 'already exists', path);
    await this.parentDir(path, snap);
    this.checkLength(path);
    if (isReservedName(path)) {
      this.p.report.event(VolumeEvent.NAME_RESERVED, path);
      throw err(VolumeErrorCode.RESERVED_NAME, 'this name is reserved for Membrane', path);
    }
    this.dirs.add(path);
    this.addLocal(path);
  }

  async rmdir(path: string): Promise<void> {
    if (path === ROOT) throw err(VolumeErrorCode.BUSY, 'cannot remove the root', path);
    this.p.listing.invalidate(); // emptiness must be judged on a fresh listing
    const snap = await this.p.listing.snapshot();
    const r = this.resolve(path, snap);
    if (r.kind === 'none') throw notFound(path);
    if (r.kind !== 'dir') throw err(VolumeErrorCode.NOT_DIR, 'not a directory', path);
    if (this.children(path, snap).length > 0)
      throw err(VolumeErrorCode.NOT_EMPTY, 'directory not empty', path);
    this.dirs.delete(path);
    this.removeLocal(path);
  }

  async setattr(path: string): Promise<void> {
    const snap = await this.p.listing.snapshot();
    if (this.resolve(path, snap).kind === 'none') throw notFound(path);
  }

  async unsupported(path: string): Promise<void> {
    throw err(VolumeErrorCode.NOT_SUPPORTED, 'links and special files are not supported', path);
  }

  async statfs(): Promise<Statfs> {
    return { blocks: MANY, bfree: MANY, files: MANY, ffree: MANY };
  }

  // ---- files ----

  async create(path: string, _mode?: number): Promise<number> {
    const snap = await this.p.listing.snapshot();
    await this.parentDir(path, snap);
    const r = this.resolve(path, snap);
    if (r.kind === 'ours') return this.openFile(r.file, true);
    if (r.kind === 'dir') throw err(VolumeErrorCode.IS_DIR, 'is a directory', path);
    if (r.kind === 'foreign') throw writeOnce(path);
    this.checkName(path);
    const staging = await Staging.create({
      dir: this.p.stagingDir,
      cipher: this.p.cipher(),
      fds: this.p.fds,
    });
    const raced = this.files.get(path);
    if (raced) {
      await staging.close();
      return this.openFile(raced, true);
    }
    const file = new SinkFile(path, staging);
    this.files.set(path, file);
    this.addLocal(path);
    return this.openFile(file, true);
  }

  private openFile(file: SinkFile, writable: boolean): number {
    file.handles++;
    return this.handles.add({ kind: 'sink', file, writable, wrote: false });
  }

  async open(path: string, flags: number): Promise<number> {
    const writable = (flags & O_ACCMODE) !== O_RDONLY;
    const snap = await this.p.listing.snapshot();
    const r = this.resolve(path, snap);
    if (r.kind === 'ours') return this.openFile(r.file, writable);
    if (r.kind === 'dir') throw err(VolumeErrorCode.IS_DIR, 'is a directory', path);
    if (r.kind === 'none') throw notFound(path);
    if (writable || (flags & O_TRUNC) !== 0) throw writeOnce(path);
    const fr = this.p.foreign;
    if (!fr)
      throw err(VolumeErrorCode.UNREADABLE, 'objects sealed to the recipient cannot be read here', path);
    const info = (await this.p.store.stat(path)) ?? r.info;
    const obj = await fr.objects.open(path, info);
    obj.openHandle();
    return this.handles.add({
      kind: 'source',
      obj,
      ra: new ReadAhead({ maxFrames: fr.readAheadFrames(obj.codec.frameLength) }),
    });
  }

  async read(_path: string, fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handles.get(fh);
    if (h.kind === 'source') return this.p.foreign!.reader.read(h.obj, h.ra, buf, len, pos);
    const file = h.file;
    return file.lock.run(() => file.staging.read(pos, buf.subarray(0, len)));
  }

  async write(path: string, fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handles.get(fh);
    if (h.kind !== 'sink' || !h.writable)
      throw err(VolumeErrorCode.BAD_HANDLE, 'handle is not open for writing', path);
    const file = h.file;
    this.checkSize(file.path, pos + len);
    h.wrote = true;
    await file.lock.run(async () => {
      await file.staging.write(pos, buf.subarray(0, len));
      file.touch();
    });
    return len;
  }

  async ftruncate(path: string, fh: number, size: number): Promise<void> {
    const h = this.handles.get(fh);
    if (h.kind !== 'sink') throw writeOnce(path);
    h.wrote = true;
    await this.resize(h.file, size, false);
  }

  async truncate(path: string, size: number): Promise<void> {
    const snap = await this.p.listing.snapshot();
    const r = this.resolve(path, snap);
    if (r.kind === 'ours') return this.resize(r.file, size, true);
    if (r.kind === 'dir') throw err(VolumeErrorCode.IS_DIR, 'is a directory', path);
    if (r.kind === 'foreign') throw writeOnce(path);
    throw notFound(path);
  }

  private async resize(file: SinkFile, size: number, commitIfClosed: boolean): Promise<void> {
    this.checkSize(file.path, size);
    await file.lock.run(async () => {
      await file.staging.truncate(size);
      file.touch();
      // A truncate by path with no open handle is a complete change: nothing else will commit it.
      if (commitIfClosed && file.handles === 0) await this.p.committer.commitLocked(file);
    });
  }

  /**
   * close(2) of a descriptor. Commits when this handle wrote: the app then learns of a
   * failed commit from close(), and the object is in the store when close() returns.
   * A handle that wrote nothing does not commit here: shells open, dup2 and close the
   * original descriptor before writing, which would commit an empty object first.
   * Such files (e.g. `touch`) are committed at release.
   */
  async flush(_path: string, fh: number): Promise<void> {
    const h = this.handles.get(fh);
    if (h.kind === 'sink' && h.wrote && h.file.dirty) await this.p.committer.commit(h.file);
  }

  async fsync(_path: string, fh: number): Promise<void> {
    const h = this.handles.get(fh);
    if (h.kind === 'sink' && h.file.dirty) await this.p.committer.commit(h.file);
  }

  async release(_path: string, fh: number): Promise<void> {
    const h = this.handles.take(fh);
    if (!h) return;
    if (h.kind === 'source') {
      h.obj.closeHandle();
      h.obj.release();
      return;
    }
    const file = h.file;
    try {
      // Normally flush() already committed; this catches writers that skipped close() paths (e.g. mmap).
      if (h.writable && file.dirty && !file.detached) await this.p.committer.commit(file);
    } finally {
      file.handles--;
      if (file.detached && file.handles === 0) await file.lock.run(() => file.staging.close());
    }
  }

  // ---- namespace changes ----

  async unlink(path: string): Promise<void> {
    const snap = await this.p.listing.snapshot();
    const r = this.resolve(path, snap);
    if (r.kind === 'dir') throw err(VolumeErrorCode.IS_DIR, 'is a directory', path);
    if (r.kind === 'foreign') throw writeOnce(path);
    if (r.kind === 'none') throw notFound(path);
    const file = r.file;
    this.files.delete(path);
    this.removeLocal(path);
    try {
      await this.detach(file);
    } catch (e) {
      // The stored object could not be deleted: the file stays, so the app sees a consistent view.
      file.detached = false;
      this.files.set(path, file);
      this.addLocal(path);
      throw e;
    }
    if (file.handles === 0) await file.lock.run(() => file.staging.close());
  }

  /** Deletes what `file` has in the store and marks it never to be committed again. */
  private async detach(file: SinkFile): Promise<void> {
    await file.lock.run(async () => {
      const { committer } = this.p;
      if (file.committedPath !== undefined) await committer.remove(file.committedPath);
      // An object this mount wrote under the file's current name (it replaced another file).
      if (committer.owned.has(file.path)) await committer.remove(file.path);
      file.committedPath = undefined;
      file.detached = true;
    });
  }

  async rename(src: string, dst: string): Promise<void> {
    if (src === dst) return;
    if (isWithin(dst, src))
      throw err(VolumeErrorCode.INVALID_NAME, 'cannot move a directory into itself', dst);
    const snap = await this.p.listing.snapshot();
    const s = this.resolve(src, snap);
    if (s.kind === 'none') throw notFound(src);
    if (s.kind === 'foreign') throw writeOnce(src);
    if (baseName(dst).startsWith(HIDDEN_PREFIX) && s.kind === 'ours') return this.hide(s.file, dst);
    await this.parentDir(dst, snap);
    const d = this.resolve(dst, snap);
    if (d.kind === 'foreign') throw writeOnce(dst);
    if (s.kind === 'dir') return this.renameDir(src, dst, d, snap);
    if (d.kind === 'dir') throw err(VolumeErrorCode.IS_DIR, 'is a directory', dst);
    this.checkName(dst);
    await this.move(s.file, dst, d.kind === 'ours' ? d.file : undefined);
  }

  /** libfuse's unlink-while-open: the file lives on under a hidden name, detached. */
  private async hide(file: SinkFile, hidden: string): Promise<void> {
    this.files.delete(file.path);
    this.removeLocal(file.path);
    await this.detach(file);
    file.path = hidden;
    this.files.set(hidden, file);
  }

  private async move(file: SinkFile, dst: string, replaced: SinkFile | undefined): Promise<void> {
    if (replaced) {
      // Its object at `dst` (if committed) stays until ours replaces it there (If-Match on our ETag).
      this.files.delete(dst);
      this.removeLocal(dst);
      await replaced.lock.run(async () => {
        if (replaced.committedPath !== undefined && replaced.committedPath !== dst)
          await this.p.committer.remove(replaced.committedPath);
        replaced.committedPath = undefined;
        replaced.detached = true;
        if (replaced.handles === 0) await replaced.staging.close();
      });
    }
    this.files.delete(file.path);
    this.removeLocal(file.path);
    file.path = dst;
    this.files.set(dst, file);
    this.addLocal(dst);
    // The path is bound into the encryption context: a new name means a new object.
    if (file.committedPath === dst) return;
    file.touch();
    if (file.handles === 0) {
      // Nobody has it open: seal under the new name now; the old object goes once that is safe.
      await this.p.committer.commit(file);
      return;
    }
    // Still open: it commits under the new name at close. Its old object goes now, so that the
    // old name can be reused at once (every object this mount owns is a live file's current name).
    const old = file.committedPath;
    if (old !== undefined) {
      await file.lock.run(async () => {
        await this.p.committer.remove(old);
        file.committedPath = undefined;
      });
    }
  }

  private async renameDir(src: string, dst: string, d: Resolved, snap: TreeSnapshot): Promise<void> {
    if (d.kind === 'ours') throw err(VolumeErrorCode.NOT_DIR, 'not a directory', dst);
    if (d.kind === 'dir' && this.children(dst, snap).length > 0)
      throw err(VolumeErrorCode.NOT_EMPTY, 'directory not empty', dst);
    for (const p of snap.paths()) {
      if (isWithin(p, src) && this.resolve(p, snap).kind === 'foreign') throw writeOnce(p);
    }
    const moving = [...this.files.values()].filter((f) => !f.detached && isWithin(f.path, src));
    this.checkLength(dst);
    if (isReservedName(dst)) {
      this.p.report.event(VolumeEvent.NAME_RESERVED, dst);
      throw err(VolumeErrorCode.RESERVED_NAME, 'this name is reserved for Membrane', dst);
    }
    for (const f of moving) this.checkName(rebase(f.path, src, dst));
    if (d.kind === 'dir') {
      this.dirs.delete(dst);
      this.removeLocal(dst);
    }
    const movedDirs = new Set<string>([src]);
    for (const dir of [...snap.directories(), ...this.dirs]) if (isWithin(dir, src)) movedDirs.add(dir);
    for (const dir of movedDirs) {
      this.dirs.delete(dir);
      this.removeLocal(dir);
    }
    for (const dir of movedDirs) {
      const moved = rebase(dir, src, dst);
      this.dirs.add(moved);
      this.addLocal(moved);
    }
    for (const f of moving) await this.move(f, rebase(f.path, src, dst), undefined);
    // Directories implied by the objects just moved away must not linger in a cached listing.
    this.p.listing.invalidate();
  }

  // ---- lifecycle ----

  /** Commits every file with uncommitted changes; returns the paths that failed. */
  async flushAll(): Promise<{ path: string; error: unknown }[]> {
    const failed: { path: string; error: unknown }[] = [];
    for (const file of [...this.files.values()]) {
      if (!file.dirty || file.detached) continue;
      try {
        await this.p.committer.commit(file);
      } catch (e) {
        failed.push({ path: file.path, error: e });
      }
    }
    return failed;
  }

  async close(): Promise<void> {
    // From here on nothing is committed: keys may be zeroed next (defect 6).
    this.p.committer.close();
    for (const h of this.handles.values()) {
      if (h.kind !== 'source') continue;
      h.obj.closeHandle();
      h.obj.release();
    }
    for (const f of this.files.values()) await f.lock.run(() => f.staging.close());
    this.files.clear();
  }
}
