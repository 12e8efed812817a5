/**
 * Local Azure Key Vault / Managed HSM emulator — NOT FOR PRODUCTION.
 *
 * The subset of the Key Vault REST API (7.4) a clean room needs, byte-compatible
 * with the real service for what it covers:
 *   POST /keys/{name}/create                 kty oct-HSM (128/192/256) | RSA[-HSM] (2048/3072/4096)
 *   PUT  /keys/{name}  (also PUT|POST /keys/{name}/import)   import a JWK
 *   GET  /keys/{name}[/{version}]
 *   POST /keys/{name}[/{version}]/release    {target, nonce?, enc?} -> {value: JWS}
 *   PUT  /secrets/{name}, GET /secrets/{name}[/{version}]
 * Keys carry `attributes.exportable` and `release_policy` {contentType, data: base64url(JSON)}.
 * A release verifies the attestation token (RS256 against the trusted attestation
 * emulator's JWKS, exp/nbf), evaluates the release policy (policy/release-policy.ts)
 * and answers with a JWS signed by a certificate issued for this host (x5c), whose
 * payload carries `key_hsm` wrapped to the token's x-ms-runtime key — the same shape
 * Key Vault produces. Refusals are 403s naming the failing claims.
 *
 * Callers authenticate with `Authorization: Bearer <access token>` (one random token,
 * kept 0600 in the state directory). State (including key material) is kept in
 * keyvault-state.json, 0600.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { join } from 'node:path';
import { CompactSign, createLocalJWKSet, decodeJwt, type JWK, errors as joseErrors, jwtVerify } from 'jose';
import { isMembraneError } from '../../policy/errors.js';
import {
  claimsLookup,
  decodeReleasePolicy,
  describeResult,
  evaluateReleasePolicy,
  type ReleasePolicy,
  sameAuthority,
} from '../../policy/release-policy.js';
import { DEFAULT_KEY_EXPORT_ENC, isKeyExportEnc, KEY_EXPORT_ENCS, sealKeyHsm } from '../akv/key-hsm.js';
import type { EmulatorCa } from './ca.js';
import { readIfExists, writeFileAtomic } from './files.js';
import { EMULATOR_BANNER } from './maa.js';
import { HttpError, type Request, type Response, type RunningServer, startHttpsServer } from './server.js';

type Kty = 'oct' | 'oct-HSM' | 'RSA' | 'RSA-HSM';

interface StoredPolicy {
  contentType: string;
  data: string;
}
interface StoredKey {
  version: string;
  kty: Kty;
  keyOps: string[];
  /** base64: raw key for oct, PKCS#8 DER for RSA. */
  material: string;
  exportable: boolean;
  enabled: boolean;
  releasePolicy?: StoredPolicy;
  created: number;
}
interface StoredSecret {
  version: string;
  value: string;
  contentType?: string;
  created: number;
}
interface State {
  keys: Record<string, StoredKey[]>;
  secrets: Record<string, StoredSecret[]>;
}

export interface TrustedAttestation {
  issuer: string;
  jwks: { keys: JWK[] };
}

export interface KeyVaultEmulator extends RunningServer {
  accessToken: string;
}

const STATE_FILE = 'keyvault-state.json';
const TOKEN_FILE = 'access-token';
const NAME_RE = /^[0-9A-Za-z-]{1,127}$/;
const VERSION_RE = /^[0-9A-Za-z]{1,64}$/;

const bad = (message: string, code = 'BadParameter') => new HttpError(400, code, message);

/** The emulators' bearer token: created once, kept 0600 in the state directory. */
export function loadOrCreateAccessToken(dir: string): string {
  const existing = readIfExists(dir, TOKEN_FILE)?.trim();
  if (existing) return existing;
  const token = `membrane-emulator.${randomBytes(32).toString('base64url')}`;
  writeFileAtomic(join(dir, TOKEN_FILE), `${token}\n`, 0o600);
  return token;
}

function loadState(dir: string): State {
  const text = readIfExists(dir, STATE_FILE);
  if (!text) return { keys: {}, secrets: {} };
  const s = JSON.parse(text) as Partial<State>;
  return { keys: s.keys ?? {}, secrets: s.secrets ?? {} };
}

export async function startKeyVaultEmulator(opts: {
  dir: string;
  ca: EmulatorCa;
  /** Attestation services whose tokens a release accepts (the MAA emulator). */
  trusted: TrustedAttestation[];
  host?: string;
  port?: number;
  accessToken?: string;
  log?: (line: string) => void;
}): Promise<KeyVaultEmulator> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const accessToken = opts.accessToken ?? loadOrCreateAccessToken(opts.dir);
  const expectedAuth = Buffer.from(`Bearer ${accessToken}`);
  const state = loadState(opts.dir);
  const save = () => writeFileAtomic(join(opts.dir, STATE_FILE), JSON.stringify(state), 0o600);
  const signing = opts.ca.releaseSigning;
  const x5tS256 = createHash('sha256').update(Buffer.from(signing.x5c[0]!, 'base64')).digest('base64url');
  let base = '';

  const authorize = (req: Request) => {
    const got = Buffer.from(String(req.headers.authorization ?? ''));
    if (got.length !== expectedAuth.length || !timingSafeEqual(got, expectedAuth))
      throw new HttpError(
        401,
        'Unauthorized',
        'AKV10000: Request is missing a Bearer or PoP token, or it is not valid.',
        {
          'www-authenticate': `Bearer authorization="${base}", resource="https://vault.azure.net"`,
        },
      );
  };

  const keyId = (name: string, version: string) => `${base}/keys/${name}/${version}`;

  const findKey = (name: string, version?: string): StoredKey => {
    const versions = state.keys[name];
    const k = version ? versions?.find((v) => v.version === version) : versions?.[versions.length - 1];
    if (!k)
      throw new HttpError(
        404,
        'KeyNotFound',
        `A key with (name/id) ${name}${version ? `/${version}` : ''} was not found in this key vault.`,
      );
    return k;
  };

  const bundle = (name: string, k: StoredKey) => {
    const key: Record<string, unknown> = { kid: keyId(name, k.version), kty: k.kty, key_ops: k.keyOps };
    if (k.kty.startsWith('RSA')) {
      const pub = publicJwk(k);
      key.n = pub.n;
      key.e = pub.e;
    }
    return {
      key,
      attributes: {
        enabled: k.enabled,
        exportable: k.exportable,
        created: Math.floor(k.created / 1000),
        updated: Math.floor(k.created / 1000),
        recoveryLevel: 'CustomizedRecoverable+Purgeable',
      },
      ...(k.releasePolicy ? { release_policy: k.releasePolicy } : {}),
    };
  };

  const storeKey = (name: string, k: Omit<StoredKey, 'version' | 'created'>): Response => {
    const stored: StoredKey = { ...k, version: randomBytes(16).toString('hex'), created: Date.now() };
    state.keys[name] = [...(state.keys[name] ?? []), stored];
    save();
    return { status: 200, body: bundle(name, stored) };
  };

  const createKey = (name: string, req: Request): Response => {
    const b = req.json() as {
      kty?: unknown;
      key_size?: unknown;
      key_ops?: unknown;
      attributes?: { exportable?: unknown; enabled?: unknown };
      release_policy?: unknown;
    };
    const kty = b?.kty;
    let material: Buffer;
    if (kty === 'oct-HSM' || kty === 'oct') {
      const size = b.key_size ?? 256;
      if (size !== 128 && size !== 192 && size !== 256) throw bad('oct-HSM key_size must be 128, 192 or 256');
      material = randomBytes(size / 8);
    } else if (kty === 'RSA-HSM' || kty === 'RSA') {
      const size = b.key_size ?? 2048;
      if (size !== 2048 && size !== 3072 && size !== 4096)
        throw bad('RSA key_size must be 2048, 3072 or 4096');
      material = generateKeyPairSync('rsa', { modulusLength: size }).privateKey.export({
        format: 'der',
        type: 'pkcs8',
      });
    } else
      throw bad(`unsupported kty ${JSON.stringify(kty)}; this emulator creates oct-HSM and RSA-HSM keys`);
    return storeKey(name, { kty, material: material.toString('base64'), ...common(kty, b) });
  };

  const importKey = (name: string, req: Request): Response => {
    const b = req.json() as {
      key?: JsonWebKey & { kty?: string; key_ops?: unknown };
      hsm?: unknown;
      attributes?: { exportable?: unknown; enabled?: unknown };
      release_policy?: unknown;
    };
    const jwk = b?.key;
    if (!jwk || typeof jwk !== 'object') throw bad('import needs a "key" JSON Web Key');
    const hsm = b.hsm === true || String(jwk.kty).endsWith('-HSM');
    let kty: Kty;
    let material: Buffer;
    if (jwk.kty === 'oct' || jwk.kty === 'oct-HSM') {
      if (typeof jwk.k !== 'string') throw bad('oct key needs "k"');
      material = Buffer.from(jwk.k, 'base64url');
      if (![16, 24, 32].includes(material.length)) throw bad('oct key must be 128, 192 or 256 bits');
      kty = hsm ? 'oct-HSM' : 'oct';
    } else if (jwk.kty === 'RSA' || jwk.kty === 'RSA-HSM') {
      let k: KeyObject;
      try {
        k = createPrivateKey({ key: { ...jwk, kty: 'RSA' } as JsonWebKey, format: 'jwk' });
      } catch {
        throw bad('RSA key must carry the private members n, e, d, p, q, dp, dq, qi');
      }
      material = k.export({ format: 'der', type: 'pkcs8' });
      kty = hsm ? 'RSA-HSM' : 'RSA';
    } else throw bad(`unsupported kty ${JSON.stringify(jwk.kty)}; import oct, oct-HSM, RSA or RSA-HSM keys`);
    return storeKey(name, {
      kty,
      material: material.toString('base64'),
      ...common(kty, { ...b, key_ops: jwk.key_ops }),
    });
  };

  const release = async (name: string, version: string | undefined, req: Request): Promise<Response> => {
    const k = findKey(name, version);
    const b = req.json() as { target?: unknown; nonce?: unknown; enc?: unknown };
    if (typeof b?.target !== 'string' || !b.target) throw bad('release needs "target": an attestation token');
    if (b.enc !== undefined && !isKeyExportEnc(b.enc))
      throw bad(`unsupported enc ${JSON.stringify(b.enc)}; supported: ${KEY_EXPORT_ENCS.join(', ')}`);
    if (b.nonce !== undefined && typeof b.nonce !== 'string') throw bad('nonce must be a string');
    if (!k.enabled)
      throw new HttpError(403, 'Forbidden', 'Operation release is not allowed on a disabled key.');
    if (!k.exportable || !k.releasePolicy)
      throw new HttpError(
        403,
        'Forbidden',
        'Operation release is not allowed: the key is not exportable or has no release policy.',
      );

    const claims = await verifyAttestationToken(b.target, opts.trusted);
    const policy = parsePolicy(k.releasePolicy, 'stored key');
    const verdict = evaluateReleasePolicy(policy, claimsLookup([claims]));
    if (!verdict.allowed) {
      const failing = verdict.results.filter((r) => !r.pass && verdict.failedClaims.includes(r.claim));
      const detail = failing.map(describeResult).join('; ');
      const msg = verdict.failedClaims.length
        ? `release policy not satisfied: claim ${verdict.failedClaims.join(', claim ')}${detail ? ` (${detail})` : ''}`
        : `release policy not satisfied: no authority of the policy issued the attestation token (issuer ${String(claims.iss)})`;
      log(`Key Vault emulator: release of ${name} refused — ${msg}`);
      throw new HttpError(403, 'Forbidden', msg);
    }

    const runtime = runtimeWrappingKey(claims);
    const enc = b.enc ?? DEFAULT_KEY_EXPORT_ENC;
    const material = Buffer.from(k.material, 'base64');
    const key: Record<string, unknown> = {
      kid: keyId(name, k.version),
      kty: k.kty,
      key_ops: k.keyOps,
      key_hsm: sealKeyHsm({ material, wrappingKey: runtime.key, enc, kid: runtime.kid }),
    };
    material.fill(0);
    if (k.kty.startsWith('RSA')) {
      const pub = publicJwk(k);
      key.n = pub.n;
      key.e = pub.e;
    }
    const { attributes, release_policy } = bundle(name, k);
    const payload = {
      request: {
        'api-version': req.query.get('api-version'),
        enc,
        kid: `${base}/keys/${name}${version ? `/${version}` : ''}`,
        ...(b.nonce !== undefined ? { nonce: b.nonce } : {}),
      },
      response: { key: { key, attributes, release_policy } },
    };
    const jws = await new CompactSign(Buffer.from(JSON.stringify(payload), 'utf8'))
      .setProtectedHeader({ alg: 'RS256', kid: x5tS256, x5c: signing.x5c, 'x5t#S256': x5tS256 })
      .sign(signing.privateKey);
    log(`Key Vault emulator: released ${name}/${k.version} (${k.kty}, ${enc})`);
    return { status: 200, body: { value: jws } };
  };

  const putSecret = (name: string, req: Request): Response => {
    const b = req.json() as { value?: unknown; contentType?: unknown };
    if (typeof b?.value !== 'string') throw bad('secret needs a string "value"');
    if (b.contentType !== undefined && typeof b.contentType !== 'string')
      throw bad('contentType must be a string');
    const s: StoredSecret = {
      version: randomBytes(16).toString('hex'),
      value: b.value,
      contentType: b.contentType as string | undefined,
      created: Date.now(),
    };
    state.secrets[name] = [...(state.secrets[name] ?? []), s];
    save();
    return { status: 200, body: secretBundle(name, s) };
  };

  const getSecret = (name: string, version?: string): Response => {
    const versions = state.secrets[name];
    const s = version ? versions?.find((v) => v.version === version) : versions?.[versions.length - 1];
    if (!s)
      throw new HttpError(
        404,
        'SecretNotFound',
        `A secret with (name/id) ${name}${version ? `/${version}` : ''} was not found in this key vault.`,
      );
    return { status: 200, body: secretBundle(name, s) };
  };

  const secretBundle = (name: string, s: StoredSecret) => ({
    value: s.value,
    id: `${base}/secrets/${name}/${s.version}`,
    ...(s.contentType ? { contentType: s.contentType } : {}),
    attributes: {
      enabled: true,
      created: Math.floor(s.created / 1000),
      updated: Math.floor(s.created / 1000),
      recoveryLevel: 'CustomizedRecoverable+Purgeable',
    },
  });

  const server = await startHttpsServer({
    tls: opts.ca.tls,
    host: opts.host ?? '127.0.0.1',
    port: opts.port ?? 0,
    handler: async (req) => {
      const seg = req.path.split('/').filter(Boolean);
      const [coll, name, a, c] = seg;
      if ((coll !== 'keys' && coll !== 'secrets') || !name || seg.length > 4)
        throw new HttpError(404, 'NotFound', `no such endpoint: ${req.method} ${req.path}`);
      authorize(req);
      if (!req.query.get('api-version'))
        throw new HttpError(
          400,
          'MissingApiVersionParameter',
          'The api-version query parameter (?api-version=) is required for all requests.',
        );
      if (!NAME_RE.test(name))
        throw bad(`invalid name ${JSON.stringify(name)}: use 1-127 letters, digits and dashes`);
      const m = req.method;
      if (coll === 'secrets') {
        if (m === 'PUT' && seg.length === 2) return putSecret(name, req);
        if (m === 'GET' && seg.length <= 3) return getSecret(name, checkVersion(a));
      } else {
        if (m === 'POST' && a === 'create' && seg.length === 3) return createKey(name, req);
        if (
          (m === 'PUT' && seg.length === 2) ||
          ((m === 'PUT' || m === 'POST') && a === 'import' && seg.length === 3)
        )
          return importKey(name, req);
        if (m === 'POST' && a === 'release' && seg.length === 3) return release(name, undefined, req);
        if (m === 'POST' && c === 'release' && seg.length === 4) return release(name, checkVersion(a), req);
        if (m === 'GET' && seg.length <= 3) {
          const k = findKey(name, checkVersion(a));
          return { status: 200, body: bundle(name, k) };
        }
      }
      throw new HttpError(405, 'MethodNotAllowed', `${m} ${req.path} is not supported by the emulator`);
    },
  });
  base = server.url;
  log(`Key Vault ${EMULATOR_BANNER}: ${base}`);
  return { ...server, accessToken };
}

function checkVersion(v: string | undefined): string | undefined {
  if (v !== undefined && !VERSION_RE.test(v)) throw bad(`invalid version ${JSON.stringify(v)}`);
  return v;
}

function publicJwk(k: StoredKey): JsonWebKey {
  return createPublicKey(
    createPrivateKey({ key: Buffer.from(k.material, 'base64'), format: 'der', type: 'pkcs8' }),
  ).export({ format: 'jwk' });
}

/** Exportability, key_ops and release policy rules shared by create and import. */
function common(
  kty: Kty,
  b: {
    key_ops?: unknown;
    attributes?: { exportable?: unknown; enabled?: unknown };
    release_policy?: unknown;
  },
): { keyOps: string[]; exportable: boolean; enabled: boolean; releasePolicy?: StoredPolicy } {
  const exportable = b.attributes?.exportable === true;
  const enabled = b.attributes?.enabled !== false;
  const keyOps =
    Array.isArray(b.key_ops) && b.key_ops.every((o) => typeof o === 'string')
      ? (b.key_ops as string[])
      : kty.startsWith('oct')
        ? ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey']
        : ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'];
  let releasePolicy: StoredPolicy | undefined;
  if (b.release_policy !== undefined) {
    const rp = b.release_policy as { contentType?: unknown; data?: unknown };
    if (typeof rp !== 'object' || rp === null || typeof rp.data !== 'string')
      throw bad('release_policy must be {contentType, data: base64url(policy JSON)}');
    const contentType =
      typeof rp.contentType === 'string' ? rp.contentType : 'application/json; charset=utf-8';
    releasePolicy = { contentType, data: rp.data };
    parsePolicy(releasePolicy, 'release_policy');
  }
  // Key Vault's own rules (AKV.SKR.1004 / AKV.SKR.1005).
  if (exportable && !releasePolicy) throw bad('Exportable keys must have release policy');
  if (!exportable && releasePolicy) throw bad('Non-exportable keys must not have release policy');
  return { keyOps, exportable, enabled, ...(releasePolicy ? { releasePolicy } : {}) };
}

function parsePolicy(p: StoredPolicy, what: string): ReleasePolicy {
  try {
    return decodeReleasePolicy(p);
  } catch (e) {
    throw bad(`${what}: ${isMembraneError(e) ? e.message : 'invalid release policy'}`);
  }
}

/** Verifies the attestation token against the trusted issuers' keys (signature, exp, nbf). */
async function verifyAttestationToken(
  token: string,
  trusted: TrustedAttestation[],
): Promise<Record<string, unknown>> {
  let iss: unknown;
  try {
    iss = decodeJwt(token).iss;
  } catch {
    throw bad('target is not a JWT attestation token', 'InvalidAttestationToken');
  }
  const t = trusted.find((x) => typeof iss === 'string' && sameAuthority(x.issuer, iss));
  if (!t)
    throw bad(
      `attestation token issuer ${JSON.stringify(iss)} is not an attestation service this emulator trusts`,
      'InvalidAttestationToken',
    );
  try {
    const { payload } = await jwtVerify(token, createLocalJWKSet(t.jwks), {
      algorithms: ['RS256'],
      issuer: iss as string,
      requiredClaims: ['exp'],
      clockTolerance: 60,
    });
    return payload as Record<string, unknown>;
  } catch (e) {
    const why =
      e instanceof joseErrors.JWTExpired
        ? 'it has expired'
        : e instanceof joseErrors.JWSSignatureVerificationFailed || e instanceof joseErrors.JWKSNoMatchingKey
          ? "its signature does not verify with the attestation service's keys"
          : e instanceof joseErrors.JWTClaimValidationFailed
            ? `claim ${e.claim} is invalid (${e.reason})`
            : 'it could not be verified';
    throw bad(`the attestation token is not valid: ${why}`, 'InvalidAttestationToken');
  }
}

/** The key Key Vault wraps the release to: the first RSA encryption key in x-ms-runtime.keys. */
function runtimeWrappingKey(claims: Record<string, unknown>): { key: KeyObject; kid: string } {
  const keys = (claims['x-ms-runtime'] as { keys?: unknown } | undefined)?.keys;
  const jwk = Array.isArray(keys)
    ? (keys as Array<JsonWebKey & { kid?: unknown; key_ops?: unknown }>).find(
        (k) =>
          k?.kty === 'RSA' &&
          typeof k.n === 'string' &&
          typeof k.e === 'string' &&
          (!Array.isArray(k.key_ops) || k.key_ops.includes('encrypt')),
      )
    : undefined;
  if (!jwk)
    throw bad('the attestation token carries no RSA encryption key in x-ms-runtime.keys to wrap the key to');
  try {
    return {
      key: createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e }, format: 'jwk' }),
      kid: typeof jwk.kid === 'string' ? jwk.kid : '',
    };
  } catch {
    throw bad('x-ms-runtime.keys holds an unusable RSA key');
  }
}
