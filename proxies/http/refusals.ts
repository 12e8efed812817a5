/**
 * Every way the proxy says no, as one table: the error code, the HTTP status the app
 * gets and the check named in `Membrane-Reason: <rule or check>: <sentence>`. The
 * server never passes a request it could not fully judge: every failure path ends in
 * one of these (fail closed).
 *
 * UPSTREAM_TLS and SEALED_BODY_INVALID are raised by upstream-tls.ts and seal.ts
 * (their table lives with them); they are mapped here to the status the app sees.
 */
import { MembraneError } from '../../policy/errors.js';

export const HttpProxyErrorCode = {
  /** Request line, absolute URL or CONNECT target the proxy cannot parse; header bytes that are not UTF-8. */
  HTTP_MALFORMED: {
    status: 400,
    check: 'request',
    what: 'the request line, URL, CONNECT target or header bytes',
  },
  HTTP_AUTH_REQUIRED: {
    status: 407,
    check: 'auth',
    what: 'the HTTP_PROXY URL handed to the app (user membrane)',
  },
  HTTP_DENIED: { status: 403, check: 'policy', what: 'the allow/deny rules of the egress policy' },
  HTTP_RULE_ERROR: { status: 403, check: 'policy', what: 'the rule named: it could not be evaluated' },
  HTTP_ADDRESS_DENIED: { status: 403, check: 'address', what: 'what the name resolves to; allowAddresses' },
  HTTP_NOT_INSPECTABLE: {
    status: 403,
    check: 'inspect',
    what: 'the rule requires inspection of this traffic',
  },
  HTTP_INSPECTION_BLOCKED: { status: 403, check: 'inspect', what: 'the request body (PII or schema)' },
  HTTP_BUDGET: { status: 403, check: 'limit.budget', what: 'limits.bytesPerDestination' },
  HTTP_BODY_TOO_LARGE: { status: 413, check: 'limit.body', what: 'limits.maxBodyBytes / maxRequestBytes' },
  HTTP_RATE_LIMITED: { status: 429, check: 'limit.rate', what: 'limits.requestsPerSecond' },
  HTTP_TOO_MANY: {
    status: 429,
    check: 'limit.concurrency',
    what: 'limits.maxConcurrentRequests / maxTunnels',
  },
  HTTP_HEADERS_TOO_LARGE: { status: 431, check: 'limit.headers', what: 'limits.maxHeaderBytes' },
  HTTP_UPSTREAM_FAILED: { status: 502, check: 'upstream', what: 'the upstream server and the route to it' },
  UPSTREAM_TLS: {
    status: 502,
    check: 'upstream.tls',
    what: "the upstream's certificate, name, validity and pins",
  },
  SEALED_BODY_INVALID: { status: 502, check: 'seal', what: 'the sealed response body and the DEK' },
  HTTP_UPSTREAM_TIMEOUT: {
    status: 504,
    check: 'upstream',
    what: 'limits.connectTimeoutMs / headersTimeoutMs',
  },
} as const;
export type HttpProxyErrorCode = keyof typeof HttpProxyErrorCode;

/** A refusal: the status, and the rule or check that refused (for Membrane-Reason). */
export class Refusal extends MembraneError {
  readonly status: number;
  readonly check: string;
  constructor(code: HttpProxyErrorCode, message: string, opts: { check?: string; cause?: unknown } = {}) {
    super(code, message, { cause: opts.cause });
    this.status = HttpProxyErrorCode[code].status;
    this.check = opts.check ?? HttpProxyErrorCode[code].check;
  }
  /** The Membrane-Reason header value; one line, ASCII only (it is a header). */
  get reason(): string {
    return headerSafe(`${this.check}: ${this.message}`);
  }
}

export function headerSafe(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 400);
}

/** Any error from a request's path, as a refusal (unknown errors are upstream failures, never a pass). */
export function asRefusal(e: unknown): Refusal {
  if (e instanceof Refusal) return e;
  if (e instanceof MembraneError && (e.code === 'UPSTREAM_TLS' || e.code === 'SEALED_BODY_INVALID'))
    return new Refusal(e.code, e.message, { cause: e });
  const err = e as { code?: string; message?: string; name?: string };
  const code = err?.code ?? '';
  if (
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'ETIMEDOUT'
  )
    return new Refusal('HTTP_UPSTREAM_TIMEOUT', `upstream timed out (${code})`, { cause: e });
  return new Refusal('HTTP_UPSTREAM_FAILED', `upstream request failed (${code || err?.name || 'error'})`, {
    cause: e,
  });
}
