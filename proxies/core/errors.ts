/**
 * Error codes of the hot core. Every failure is a MembraneError with one of these
 * codes; `where` names the object and, for frame failures, the frame index.
 */
import { MembraneError } from '../../policy/errors.js';

export const FormatErrorCode = {
  /** Bytes are not a message we can parse (bad version, bad lengths, truncated header). */
  MALFORMED: 'FORMAT_MALFORMED',
  /** A well-formed message in a suite or content type we refuse. */
  UNSUPPORTED: 'FORMAT_UNSUPPORTED',
  /** Frame length 0 or larger than we accept. */
  FRAME_LENGTH: 'FORMAT_FRAME_LENGTH',
  /** Header authentication tag or key commitment did not verify. */
  HEADER_AUTH: 'FORMAT_HEADER_AUTH',
  /** A frame's tag did not verify, or its sequence/IV/length fields are not the expected ones. */
  FRAME_AUTH: 'FORMAT_FRAME_AUTH',
  /** The message ends before its final frame (truncated, final frame dropped). */
  TRUNCATED: 'FORMAT_TRUNCATED',
  /** Bytes follow the final frame. */
  TRAILING_DATA: 'FORMAT_TRAILING_DATA',
  /** The encryption context does not bind the object to where the caller expects it. */
  CONTEXT_MISMATCH: 'FORMAT_CONTEXT_MISMATCH',
  /** No keyring could decrypt any of the encrypted data keys. */
  NO_KEY: 'FORMAT_NO_KEY',
  /** A caller passed something the API does not allow (e.g. reading past the end). */
  USAGE: 'FORMAT_USAGE',
} as const;
export type FormatErrorCode = (typeof FormatErrorCode)[keyof typeof FormatErrorCode];

export function formatError(
  code: FormatErrorCode,
  message: string,
  where?: string,
  cause?: unknown,
): MembraneError {
  return new MembraneError(code, message, { where, cause });
}
