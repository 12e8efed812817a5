/**
 * Bridges the volume's async, typed operations (FsOps: object paths, thrown
 * MembraneErrors) to fuse-native's callback handlers (FUSE paths, negative
 * errno). Every handler answers exactly once, whatever happens: FUSE threads
 * wait for it (timeouts are disabled, see volume.ts).
 */
import { errnoOf, isExpected } from './errno.js';
import { objectPath } from './paths.js';
import type { Reporter } from './report.js';

export interface Attr {
  kind: 'file' | 'dir';
  size: number;
  /** Permission bits only. */
  perm: number;
  mtime: Date;
}

export interface Statfs {
  blocks: number;
  bfree: number;
  files: number;
  ffree: number;
}

/** The operations a volume implements; paths are object paths ('' = root). */
export interface FsOps {
  getattr(path: string): Promise<Attr>;
  readdir(path: string): Promise<string[]>;
  open(path: string, flags: number): Promise<number>;
  create(path: string, mode: number): Promise<number>;
  read(path: string, fh: number, buf: Buffer, len: number, pos: number): Promise<number>;
  write(path: string, fh: number, buf: Buffer, len: number, pos: number): Promise<number>;
  flush(path: string, fh: number): Promise<void>;
  fsync(path: string, fh: number): Promise<void>;
  release(path: string, fh: number): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  ftruncate(path: string, fh: number, size: number): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(src: string, dst: string): Promise<void>;
  mkdir(path: string, mode: number): Promise<void>;
  rmdir(path: string): Promise<void>;
  /** chmod / chown / utimens: accepted for existing paths (tools like cp -p and tar need them), no effect. */
  setattr(path: string): Promise<void>;
  /** link / symlink / mknod. */
  unsupported(path: string): Promise<void>;
  statfs(): Promise<Statfs>;
}

type Cb = (...args: unknown[]) => void;

const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;
const BLOCK = 4096;

export function toStat(a: Attr): Record<string, number | Date> {
  return {
    mode: (a.kind === 'dir' ? 0o040000 : 0o100000) | a.perm,
    size: a.size,
    nlink: a.kind === 'dir' ? 2 : 1,
    uid,
    gid,
    blksize: 65536,
    blocks: Math.ceil(a.size / 512),
    mtime: a.mtime,
    atime: a.mtime,
    ctime: a.mtime,
  };
}

/** fuse-native handler object for `ops`. */
export function fuseHandlers(ops: FsOps, report: Reporter): Record<string, Cb> {
  // Runs one op: maps the FUSE path, calls, answers with (0, value) / (n) / (-errno).
  const run = <T>(
    op: string,
    fusePath: unknown,
    cb: Cb,
    fn: (p: string) => Promise<T>,
    answer: (v: T) => void,
  ) => {
    let p: string;
    try {
      p = objectPath(typeof fusePath === 'string' ? fusePath : '/');
    } catch (e) {
      cb(errnoOf(e));
      return;
    }
    fn(p).then(answer, (e: unknown) => {
      if (!isExpected(e))
        report.log(`${report.volume}: ${op} /${p}: ${e instanceof Error ? e.message : String(e)}`);
      cb(errnoOf(e));
    });
  };
  const done = (cb: Cb) => () => cb(0);
  return {
    getattr: (path, cb) =>
      run(
        'getattr',
        path,
        cb as Cb,
        (p) => ops.getattr(p),
        (a) => (cb as Cb)(0, toStat(a)),
      ),
    readdir: (path, cb) =>
      run(
        'readdir',
        path,
        cb as Cb,
        (p) => ops.readdir(p),
        (names) => (cb as Cb)(0, ['.', '..', ...names]),
      ),
    open: (path, flags, cb) =>
      run(
        'open',
        path,
        cb as Cb,
        (p) => ops.open(p, flags as number),
        (fh) => (cb as Cb)(0, fh),
      ),
    create: (path, mode, cb) =>
      run(
        'create',
        path,
        cb as Cb,
        (p) => ops.create(p, mode as number),
        (fh) => (cb as Cb)(0, fh),
      ),
    read: (path, fh, buf, len, pos, cb) =>
      run(
        'read',
        path,
        cb as Cb,
        (p) => ops.read(p, fh as number, buf as Buffer, len as number, pos as number),
        (n) => (cb as Cb)(n),
      ),
    write: (path, fh, buf, len, pos, cb) =>
      run(
        'write',
        path,
        cb as Cb,
        (p) => ops.write(p, fh as number, buf as Buffer, len as number, pos as number),
        (n) => (cb as Cb)(n),
      ),
    flush: (path, fh, cb) => run('flush', path, cb as Cb, (p) => ops.flush(p, fh as number), done(cb as Cb)),
    // fuse-native passes (path, datasync, fh, cb) — its README has the order wrong.
    fsync: (path, _datasync, fh, cb) =>
      run('fsync', path, cb as Cb, (p) => ops.fsync(p, fh as number), done(cb as Cb)),
    release: (path, fh, cb) =>
      run('release', path, cb as Cb, (p) => ops.release(p, fh as number), done(cb as Cb)),
    truncate: (path, size, cb) =>
      run('truncate', path, cb as Cb, (p) => ops.truncate(p, size as number), done(cb as Cb)),
    ftruncate: (path, fh, size, cb) =>
      run('ftruncate', path, cb as Cb, (p) => ops.ftruncate(p, fh as number, size as number), done(cb as Cb)),
    unlink: (path, cb) => run('unlink', path, cb as Cb, (p) => ops.unlink(p), done(cb as Cb)),
    rename: (src, dst, cb) => {
      let d: string;
      try {
        d = objectPath(dst as string);
      } catch (e) {
        (cb as Cb)(errnoOf(e));
        return;
      }
      run('rename', src, cb as Cb, (p) => ops.rename(p, d), done(cb as Cb));
    },
    mkdir: (path, mode, cb) =>
      run('mkdir', path, cb as Cb, (p) => ops.mkdir(p, mode as number), done(cb as Cb)),
    rmdir: (path, cb) => run('rmdir', path, cb as Cb, (p) => ops.rmdir(p), done(cb as Cb)),
    chmod: (path, _mode, cb) => run('chmod', path, cb as Cb, (p) => ops.setattr(p), done(cb as Cb)),
    chown: (path, _uid, _gid, cb) => run('chown', path, cb as Cb, (p) => ops.setattr(p), done(cb as Cb)),
    utimens: (path, _atime, _mtime, cb) =>
      run('utimens', path, cb as Cb, (p) => ops.setattr(p), done(cb as Cb)),
    link: (_src, dst, cb) => run('link', dst, cb as Cb, (p) => ops.unsupported(p), done(cb as Cb)),
    symlink: (_target, path, cb) => run('symlink', path, cb as Cb, (p) => ops.unsupported(p), done(cb as Cb)),
    mknod: (path, _mode, _dev, cb) => run('mknod', path, cb as Cb, (p) => ops.unsupported(p), done(cb as Cb)),
    statfs: (_path, cb) =>
      ops.statfs().then(
        (s) =>
          (cb as Cb)(0, {
            bsize: BLOCK,
            frsize: BLOCK,
            blocks: s.blocks,
            bfree: s.bfree,
            bavail: s.bfree,
            files: s.files,
            ffree: s.ffree,
            favail: s.ffree,
            fsid: 0,
            flag: 0,
            namemax: 255,
          }),
        (e: unknown) => (cb as Cb)(errnoOf(e)),
      ),
  } as Record<string, Cb>;
}
