/**
 * Verification of the JWS that Key Vault / Managed HSM signs a key release
 * with: the `x5c` chain must lead to a trust anchor, the leaf must be issued
 * for the vault's host name, and the signature must verify with the leaf's key
 * under the algorithm the header names.
 *
 * Trust anchors default to the roots Azure's TLS/signing certificates chain to
 * (DigiCert Global Root CA/G2/G3, Microsoft RSA/ECC Root Certificate Authority
 * 2017), taken from Node's bundled Mozilla store; callers may replace the set
 * (`trustAnchors`) and/or add to it (`ca`, e.g. the local emulators' CA).
 */
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { MembraneError } from '../../policy/errors.js';

const AZURE_ROOT_SUBJECTS = [
  'CN=DigiCert Global Root CA',
  'CN=DigiCert Global Root G2',
  'CN=DigiCert Global Root G3',
  'CN=Microsoft RSA Root Certificate Authority 2017',
  'CN=Microsoft ECC Root Certificate Authority 2017',
];

let azureRoots: string[] | undefined;
/** PEMs of the roots Azure Key Vault / Managed HSM release certificates chain to. */
export function azureTrustAnchors(): string[] {
  if (!azureRoots) {
    azureRoots = rootCertificates.filter((pem) => {
      const subject = new X509Certificate(pem).subject.split('\n');
      return AZURE_ROOT_SUBJECTS.some((s) => subject.includes(s));
    });
  }
  return azureRoots;
}

/** Splits PEM text (one or many certificates) into X509Certificate objects. */
export function parsePemBundle(pem: string | string[]): X509Certificate[] {
  const text = Array.isArray(pem) ? pem.join('\n') : pem;
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

const ALLOWED_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];

export interface VerifyX5cJwsOptions {
  /** Host name the leaf certificate must be issued for (the vault's host). */
  host: string;
  /** Replaces the default Azure roots. */
  trustAnchors?: string[];
  /** Added to the anchors (PEM). */
  ca?: string | string[];
  /** Clock for validity checks (tests). */
  now?: Date;
  /** Service name for messages. */
  service?: string;
}

/** Verifies a compact JWS with an x5c header; returns the payload bytes and header. */
export async function verifyX5cJws(
  jws: string,
  opts: VerifyX5cJwsOptions,
): Promise<{ payload: Uint8Array; header: Record<string, unknown>; leaf: X509Certificate }> {
  const service = opts.service ?? 'Key Vault release response';
  const fail = (msg: string, cause?: unknown) =>
    new MembraneError('AKV_RELEASE_UNTRUSTED', `${service}: ${msg}`, { cause });
  if (typeof jws !== 'string' || jws.split('.').length !== 3) throw fail('is not a compact JWS');
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(jws) as Record<string, unknown>;
  } catch (e) {
    throw fail('has an unreadable JWS header', e);
  }
  const x5c = header.x5c;
  if (!Array.isArray(x5c) || x5c.length === 0 || !x5c.every((c) => typeof c === 'string'))
    throw fail('JWS header has no x5c certificate chain');
  let chain: X509Certificate[];
  try {
    // RFC 7515 §4.1.6: x5c entries are base64 (not base64url) DER.
    chain = (x5c as string[]).map((c) => new X509Certificate(Buffer.from(c, 'base64')));
  } catch (e) {
    throw fail('x5c holds a certificate that does not parse', e);
  }
  const anchors = [
    ...parsePemBundle(opts.trustAnchors ?? azureTrustAnchors()),
    ...(opts.ca ? parsePemBundle(opts.ca) : []),
  ];
  if (anchors.length === 0) throw fail('no trust anchors are configured');
  verifyChain(chain, anchors, opts.now ?? new Date(), fail);

  const leaf = chain[0]!;
  const host = opts.host.replace(/^\[|\]$/g, '');
  const nameOk = isIP(host) ? leaf.checkIP(host) !== undefined : leaf.checkHost(host) !== undefined;
  if (!nameOk)
    throw fail(
      `signing certificate (${oneLine(leaf.subject)}${leaf.subjectAltName ? `; ${leaf.subjectAltName}` : ''}) is not issued for ${host}`,
    );

  const alg = header.alg;
  if (typeof alg !== 'string' || !ALLOWED_ALGS.includes(alg))
    throw fail(`JWS alg ${String(alg)} is not allowed (allowed: ${ALLOWED_ALGS.join(', ')})`);
  try {
    const { payload } = await compactVerify(jws, leaf.publicKey, { algorithms: [alg] });
    return { payload, header, leaf };
  } catch (e) {
    throw fail(`JWS signature does not verify with the x5c leaf certificate (${alg})`, e);
  }
}

function verifyChain(
  chain: X509Certificate[],
  anchors: X509Certificate[],
  now: Date,
  fail: (msg: string) => MembraneError,
): void {
  const t = now.getTime();
  const valid = (c: X509Certificate, what: string) => {
    if (Date.parse(c.validFrom) > t || Date.parse(c.validTo) < t)
      throw fail(
        `${what} (${oneLine(c.subject)}) is outside its validity period ${c.validFrom} – ${c.validTo}`,
      );
  };
  chain.forEach((c, i) => {
    valid(c, i === 0 ? 'signing certificate' : `x5c[${i}]`);
  });
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i]!;
    const parent = chain[i + 1]!;
    if (!parent.ca) throw fail(`x5c[${i + 1}] (${oneLine(parent.subject)}) is not a CA certificate`);
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey))
      throw fail(`x5c[${i}] is not signed by x5c[${i + 1}] (${oneLine(parent.subject)})`);
  }
  const top = chain[chain.length - 1]!;
  // Either the top of the chain is itself an anchor, or an anchor issued it.
  for (const a of anchors) {
    if (a.fingerprint256 === top.fingerprint256) return;
    if (top.checkIssued(a) && top.verify(a.publicKey)) {
      valid(a, 'trust anchor');
      return;
    }
  }
  throw fail(
    `certificate chain (top: ${oneLine(top.issuer)}) does not lead to a trusted root — for the local emulators pass their CA with --ca`,
  );
}

const oneLine = (dn: string) => dn.split('\n').join(', ');
