/**
 * Error codes of the HTTP egress proxy, one table: the code every MembraneError carries,
 * the HTTP status the app receives (with a `Membrane-Reason` header), and what an
 * operator should check. docs/errors.md is generated from tables like this one.
 * The server (proxies/http/server side) adds its own rows here.
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
};

export function httpError(
  code: HttpErrorCode,
  message: string,
  options: { where?: string; cause?: unknown } = {},
): MembraneError {
  return new MembraneError(code, message, options);
}
