/**
 * Secure key release from Azure Key Vault (Premium) / Managed HSM:
 * `POST {kid}/release?api-version=7.4` with `{target: <MAA token>, nonce?, enc?}`,
 * answered by `{value: <JWS>}`. The JWS is verified (x5c chain to a trust anchor,
 * leaf issued for the vault host, signature), then `response.key.key.key_hsm` is
 * opened with the runtime key (see key-hsm.ts).
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { MembraneError } from '../../policy/errors.js';
import { assertSecureUrl, http } from '../http.js';
import { isKeyExportEnc, type KeyExportEnc, openKeyHsm } from './key-hsm.js';
import { resourceForVault, type TokenSource } from './token.js';
import { verifyX5cJws } from './x5c.js';

export const KEY_VAULT_API_VERSION = '7.4';

export interface ReleasedKey {
  kty: 'oct' | 'oct-HSM' | 'RSA' | 'RSA-HSM';
  /** Raw bytes for oct/oct-HSM; PKCS#8 DER for RSA/RSA-HSM. */
  key: Buffer;
  /** RFC 7638 JWK thumbprint (SHA-256, base64url): of {k,kty:"oct"} or of the RSA public key. */
  thumbprint: string;
}

export interface ReleaseKeyOptions {
  /** Key identifier: https://{vault}/keys/{name}[/{version}] */
  kid: string;
  /** MAA token whose x-ms-runtime carries the runtime public key. */
  maaToken: string;
  /** Only the private half is used here; structurally a RuntimeKey from maa/client.ts. */
  runtime: { privateKey: KeyObject };
  credential: TokenSource;
  enc?: KeyExportEnc;
  nonce?: string;
  /** Extra PEM trust anchors for TLS only (e.g. the local emulators' CA). */
  ca?: string | string[];
  /**
   * Replaces the default (Azure) trust anchors for the release JWS signature. Kept apart
   * from `ca` on purpose: trusting a CA for a TLS connection must not also let it sign keys.
   */
  trustAnchors?: string[];
  apiVersion?: string;
  timeoutMs?: number;
  retries?: number;
}

/** Splits a kid into vault origin, key name and optional version. */
export function parseKid(kid: string): { vault: string; name: string; version?: string; host: string } {
  let u: URL;
  try {
    u = new URL(kid);
  } catch {
    throw new MembraneError('AKV_URL_INVALID', `key id is not a URL: ${kid}`);
  }
  const m = /^\/keys\/([0-9A-Za-z-]{1,127})(?:\/([0-9A-Za-z]+))?\/?$/.exec(u.pathname);
  if (!m || (u.protocol !== 'https:' && u.protocol !== 'http:'))
    throw new MembraneError(
      'AKV_URL_INVALID',
      `key id must look like https://<vault>/keys/<name>[/<version>], got ${u.origin}${u.pathname}`,
    );
  return { vault: u.origin, name: m[1]!, version: m[2], host: u.hostname };
}

export async function releaseKey(opts: ReleaseKeyOptions): Promise<ReleasedKey> {
  const { vault, name, version, host } = parseKid(opts.kid);
  if (opts.enc !== undefined && !isKeyExportEnc(opts.enc))
    throw new MembraneError('AKV_ENC_INVALID', `unsupported enc ${String(opts.enc)}`);
  const keyPath = `${vault}/keys/${name}${version ? `/${version}` : ''}`;
  const url = `${keyPath}/release?api-version=${encodeURIComponent(opts.apiVersion ?? KEY_VAULT_API_VERSION)}`;
  // Before the token is fetched: a bearer token must never be sent in cleartext off loopback.
  assertSecureUrl('Azure Key Vault key release', new URL(url));
  const token = await opts.credential.getToken(resourceForVault(vault));
  const body: Record<string, string> = { target: opts.maaToken };
  if (opts.nonce !== undefined) body.nonce = opts.nonce;
  if (opts.enc !== undefined) body.enc = opts.enc;

  const res = await http('Azure Key Vault key release', url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ca: opts.ca,
    timeoutMs: opts.timeoutMs,
    retries: opts.retries,
    accept: [400, 401, 403, 404, 409],
  });
  if (res.status !== 200) throw releaseError(res.status, res.body, keyPath);

  const value = res.json<{ value?: unknown }>().value;
  if (typeof value !== 'string')
    throw new MembraneError('AKV_RELEASE_UNTRUSTED', 'Key Vault release response has no JWS "value"', {
      where: keyPath,
    });
  const { payload } = await verifyX5cJws(value, { host, trustAnchors: opts.trustAnchors });
  return openReleasePayload(payload, opts, keyPath);
}

interface ReleasePayload {
  request?: { 'api-version'?: unknown; enc?: unknown; kid?: unknown; nonce?: unknown };
  response?: { key?: { key?: { kty?: unknown; key_hsm?: unknown; kid?: unknown } } };
}

async function openReleasePayload(
  payloadBytes: Uint8Array,
  opts: ReleaseKeyOptions,
  keyPath: string,
): Promise<ReleasedKey> {
  const bad = (msg: string) =>
    new MembraneError('AKV_RELEASE_UNTRUSTED', `Key Vault release payload ${msg}`, { where: keyPath });
  let p: ReleasePayload;
  try {
    p = JSON.parse(Buffer.from(payloadBytes).toString('utf8')) as ReleasePayload;
  } catch {
    throw bad('is not JSON');
  }
  const jwk = p.response?.key?.key;
  if (!jwk || typeof jwk.key_hsm !== 'string') throw bad('has no response.key.key.key_hsm');
  const kty = jwk.kty;
  if (kty !== 'oct' && kty !== 'oct-HSM' && kty !== 'RSA' && kty !== 'RSA-HSM')
    throw bad(`carries a key of type ${String(kty)}; supported: oct, oct-HSM, RSA, RSA-HSM`);
  // The signed request echo binds the answer to what we asked for.
  if (opts.nonce !== undefined && p.request?.nonce !== opts.nonce) throw bad('does not echo our nonce');
  if (typeof jwk.kid === 'string' && !sameKey(jwk.kid, keyPath))
    throw bad(`is for key ${jwk.kid}, not ${keyPath}`);
  const reqEnc = p.request?.enc;
  if (reqEnc !== undefined && !isKeyExportEnc(reqEnc)) throw bad(`names unsupported enc ${String(reqEnc)}`);
  if (opts.enc !== undefined && reqEnc !== undefined && reqEnc !== opts.enc)
    throw bad(`used enc ${reqEnc}, not the requested ${opts.enc}`);

  const { material } = openKeyHsm(
    jwk.key_hsm,
    opts.runtime.privateKey,
    (reqEnc as KeyExportEnc | undefined) ?? opts.enc,
  );
  if (kty === 'oct' || kty === 'oct-HSM') {
    const thumbprint = await calculateJwkThumbprint({ kty: 'oct', k: material.toString('base64url') });
    return { kty, key: material, thumbprint };
  }
  const pkcs8 = toPkcs8Rsa(material, keyPath);
  const pub = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' }) as JWK;
  const thumbprint = await calculateJwkThumbprint({ kty: 'RSA', n: pub.n, e: pub.e });
  return { kty, key: pkcs8, thumbprint };
}

/** The vault and name must match; a versionless request may be answered for the current version. */
function sameKey(releasedKid: string, requested: string): boolean {
  try {
    const a = parseKid(releasedKid);
    const b = parseKid(requested);
    return a.name === b.name && (b.version === undefined || a.version === b.version);
  } catch {
    return false;
  }
}

/** PKCS#8 is what Key Vault releases; PKCS#1 is accepted and normalised so callers see one form. */
function toPkcs8Rsa(material: Buffer, where: string): Buffer {
  for (const type of ['pkcs8', 'pkcs1'] as const) {
    try {
      const k = createPrivateKey({ key: material, format: 'der', type });
      if (k.asymmetricKeyType !== 'rsa') break;
      return k.export({ format: 'der', type: 'pkcs8' });
    } catch {
      /* try the next form */
    }
  }
  throw new MembraneError(
    'AKV_RELEASE_UNWRAP',
    'released RSA key is not a PKCS#8 (or PKCS#1) RSA private key',
    {
      where,
    },
  );
}

/** Maps a failed release to an actionable message; names failing claims when the service does. */
export function releaseError(status: number, body: Buffer, where: string): MembraneError {
  const { code, message } = serviceError(body);
  const said = message ? ` (service said: ${code ? `${code}: ` : ''}${message})` : '';
  if (status === 403) {
    const claims = [...new Set([...(message.match(/\bx-ms-[a-z0-9-]+(?:\.[A-Za-z0-9_-]+)*/gi) ?? [])])];
    const named = /claim ['"]?([A-Za-z0-9_.:/-]+)/i.exec(message)?.[1];
    if (named && !claims.includes(named)) claims.unshift(named);
    if (claims.length || /polic/i.test(message))
      return new MembraneError(
        'AKV_RELEASE_DENIED',
        `release policy not satisfied${claims.length ? `: claim ${claims.join(', claim ')}` : ''} — the attestation token's claims do not meet the key's release policy; compare them with 'membrane policy explain'${said}`,
        { where },
      );
    return new MembraneError(
      'AKV_FORBIDDEN',
      `Key Vault refused the release (HTTP 403) — check that the identity has the keys/release permission (role "Key Vault Crypto Service Release User") and the key's release policy${said}`,
      { where },
    );
  }
  if (status === 401)
    return new MembraneError(
      'AKV_UNAUTHORIZED',
      `Key Vault rejected the access token (HTTP 401) — check its audience (${resourceForVault(where)}), tenant and expiry${said}`,
      { where },
    );
  if (status === 404)
    return new MembraneError(
      'AKV_NOT_FOUND',
      `key not found (HTTP 404) — check the vault URL, key name and version${said}`,
      {
        where,
      },
    );
  return new MembraneError(
    'AKV_BAD_REQUEST',
    `Key Vault rejected the release request (HTTP ${status}) — check that the key is exportable with a release policy, that the attestation token is current and issued by the policy's authority, and the --enc value${said}`,
    { where },
  );
}

export function serviceError(body: Buffer): { code: string; message: string } {
  try {
    const j = JSON.parse(body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } };
    const code = typeof j.error?.code === 'string' ? j.error.code : '';
    const message = typeof j.error?.message === 'string' ? j.error.message.slice(0, 500) : '';
    return { code, message };
  } catch {
    return { code: '', message: body.toString('utf8', 0, 200).replace(/\s+/g, ' ').trim() };
  }
}
