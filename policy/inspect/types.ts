/**
 * Shared vocabulary of the open-mode inspectors: findings, error codes and the byte classes
 * every detector switches on. A finding names what was found and where (a raw body offset),
 * never the bytes themselves: nothing the app sent is echoed into logs or reasons.
 */
import type { PiiKind } from '../egress/types.js';
import { MembraneError } from '../errors.js';

export interface Finding {
  readonly kind: PiiKind;
  /** Offset in the raw (still encoded) body of the first byte of the match. */
  readonly offset: number;
  /** Which detector rule matched, e.g. 'pii.card' (stable; goes into Membrane-Reason). */
  readonly rule: string;
  /** What the rule asked for: `block` stops the body, `report` only logs. */
  readonly action: 'block' | 'report';
}

/** What a detector may hand back before the inspector stamps the action on it. */
export interface Hit {
  readonly kind: PiiKind;
  readonly offset: number;
  readonly rule: string;
}

/**
 * One detector: a byte-at-a-time state machine over the decoded body. Keeping state instead of
 * bytes is what makes chunk boundaries irrelevant: a number split across two chunks is the same
 * sequence of step() calls as an unsplit one.
 */
export interface Detector {
  /** Feeds n decoded bytes (the loop lives in each detector so its step() is inlined). */
  scan(buf: Uint8Array, n: number, offs: Float64Array | null, base: number, out: Hit[]): void;
  /** Feed one decoded byte whose encoding starts at raw offset `at`. */
  step(b: number, at: number): Hit | undefined;
  /** The body ended: settle any candidate still open. */
  finish(): Hit | undefined;
  /** Raw offset of the first byte an open candidate still needs, or -1 when none is open. */
  pending(): number;
}

export const InspectErrorCode = {
  /** A PII kind, action or content type the inspector does not know. */
  SETTINGS: 'INSPECT_SETTINGS',
  /** The JSON schema of a rule does not compile (unknown keyword, bad $ref, unknown format). */
  SCHEMA_INVALID: 'INSPECT_SCHEMA_INVALID',
  /** A caller used the API wrongly (push after end, non-positive body cap). */
  USAGE: 'INSPECT_USAGE',
} as const;
export type InspectErrorCode = (typeof InspectErrorCode)[keyof typeof InspectErrorCode];

export function inspectError(code: InspectErrorCode, message: string, where?: string, cause?: unknown) {
  return new MembraneError(code, message, { where, cause });
}

// Byte classes, one table lookup per byte instead of several range comparisons.
export const DIGIT = 1;
export const UPPER = 2;
export const LOWER = 4;
export const HEX = 8;
/** Characters we accept in an e-mail local part: the common subset [A-Za-z0-9._%+-]. */
export const LOCAL = 16;
/** Characters of a domain name: [A-Za-z0-9.-]. */
export const DOMAIN = 32;
/** Characters of an IP literal run: hex digits, ':' and '.'. */
export const IP_RUN = 64;
export const LETTER = UPPER | LOWER;
export const WORD = DIGIT | LETTER;

export const CLASS: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (let c = 0x30; c <= 0x39; c++) t[c] = DIGIT | HEX | LOCAL | DOMAIN;
  for (let c = 0x41; c <= 0x5a; c++) t[c] = UPPER | LOCAL | DOMAIN | (c <= 0x46 ? HEX : 0);
  for (let c = 0x61; c <= 0x7a; c++) t[c] = LOWER | LOCAL | DOMAIN | (c <= 0x66 ? HEX : 0);
  for (const c of '._%+-') t[c.charCodeAt(0)] |= LOCAL;
  for (const c of '.-') t[c.charCodeAt(0)] |= DOMAIN;
  for (let c = 0; c < 256; c++) if (t[c] & HEX) t[c] |= IP_RUN;
  for (const c of ':.') t[c.charCodeAt(0)] |= IP_RUN;
  return t;
})();
