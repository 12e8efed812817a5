/**
 * Object binding: the encryption context entries that tie an object to where it
 * belongs. Moving, renaming or swapping an object between paths or datasources
 * changes what the reader expects, so the header no longer matches and reading
 * fails — without a single extra byte of metadata outside the message.
 *
 * HTTP message bodies sealed by the egress proxy (proxies/http/seal.ts) are bound
 * the same way, to the request they travel in: method, host, URL path and direction.
 * Those entries are Membrane's own (reserved prefix), so they are declared here,
 * next to the file binding, and checked by the same code.
 */
import { MembraneError } from '../../policy/errors.js';
import { normalizeObjectPath } from '../../policy/object-path.js';
import type { EncryptionContext } from './encryption-context.js';
import { FormatErrorCode, formatError } from './errors.js';

export const CONTEXT_DATASOURCE = 'membrane:datasource';
export const CONTEXT_PATH = 'membrane:path';
export const CONTEXT_METHOD = 'membrane:method';
export const CONTEXT_HOST = 'membrane:host';
export const CONTEXT_DIRECTION = 'membrane:direction';
const RESERVED_PREFIXES = ['membrane:', 'aws-crypto-'];

/** The HTTP exchange a sealed body belongs to. */
export interface RequestBinding {
  /** The method token as sent (methods are case-sensitive, RFC 9110 §9.1), e.g. 'POST'. */
  readonly method: string;
  /** Lower-case host (and ':port' when the caller binds it), as the proxy normalised it. */
  readonly host: string;
  /** A request body and a response body of the same exchange are not interchangeable. */
  readonly direction: 'request' | 'response';
}

export interface ObjectBinding {
  /** Datasource or datasink name. */
  readonly datasource: string;
  /**
   * Object path inside it: '/'-separated, relative, normalized. For an HTTP body
   * (`request` present) the URL path verbatim: it starts with '/', and '/a//b' and
   * '/a/b' are different resources, so nothing is normalized away.
   */
  readonly path: string;
  /** Present only for HTTP message bodies. */
  readonly request?: RequestBinding;
}

export { normalizeObjectPath };

const METHOD_RE = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/; // RFC 9110 token
// Host names, IPv4, bracketed IPv6, optional port; lower case only (the proxy normalised it).
const HOST_RE = /^(?:[a-z0-9._-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$/;
// Visible ASCII only (RFC 3986 path characters are a subset); no query, no fragment.
const URL_PATH_RE = /^\/[\x21-\x7e]*$/;

/** The path as it goes into the header, validated for its kind. */
function bindingPath(binding: ObjectBinding): string {
  if (!binding.request) return normalizeObjectPath(binding.path);
  const p = binding.path;
  if (!URL_PATH_RE.test(p) || p.includes('?') || p.includes('#')) {
    throw new MembraneError(
      'USAGE',
      `HTTP body binding: path '${printable(p)}' must start with '/' and hold visible ASCII, without query or fragment`,
    );
  }
  return p;
}

function checkRequest(r: RequestBinding): void {
  if (!METHOD_RE.test(r.method))
    throw new MembraneError(
      'USAGE',
      `HTTP body binding: method '${printable(r.method)}' is not a method token`,
    );
  if (!HOST_RE.test(r.host))
    throw new MembraneError(
      'USAGE',
      `HTTP body binding: host '${printable(r.host)}' is not a normalised host`,
    );
  if (r.direction !== 'request' && r.direction !== 'response')
    throw new MembraneError('USAGE', `HTTP body binding: direction must be 'request' or 'response'`);
}

/** Encryption context for an object: the binding plus optional caller entries. */
export function contextFor(binding: ObjectBinding, extra: Record<string, string> = {}): EncryptionContext {
  if (!binding.datasource) throw new MembraneError('USAGE', 'datasource name must not be empty');
  for (const k of Object.keys(extra)) {
    if (RESERVED_PREFIXES.some((p) => k.startsWith(p))) {
      throw new MembraneError('USAGE', `encryption context key '${k}' uses a reserved prefix`);
    }
  }
  const ctx: Record<string, string> = {
    ...extra,
    [CONTEXT_DATASOURCE]: binding.datasource,
    [CONTEXT_PATH]: bindingPath(binding),
  };
  if (binding.request) {
    checkRequest(binding.request);
    ctx[CONTEXT_METHOD] = binding.request.method;
    ctx[CONTEXT_HOST] = binding.request.host;
    ctx[CONTEXT_DIRECTION] = binding.request.direction;
  }
  return ctx;
}

/**
 * Fails unless the header's context binds the object to `expected`. Extra non-reserved
 * entries are allowed. The request entries must match too, and must be absent when
 * none is expected: an HTTP body never opens as a file, nor a file as an HTTP body.
 */
export function checkBinding(ctx: EncryptionContext, expected: ObjectBinding, where?: string): void {
  const want = {
    datasource: expected.datasource,
    path: expected.request ? expected.path : normalizeObjectPath(expected.path),
    method: expected.request?.method,
    host: expected.request?.host,
    direction: expected.request?.direction,
  };
  const got = {
    datasource: ctx[CONTEXT_DATASOURCE],
    path: ctx[CONTEXT_PATH],
    method: ctx[CONTEXT_METHOD],
    host: ctx[CONTEXT_HOST],
    direction: ctx[CONTEXT_DIRECTION],
  };
  const differs = (Object.keys(want) as (keyof typeof want)[]).some((k) => want[k] !== got[k]);
  if (differs) {
    throw formatError(
      FormatErrorCode.CONTEXT_MISMATCH,
      `object is bound to ${describe(got)}, expected ${describe(want)} (moved, renamed or swapped)`,
      where,
    );
  }
}

interface Described {
  datasource: string | undefined;
  path: string | undefined;
  method: string | undefined;
  host: string | undefined;
  direction: string | undefined;
}

function describe(b: Described): string {
  if (b.datasource === undefined && b.path === undefined && b.method === undefined)
    return 'no Membrane location';
  const where = `datasource '${b.datasource ?? '?'}' path '${b.path ?? '?'}'`;
  if (b.method === undefined && b.host === undefined && b.direction === undefined) return where;
  return `${where} ${b.direction ?? '?'} of ${b.method ?? '?'} ${b.host ?? '?'}`;
}

/** Values in messages: control characters shown escaped, long values cut. */
function printable(s: string): string {
  const t = JSON.stringify(s).slice(1, -1);
  return t.length > 120 ? `${t.slice(0, 120)}…` : t;
}
