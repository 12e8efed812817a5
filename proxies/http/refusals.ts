/**
 * Every way the proxy says no: a Refusal carries a code of errors.ts's table (which
 * gives the HTTP status) and the check named in `Membrane-Reason: <rule or check>:
 * <sentence>`. The server never passes a request it could not fully judge: every
 * failure path ends in one of these (fail closed).
 */
import { MembraneError } from '../../policy/errors.js';
import { HttpErrorCode, httpErrorInfo } from './errors.js';

/** The rule or check each refusal names first in `Membrane-Reason: <check>: <sentence>`. */
const CHECK: Readonly<Record<HttpErrorCode, string>> = {
  UPSTREAM_TLS: 'upstream.tls',
  SEALED_BODY_INVALID: 'seal',
  SEAL_FAILED: 'seal',
  RUN_CA: 'tls.run-ca',
  HTTP_MALFORMED: 'request',
  HTTP_AUTH_REQUIRED: 'auth',
  HTTP_DENIED: 'policy',
  HTTP_RULE_ERROR: 'policy',
  HTTP_ADDRESS_DENIED: 'address',
  HTTP_NOT_INSPECTABLE: 'inspect',
  HTTP_INSPECTION_BLOCKED: 'inspect',
  HTTP_BUDGET: 'limit.budget',
  HTTP_BODY_TOO_LARGE: 'limit.body',
  HTTP_RATE_LIMITED: 'limit.rate',
  HTTP_TOO_MANY: 'limit.concurrency',
  HTTP_HEADERS_TOO_LARGE: 'limit.headers',
  HTTP_UPSTREAM_FAILED: 'upstream',
  HTTP_UPSTREAM_TIMEOUT: 'upstream',
  HTTP_PROXY_UNAVAILABLE: 'proxy',
};

const isHttpCode = (c: string): c is HttpErrorCode => Object.hasOwn(httpErrorInfo, c);

/** A refusal: the status, and the rule or check that refused (for Membrane-Reason). */
export class Refusal extends MembraneError {
  readonly status: number;
  readonly check: string;
  constructor(code: HttpErrorCode, message: string, opts: { check?: string; cause?: unknown } = {}) {
    super(code, message, { cause: opts.cause });
    this.status = httpErrorInfo[code].status;
    this.check = opts.check ?? CHECK[code];
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
  if (e instanceof MembraneError && isHttpCode(e.code)) return new Refusal(e.code, e.message, { cause: e });
  const err = e as { code?: string; message?: string; name?: string };
  const code = err?.code ?? '';
  if (
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'ETIMEDOUT'
  )
    return new Refusal(HttpErrorCode.UPSTREAM_TIMEOUT, `upstream timed out (${code})`, { cause: e });
  return new Refusal(
    HttpErrorCode.UPSTREAM_FAILED,
    `upstream request failed (${code || err?.name || 'error'})`,
    {
      cause: e,
    },
  );
}
