/**
 * `fs` store: objects are files under a root directory. The embedded default
 * for local runs and the demo. put() writes a hidden temp file in the target
 * directory, fsyncs it, and renames it over the target (atomic on POSIX), so a
 * crash leaves the old object or the new one. ETag = size-mtimeNs-ino, which
 * changes on every replacement.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type FileHandle, link, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { MembraneError } from '../../../policy/errors.js';
import { storePath } from './paths.js';
import { type BlobInfo, type BlobStore, type PutOptions, StoreErrorCode } from './types.js';

const TEMP_PREFIX = '.membrane-tmp-';

export class FsStore implements BlobStore {
  readonly kind = 'fs';
  readonly description: string;

  constructor(readonly root: string) {
    this.description = `fs:${root}`;
  }

  private file(p: string): string {
    return join(this.root, ...storePath(p).split('/'));
  }

  async *list(prefix = ''): AsyncIterable<BlobInfo> {
    const walk = async function* (this: FsStore, dir: string): AsyncIterable<BlobInfo> {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw ioError(e, this.description);
      }
      for (const d of entries) {
        if (d.name.startsWith(TEMP_PREFIX)) continue;
        const full = join(dir, d.name);
        if (d.isDirectory()) yield* walk.call(this, full);
        else if (d.isFile()) {
          const path = relative(this.root, full).split(sep).join('/');
          if (path.startsWith(prefix)) {
            const info = await this.stat(path);
            if (info) yield info;
          }
        }
      }
    };
    yield* walk.call(this, this.root);
  }

  async stat(p: string): Promise<BlobInfo | undefined> {
    try {
      const s = await stat(this.file(p), { bigint: true });
      if (!s.isFile()) return undefined;
      return {
        path: storePath(p),
        size: Number(s.size),
        etag: etagOf(s.size, s.mtimeNs, s.ino),
        lastModified: new Date(Number(s.mtimeMs)),
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR')
        return undefined;
      throw ioError(e, p);
    }
  }

  async read(p: string, start: number, end: number, opts: { ifMatch?: string } = {}): Promise<Buffer> {
    let fh: FileHandle;
    try {
      fh = await open(this.file(p), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT')
        throw new MembraneError(StoreErrorCode.NOT_FOUND, `object not found`, { where: p });
      throw ioError(e, p);
    }
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
    let fh: FileHandle;
    try {
      fh = await open(this.file(p), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT')
        throw new MembraneError(StoreErrorCode.NOT_FOUND, 'object not found', { where: p });
      throw ioError(e, p);
    }
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
    const walk = async (dir: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const d of entries) {
        const full = join(dir, d.name);
        if (d.isDirectory()) await walk(full);
        else if (d.name.startsWith(TEMP_PREFIX)) {
          await unlink(full).then(
            () => removed++,
            () => {},
          );
        }
      }
    };
    await walk(this.root);
    return removed;
  }

  async put(
    p: string,
    source: AsyncIterable<Uint8Array> | Uint8Array,
    opts: PutOptions = {},
  ): Promise<BlobInfo> {
    const target = this.file(p);
    await mkdir(dirname(target), { recursive: true });
    const tmp = join(dirname(target), TEMP_PREFIX + randomBytes(8).toString('hex'));
    const fh = await open(tmp, 'wx', 0o600);
    try {
      if (source instanceof Uint8Array) await fh.writeFile(source);
      else for await (const chunk of source) await fh.write(chunk);
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
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
        // link() fails if the target exists: an atomic create-if-absent.
        try {
          await link(tmp, target);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
            throw new MembraneError(StoreErrorCode.PRECONDITION, 'object already exists (write-once)', {
              where: p,
            });
          }
          throw ioError(e, p);
        }
        await unlink(tmp);
      } else {
        await rename(tmp, target);
      }
      await syncDir(dirname(target));
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
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
    try {
      await rm(this.file(p));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT')
        throw new MembraneError(StoreErrorCode.NOT_FOUND, 'object not found', { where: p });
      throw ioError(e, p);
    }
  }
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

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

function ioError(e: unknown, where: string): MembraneError {
  if (e instanceof MembraneError) return e;
  const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
  return new MembraneError(StoreErrorCode.IO, `store I/O failed (${code})`, { where, cause: e });
}
