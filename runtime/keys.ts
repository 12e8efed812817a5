/**
 * Secure key release for `membrane up`: evidence -> attestation token -> KEK
 * release -> DEK unwrap, driven by the spec's `attestation`, `identities` and
 * `keys` sections. Everything lands in one KeyBundle held in memory only and
 * zeroed by `destroy()`; nothing here is logged beyond key names and thumbprints.
 *
 * Attestation happens once and only if a KEK needs it: the ephemeral runtime key
 * bound into the report (report_data) is what Key Vault wraps the release to.
 */
import { constants, createPrivateKey, createPublicKey, type KeyObject, privateDecrypt } from 'node:crypto';
import { MembraneError } from '../policy/errors.js';
import type { CleanRoomSpec, IdentitySpec, KekSpec } from '../policy/spec.js';
import { dekKeyring, type ZeroableAesKeyring } from '../proxies/core/index.js';
import {
  getSecret,
  managedIdentity,
  releaseKey,
  staticToken,
  type TokenSource,
  unwrapDekWithKek,
  workloadIdentity,
} from '../skr-client/akv/index.js';
import { selectProvider } from '../skr-client/evidence/index.js';
import type { EvidenceProvider } from '../skr-client/evidence/types.js';
import { KbsClient } from '../skr-client/kbs/client.js';
import { attestSevSnp, createRuntimeKey, type RuntimeKey } from '../skr-client/maa/client.js';
import { zeroBytes } from './process-hardening.js';
import { READ_CAPS, readCapped, readCappedText } from './read-capped.js';

export interface KeyBundle {
  /** 32-byte data keys by DEK name. */
  readonly deks: ReadonlyMap<string, Buffer>;
  /** RSA private KEKs by name. */
  readonly keks: ReadonlyMap<string, KeyObject>;
  /** Attestation token claims when one was obtained (audited: host data, measurement). */
  readonly claims?: Record<string, unknown>;
  /** The attestation token and its issuer, when one was obtained (attached to sink manifests). */
  readonly attestation?: { endpoint: string; token: string };
  /**
   * A keyring over the DEK `name` (undefined when the spec has no such DEK). The bundle
   * keeps track of it: destroy() zeroes its copy too.
   */
  dataKeyring(name: string): ZeroableAesKeyring | undefined;
  /** Destroys every keyring handed out, zeroes every DEK buffer and drops the KEKs. */
  destroy(): void;
}

export interface AcquireContext {
  /** Read a text file the spec names (trust anchors, tokens, keys), relative paths already resolved. */
  log: (line: string) => void;
  /** Runtime-data claims bound into the attestation next to the release key (the run key's thumbprint). */
  runtimeClaims?: Readonly<Record<string, string>>;
}

/** Token sources for the spec's identities; shared by key release and azure-blob stores. */
export function tokenSources(spec: CleanRoomSpec): Map<string, TokenSource> {
  const out = new Map<string, TokenSource>();
  for (const id of spec.identities) out.set(id.name, tokenSourceFor(id));
  return out;
}

function tokenSourceFor(id: IdentitySpec): TokenSource {
  switch (id.kind) {
    case 'managed-identity':
      return managedIdentity({ clientId: id.clientId, endpoint: id.endpoint });
    case 'workload-identity':
      return workloadIdentity({
        clientId: id.clientId,
        tenantId: id.tenantId,
        tokenFile: id.tokenFile,
        authorityHost: id.authorityHost,
      });
    case 'static-token': {
      if (id.token) return staticToken(id.token);
      const file = id.tokenFile!;
      // Re-read on each use: operators rotate token files in place.
      return {
        kind: 'static',
        getToken: async () => {
          try {
            return (await readCappedText(file, { maxBytes: READ_CAPS.key, what: 'token file' })).trim();
          } catch (e) {
            throw new MembraneError(
              'IDENTITY_UNAVAILABLE',
              `cannot read token file of identity '${id.name}'`,
              { where: file, cause: e },
            );
          }
        },
      };
    }
  }
}

async function readOptional(path: string | undefined): Promise<string | undefined> {
  return path === undefined
    ? undefined
    : readCappedText(path, { maxBytes: READ_CAPS.document, what: 'CA file' });
}

export async function acquireKeys(spec: CleanRoomSpec, ctx: AcquireContext): Promise<KeyBundle> {
  const deks = new Map<string, Buffer>();
  const keks = new Map<string, KeyObject>();
  const identities = tokenSources(spec);
  const ca = await readOptional(spec.attestation.ca);
  const releaseAnchors = await readOptional(spec.attestation.releaseTrustAnchors);
  let claims: Record<string, unknown> | undefined;
  let attestation: { endpoint: string; token: string } | undefined;

  const needsEvidence = spec.keys.keks.some((k) => k.broker !== 'local');
  let provider: EvidenceProvider | undefined;
  if (needsEvidence) {
    provider = await selectProvider({
      provider: spec.attestation.provider,
      virtualPolicy: spec.attestation.virtualPolicyFile
        ? await readCapped(spec.attestation.virtualPolicyFile, {
            maxBytes: READ_CAPS.document,
            what: 'virtual policy file',
          })
        : undefined,
      allowInsecureVirtual: spec.attestation.allowInsecureVirtual,
      securityContextDir: spec.attestation.securityContextDir,
      warn: (m) => ctx.log(`WARNING: ${m}`),
    });
  }

  // One MAA attestation serves every Key Vault release.
  let maa: { token: string; runtime: RuntimeKey } | undefined;
  const maaToken = async () => {
    if (maa) return maa;
    const endpoint = spec.attestation.maa?.endpoint;
    if (!endpoint) {
      throw new MembraneError('SPEC_INVALID', 'a KEK with broker azure-akv needs attestation.maa.endpoint', {
        where: 'attestation.maa',
      });
    }
    const runtime = await createRuntimeKey(ctx.runtimeClaims);
    const evidence = await provider!.getEvidence(runtime.reportData);
    ctx.log(
      `attestation: ${evidence.provider} evidence from ${evidence.source}; requesting a token from ${endpoint}`,
    );
    const res = await attestSevSnp({ endpoint, evidence, runtime, ca });
    claims = res.claims;
    attestation = { endpoint, token: res.token };
    maa = { token: res.token, runtime };
    return maa;
  };

  let kbs: KbsClient | undefined;
  const kbsClient = () => {
    const url = spec.attestation.kbs?.url;
    if (!url)
      throw new MembraneError('SPEC_INVALID', 'a KEK with broker kbs needs attestation.kbs.url', {
        where: 'attestation.kbs',
      });
    kbs ??= new KbsClient({
      url,
      tee: spec.attestation.provider === 'virtual' ? 'sample' : 'snp',
      provider,
      ca,
    });
    return kbs;
  };

  try {
    for (const kek of spec.keys.keks) {
      keks.set(
        kek.name,
        await releaseKek(kek, {
          identities,
          maaToken,
          kbsClient,
          ca,
          trustAnchors: releaseAnchors ? [releaseAnchors] : undefined,
          log: ctx.log,
        }),
      );
    }
    for (const dek of spec.keys.deks) {
      const where = `keys.deks[${dek.name}]`;
      const kek = dek.wrappedBy ? keks.get(dek.wrappedBy) : undefined;
      if (dek.wrappedBy && !kek)
        throw new MembraneError('KEY_UNAVAILABLE', `KEK '${dek.wrappedBy}' was not released`, { where });
      let key: Buffer;
      switch (dek.source.kind) {
        case 'file':
          key = await readCapped(dek.source.path, { maxBytes: READ_CAPS.key, what: 'DEK file' });
          break;
        case 'wrapped-file':
          key = rsaOaep256Unwrap(
            await readCapped(dek.source.path, { maxBytes: READ_CAPS.key, what: 'wrapped DEK file' }),
            kek!,
            where,
          );
          break;
        case 'akv-secret': {
          const credential = dek.source.identity ? identities.get(dek.source.identity) : undefined;
          if (!credential)
            throw new MembraneError('SPEC_INVALID', 'reading a Key Vault secret needs an identity', {
              where,
            });
          const secret = await getSecret({
            vault: dek.source.vault,
            name: dek.source.secret,
            version: dek.source.version,
            credential,
            ca,
          });
          if (!kek)
            throw new MembraneError('SPEC_INVALID', 'a Key Vault secret DEK must name wrappedBy', { where });
          const kekDer = kek.export({ format: 'der', type: 'pkcs8' });
          try {
            key = unwrapDekWithKek(secret.value, kekDer);
          } finally {
            zeroBytes(kekDer); // a transient copy of the KEK: never left for the GC to find
          }
          break;
        }
      }
      if (key.length !== 32) {
        key.fill(0);
        throw new MembraneError('KEY_INVALID', `DEK must be 32 bytes, got ${key.length}`, { where });
      }
      deks.set(dek.name, key);
      ctx.log(`keys: DEK '${dek.name}' ready`);
    }
  } catch (e) {
    for (const k of deks.values()) zeroBytes(k);
    throw e;
  }
  // Every keyring made from a DEK holds one copy of it; the bundle wipes those too.
  const keyrings: ZeroableAesKeyring[] = [];
  return {
    deks,
    keks,
    claims,
    attestation,
    dataKeyring(name) {
      const dek = deks.get(name);
      if (!dek) return undefined;
      const keyring = dekKeyring(dek);
      keyrings.push(keyring);
      return keyring;
    },
    destroy() {
      for (const k of keyrings.splice(0)) k.destroy();
      // explicit_bzero: the one copy of each DEK the runtime holds (see docs/threat-model.md,
      // "Core dumps and keys in memory").
      for (const k of deks.values()) zeroBytes(k);
      deks.clear();
      keks.clear();
    },
  };
}

async function releaseKek(
  kek: KekSpec,
  env: {
    identities: Map<string, TokenSource>;
    maaToken: () => Promise<{ token: string; runtime: RuntimeKey }>;
    kbsClient: () => KbsClient;
    ca: string | undefined;
    trustAnchors: string[] | undefined;
    log: (l: string) => void;
  },
): Promise<KeyObject> {
  const where = `keys.keks[${kek.name}]`;
  switch (kek.broker) {
    case 'local':
      env.log(`keys: KEK '${kek.name}' from a local file (development only: no attestation involved)`);
      return asRsaPrivate(
        await readCapped(kek.file, { maxBytes: READ_CAPS.key, what: 'KEK file' }),
        'pem',
        where,
      );
    case 'azure-akv': {
      const { token, runtime } = await env.maaToken();
      const credential: TokenSource = kek.identity
        ? env.identities.get(kek.identity)!
        : { kind: 'static', getToken: async () => '' };
      const released = await releaseKey({
        kid: kek.kid,
        maaToken: token,
        runtime,
        credential,
        ca: env.ca,
        trustAnchors: env.trustAnchors,
      });
      env.log(`keys: KEK '${kek.name}' released (${released.kty}, thumbprint ${released.thumbprint})`);
      if (released.kty !== 'RSA' && released.kty !== 'RSA-HSM') {
        released.key.fill(0);
        throw new MembraneError('KEY_INVALID', `KEK must be an RSA key, Key Vault released ${released.kty}`, {
          where,
        });
      }
      const key = asRsaPrivate(released.key, 'der', where);
      released.key.fill(0);
      return key;
    }
    case 'kbs': {
      const bytes = await env.kbsClient().getResource(kek.resource);
      const key = asRsaPrivate(
        bytes,
        bytes.subarray(0, 10).toString('latin1').startsWith('-----') ? 'pem' : 'der',
        where,
      );
      bytes.fill(0);
      env.log(`keys: KEK '${kek.name}' obtained from KBS resource ${kek.resource}`);
      return key;
    }
  }
}

function asRsaPrivate(bytes: Buffer, format: 'pem' | 'der', where: string): KeyObject {
  try {
    const key =
      format === 'pem'
        ? createPrivateKey(bytes)
        : createPrivateKey({ key: bytes, format: 'der', type: 'pkcs8' });
    if (key.asymmetricKeyType !== 'rsa') throw new Error(`not RSA (${key.asymmetricKeyType})`);
    createPublicKey(key);
    return key;
  } catch (e) {
    throw new MembraneError('KEY_INVALID', 'KEK is not an RSA private key', { where, cause: e });
  }
}

/** RSA-OAEP with SHA-256 and MGF1-SHA-256 (the Azure clean room's wrapped-DEK form); raw or base64 input. */
function rsaOaep256Unwrap(wrapped: Buffer, kek: KeyObject, where: string): Buffer {
  const bytes = kek.asymmetricKeyDetails?.modulusLength ? kek.asymmetricKeyDetails.modulusLength / 8 : 0;
  const raw = wrapped.length === bytes ? wrapped : Buffer.from(wrapped.toString('utf8').trim(), 'base64');
  try {
    return privateDecrypt({ key: kek, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, raw);
  } catch (e) {
    throw new MembraneError(
      'DEK_UNWRAP_FAILED',
      'wrapped DEK does not decrypt with its KEK (wrong KEK or corrupt file)',
      { where, cause: e },
    );
  }
}
