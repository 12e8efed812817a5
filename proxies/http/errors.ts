/**
 * Error codes of the HTTP egress proxy, one table: the code every MembraneError carries,
 * the HTTP status the app receives (with a `Membrane-Reason` header), and what an
 * operator should check. docs/errors.md is generated from tables like this one.
 */
import { MembraneError } from '../../policy/errors.js';

export const HttpErrorCode = {
  /** The upstream's TLS could not be verified, or the handshake did not complete. */
  UPSTREAM_TLS: 'UPSTREAM_TLS',
  /** A sealed body (secure mode) failed to open: tampered, truncated, wrong binding or key. */
  SEALED_BODY_INVALID: 'SEALED_BODY_INVALID',
  /** A body to seal could not be sealed (bad binding values, the source stream failed). */
  SEAL_FAILED: 'SEAL_FAILED',
  /** The run CA could not issue a leaf for a host (bad host text, CA destroyed). */
  RUN_CA: 'RUN_CA',
  // The server's refusals (server.ts, forward.ts, tunnel.ts; Membrane-Reason labels in refusals.ts).
  MALFORMED: 'HTTP_MALFORMED',
  AUTH_REQUIRED: 'HTTP_AUTH_REQUIRED',
  DENIED: 'HTTP_DENIED',
  RULE_ERROR: 'HTTP_RULE_ERROR',
  ADDRESS_DENIED: 'HTTP_ADDRESS_DENIED',
  NOT_INSPECTABLE: 'HTTP_NOT_INSPECTABLE',
  INSPECTION_BLOCKED: 'HTTP_INSPECTION_BLOCKED',
  BUDGET: 'HTTP_BUDGET',
  BODY_TOO_LARGE: 'HTTP_BODY_TOO_LARGE',
  RATE_LIMITED: 'HTTP_RATE_LIMITED',
  TOO_MANY: 'HTTP_TOO_MANY',
  HEADERS_TOO_LARGE: 'HTTP_HEADERS_TOO_LARGE',
  UPSTREAM_FAILED: 'HTTP_UPSTREAM_FAILED',
  UPSTREAM_TIMEOUT: 'HTTP_UPSTREAM_TIMEOUT',
  /** A piece the proxy needs (the policy evaluator) is not part of this build. */
  PROXY_UNAVAILABLE: 'HTTP_PROXY_UNAVAILABLE',
} as const;
export type HttpErrorCode = (typeof HttpErrorCode)[keyof typeof HttpErrorCode];

export interface HttpErrorInfo {
  /** Status the app receives when this error ends its request. */
  readonly status: number;
  /** What to check, for operators (docs/errors.md). */
  readonly check: string;
}

export const httpErrorInfo: Readonly<Record<HttpErrorCode, HttpErrorInfo>> = {
  [HttpErrorCode.UPSTREAM_TLS]: {
    status: 502,
    check:
      "the message names the failure (self-signed, unknown CA, name mismatch, expired, not yet valid, pin mismatch, timeout): check the rule's tls.ca bundle, tls.pins (base64 SHA-256 of the leaf's SubjectPublicKeyInfo) and the upstream's certificate dates and names",
  },
  [HttpErrorCode.SEALED_BODY_INVALID]: {
    status: 502,
    check:
      'the upstream sent a sealed body that does not authenticate for this exchange: check that it seals with the same DEK and the binding context of this method, host, path and direction',
  },
  [HttpErrorCode.SEAL_FAILED]: {
    status: 502,
    check:
      "the request's method, host or path cannot be bound (see the message), or the app's body stream failed",
  },
  [HttpErrorCode.RUN_CA]: {
    status: 502,
    check: 'the host the app asked for is not a DNS name or IP literal, or the proxy is shutting down',
  },
  [HttpErrorCode.MALFORMED]: {
    status: 400,
    check:
      'the request line, the absolute URL (http:// only, no credentials), the CONNECT target (host:port) or header bytes that are not UTF-8',
  },
  [HttpErrorCode.AUTH_REQUIRED]: {
    status: 407,
    check: 'the app must use the HTTP_PROXY URL Membrane gave it (user membrane and the per-run password)',
  },
  [HttpErrorCode.DENIED]: {
    status: 403,
    check: 'the rule named in Membrane-Reason (allow/deny rules of the egress policy)',
  },
  [HttpErrorCode.RULE_ERROR]: {
    status: 403,
    check:
      'the request could not be evaluated (the policy evaluator failed), or a secure rule names a DEK the proxy does not hold',
  },
  [HttpErrorCode.ADDRESS_DENIED]: {
    status: 403,
    check: 'what the host resolves to: every answer must be dialable (public, or listed in allowAddresses)',
  },
  [HttpErrorCode.NOT_INSPECTABLE]: {
    status: 403,
    check:
      'the rule requires inspection or verified TLS and the proxy cannot provide it (no run CA, no sealing module)',
  },
  [HttpErrorCode.INSPECTION_BLOCKED]: {
    status: 403,
    check:
      "the request body: a detector of the rule's inspect.pii found a value (kind and byte offset in the reason), or it fails the schema",
  },
  [HttpErrorCode.BUDGET]: {
    status: 403,
    check: 'limits.bytesPerDestination: the destination has used its byte budget for this run',
  },
  [HttpErrorCode.BODY_TOO_LARGE]: { status: 413, check: 'limits.maxBodyBytes and limits.maxRequestBytes' },
  [HttpErrorCode.RATE_LIMITED]: { status: 429, check: 'limits.requestsPerSecond' },
  [HttpErrorCode.TOO_MANY]: {
    status: 429,
    check: 'limits.maxConcurrentRequests (requests) or limits.maxTunnels (CONNECT)',
  },
  [HttpErrorCode.HEADERS_TOO_LARGE]: { status: 431, check: 'limits.maxHeaderBytes' },
  [HttpErrorCode.UPSTREAM_FAILED]: {
    status: 502,
    check: 'the upstream: the name resolves, it accepts connections and answers HTTP/1.1',
  },
  [HttpErrorCode.UPSTREAM_TIMEOUT]: {
    status: 504,
    check: 'limits.connectTimeoutMs, limits.headersTimeoutMs, limits.idleTimeoutMs and the upstream',
  },
  [HttpErrorCode.PROXY_UNAVAILABLE]: {
    status: 502,
    check:
      'the decision log could not be written (disk full, permissions): decisions are evidence, so the proxy refuses until restarted',
  },
};

export function httpError(
  code: HttpErrorCode,
  message: string,
  options: { where?: string; cause?: unknown } = {},
): MembraneError {
  return new MembraneError(code, message, options);
}
