/**
 * FUSE paths ("/a/b") <-> object paths ("a/b"), the names the encryption context
 * binds. The root directory is "". Names that an object path cannot carry
 * faithfully (a backslash would be read as a separator by the core's
 * normalisation; NUL cannot be stored) are refused rather than silently changed.
 */
import { MembraneError } from '../../policy/errors.js';
import { VolumeErrorCode } from './errno.js';

export const ROOT = '';

/** Object path of a FUSE path; throws VOLUME_INVALID_NAME for names we cannot bind faithfully. */
export function objectPath(fusePath: string): string {
  if (fusePath === '/' || fusePath === '') return ROOT;
  const parts = fusePath.split('/').filter((p) => p !== '');
  for (const p of parts) {
    if (p === '.' || p === '..' || p.includes('\\') || p.includes('\0')) {
      throw new MembraneError(VolumeErrorCode.INVALID_NAME, `name '${p}' cannot be an object path`, {
        where: fusePath,
      });
    }
  }
  return parts.join('/');
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? ROOT : path.slice(0, i);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function join(dir: string, name: string): string {
  return dir === ROOT ? name : `${dir}/${name}`;
}

/** True if `path` is `dir` itself or lies below it. */
export function isWithin(path: string, dir: string): boolean {
  return dir === ROOT || path === dir || path.startsWith(`${dir}/`);
}

/** Every ancestor directory of an object path, nearest last: "a/b/c" -> ["", "a", "a/b"]. */
export function ancestors(path: string): string[] {
  const out = [ROOT];
  let i = path.indexOf('/');
  while (i >= 0) {
    out.push(path.slice(0, i));
    i = path.indexOf('/', i + 1);
  }
  return out;
}

/** `path` with the `from` prefix replaced by `to` (for directory renames). */
export function rebase(path: string, from: string, to: string): string {
  return path === from ? to : join(to, path.slice(from.length + 1));
}
