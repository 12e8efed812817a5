/**
 * The one place where errors become errno values for the kernel. Everything
 * inside the volume throws MembraneError with a stable code; the FUSE adapter
 * maps it here. Authentication and integrity failures are all EIO (the app
 * cannot fix them and must not get data); policy refusals are EACCES/EFBIG/EROFS.
 */
import { constants } from 'node:os';
import { isMembraneError } from '../../policy/errors.js';

/** Codes the volume itself throws (besides FORMAT_* from the core and STORE_* from stores). */
export const VolumeErrorCode = {
  NOT_FOUND: 'VOLUME_NOT_FOUND',
  EXISTS: 'VOLUME_EXISTS',
  NOT_DIR: 'VOLUME_NOT_DIR',
  IS_DIR: 'VOLUME_IS_DIR',
  NOT_EMPTY: 'VOLUME_NOT_EMPTY',
  BUSY: 'VOLUME_BUSY',
  READ_ONLY: 'VOLUME_READ_ONLY',
  WRITE_ONCE: 'VOLUME_WRITE_ONCE',
  UNREADABLE: 'VOLUME_UNREADABLE',
  OUTPUT_NAME: 'OUTPUT_DENIED',
  OUTPUT_SIZE: 'OUTPUT_TOO_LARGE',
  BAD_HANDLE: 'VOLUME_BAD_HANDLE',
  INVALID_NAME: 'VOLUME_INVALID_NAME',
  NOT_SUPPORTED: 'VOLUME_NOT_SUPPORTED',
  MANIFEST_MISMATCH: 'VOLUME_MANIFEST_MISMATCH',
  OBJECT_MISSING: 'VOLUME_OBJECT_MISSING',
  OBJECT_CHANGED: 'VOLUME_OBJECT_CHANGED',
  STAGING_AUTH: 'VOLUME_STAGING_AUTH',
  COMMIT_FAILED: 'VOLUME_COMMIT_FAILED',
  MOUNT_FAILED: 'VOLUME_MOUNT_FAILED',
  OPTIONS: 'VOLUME_OPTIONS',
  /** A name longer than the store can hold (issue 12, defect 3). */
  NAME_TOO_LONG: 'VOLUME_NAME_TOO_LONG',
  /** A name Membrane keeps for itself (issue 12, defect 11). */
  RESERVED_NAME: 'VOLUME_RESERVED_NAME',
  /** The volume is closing or closed: nothing more is committed (issue 12, defect 6). */
  CLOSED: 'VOLUME_CLOSED',
} as const;

type ErrnoName = keyof typeof constants.errno;

const byCode: Record<string, ErrnoName> = {
  [VolumeErrorCode.NOT_FOUND]: 'ENOENT',
  [VolumeErrorCode.EXISTS]: 'EEXIST',
  [VolumeErrorCode.NOT_DIR]: 'ENOTDIR',
  [VolumeErrorCode.IS_DIR]: 'EISDIR',
  [VolumeErrorCode.NOT_EMPTY]: 'ENOTEMPTY',
  [VolumeErrorCode.BUSY]: 'EBUSY',
  [VolumeErrorCode.READ_ONLY]: 'EROFS',
  [VolumeErrorCode.WRITE_ONCE]: 'EACCES',
  [VolumeErrorCode.UNREADABLE]: 'EACCES',
  [VolumeErrorCode.OUTPUT_NAME]: 'EACCES',
  [VolumeErrorCode.OUTPUT_SIZE]: 'EFBIG',
  [VolumeErrorCode.BAD_HANDLE]: 'EBADF',
  [VolumeErrorCode.INVALID_NAME]: 'EINVAL',
  [VolumeErrorCode.NOT_SUPPORTED]: 'EPERM',
  [VolumeErrorCode.MANIFEST_MISMATCH]: 'EIO',
  [VolumeErrorCode.OBJECT_MISSING]: 'EIO',
  [VolumeErrorCode.OBJECT_CHANGED]: 'EIO',
  [VolumeErrorCode.STAGING_AUTH]: 'EIO',
  [VolumeErrorCode.COMMIT_FAILED]: 'EIO',
  [VolumeErrorCode.NAME_TOO_LONG]: 'ENAMETOOLONG',
  [VolumeErrorCode.RESERVED_NAME]: 'EACCES',
  [VolumeErrorCode.CLOSED]: 'EIO',
  STORE_INVALID_PATH: 'EINVAL',
};

/** System errors from staging I/O we pass through as themselves (disk full is not "I/O error"). */
const passThrough = new Set<string>(['ENOSPC', 'EDQUOT', 'EMFILE', 'ENFILE', 'ENOMEM', 'EFBIG']);

const errno = (name: ErrnoName): number => -constants.errno[name];

/**
 * Negative errno for any thrown value. FORMAT_* (authentication, format), STORE_*
 * (backend trouble) and anything unexpected are EIO: fail closed, never "success".
 */
export function errnoOf(e: unknown): number {
  if (isMembraneError(e)) {
    const name = byCode[e.code];
    return errno(name ?? 'EIO');
  }
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && passThrough.has(code)) return errno(code as ErrnoName);
  return errno('EIO');
}

/** True for errors that mean "this object is not authentic / not the pinned one". */
export function isIntegrityError(e: unknown): boolean {
  return (
    isMembraneError(e) &&
    (e.code.startsWith('FORMAT_') ||
      e.code === VolumeErrorCode.MANIFEST_MISMATCH ||
      e.code === VolumeErrorCode.OBJECT_CHANGED ||
      e.code === VolumeErrorCode.OBJECT_MISSING)
  );
}

/** True for errors the volume expects in normal operation (not worth a log line). */
export function isExpected(e: unknown): boolean {
  if (!isMembraneError(e)) return false;
  return (
    e.code.startsWith('VOLUME_') ||
    e.code.startsWith('OUTPUT_') ||
    e.code.startsWith('FORMAT_') ||
    e.code === 'STORE_INVALID_PATH'
  );
}
