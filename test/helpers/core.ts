/** Shared test helpers for the object format: the SDK as oracle, seeded data. */
import { createHash } from 'node:crypto';
import {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  type KeyringNode,
} from '@aws-crypto/client-node';
import { CONTEXT_DATASOURCE, CONTEXT_PATH, type ObjectBinding } from '../../proxies/core/index.js';

export const sdk = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
/** For producing messages in suites Membrane must refuse. */
export const legacySdk = buildClient(CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT);

export function contextOf(b: ObjectBinding): Record<string, string> {
  return { [CONTEXT_DATASOURCE]: b.datasource, [CONTEXT_PATH]: b.path };
}

export async function sdkEncrypt(
  keyring: KeyringNode,
  plaintext: Buffer,
  binding: ObjectBinding,
  frameLength: number,
  suiteId: AlgorithmSuiteIdentifier = AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
): Promise<Buffer> {
  const { result } = await sdk.encrypt(keyring, plaintext, {
    encryptionContext: contextOf(binding),
    frameLength,
    suiteId,
  });
  return Buffer.from(result);
}

/** Deterministic pseudo-random bytes (fast, reproducible failures). */
export function bytes(n: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(n);
  let block = Buffer.alloc(0);
  for (let off = 0, ctr = 0; off < n; off += block.length, ctr++) {
    block = createHash('sha512').update(`${seed}:${ctr}`).digest();
    block.copy(out, off, 0, Math.min(block.length, n - off));
  }
  return out;
}

export async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(p);
  return Buffer.concat(parts);
}
