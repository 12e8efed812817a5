/**
 * `fs` store: objects are files under a root directory. The embedded default
 * for local runs and the demo. put() writes a hidden temp file in the target
 * directory, fsyncs it, and renames it over the target (atomic on POSIX), so a
 * crash leaves the old object or the new one. ETag = size-mtimeNs-ino, which
 * changes on every replacement.
 *
 * Symbolic links below the root are never followed (issue 12, defect 7: a link
 * planted in a sink store sent committed objects outside it). Node has no openat(),
 * so every path is walked one segment at a time: each directory is opened with
 * O_DIRECTORY|O_NOFOLLOW relative to its parent's descriptor, through the kernel's
 * /proc/self/fd/<fd>/<name> (the magic link resolves to the open directory itself,
 * so a rename or link swapped in above it after it was opened changes nothing), and
 * the object is opened, linked, renamed or unlinked as a name in that directory
 * (O_NOFOLLOW on opens; link, rename and unlink never follow their last segment).
 * A link anywhere on the way fails with STORE_LINK. lstat-then-open checks were
 * rejected: a link swapped in between the check and the use wins that race.
 * The root itself is operator configuration and may be a link.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, type Dirent } from 'node:fs';
import { type FileHandle, link, lstat, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { isMembraneError, MembraneError } from '../../../policy/errors.js';
import { storePath } from './paths.js';
import { type BlobInfo, type BlobStore, type NameLimits, type PutOptions, StoreErrorCode } from './types.js';

const TEMP_PREFIX = '.membrane-tmp-';
/** Names a datasink must not let the app create in this store (they are Membrane's). */
export const FS_STORE_RESERVED_PREFIX = TEMP_PREFIX;
const O_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const PATH_MAX = 4096;

/** A name inside an open directory, for the path-taking syscalls Node offers. */
const at = (dir: FileHandle, name: string) => `/proc/self/fd/${dir.fd}/${name}`;

const errno = (e: unknown) => (e as NodeJS.ErrnoException).code;

export class FsStore implements BlobStore {
  readonly kind = 'fs';
  readonly description: string;
  readonly limits: NameLimits;

  constructor(readonly root: string) {
    this.description = `fs:${root}`;
    // The object must also be reachable by its full path (tools, unprotect): PATH_MAX
    // covers root + '/' + path + NUL.
    this.limits = {
      pathBytes: PATH_MAX - Buffer.byteLength(root) - 2,
      segmentBytes: 255,
      segments: PATH_MAX,
    };
  }

  async probe(mustExist: boolean): Promise<void> {
    let s: import('node:fs').Stats;
    try {
      s = await stat(this.root);
    } catch (e) {
      if (errno(e) === 'ENOENT' && !mustExist) return;
      if (errno(e) === 'ENOENT')
        throw new MembraneError(StoreErrorCode.NOT_FOUND, 'store directory does not exist', {
          where: this.description,
        });
      throw ioError(e, this.description);
    }
    if (!s.isDirectory())
      throw new MembraneError(StoreErrorCode.CONFIG, 'store path is not a directory', {
        where: this.description,
      });
  }

  /** The root, opened as a directory. */
  private async openRoot(create: boolean): Promise<FileHandle> {
    if (create) await mkdir(this.root, { recursive: true });
    try {
      return await open(this.root, constants.O_RDONLY | constants.O_DIRECTORY);
    } catch (e) {
      throw walkError(e, this.description);
    }
  }

  /**
   * The directory holding object `p` and the object's own name, without following links.
   * `create`: missing directories are made. Throws STORE_NOT_FOUND when one is missing.
   */
  private async parentOf(p: string, create: boolean): Promise<{ dir: FileHandle; name: string }> {
    const segs = storePath(p).split('/');
    const name = segs.pop()!;
    let dir = await this.openRoot(create);
    try {
      for (const seg of segs) {
        const next = await openSub(dir, seg, create, p);
        await dir.close();
        dir = next;
      }
    } catch (e) {
      await dir.close().catch(() => {});
      throw e;
    }
    return { dir, name };
  }

  /** Opens object `p` for reading, refusing links. */
  private async openObject(p: string): Promise<FileHandle> {
    const { dir, name } = await this.parentOf(p, false);
    try {
      return await open(at(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      throw walkError(e, p);
    } finally {
      await dir.close();
    }
  }

  async *list(prefix = ''): AsyncIterable<BlobInfo> {
    let rootDir: FileHandle;
    try {
      rootDir = await this.openRoot(false);
    } catch (e) {
      if (isMembraneError(e, StoreErrorCode.NOT_FOUND)) return;
      throw e;
    }
    const walk = async function* (this: FsStore, dir: FileHandle, rel: string): AsyncIterable<BlobInfo> {
      let entries: Dirent[];
      try {
        entries = await readdir(`/proc/self/fd/${dir.fd}`, { withFileTypes: true });
      } catch (e) {
        throw ioError(e, this.description);
      }
      for (const d of entries) {
        if (d.name.startsWith(TEMP_PREFIX)) continue;
        const path = rel ? `${rel}/${d.name}` : d.name;
        // Links (to files or directories) are neither: never listed, never entered.
        if (d.isDirectory()) {
          let sub: FileHandle;
          try {
            sub = await open(at(dir, d.name), O_DIR);
          } catch (e) {
            if (errno(e) === 'ENOENT' || errno(e) === 'ELOOP' || errno(e) === 'ENOTDIR') continue;
            throw ioError(e, path);
          }
          try {
            yield* walk.call(this, sub, path);
          } finally {
            await sub.close();
          }
        } else if (d.isFile() && path.startsWith(prefix)) {
          const s = await lstat(at(dir, d.name), { bigint: true }).catch(() => undefined);
          if (s?.isFile()) yield infoOf(path, s);
        }
      }
    };
    try {
      yield* walk.call(this, rootDir, '');
    } finally {
      await rootDir.close();
    }
  }

  async stat(p: string): Promise<BlobInfo | undefined> {
    let parent: { dir: FileHandle; name: string };
    try {
      parent = await this.parentOf(p, false);
    } catch (e) {
      if (isMembraneError(e, StoreErrorCode.NOT_FOUND)) return undefined;
      throw e;
    }
    try {
      const s = await lstat(at(parent.dir, parent.name), { bigint: true });
      if (s.isSymbolicLink())
        throw new MembraneError(StoreErrorCode.LINK, 'a symbolic link in the store is never followed', {
          where: p,
        });
      if (!s.isFile()) return undefined;
      return infoOf(storePath(p), s);
    } catch (e) {
      if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return undefined;
      throw ioError(e, p);
    } finally {
      await parent.dir.close();
    }
  }

  async read(p: string, start: number, end: number, opts: { ifMatch?: string } = {}): Promise<Buffer> {
    const fh = await this.openObject(p);
    try {
      if (opts.ifMatch) await checkVersion(fh, opts.ifMatch, p);
      return await preadRange(fh, start, end);
    } finally {
      await fh.close();
    }
  }

  /**
   * A reader pinned to one object version: the ETag is checked once against the open
   * descriptor, then reads are plain preads. Replacement by rename leaves this
   * descriptor on the old inode, so the version read cannot change underneath.
   */
  async openVersion(
    p: string,
    etag: string,
  ): Promise<{ read(start: number, end: number): Promise<Buffer>; close(): Promise<void> }> {
    const fh = await this.openObject(p);
    try {
      await checkVersion(fh, etag, p);
    } catch (e) {
      await fh.close();
      throw e;
    }
    return { read: (start, end) => preadRange(fh, start, end), close: () => fh.close() };
  }

  /**
   * Removes temp files left by put()s interrupted by a crash. Datasinks are single
   * writer (one clean room owns a sink), so every temp file found at mount time is
   * an orphan. Returns how many were removed.
   */
  async sweep(): Promise<number> {
    let removed = 0;
    const walk = async (dir: FileHandle): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(`/proc/self/fd/${dir.fd}`, { withFileTypes: true });
      } catch {
        return;
      }
      for (const d of entries) {
        if (d.isDirectory()) {
          const sub = await open(at(dir, d.name), O_DIR).catch(() => undefined);
          if (!sub) continue;
          try {
            await walk(sub);
          } finally {
            await sub.close();
          }
        } else if (d.name.startsWith(TEMP_PREFIX)) {
          await unlink(at(dir, d.name)).then(
            () => removed++,
            () => {},
          );
        }
      }
    };
    const rootDir = await this.openRoot(false).catch(() => undefined);
    if (!rootDir) return 0;
    try {
      await walk(rootDir);
    } finally {
      await rootDir.close();
    }
    return removed;
  }

  async put(
    p: string,
    source: AsyncIterable<Uint8Array> | Uint8Array,
    opts: PutOptions = {},
  ): Promise<BlobInfo> {
    const { dir, name } = await this.parentOf(p, true);
    try {
      const tmp = TEMP_PREFIX + randomBytes(8).toString('hex');
      // O_EXCL: never opens an existing name, link or not.
      const fh = await open(at(dir, tmp), 'wx', 0o600).catch((e: unknown) => {
        throw ioError(e, p);
      });
      try {
        if (source instanceof Uint8Array) await fh.writeFile(source);
        else for await (const chunk of source) await fh.write(chunk);
        await fh.sync();
      } catch (e) {
        await fh.close().catch(() => {});
        await unlink(at(dir, tmp)).catch(() => {});
        throw ioError(e, p);
      }
      await fh.close();
      try {
        if (opts.ifMatch) {
          const cur = await this.stat(p);
          if (!cur || cur.etag !== opts.ifMatch) {
            throw new MembraneError(StoreErrorCode.PRECONDITION, 'object changed since it was read', {
              where: p,
            });
          }
        }
        if (opts.ifNoneMatch === '*') {
          // link() fails if the target exists (a link included): an atomic create-if-absent.
          try {
            await link(at(dir, tmp), at(dir, name));
          } catch (e) {
            if (errno(e) === 'EEXIST') {
              throw new MembraneError(StoreErrorCode.PRECONDITION, 'object already exists (write-once)', {
                where: p,
              });
            }
            throw ioError(e, p);
          }
          await unlink(at(dir, tmp));
        } else {
          // rename() replaces the name itself (a link planted there included), never its target.
          await rename(at(dir, tmp), at(dir, name));
        }
        await dir.sync();
      } catch (e) {
        await unlink(at(dir, tmp)).catch(() => {});
        throw ioError(e, p);
      }
    } finally {
      await dir.close();
    }
    const info = await this.stat(p);
    if (!info) throw new MembraneError(StoreErrorCode.IO, 'object vanished after commit', { where: p });
    return info;
  }

  async delete(p: string, opts: { ifMatch?: string } = {}): Promise<void> {
    if (opts.ifMatch) {
      const cur = await this.stat(p);
      if (!cur || cur.etag !== opts.ifMatch)
        throw new MembraneError(StoreErrorCode.PRECONDITION, 'object changed', { where: p });
    }
    const { dir, name } = await this.parentOf(p, false);
    try {
      await unlink(at(dir, name));
    } catch (e) {
      if (errno(e) === 'ENOENT')
        throw new MembraneError(StoreErrorCode.NOT_FOUND, 'object not found', { where: p });
      throw ioError(e, p);
    } finally {
      await dir.close();
    }
  }
}

/** Opens (creating when asked) the directory `seg` inside `dir`, never through a link. */
async function openSub(dir: FileHandle, seg: string, create: boolean, where: string): Promise<FileHandle> {
  try {
    return await open(at(dir, seg), O_DIR);
  } catch (e) {
    if (!(create && errno(e) === 'ENOENT')) throw await subError(e, dir, seg, where);
  }
  try {
    await mkdir(at(dir, seg), 0o755);
  } catch (e) {
    if (errno(e) !== 'EEXIST') throw walkError(e, where);
  }
  try {
    return await open(at(dir, seg), O_DIR);
  } catch (e) {
    throw await subError(e, dir, seg, where);
  }
}

/**
 * O_DIRECTORY|O_NOFOLLOW on a link fails with ENOTDIR (or ELOOP): the refusal has
 * happened already; lstat only tells which error to report.
 */
async function subError(e: unknown, dir: FileHandle, seg: string, where: string): Promise<MembraneError> {
  if (errno(e) === 'ENOTDIR') {
    const s = await lstat(at(dir, seg)).catch(() => undefined);
    if (s?.isSymbolicLink()) return walkError(Object.assign(new Error('link'), { code: 'ELOOP' }), where);
  }
  return walkError(e, where);
}

/** ELOOP from O_NOFOLLOW is a link; ENOENT/ENOTDIR on the way is "not found". */
function walkError(e: unknown, where: string): MembraneError {
  if (e instanceof MembraneError) return e;
  const code = errno(e);
  if (code === 'ELOOP')
    return new MembraneError(StoreErrorCode.LINK, 'a symbolic link in the store is never followed', {
      where,
      cause: e,
    });
  if (code === 'ENOENT' || code === 'ENOTDIR')
    return new MembraneError(StoreErrorCode.NOT_FOUND, 'object not found', { where, cause: e });
  return ioError(e, where);
}

function infoOf(path: string, s: import('node:fs').BigIntStats): BlobInfo {
  return {
    path,
    size: Number(s.size),
    etag: etagOf(s.size, s.mtimeNs, s.ino),
    lastModified: new Date(Number(s.mtimeMs)),
  };
}

/** Fails with STORE_PRECONDITION unless the open file is still the version `etag` names. */
async function checkVersion(fh: FileHandle, etag: string, where: string): Promise<void> {
  const s = await fh.stat({ bigint: true });
  if (etagOf(s.size, s.mtimeNs, s.ino) !== etag) {
    throw new MembraneError(StoreErrorCode.PRECONDITION, 'object changed since it was opened', { where });
  }
}

/** Bytes [start, end) of an open file; shorter only at its end. */
async function preadRange(fh: FileHandle, start: number, end: number): Promise<Buffer> {
  const len = Math.max(0, end - start);
  const buf = Buffer.allocUnsafeSlow(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, start + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === len ? buf : buf.subarray(0, got);
}

function etagOf(size: bigint, mtimeNs: bigint, ino: bigint): string {
  return `"${createHash('sha256').update(`${size}-${mtimeNs}-${ino}`).digest('hex').slice(0, 24)}"`;
}

function ioError(e: unknown, where: string): MembraneError {
  if (e instanceof MembraneError) return e;
  const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
  return new MembraneError(StoreErrorCode.IO, `store I/O failed (${code})`, { where, cause: e });
}
