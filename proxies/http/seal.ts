/**
 * Secure mode: request bodies leave sealed as one message of the object format (the
 * hot core, a DEK from the keys section), and sealed response bodies are opened for
 * the app. The encryption context binds each body to its exchange — method, host, URL
 * path and direction — so a sealed body replayed to another endpoint, with another
 * method, or as the other direction fails to open (docs/http-egress.md, "Secure mode").
 *
 * Streaming, bounded memory: the core's writer holds one frame, its decrypt stream
 * releases a frame only after its tag verified; nothing of a failed frame is released.
 * A failure surfaces as a stream error with SEALED_BODY_INVALID / SEAL_FAILED, and the
 * server must then abort the exchange (never end it cleanly), so the app cannot take a
 * cut body for a complete one.
 */
import { Readable } from 'node:stream';
import { isMembraneError } from '../../policy/errors.js';
import {
  CONTEXT_DATASOURCE,
  CONTEXT_DIRECTION,
  CONTEXT_HOST,
  CONTEXT_METHOD,
  CONTEXT_PATH,
  contextFor,
  decryptIterable,
  encryptIterable,
  type Keyring,
  type ObjectBinding,
} from '../core/index.js';
import { HttpErrorCode, httpError } from './errors.js';

/** Content-Type of a sealed body, request or response. */
export const SEALED_CONTENT_TYPE = 'application/vnd.membrane.sealed';
/** Header on a sealed message; its value names the binding scheme. Carries nothing secret. */
export const SEALED_HEADER = 'membrane-sealed';
export const SEALED_HEADER_VALUE = 'v1';
/** `membrane:datasource` of every HTTP body: the egress proxy, not a storage datasource. */
export const HTTP_DATASOURCE = 'http-egress';

export interface BoundRequest {
  readonly method: string;
  /** Normalised host, optionally with ':port' (lower-cased here). */
  readonly host: string;
  /** URL path; a query or fragment is cut off (it is not part of the binding). */
  readonly path: string;
}

export type Direction = 'request' | 'response';

/**
 * The encryption context for a body of this exchange. Both ends compute it from the
 * request line alone; callers may add non-reserved entries (e.g. 'content-type').
 */
export function bindingContext(req: BoundRequest, direction: Direction = 'request'): Record<string, string> {
  try {
    return { ...contextFor(toBinding(req, direction)) };
  } catch (e) {
    throw httpError(HttpErrorCode.SEAL_FAILED, `cannot bind a sealed body: ${messageOf(e)}`, { cause: e });
  }
}

/** Seals `body` into one message bound by `context` (from bindingContext, plus optional extras). */
export function sealBody(body: Readable, keyring: Keyring, context: Record<string, string>): Readable {
  const { binding, extra } = fromContext(context, HttpErrorCode.SEAL_FAILED);
  const where = describe(binding);
  async function* sealed(): AsyncGenerator<Buffer> {
    try {
      yield* encryptIterable(body, { keyring, binding, context: extra });
    } catch (e) {
      throw httpError(HttpErrorCode.SEAL_FAILED, `sealing failed: ${messageOf(e)}`, { where, cause: e });
    }
  }
  return Readable.from(sealed(), { objectMode: false });
}

/** Opens a sealed body; errors with SEALED_BODY_INVALID unless it authenticates for `context`. */
export function openBody(body: Readable, keyring: Keyring, context: Record<string, string>): Readable {
  const { binding } = fromContext(context, HttpErrorCode.SEALED_BODY_INVALID);
  const where = describe(binding);
  async function* opened(): AsyncGenerator<Buffer> {
    try {
      yield* decryptIterable(body, { keyring, expect: binding, where });
    } catch (e) {
      throw httpError(HttpErrorCode.SEALED_BODY_INVALID, `sealed body refused: ${messageOf(e)}`, {
        where,
        cause: e,
      });
    }
  }
  return Readable.from(opened(), { objectMode: false });
}

function toBinding(req: BoundRequest, direction: Direction): ObjectBinding {
  const cut = req.path.search(/[?#]/);
  return {
    datasource: HTTP_DATASOURCE,
    path: cut === -1 ? req.path : req.path.slice(0, cut),
    request: { method: req.method, host: req.host.toLowerCase(), direction },
  };
}

/** Splits a context back into the binding the core checks and the caller's extra entries. */
function fromContext(
  ctx: Record<string, string>,
  code: HttpErrorCode,
): { binding: ObjectBinding; extra: Record<string, string> } {
  const method = ctx[CONTEXT_METHOD];
  const host = ctx[CONTEXT_HOST];
  const path = ctx[CONTEXT_PATH];
  const direction = ctx[CONTEXT_DIRECTION];
  if (ctx[CONTEXT_DATASOURCE] !== HTTP_DATASOURCE || !method || !host || !path)
    throw httpError(code, 'the context is not an HTTP body binding: build it with bindingContext()');
  if (direction !== 'request' && direction !== 'response')
    throw httpError(code, `the context's ${CONTEXT_DIRECTION} must be 'request' or 'response'`);
  const extra: Record<string, string> = {};
  for (const [k, v] of Object.entries(ctx)) if (!k.startsWith('membrane:')) extra[k] = v;
  const binding: ObjectBinding = { datasource: HTTP_DATASOURCE, path, request: { method, host, direction } };
  try {
    contextFor(binding, extra); // validates values and extra keys the same way sealing will
  } catch (e) {
    throw httpError(code, `cannot bind a sealed body: ${messageOf(e)}`, { cause: e });
  }
  return { binding, extra };
}

function describe(b: ObjectBinding): string {
  return `${b.request?.direction ?? 'request'} body of ${b.request?.method} ${b.request?.host}${b.path}`;
}

function messageOf(e: unknown): string {
  if (isMembraneError(e)) {
    // The core already appended '(at where)'; ours names the exchange once, at the end.
    const own =
      e.where && e.message.endsWith(` (at ${e.where})`)
        ? e.message.slice(0, -` (at ${e.where})`.length)
        : e.message;
    return `${own} [${e.code}]`;
  }
  return e instanceof Error ? e.message : String(e);
}
