/**
 * Microsoft Azure Attestation (MAA) client for SEV-SNP evidence, speaking the same
 * request the Azure confidential sidecar sends (microsoft/confidential-sidecar-containers,
 * pkg/attest/maa.go + attest.go), and verifying the returned token before anyone uses it.
 *
 * Request: POST {endpoint}/attest/SevSnpVm?api-version=2022-08-01
 *   {
 *     "report": B64URL(JSON{
 *         "SnpReport":     B64URL(raw 1184-byte report),
 *         "VcekCertChain": B64URL(PEM text: VCEK, then ASK, then ARK),
 *         "Endorsements":  B64URL(JSON{"Uvm": [B64URL(COSE_Sign1 UVM reference info)]})
 *                          -- a base64url STRING holding JSON, omitted when there is no
 *                             reference info (Go `omitempty`), not a nested object
 *     }),
 *     "runtimeData": { "data": B64URL(runtime-data bytes), "dataType": "JSON" },
 *     "nonce": "<string>"
 *   }
 * B64URL is Go's base64.URLEncoding: URL-safe alphabet WITH '=' padding, as the sidecar
 * sends it. The sidecar also always marshals an empty `initTimeData` (an artefact of a
 * missing `omitempty`); the REST API marks it optional, so it is left out here. The REST
 * API types `nonce` as a string (the sidecar sends a JSON number); we send a string.
 *
 * Binding: report_data[0:32] = SHA-256(runtime-data bytes), report_data[32:64] = 0
 * (sidecar GenerateMAAReportData); MAA checks it and surfaces the runtime data as the
 * `x-ms-runtime` claim, whose `keys` Key Vault wraps the released key to.
 *
 * Response: {"token": "<JWT>"}. Verified here: RS256 signature against the JWKS named
 * by {endpoint}/.well-known/openid-configuration (same origin; the token's own `jku`
 * header is never followed), `iss` == endpoint, exp/nbf with 60 s tolerance, and
 * `x-ms-runtime.keys` carrying our runtime key.
 */
import {
  createHash,
  createPublicKey,
  generateKeyPair,
  type JsonWebKey,
  type KeyObject,
  randomBytes,
  X509Certificate,
} from 'node:crypto';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import { MembraneError } from '../../policy/errors.js';
import type { Evidence } from '../evidence/types.js';
import { http } from '../http.js';

export const MAA_API_VERSION = '2022-08-01';
const CLOCK_TOLERANCE_S = 60;
/** Offset and length of REPORT_DATA in an SEV-SNP attestation report (AMD SEV-SNP ABI, table 22). */
const REPORT_DATA_OFFSET = 0x50;
const REPORT_DATA_SIZE = 64;

export interface RuntimeKey {
  /** Stays in this process; never exported or serialised (non-enumerable). */
  privateKey: KeyObject;
  publicJwk: JsonWebKey & { kid: string };
  /** The exact JSON bytes sent as runtime data: `{"keys":[publicJwk], ...claims}`. */
  runtimeData: Buffer;
  /** 64 bytes: SHA-256(runtimeData) || 32 zero bytes. */
  reportData: Buffer;
}

const generateRsa = promisify(generateKeyPair);

/**
 * A fresh RSA-2048 key pair for one release: the public half goes to MAA as runtime data
 * (kid = RFC 7638 thumbprint, key_ops ["encrypt"]: Key Vault looks for an encryption key
 * in `x-ms-runtime.keys`), the private half unwraps what Key Vault releases.
 */
export async function createRuntimeKey(
  /**
   * Further runtime-data members next to `keys` (e.g. `membrane-run-key`: the thumbprint of the
   * run's manifest-signing key), surfaced by MAA in `x-ms-runtime` and so bound by the report.
   */
  claims: Readonly<Record<string, string>> = {},
): Promise<RuntimeKey> {
  if ('keys' in claims) throw new MembraneError('USAGE', 'runtime-data claim "keys" is reserved');
  const { publicKey, privateKey } = await generateRsa('rsa', {
    modulusLength: 2048,
    publicExponent: 0x10001,
  });
  const { n, e } = publicKey.export({ format: 'jwk' });
  if (!n || !e) throw new MembraneError('KEYGEN_FAILED', 'RSA public key export lacks n/e');
  const kid = await calculateJwkThumbprint({ kty: 'RSA', n, e }, 'sha256');
  const publicJwk = { kty: 'RSA', n, e, key_ops: ['encrypt'], kid };
  const runtimeData = Buffer.from(JSON.stringify({ keys: [publicJwk], ...claims }), 'utf8');
  const reportData = Buffer.alloc(REPORT_DATA_SIZE);
  createHash('sha256').update(runtimeData).digest().copy(reportData, 0);
  // privateKey is non-enumerable: spreading, JSON.stringify or structured cloning of the
  // RuntimeKey never carries the private key along.
  const key: RuntimeKey = { privateKey, publicJwk, runtimeData, reportData };
  Object.defineProperty(key, 'privateKey', { enumerable: false, writable: false });
  return key;
}

/** Go's base64.URLEncoding (URL-safe alphabet, '=' padding kept), as the sidecar sends. */
export function base64UrlPadded(b: Uint8Array): string {
  return Buffer.from(b).toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

export interface AttestSevSnpRequest {
  report: string;
  runtimeData: { data: string; dataType: 'JSON' };
  nonce: string;
}

/** The request body, built exactly as documented at the top of this file. */
export function buildAttestSevSnpRequest(
  evidence: Evidence,
  runtimeData: Buffer,
  nonce: string,
): AttestSevSnpRequest {
  const maaReport: Record<string, string> = {
    SnpReport: base64UrlPadded(evidence.report),
    VcekCertChain: base64UrlPadded(Buffer.from(evidence.collateral.vcekCertChainPem ?? '', 'utf8')),
  };
  const refInfo = evidence.collateral.uvmReferenceInfo;
  if (refInfo && refInfo.length > 0)
    maaReport.Endorsements = base64UrlPadded(
      Buffer.from(JSON.stringify({ Uvm: [base64UrlPadded(refInfo)] }), 'utf8'),
    );
  return {
    report: base64UrlPadded(Buffer.from(JSON.stringify(maaReport), 'utf8')),
    runtimeData: { data: base64UrlPadded(runtimeData), dataType: 'JSON' },
    nonce,
  };
}

/** `https://host[/path]` without a trailing slash; plain http only to loopback (emulators). */
export function normaliseEndpoint(endpoint: string): string {
  let u: URL;
  try {
    u = new URL(endpoint.includes('://') ? endpoint : `https://${endpoint}`);
  } catch (e) {
    throw new MembraneError('USAGE', `not a valid attestation endpoint URL: ${endpoint}`, { cause: e });
  }
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback))
    throw new MembraneError(
      'USAGE',
      `attestation endpoint must use https (plain http is accepted only for loopback emulators): ${u.origin}`,
    );
  if (u.search || u.hash)
    throw new MembraneError('USAGE', 'attestation endpoint must not carry a query or fragment');
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

const SERVICE = 'Microsoft Azure Attestation';

interface Jwk {
  kid?: string;
  kty?: string;
  n?: string;
  e?: string;
  x5c?: string[];
}

/** A JWKS entry's public key: from its x5c leaf certificate (MAA publishes only x5c) or n/e. */
function keyFromJwk(jwk: Jwk, where: string): KeyObject {
  let fromCert: KeyObject | undefined;
  if (Array.isArray(jwk.x5c) && typeof jwk.x5c[0] === 'string')
    try {
      fromCert = new X509Certificate(Buffer.from(jwk.x5c[0], 'base64')).publicKey;
    } catch (e) {
      throw new MembraneError(
        'MAA_TOKEN_INVALID',
        `signing key ${jwk.kid} has an unreadable x5c certificate`,
        {
          where,
          cause: e,
        },
      );
    }
  const fromParams =
    jwk.kty === 'RSA' && jwk.n && jwk.e
      ? createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e }, format: 'jwk' })
      : undefined;
  if (fromCert && fromParams && fromCert.export({ format: 'jwk' }).n !== jwk.n)
    throw new MembraneError('MAA_TOKEN_INVALID', `signing key ${jwk.kid}: x5c and n/e disagree`, { where });
  const key = fromCert ?? fromParams;
  if (!key)
    throw new MembraneError('MAA_TOKEN_INVALID', `signing key ${jwk.kid} has neither x5c nor RSA n/e`, {
      where,
    });
  if (key.asymmetricKeyType !== 'rsa')
    throw new MembraneError('MAA_TOKEN_INVALID', `signing key ${jwk.kid} is not an RSA key`, { where });
  return key;
}

/**
 * Verifies an MAA token: RS256 signature by a key of the issuer's JWKS (located through
 * {endpoint}/.well-known/openid-configuration), `iss` == endpoint, exp (required) and
 * nbf with a small clock tolerance. Returns the claims.
 */
export async function verifyMaaToken(
  token: string,
  opts: {
    endpoint: string;
    ca?: string | string[];
    /**
     * Judge exp/nbf at this instant instead of now: provenance checks of an archived token ask
     * whether it was valid when it was issued, not whether it still is (tokens live 8 hours).
     */
    currentDate?: Date;
  },
): Promise<Record<string, unknown>> {
  const base = normaliseEndpoint(opts.endpoint);
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch (e) {
    throw new MembraneError('MAA_TOKEN_INVALID', `${SERVICE} returned something that is not a JWT`, {
      where: base,
      cause: e,
    });
  }
  if (header.alg !== 'RS256')
    throw new MembraneError('MAA_TOKEN_INVALID', `token algorithm ${String(header.alg)} is not RS256`, {
      where: base,
    });

  const configUrl = `${base}/.well-known/openid-configuration`;
  const config = (
    await http(`${SERVICE} metadata`, configUrl, {
      ca: opts.ca,
      hint: 'check the attestation endpoint URL (e.g. https://<name>.<region>.attest.azure.net) and TLS trust (--ca)',
    })
  ).json<{ jwks_uri?: unknown }>();
  if (typeof config.jwks_uri !== 'string')
    throw new MembraneError('MAA_BAD_RESPONSE', 'openid-configuration has no jwks_uri', { where: configUrl });
  let jwksUrl: URL;
  try {
    jwksUrl = new URL(config.jwks_uri);
  } catch (e) {
    throw new MembraneError('MAA_BAD_RESPONSE', 'openid-configuration jwks_uri is not a URL', {
      where: configUrl,
      cause: e,
    });
  }
  // Signing keys must come from the attestation provider itself.
  if (jwksUrl.origin !== new URL(base).origin)
    throw new MembraneError(
      'MAA_BAD_RESPONSE',
      `jwks_uri ${jwksUrl.origin} is not on the attestation endpoint's origin`,
      { where: configUrl },
    );
  const jwks = (await http(`${SERVICE} signing keys`, jwksUrl.href, { ca: opts.ca })).json<{
    keys?: unknown;
  }>();
  if (!Array.isArray(jwks.keys))
    throw new MembraneError('MAA_BAD_RESPONSE', 'JWKS has no "keys" array', { where: jwksUrl.href });
  const candidates = (jwks.keys as Jwk[]).filter(
    (k) => typeof k === 'object' && k !== null && (header.kid === undefined || k.kid === header.kid),
  );
  if (candidates.length === 0)
    throw new MembraneError(
      'MAA_TOKEN_INVALID',
      `token is signed with key ${String(header.kid)}, which the issuer's JWKS does not list (keys rotated? wrong endpoint?)`,
      { where: jwksUrl.href },
    );

  let lastErr: unknown;
  for (const jwk of candidates) {
    const key = keyFromJwk(jwk, jwksUrl.href);
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms: ['RS256'],
        clockTolerance: CLOCK_TOLERANCE_S,
        currentDate: opts.currentDate,
        requiredClaims: ['exp', 'iss'],
      });
      const iss = String(payload.iss).replace(/\/+$/, '');
      if (iss !== base)
        throw new MembraneError(
          'MAA_TOKEN_INVALID',
          `token issuer ${String(payload.iss)} is not the attestation endpoint ${base}`,
          { where: base },
        );
      return payload as Record<string, unknown>;
    } catch (e) {
      if (e instanceof MembraneError) throw e;
      lastErr = e;
      if (!(e instanceof joseErrors.JWSSignatureVerificationFailed)) break;
    }
  }
  throw tokenError(lastErr, base);
}

function tokenError(e: unknown, where: string): MembraneError {
  const msg =
    e instanceof joseErrors.JWTExpired
      ? 'the token has expired (check this machine clock)'
      : e instanceof joseErrors.JWTClaimValidationFailed
        ? `token claim "${e.claim}" is invalid: ${e.reason}${e.claim === 'nbf' ? ' (check this machine clock)' : ''}`
        : e instanceof joseErrors.JWSSignatureVerificationFailed
          ? "the token signature does not verify against the issuer's signing keys"
          : `the token could not be verified (${(e as Error)?.message ?? String(e)})`;
  return new MembraneError('MAA_TOKEN_INVALID', `${SERVICE}: ${msg}`, { where, cause: e });
}

function reportDataOf(report: Buffer): Buffer | undefined {
  return report.length >= REPORT_DATA_OFFSET + REPORT_DATA_SIZE
    ? report.subarray(REPORT_DATA_OFFSET, REPORT_DATA_OFFSET + REPORT_DATA_SIZE)
    : undefined;
}

/**
 * Sends SEV-SNP evidence bound to `runtime` to MAA and returns the verified token and
 * its claims. `evidence` must have been produced with `runtime.reportData`.
 */
export async function attestSevSnp(opts: {
  endpoint: string;
  evidence: Evidence;
  runtime: RuntimeKey;
  nonce?: string;
  ca?: string | string[];
}): Promise<{ token: string; claims: Record<string, unknown> }> {
  const base = normaliseEndpoint(opts.endpoint);
  const bound = reportDataOf(opts.evidence.report);
  if (!bound?.equals(opts.runtime.reportData))
    throw new MembraneError(
      'MAA_EVIDENCE_MISMATCH',
      'the evidence does not bind this runtime key: its report_data is not SHA-256(runtime data) || zeros — request the evidence with runtime.reportData',
      { where: `evidence (${opts.evidence.source})` },
    );
  const nonce = opts.nonce ?? BigInt(`0x${randomBytes(8).toString('hex')}`).toString(10);
  const body = JSON.stringify(buildAttestSevSnpRequest(opts.evidence, opts.runtime.runtimeData, nonce));
  const url = `${base}/attest/SevSnpVm?api-version=${MAA_API_VERSION}`;
  const res = await http(`${SERVICE} attest`, url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body,
    ca: opts.ca,
    accept: [400, 401, 403],
    hint: 'check the attestation endpoint URL and TLS trust (--ca); MAA itself may be unavailable',
  });
  if (res.status !== 200) throw rejection(res.status, res.body, url, opts.evidence);

  const token = res.json<{ token?: unknown }>().token;
  if (typeof token !== 'string' || token.length === 0)
    throw new MembraneError('MAA_BAD_RESPONSE', `${SERVICE} answered without a "token"`, { where: url });

  const claims = await verifyMaaToken(token, { endpoint: base, ca: opts.ca });
  const runtimeClaim = claims['x-ms-runtime'] as { keys?: unknown } | undefined;
  const keys = Array.isArray(runtimeClaim?.keys) ? (runtimeClaim.keys as Jwk[]) : [];
  if (!keys.some((k) => k?.kid === opts.runtime.publicJwk.kid && k?.n === opts.runtime.publicJwk.n))
    throw new MembraneError(
      'MAA_TOKEN_INVALID',
      `${SERVICE}: the token's x-ms-runtime.keys does not carry this runtime key, so Key Vault would wrap the released key to another key`,
      { where: base },
    );
  return { token, claims };
}

/** An actionable error for a 4xx from the attest call (body excerpt is service text, never ours). */
function rejection(status: number, body: Buffer, url: string, evidence: Evidence): MembraneError {
  let detail = '';
  try {
    const j = JSON.parse(body.toString('utf8', 0, Math.min(body.length, 2000))) as {
      error?: { code?: string; message?: string };
    };
    detail = [j.error?.code, j.error?.message].filter(Boolean).join(': ');
  } catch {
    detail = body.toString('utf8', 0, Math.min(body.length, 200)).replace(/\s+/g, ' ');
  }
  const where = url.replace(/\?.*$/, '');
  if (status === 400) {
    const checks = [
      evidence.provider === 'virtual'
        ? 'virtual (unsigned) evidence is accepted only by the local MAA emulator'
        : 'the report must come from genuine SEV-SNP hardware',
      evidence.collateral.vcekCertChainPem
        ? undefined
        : 'no VCEK certificate chain was sent (host-amd-cert-base64 / THIM)',
      evidence.collateral.uvmReferenceInfo
        ? undefined
        : 'no UVM endorsement was sent (reference-info-base64)',
      "the attestation provider's own policy may have refused the evidence",
    ].filter(Boolean);
    return new MembraneError(
      'MAA_REJECTED',
      `${SERVICE} rejected the evidence (HTTP 400${detail ? `: ${detail}` : ''}) — check: ${checks.join('; ')}`,
      { where },
    );
  }
  return new MembraneError(
    'MAA_REJECTED',
    `${SERVICE} refused the attest call (HTTP ${status}${detail ? `: ${detail}` : ''}) — the attestation provider may require authorization; use a shared or open provider endpoint`,
    { where },
  );
}
