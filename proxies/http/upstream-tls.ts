/**
 * Verified TLS to an upstream, over a socket the proxy already dialled to the address
 * it checked (so TLS never triggers a second DNS lookup). Trusted mode and open mode's
 * re-originated TLS both come here; there is no way to skip verification (the reference
 * clean room's Envoy uses ACCEPT_UNTRUSTED, which is exactly what this file refuses).
 *
 * Trust: the rule's CA bundle when given (then only it), else Node's bundled Mozilla
 * roots (plus NODE_EXTRA_CA_CERTS). Name: the servername as a DNS name, or an IP SAN
 * when the host is an IP literal (RFC 6066 forbids IP literals in SNI, so none is sent).
 * Pins: base64 SHA-256 of the leaf's SubjectPublicKeyInfo (RFC 7469 form), any one
 * matching; checked after the chain and name, so a pin never replaces verification.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import tls from 'node:tls';
import type { TlsSettings } from '../../policy/egress/types.js';
import { HttpErrorCode, httpError } from './errors.js';

export interface UpstreamTlsOptions {
  /** A connected TCP socket to the checked address; destroyed on failure. */
  socket: Socket;
  /** Host name to verify (and send as SNI), or an IP literal (optionally bracketed). */
  servername: string;
  tls?: TlsSettings;
  /** The whole handshake must complete within this time. */
  timeoutMs: number;
}

/** OpenSSL / Node verification codes, in words an operator can act on. */
const REASONS: Readonly<Record<string, string>> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in the chain (unknown CA)',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown CA (cannot verify the leaf signature)',
  UNABLE_TO_GET_ISSUER_CERT: 'unknown CA (issuer certificate not found)',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown CA (issuer certificate not found)',
  CERT_HAS_EXPIRED: 'certificate expired',
  CERT_NOT_YET_VALID: 'certificate not yet valid',
  ERR_TLS_CERT_ALTNAME_INVALID: 'name mismatch',
  CERT_SIGNATURE_FAILURE: 'certificate signature invalid',
  CERT_REVOKED: 'certificate revoked',
  INVALID_CA: 'invalid CA certificate',
  PATH_LENGTH_EXCEEDED: 'certificate chain too long',
  INVALID_PURPOSE: 'certificate not valid for TLS servers',
  CERT_UNTRUSTED: 'certificate not trusted',
  CERT_REJECTED: 'certificate rejected',
  HOSTNAME_MISMATCH: 'name mismatch',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'protocol version below TLS 1.2',
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: 'protocol version below TLS 1.2',
};

const PIN_MISMATCH = 'MEMBRANE_PIN_MISMATCH';

/**
 * Resolves with the verified socket (its handshake error listener removed: the caller
 * attaches its own), or rejects with UPSTREAM_TLS after destroying both sockets.
 */
export function connectUpstreamTls(opts: UpstreamTlsOptions): Promise<tls.TLSSocket> {
  const host = opts.servername.startsWith('[') ? opts.servername.slice(1, -1) : opts.servername;
  const ipHost = isIP(host) !== 0;
  const pins = opts.tls?.pins ?? [];
  const where = `${opts.servername}`;

  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (reason: string, cause?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      opts.socket.destroy();
      reject(httpError(HttpErrorCode.UPSTREAM_TLS, `upstream TLS refused: ${reason}`, { where, cause }));
    };
    // Node requests TCP_NODELAY per socket; the proxy's request/response path needs it.
    opts.socket.setNoDelay(true);
    const sock = tls.connect({
      socket: opts.socket,
      ...(ipHost ? {} : { servername: host }),
      ...(opts.tls?.ca ? { ca: opts.tls.ca } : {}),
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      ALPNProtocols: ['http/1.1'],
      checkServerIdentity: (_name, cert) => {
        // Node passes options.servername || options.host: ours is the name the rule allowed.
        const nameError = tls.checkServerIdentity(host, cert);
        if (nameError) return nameError;
        if (pins.length > 0) {
          // cert.pubkey is the raw EC point for EC keys, not the SPKI: re-derive it from the DER.
          const spki = new X509Certificate(cert.raw).publicKey.export({ type: 'spki', format: 'der' });
          const pin = createHash('sha256').update(spki).digest('base64');
          if (!pins.includes(pin)) {
            const e = new Error(
              `pin mismatch: the leaf's SPKI SHA-256 is ${pin}, not one of the ${pins.length} pinned`,
            );
            (e as NodeJS.ErrnoException).code = PIN_MISMATCH;
            return e;
          }
        }
        return undefined;
      },
    });
    const timer = setTimeout(
      () => fail(`timeout: no completed handshake within ${opts.timeoutMs} ms`),
      opts.timeoutMs,
    );
    timer.unref();
    sock.once('secureConnect', () => {
      if (settled) return;
      // rejectUnauthorized already refused an unverified peer; this guards that invariant.
      if (!sock.authorized) return fail(`not authorized (${String(sock.authorizationError)})`);
      if (sock.alpnProtocol && sock.alpnProtocol !== 'http/1.1')
        return fail(`upstream selected ALPN '${sock.alpnProtocol}', only http/1.1 is offered`);
      settled = true;
      clearTimeout(timer);
      sock.off('error', onError);
      sock.off('close', onClose);
      resolve(sock);
    });
    const onError = (e: NodeJS.ErrnoException) => fail(describe(e), e);
    sock.on('error', onError);
    const onClose = () => fail('connection closed during the handshake');
    sock.once('close', onClose);
  });
}

function describe(e: NodeJS.ErrnoException): string {
  if (e.code === PIN_MISMATCH) return e.message;
  const known = e.code ? REASONS[e.code] : undefined;
  if (known) return e.code === 'ERR_TLS_CERT_ALTNAME_INVALID' ? `${known}: ${e.message}` : known;
  // OpenSSL alerts ("tlsv1 alert protocol version", "wrong version number") keep their text.
  return `${e.code ?? 'handshake failed'}: ${e.message}`;
}
