/**
 * Trustee Key Broker Service client, RCAR protocol 0.4.0
 * (confidential-containers/trustee kbs/docs/kbs_attestation_protocol.md, and the 0.4.0
 * server kbs/src/attestation/backend.rs + client guest-components kbs_protocol
 * rcar_client.rs, which fix the details the document leaves open).
 *
 * 1. POST {kbs}/kbs/v0/auth   Request {"version":"0.4.0","tee":"snp"|"sample",
 *        "extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512"], ...}}
 *    -> 200 Challenge {"nonce","extra-params"} + Set-Cookie kbs-session-id=<id>.
 *       extra-params may carry "selected-hash-algorithm"; the default is sha384.
 * 2. A fresh TEE key pair: EC P-256 with alg ECDH-ES+A256KW, or RSA-2048 with
 *    RSA-OAEP-256. tee-pubkey carries ONLY kty/alg/n/e or kty/crv/alg/x/y: the server
 *    re-serialises it from a typed struct, so any extra member would change the hash.
 * 3. Binding: digest = HASH(JCS({"tee-pubkey", "nonce", "additional-evidence": ""}))
 *    (RFC 8785 canonical JSON; the 0.4.0 server hashes the primary evidence's runtime
 *    data with the additional-evidence string included, empty when there is none).
 *    SNP report_data = digest zero-padded to 64 bytes; the sample attester carries the
 *    digest itself.
 * 4. POST {kbs}/kbs/v0/attest with the cookie:
 *      {"runtime-data":{"nonce","tee-pubkey"},
 *       "tee-evidence":{"primary_evidence":<tee evidence JSON>,"additional_evidence":""}}
 *    -> 200 {"token": "<attestation results JWT>"} (401 + ErrorInformation when refused).
 * 5. GET {kbs}/kbs/v0/resource/<repository>/<type>/<tag> with the cookie -> a JWE in
 *    flattened JSON {protected, encrypted_key, iv, ciphertext, tag[, aad]}, decrypted here
 *    with the TEE private key (alg must be ours, enc A256GCM). Trustee repeats the
 *    protected header in "aad"; the AEAD input is ASCII(protected) either way.
 *
 * The TEE private key lives only in this object; nothing here writes or logs it.
 */
import { createHash, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import canonicalizeImport from 'canonicalize';
import { decodeJwt, flattenedDecrypt, errors as joseErrors } from 'jose';
import { MembraneError } from '../../policy/errors.js';
import type { Evidence, EvidenceProvider } from '../evidence/types.js';
import { type HttpResponse, http } from '../http.js';

export const KBS_PROTOCOL_VERSION = '0.4.0';
export const KBS_SESSION_COOKIE = 'kbs-session-id';
const SERVICE = 'Trustee KBS';
const HASHES = ['sha256', 'sha384', 'sha512'] as const;
export type KbsHashAlgorithm = (typeof HASHES)[number];
export type KbsTee = 'snp' | 'sample';
export type TeeKeyType = 'EC' | 'RSA';

export type TeePubKey =
  | { kty: 'EC'; crv: 'P-256'; alg: 'ECDH-ES+A256KW'; x: string; y: string }
  | { kty: 'RSA'; alg: 'RSA-OAEP-256'; n: string; e: string };

export interface EvidenceEncodingInput {
  tee: KbsTee;
  /** HASH(JCS(runtime data)), before padding. */
  digest: Buffer;
  /** What was bound into the report: digest zero-padded to 64 bytes. */
  reportData: Buffer;
  /** The provider's evidence (absent for the sample TEE when no provider is given). */
  evidence?: Evidence;
}

export interface KbsClientOptions {
  /** KBS base URL, e.g. https://kbs.example:8080 */
  url: string;
  tee: KbsTee;
  /** Produces the hardware evidence; required for tee 'snp'. */
  provider?: EvidenceProvider;
  /** TEE key type (default EC: ECDH-ES+A256KW). */
  keyType?: TeeKeyType;
  /** Extra PEM trust anchors for the KBS's TLS certificate. */
  ca?: string | string[];
  /** Extra members for the Request's extra-params (e.g. "attestation-policy-selector"). */
  extraParams?: Record<string, unknown>;
  /** How the primary evidence is written into tee-evidence (see defaultEvidenceEncoding). */
  encodeEvidence?: (input: EvidenceEncodingInput) => unknown;
  timeoutMs?: number;
}

/**
 * Default `primary_evidence`:
 * - sample: the Trustee sample attester's quote {"svn":"1","report_data":base64(digest)};
 * - snp: Membrane's raw form {"report": base64(1184-byte report), "vcek_cert_chain": PEM|null}.
 *   NOTE: Trustee's own SNP verifier expects the `sev` crate's serde JSON of the report and
 *   certificate table instead; pass `encodeEvidence` to talk to a stock Trustee with SNP.
 */
export function defaultEvidenceEncoding(input: EvidenceEncodingInput): unknown {
  if (input.tee === 'sample') return { svn: '1', report_data: input.digest.toString('base64') };
  if (!input.evidence) throw new MembraneError('KBS_EVIDENCE', 'SNP evidence is required for tee "snp"');
  return {
    report: input.evidence.report.toString('base64'),
    vcek_cert_chain: input.evidence.collateral.vcekCertChainPem ?? null,
  };
}

// canonicalize is CommonJS (`module.exports = fn`) but its typings declare an ES default
// export, so under NodeNext the types and the runtime disagree; accept either shape.
type Canonicalize = (input: unknown) => string | undefined;
const jcs = ((canonicalizeImport as unknown as { default?: Canonicalize }).default ??
  canonicalizeImport) as unknown as Canonicalize;

const canonical = (v: unknown): string => {
  const s = jcs(v);
  if (s === undefined) throw new MembraneError('KBS_EVIDENCE', 'runtime data cannot be canonicalised');
  return s;
};

/** The digest bound into the evidence (step 3 above). Exported for emulators and tests. */
export function kbsRuntimeDigest(
  runtimeData: { nonce: string; 'tee-pubkey': TeePubKey },
  hash: KbsHashAlgorithm,
  additionalEvidence = '',
): Buffer {
  const primary = {
    'tee-pubkey': runtimeData['tee-pubkey'],
    nonce: runtimeData.nonce,
    'additional-evidence': additionalEvidence,
  };
  return createHash(hash).update(canonical(primary), 'utf8').digest();
}

const genKeyPair = promisify(generateKeyPair);

async function makeTeeKey(type: TeeKeyType): Promise<{ privateKey: KeyObject; pub: TeePubKey }> {
  if (type === 'RSA') {
    const { publicKey, privateKey } = await genKeyPair('rsa', {
      modulusLength: 2048,
      publicExponent: 0x10001,
    });
    const { n, e } = publicKey.export({ format: 'jwk' });
    return { privateKey, pub: { kty: 'RSA', alg: 'RSA-OAEP-256', n: n!, e: e! } };
  }
  const { publicKey, privateKey } = await genKeyPair('ec', { namedCurve: 'P-256' });
  const { x, y } = publicKey.export({ format: 'jwk' });
  return { privateKey, pub: { kty: 'EC', crv: 'P-256', alg: 'ECDH-ES+A256KW', x: x!, y: y! } };
}

interface ErrorInformation {
  type?: string;
  detail?: string;
}

/** ErrorInformation {"type","detail"} as a short, secret-free string. */
function errorInfo(res: HttpResponse): { type: string; detail: string } {
  try {
    const j = JSON.parse(res.body.toString('utf8', 0, Math.min(res.body.length, 2000))) as ErrorInformation;
    const type = typeof j.type === 'string' ? (j.type.split('/').pop() ?? '') : '';
    const detail = typeof j.detail === 'string' ? j.detail.replace(/\s+/g, ' ').slice(0, 300) : '';
    return { type, detail };
  } catch {
    return {
      type: '',
      detail: res.body.toString('utf8', 0, Math.min(res.body.length, 200)).replace(/\s+/g, ' '),
    };
  }
}

const show = (e: { type: string; detail: string }) => [e.type, e.detail].filter(Boolean).join(': ');

function sessionCookie(res: HttpResponse): string | undefined {
  const raw = res.headers['set-cookie'];
  for (const c of Array.isArray(raw) ? raw : raw ? [raw] : []) {
    const m = new RegExp(`(?:^|;\\s*)${KBS_SESSION_COOKIE}=([^;]*)`).exec(c);
    if (m?.[1]) return m[1];
  }
  return undefined;
}

const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** `repo/type/tag` (or the three parts) validated: no empty, dot-only or slash-bearing segment. */
export function resourcePath(resource: string | { repository: string; type: string; tag: string }): string {
  const parts =
    typeof resource === 'string'
      ? resource.replace(/^\/+/, '').split('/')
      : [resource.repository, resource.type, resource.tag];
  if (parts.length !== 3 || parts.some((p) => !SEGMENT.test(p) || p === '.' || p === '..'))
    throw new MembraneError(
      'USAGE',
      `a KBS resource is <repository>/<type>/<tag>, each of letters, digits, '.', '_' or '-': ${JSON.stringify(resource)}`,
    );
  return parts.join('/');
}

export interface KbsAttestation {
  /** Attestation results token from the KBS (not verified here: the KBS issued it for itself). */
  token: string;
  claims: Record<string, unknown>;
  hashAlgorithm: KbsHashAlgorithm;
}

export class KbsClient {
  private readonly base: string;
  private readonly opts: KbsClientOptions;
  private cookie: string | undefined;
  private teeKey: { privateKey: KeyObject; pub: TeePubKey } | undefined;

  constructor(opts: KbsClientOptions) {
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch (e) {
      throw new MembraneError('USAGE', `not a valid KBS URL: ${opts.url}`, { cause: e });
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:')
      throw new MembraneError('USAGE', `KBS URL must be http(s): ${opts.url}`);
    if (opts.tee === 'snp' && !opts.provider)
      throw new MembraneError('USAGE', 'tee "snp" needs an evidence provider');
    this.base = `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
    this.opts = opts;
  }

  private headers(json: boolean): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json' };
    if (json) h['content-type'] = 'application/json';
    if (this.cookie) h.cookie = `${KBS_SESSION_COOKIE}=${this.cookie}`;
    return h;
  }

  /** RCAR handshake: auth, challenge, evidence, attest. Leaves an attested session cookie. */
  async attest(): Promise<KbsAttestation> {
    const { tee } = this.opts;
    this.cookie = undefined;
    const authUrl = `${this.base}/kbs/v0/auth`;
    const auth = await http(`${SERVICE} auth`, authUrl, {
      method: 'POST',
      headers: this.headers(true),
      body: JSON.stringify({
        version: KBS_PROTOCOL_VERSION,
        tee,
        'extra-params': { 'supported-hash-algorithms': [...HASHES], ...this.opts.extraParams },
      }),
      ca: this.opts.ca,
      timeoutMs: this.opts.timeoutMs,
      accept: [400, 401],
      hint: 'check the KBS URL and TLS trust (--ca)',
    });
    if (auth.status !== 200)
      throw new MembraneError(
        'KBS_AUTH_REFUSED',
        `${SERVICE} refused the handshake (HTTP ${auth.status}: ${show(errorInfo(auth)) || 'no detail'}) — check that the KBS speaks protocol ${KBS_PROTOCOL_VERSION} and accepts tee "${tee}"`,
        { where: authUrl },
      );
    const challenge = auth.json<{ nonce?: unknown; 'extra-params'?: unknown }>();
    if (typeof challenge.nonce !== 'string' || challenge.nonce.length === 0)
      throw new MembraneError('KBS_BAD_RESPONSE', `${SERVICE} challenge has no nonce`, { where: authUrl });
    this.cookie = sessionCookie(auth);
    if (!this.cookie)
      throw new MembraneError('KBS_BAD_RESPONSE', `${SERVICE} set no ${KBS_SESSION_COOKIE} cookie`, {
        where: authUrl,
      });

    const hashAlgorithm = selectedHash(challenge['extra-params'], authUrl);
    this.teeKey = await makeTeeKey(this.opts.keyType ?? 'EC');
    const runtimeData = { nonce: challenge.nonce, 'tee-pubkey': this.teeKey.pub };
    const digest = kbsRuntimeDigest(runtimeData, hashAlgorithm);
    const reportData = Buffer.alloc(Math.max(64, digest.length));
    digest.copy(reportData);

    let evidence: Evidence | undefined;
    if (this.opts.provider) {
      evidence = await this.opts.provider.getEvidence(reportData);
      const bound = evidence.report.subarray(0x50, 0x90);
      if (tee === 'snp' && !bound.equals(reportData))
        throw new MembraneError(
          'KBS_EVIDENCE',
          'the evidence provider did not bind the requested report_data into the report',
          { where: `evidence (${evidence.source})` },
        );
    }
    const primary = (this.opts.encodeEvidence ?? defaultEvidenceEncoding)({
      tee,
      digest,
      reportData,
      evidence,
    });

    const attestUrl = `${this.base}/kbs/v0/attest`;
    const res = await http(`${SERVICE} attest`, attestUrl, {
      method: 'POST',
      headers: this.headers(true),
      body: JSON.stringify({
        'runtime-data': runtimeData,
        'tee-evidence': { primary_evidence: primary, additional_evidence: '' },
      }),
      ca: this.opts.ca,
      timeoutMs: this.opts.timeoutMs,
      accept: [400, 401, 403],
    });
    if (res.status !== 200)
      throw new MembraneError(
        'KBS_ATTESTATION_REFUSED',
        `${SERVICE} refused the attestation (HTTP ${res.status}: ${show(errorInfo(res)) || 'no detail'}) — the attestation policy denied this evidence, or the evidence/report_data binding did not verify`,
        { where: attestUrl },
      );
    this.cookie = sessionCookie(res) ?? this.cookie;
    const token = res.json<{ token?: unknown }>().token;
    if (typeof token !== 'string')
      throw new MembraneError('KBS_BAD_RESPONSE', `${SERVICE} attest answered without a token`, {
        where: attestUrl,
      });
    let claims: Record<string, unknown> = {};
    try {
      claims = decodeJwt(token) as Record<string, unknown>;
    } catch {
      /* an opaque token is still usable through the cookie session */
    }
    return { token, claims, hashAlgorithm };
  }

  /**
   * GET /kbs/v0/resource/<repository>/<type>/<tag>, decrypted. Attests first when there is
   * no session, and once more if the KBS says the session is not (or no longer) valid.
   */
  async getResource(resource: string | { repository: string; type: string; tag: string }): Promise<Buffer> {
    const path = resourcePath(resource);
    if (!this.cookie || !this.teeKey) await this.attest();
    for (let attempt = 0; ; attempt++) {
      const url = `${this.base}/kbs/v0/resource/${path}`;
      const res = await http(`${SERVICE} resource`, url, {
        headers: this.headers(false),
        ca: this.opts.ca,
        timeoutMs: this.opts.timeoutMs,
        accept: [401, 403, 404],
      });
      if (res.status === 200) return this.decrypt(res, url);
      const info = errorInfo(res);
      if (res.status === 404)
        throw new MembraneError(
          'KBS_NOT_FOUND',
          `${SERVICE} has no resource ${path} (${show(info) || 'HTTP 404'})`,
          {
            where: url,
          },
        );
      // Trustee answers a resource-policy refusal with 401 + PolicyDeny (some deployments 403).
      if (res.status === 403 || /PolicyDeny/i.test(info.type))
        throw new MembraneError(
          'KBS_POLICY_DENIED',
          `${SERVICE} resource policy denied access to ${path} (HTTP ${res.status}${show(info) ? `: ${show(info)}` : ''}) — the attestation succeeded, but the KBS resource policy does not release this resource to this TEE/evidence`,
          { where: url },
        );
      if (attempt === 0) {
        await this.attest(); // session expired or unknown: one fresh handshake
        continue;
      }
      throw new MembraneError(
        'KBS_UNAUTHORIZED',
        `${SERVICE} did not accept the attested session (HTTP ${res.status}${show(info) ? `: ${show(info)}` : ''})`,
        { where: url },
      );
    }
  }

  private async decrypt(res: HttpResponse, url: string): Promise<Buffer> {
    const key = this.teeKey!;
    let jwe: Record<string, unknown>;
    try {
      jwe = res.json<Record<string, unknown>>();
    } catch (e) {
      throw new MembraneError('KBS_BAD_RESPONSE', `${SERVICE} resource response is not JWE JSON`, {
        where: url,
        cause: e,
      });
    }
    const { protected: prot, encrypted_key, iv, ciphertext, tag, aad } = jwe;
    if (typeof prot !== 'string' || typeof ciphertext !== 'string')
      throw new MembraneError('KBS_BAD_RESPONSE', `${SERVICE} resource response is not a flattened JWE`, {
        where: url,
      });
    const flattened = {
      protected: prot,
      ciphertext,
      ...(typeof encrypted_key === 'string' ? { encrypted_key } : {}),
      ...(typeof iv === 'string' ? { iv } : {}),
      ...(typeof tag === 'string' ? { tag } : {}),
      // Trustee repeats BASE64URL(protected header) as "aad"; it is already the AEAD input.
      ...(typeof aad === 'string' && aad !== prot ? { aad } : {}),
    };
    try {
      const { plaintext } = await flattenedDecrypt(flattened, key.privateKey, {
        keyManagementAlgorithms: [key.pub.alg],
        contentEncryptionAlgorithms: ['A256GCM'],
      });
      return Buffer.from(plaintext);
    } catch (e) {
      const why =
        e instanceof joseErrors.JOSEAlgNotAllowed
          ? `it uses an algorithm other than ${key.pub.alg} / A256GCM`
          : e instanceof joseErrors.JWEDecryptionFailed
            ? 'it was not encrypted to this TEE key or was altered'
            : (e as Error).message;
      throw new MembraneError('KBS_DECRYPT_FAILED', `${SERVICE} resource could not be decrypted: ${why}`, {
        where: url,
        cause: e,
      });
    }
  }
}

function selectedHash(extra: unknown, where: string): KbsHashAlgorithm {
  if (typeof extra !== 'object' || extra === null) return 'sha384';
  const sel = (extra as Record<string, unknown>)['selected-hash-algorithm'];
  if (sel === undefined) return 'sha384';
  const name = typeof sel === 'string' ? sel.toLowerCase() : '';
  if (!(HASHES as readonly string[]).includes(name))
    throw new MembraneError(
      'KBS_BAD_RESPONSE',
      `${SERVICE} selected an unsupported hash algorithm ${JSON.stringify(sel)}`,
      {
        where,
      },
    );
  return name as KbsHashAlgorithm;
}

/** One-shot: attest and fetch one resource. */
export async function fetchKbsResource(
  opts: KbsClientOptions & { resource: string | { repository: string; type: string; tag: string } },
): Promise<Buffer> {
  return new KbsClient(opts).getResource(opts.resource);
}
