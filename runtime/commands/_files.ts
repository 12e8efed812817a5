/**
 * File helpers shared by the keys/protect/unprotect commands: reading key files
 * with errors that name the file (never its bytes), writing secrets 0600 without
 * ever leaving a half-written file under the final name, and walking a tree of
 * objects in a stable order.
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp, type Stats, unlinkSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { MembraneError } from '../../policy/errors.js';
import { READ_CAPS, readCapped } from '../read-capped.js';

export const SECRET_MODE = 0o600;
export const PUBLIC_MODE = 0o644;
/** Temporaries start with this, so a crash leaves recognisable litter rather than a plausible object. */
export const TEMP_PREFIX = '.membrane-tmp-';

/** A fresh temporary name in the same directory as `target`, so the final rename stays atomic. */
export function tempPathFor(target: string): string {
  return join(dirname(target), `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
}

const liveTemps = new Set<string>();
let hooked = false;

/**
 * Registers a temporary for removal if the process is interrupted (Ctrl-C,
 * SIGTERM from an orchestrator) while it exists: an interrupted unprotect must
 * not leave partial plaintext behind either. Returns the function that
 * unregisters it once it has been renamed or unlinked. (SIGKILL cannot be caught;
 * what it leaves is a 0600 file named ${TEMP_PREFIX}*.)
 */
export function trackTemp(path: string): () => void {
  if (!hooked) {
    hooked = true;
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(sig, () => {
        for (const p of liveTemps) {
          try {
            unlinkSync(p);
          } catch {
            // already renamed or removed
          }
        }
        process.exit(128 + (osConstants.signals[sig] ?? 0));
      });
    }
  }
  liveTemps.add(path);
  return () => liveTemps.delete(path);
}

async function statOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await fsp.stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Writes `data` to `path` with `mode`. Without `force` an existing file is an
 * error (O_EXCL, so no race either); with `force` the new content goes to a
 * temporary and is renamed over the old file, so the result always has `mode`
 * even if the old file was more permissive.
 */
export async function writeNewFile(
  path: string,
  data: Uint8Array | string,
  opts: { mode: number; force?: boolean },
): Promise<void> {
  const target = opts.force ? tempPathFor(path) : path;
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, opts.mode);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST')
      throw new MembraneError('USAGE', `refusing to overwrite an existing file (use --force)`, {
        where: path,
      });
    throw new MembraneError('IO', `cannot create file: ${(e as Error).message}`, { where: path, cause: e });
  }
  try {
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    if (opts.force) await fsp.rename(target, path);
  } catch (e) {
    await fh.close().catch(() => {});
    await fsp.unlink(target).catch(() => {});
    throw new MembraneError('IO', `cannot write file: ${(e as Error).message}`, { where: path, cause: e });
  }
}

/**
 * Makes sure `dir` is a directory we can write into, creating it (and missing parents)
 * if needed — before any work, so a bad --out fails at once with a typed error. Parents
 * are created one by one (fs.mkdir's recursive mode loops forever under /proc).
 */
export async function prepareOutputDir(dir: string, flag = '--out'): Promise<void> {
  const abs = resolve(dir);
  const missing: string[] = [];
  let cur = abs;
  for (;;) {
    const st = await statOrUndefined(cur).catch((e: NodeJS.ErrnoException) => {
      throw new MembraneError('OUTPUT_UNUSABLE', `cannot use ${flag}: ${e.code ?? e.message}`, {
        where: dir,
        cause: e,
      });
    });
    if (st) {
      if (!st.isDirectory())
        throw new MembraneError(
          'OUTPUT_NOT_DIRECTORY',
          cur === abs
            ? `${flag} names an existing file; it must be a directory (new or existing)`
            : `${flag} cannot be created: ${cur} is not a directory`,
          { where: dir },
        );
      break;
    }
    missing.unshift(cur);
    const up = dirname(cur);
    if (up === cur) break;
    cur = up;
  }
  for (const d of missing) {
    try {
      await fsp.mkdir(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new MembraneError(
        'OUTPUT_UNUSABLE',
        `cannot create ${flag} directory: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        { where: d, cause: e },
      );
    }
  }
  try {
    await fsp.access(abs, constants.W_OK | constants.X_OK);
  } catch (e) {
    throw new MembraneError(
      'OUTPUT_UNUSABLE',
      `${flag} directory is not writable: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      { where: dir, cause: e },
    );
  }
}

/**
 * Checks, before a long run, that `file` can be written later: its directory exists and is
 * writable and `file` is not a directory (an existing regular file is replaced, as before).
 */
export async function assertOutputFile(file: string, flag: string): Promise<void> {
  const st = await statOrUndefined(file).catch(() => undefined);
  if (st?.isDirectory() || file.endsWith('/'))
    throw new MembraneError('OUTPUT_IS_DIRECTORY', `${flag} must name a file, not a directory`, {
      where: file,
    });
  if (st && !st.isFile())
    throw new MembraneError('OUTPUT_UNUSABLE', `${flag} must name a regular file`, { where: file });
  try {
    await fsp.access(dirname(resolve(file)), constants.W_OK | constants.X_OK);
  } catch (e) {
    throw new MembraneError(
      'OUTPUT_UNUSABLE',
      `${flag}: its directory does not exist or is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      { where: file, cause: e },
    );
  }
}

/** Refuses (before any work) an output that exists, unless --force. */
export async function assertWritable(path: string, force: boolean | undefined): Promise<void> {
  if (!force && (await statOrUndefined(path)))
    throw new MembraneError('USAGE', `refusing to overwrite an existing file (use --force)`, { where: path });
}

/** Reads an input file; a missing or unreadable file is a usage error that names the flag. */
export async function readInput(
  path: string,
  flag: string,
  maxBytes: number = READ_CAPS.key,
): Promise<Buffer> {
  // Regular files only, capped: a directory, FIFO or /dev/zero is a typed error (exit 1), never a hang.
  return readCapped(path, { maxBytes, what: `${flag} file` });
}

export function isInside(child: string, parent: string): boolean {
  const rel = relative(resolve(parent), resolve(child));
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

export interface TreeEntry {
  /** Absolute file path. */
  abs: string;
  /** '/'-separated path relative to the tree root (for a single file: its base name). */
  rel: string;
  /** Regular file? Anything else (symlink, socket, device) is reported, never followed. */
  regular: boolean;
  size: number;
}

/**
 * Lists a file or a directory tree, sorted by relative path (code-unit order,
 * the same order the manifest uses). Symlinks are not followed: following them
 * could leave the tree or loop, and an object's location must be what it looks like.
 */
export async function walkTree(root: string): Promise<{ isDir: boolean; entries: TreeEntry[] }> {
  let st: Stats;
  try {
    st = await fsp.stat(root);
  } catch (e) {
    throw new MembraneError('USAGE', `cannot read --in: ${(e as NodeJS.ErrnoException).code ?? e}`, {
      where: root,
      cause: e,
    });
  }
  if (!st.isDirectory()) {
    return {
      isDir: false,
      entries: [{ abs: resolve(root), rel: basename(root), regular: st.isFile(), size: st.size }],
    };
  }
  const entries: TreeEntry[] = [];
  const visit = async (dir: string, prefix: string): Promise<void> => {
    for (const d of await fsp.readdir(dir, { withFileTypes: true })) {
      const abs = join(dir, d.name);
      const rel = prefix ? `${prefix}/${d.name}` : d.name;
      if (d.isDirectory()) await visit(abs, rel);
      else if (d.isFile()) entries.push({ abs, rel, regular: true, size: (await fsp.stat(abs)).size });
      else entries.push({ abs, rel, regular: false, size: 0 });
    }
  };
  await visit(resolve(root), '');
  entries.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return { isDir: true, entries };
}

/**
 * mkdir -p that remembers what it created, so a failed object can take its
 * freshly created (still empty) parent directories with it.
 */
export async function makeParents(dir: string): Promise<string | undefined> {
  return fsp.mkdir(dir, { recursive: true });
}

/** Removes `dir` and its parents up to and including `first` while they are empty. */
export async function removeEmptyDirs(dir: string, first: string | undefined): Promise<void> {
  if (!first) return;
  const stop = resolve(first);
  for (let d = resolve(dir); isInside(d, stop); d = dirname(d)) {
    try {
      await fsp.rmdir(d);
    } catch {
      return; // not empty (another object lives there) or already gone
    }
    if (d === stop) return;
  }
}
