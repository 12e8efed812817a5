/**
 * The run key of `membrane up` (issue 12, defect 10): an Ed25519 key pair made in memory when
 * the clean room starts and never written anywhere. Its RFC 7638 thumbprint goes into the MAA
 * runtime data (`membrane-run-key`, next to the release key in `keys`), so the attestation token
 * binds it to this TEE; sealed datasinks sign their manifests with it (through `sign`, the
 * private key never leaves this module). The public key is published in the audit log
 * (`provenance.run_key`) for consumers who verify offline (`membrane unprotect --signer`).
 */
import {
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
  randomUUID,
  sign,
} from 'node:crypto';
import { MembraneError } from '../policy/errors.js';
import { ed25519Thumbprint, RUN_KEY_CLAIM } from '../policy/sink-manifest.js';
import type { SinkProvenance } from '../proxies/blob-volume/index.js';

export interface RunKey {
  readonly runId: string;
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Buffer;
  readonly publicKeyPem: string;
  /** RFC 7638 thumbprint (base64url), the value of the `membrane-run-key` runtime-data claim. */
  readonly thumbprint: string;
  /** The runtime-data claims binding this key into the attestation. */
  readonly claims: Readonly<Record<string, string>>;
  sign(data: Uint8Array): Buffer;
  /** What a sealed datasink needs (attestation added when a token was obtained). */
  provenance(attestation?: { endpoint: string; token: string }): SinkProvenance;
  /** Drops the private key: signing fails afterwards. */
  destroy(): void;
}

export function createRunKey(): RunKey {
  const pair = generateKeyPairSync('ed25519');
  let privateKey: KeyObject | undefined = pair.privateKey;
  const jwk = pair.publicKey.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string')
    throw new MembraneError('KEYGEN_FAILED', 'Ed25519 public key export lacks x');
  const publicKey = Buffer.from(jwk.x, 'base64url');
  const doSign = (data: Uint8Array): Buffer => {
    if (!privateKey) throw new MembraneError('KEY_DESTROYED', 'the run key was destroyed at teardown');
    return sign(null, data, privateKey);
  };
  const runId = randomUUID();
  return {
    runId,
    publicKey,
    publicKeyPem: pair.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    thumbprint: ed25519Thumbprint(publicKey),
    claims: { [RUN_KEY_CLAIM]: ed25519Thumbprint(publicKey) },
    sign: doSign,
    provenance: (attestation) => ({ runId, publicKey, sign: doSign, attestation }),
    destroy() {
      privateKey = undefined;
    },
  };
}

/**
 * Publishes the public half as one audit event (run id, thumbprint, raw key in base64url, i.e.
 * the JWK `x`): the audit log is where a consumer verifying offline takes `--signer` from.
 */
export function publishRunKey(
  key: RunKey,
  audit: { emit(e: { type: string; subject: string; details?: Record<string, unknown> }): void },
  attested: boolean,
): void {
  audit.emit({
    type: 'provenance.run_key',
    subject: key.runId,
    details: { thumbprint: key.thumbprint, attested, publicKey: key.publicKey.toString('base64url') },
  });
}

/** Reads an Ed25519 public key (PEM SPKI, or a public JWK) as its raw 32 bytes. */
export function ed25519PublicKeyRaw(text: string, where: string): Buffer {
  const bad = (why: string, cause?: unknown) =>
    new MembraneError('USAGE', `not an Ed25519 public key (PEM SPKI or JWK): ${why}`, { where, cause });
  const trimmed = text.trim();
  if (trimmed.includes('PRIVATE KEY')) throw bad('a private key was given; pass the public key');
  let key: KeyObject;
  try {
    key = trimmed.startsWith('{')
      ? createPublicKey({ key: publicJwk(JSON.parse(trimmed)), format: 'jwk' })
      : createPublicKey(trimmed);
  } catch (e) {
    throw bad('it does not parse', e);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw bad(`it is ${key.asymmetricKeyType}`);
  const x = key.export({ format: 'jwk' }).x;
  if (typeof x !== 'string') throw bad('it has no x');
  return Buffer.from(x, 'base64url');
}

function publicJwk(j: unknown): JsonWebKey {
  const o = j as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || 'd' in o) throw new Error('expected a public JWK');
  return { kty: o.kty as string, crv: o.crv as string, x: o.x as string };
}
