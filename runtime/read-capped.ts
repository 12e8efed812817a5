/**
 * Reading an input file the operator names (keys, DEKs, recipients, the spec, SAS, shared
 * keys, tokens, audit logs) without trusting what is at that path: only a regular file
 * is read, and never more than a cap. `/dev/zero` once grew memory without bound and a
 * FIFO blocked forever; both are refused here before a byte is read.
 *
 *   open(O_RDONLY | O_NONBLOCK | O_NOCTTY)  — a FIFO or device cannot block the open
 *   fstat on the descriptor                  — the thing opened is the thing checked (no race)
 *   S_ISREG, size <= cap                     — typed error naming the file otherwise
 *   read at most cap + 1 bytes               — a file growing while read is still bounded
 *
 * Symbolic links are followed (operators link key files from mounted secrets), but what
 * they lead to must be a regular file.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import { MembraneError } from '../policy/errors.js';

export const ReadErrorCode = {
  UNREADABLE: 'FILE_UNREADABLE',
  NOT_REGULAR: 'FILE_NOT_REGULAR',
  TOO_LARGE: 'FILE_TOO_LARGE',
} as const;

/** Caps by kind of input: generous for what they hold, far below what could hurt. */
export const READ_CAPS = {
  /** PEM/DER keys, raw or wrapped DEKs, tokens, SAS, shared keys. */
  key: 64 * 1024,
  /** Clean-room specs, release policies, manifests. */
  document: 4 * 1024 * 1024,
  /** Audit logs read whole for verification. */
  auditLog: 1024 * 1024 * 1024,
} as const;

export interface ReadCappedOptions {
  /** Maximum bytes. */
  maxBytes: number;
  /** What the file is, for messages ("DEK file", "recipient public key"). */
  what: string;
}

export async function readCapped(path: string, opts: ReadCappedOptions): Promise<Buffer> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'it does not exist'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'it is a directory'
            : (code ?? (e as Error).message);
    throw new MembraneError(ReadErrorCode.UNREADABLE, `cannot read the ${opts.what}: ${why}`, {
      where: path,
      cause: e,
    });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile())
      throw new MembraneError(
        ReadErrorCode.NOT_REGULAR,
        `the ${opts.what} must be a regular file, not ${kindOf(st)}`,
        { where: path },
      );
    if (st.size > opts.maxBytes) throw tooLarge(path, opts);
    const buf = Buffer.alloc(Math.min(st.size, opts.maxBytes) + 1);
    let off = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
      if (off === buf.length) {
        // More than fstat reported: over the cap, or a file being written while we read it.
        buf.fill(0);
        if (off > opts.maxBytes) throw tooLarge(path, opts);
        throw new MembraneError(ReadErrorCode.UNREADABLE, `the ${opts.what} changed while being read`, {
          where: path,
        });
      }
    }
    const out = Buffer.from(buf.subarray(0, off));
    buf.fill(0); // the staging copy may hold key bytes
    return out;
  } finally {
    await fh.close().catch(() => {});
  }
}

/** UTF-8 text of a capped read. */
export async function readCappedText(path: string, opts: ReadCappedOptions): Promise<string> {
  return (await readCapped(path, opts)).toString('utf8');
}

function tooLarge(path: string, opts: ReadCappedOptions): MembraneError {
  return new MembraneError(
    ReadErrorCode.TOO_LARGE,
    `the ${opts.what} is larger than ${opts.maxBytes} bytes; is it the right file?`,
    { where: path },
  );
}

function kindOf(st: import('node:fs').Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'a special file';
}
