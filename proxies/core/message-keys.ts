/**
 * Per-message key setup, both directions. The data key comes from a keyring
 * (EDK wrap/unwrap is the keyring's job); from it HKDF-SHA512 (salt = message ID)
 * derives the frame key (info = suite id | "DERIVEKEY") and the key commitment
 * (info = "COMMITKEY"). A reader checks the commitment and the header auth tag
 * before it will open a single frame. The data key is zeroed as soon as the
 * derived keys exist; derived keys never leave proxies/core.
 */
import { hkdfSync, KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  EncryptedDataKey,
  NodeAlgorithmSuite,
  NodeDecryptionMaterial,
  NodeEncryptionMaterial,
} from '@aws-crypto/client-node';
import { isMembraneError } from '../../policy/errors.js';
import { type Aead, createAead } from './aead.js';
import type { EncryptionContext } from './encryption-context.js';
import { FormatErrorCode, formatError } from './errors.js';
import { type Header, serializeHeaderBody } from './header.js';
import type { Keyring } from './keyrings.js';
import {
  COMMITMENT_LENGTH,
  IV_LENGTH,
  KEY_LENGTH,
  MESSAGE_ID_LENGTH,
  SUITE_ID,
  TAG_LENGTH,
} from './suite.js';
import { KeyringErrorCode } from './zeroable-keyring.js';

const suite = new NodeAlgorithmSuite(SUITE_ID);
const DERIVE_INFO = Buffer.concat([
  Buffer.from([SUITE_ID >> 8, SUITE_ID & 0xff]),
  Buffer.from('DERIVEKEY', 'utf8'),
]);
const COMMIT_INFO = Buffer.from('COMMITKEY', 'utf8');
const ZERO_IV = Buffer.alloc(IV_LENGTH);
const EMPTY = Buffer.alloc(0);

/** Derived per-message secrets. `key` is handed only to Aead instances (and core workers). */
export interface MessageSecrets {
  readonly key: Buffer;
  readonly aead: Aead;
}

function derive(dataKey: Uint8Array | KeyObject, messageId: Buffer): { key: Buffer; commitment: Buffer } {
  return {
    key: Buffer.from(hkdfSync('sha512', dataKey, messageId, DERIVE_INFO, KEY_LENGTH)),
    commitment: Buffer.from(hkdfSync('sha512', dataKey, messageId, COMMIT_INFO, COMMITMENT_LENGTH)),
  };
}

/** The SDK keeps the data key as a secret KeyObject; HKDF takes it as is, so raw bytes never appear. */
function dataKeyOf(material: NodeEncryptionMaterial | NodeDecryptionMaterial): Uint8Array | KeyObject {
  const k = material.getUnencryptedDataKey();
  if (k instanceof Uint8Array || k instanceof KeyObject) return k;
  throw new Error('keyring returned a data key of an unexpected type');
}

/** Starts a new message: fresh data key and message ID, serialized+authenticated header. */
export async function startMessage(
  keyring: Keyring,
  encryptionContext: EncryptionContext,
  frameLength: number,
): Promise<{ header: Buffer; messageId: Buffer; secrets: MessageSecrets }> {
  const material = await keyring.onEncrypt(new NodeEncryptionMaterial(suite, { ...encryptionContext }));
  if (!material.hasUnencryptedDataKey || material.encryptedDataKeys.length === 0) {
    throw formatError(FormatErrorCode.NO_KEY, 'keyring produced no data key');
  }
  const messageId = randomBytes(MESSAGE_ID_LENGTH);
  const { key, commitment } = derive(dataKeyOf(material), messageId);
  material.zeroUnencryptedDataKey();
  const body = serializeHeaderBody({
    messageId,
    encryptionContext,
    encryptedDataKeys: material.encryptedDataKeys.map((e) => ({
      providerId: e.providerId,
      providerInfo: e.rawInfo ? Buffer.from(e.rawInfo) : Buffer.from(e.providerInfo, 'utf8'),
      ciphertext: Buffer.from(e.encryptedDataKey),
    })),
    frameLength,
    commitment,
  });
  const aead = createAead(key);
  const tag = Buffer.alloc(TAG_LENGTH);
  aead.seal(ZERO_IV, body, EMPTY, tag, EMPTY);
  return { header: Buffer.concat([body, tag]), messageId, secrets: { key, aead } };
}

/** Recovers and verifies a message's keys: EDK unwrap, key commitment, header auth tag. */
export async function recoverMessage(
  header: Header,
  keyring: Keyring,
  where?: string,
): Promise<MessageSecrets> {
  const edks = header.encryptedDataKeys.map(
    (e) =>
      new EncryptedDataKey({
        providerId: e.providerId,
        providerInfo: e.providerInfo.toString('utf8'),
        rawInfo: new Uint8Array(e.providerInfo),
        encryptedDataKey: new Uint8Array(e.ciphertext),
      }),
  );
  let material: NodeDecryptionMaterial;
  try {
    material = await keyring.onDecrypt(
      new NodeDecryptionMaterial(suite, { ...header.encryptionContext }),
      edks,
    );
  } catch (e) {
    // A destroyed keyring is not "the wrong key": say what happened.
    if (isMembraneError(e, KeyringErrorCode.DESTROYED)) throw e;
    throw formatError(
      FormatErrorCode.NO_KEY,
      'no encrypted data key could be decrypted with the given key',
      where,
      e,
    );
  }
  if (!material.hasUnencryptedDataKey) {
    throw formatError(
      FormatErrorCode.NO_KEY,
      'no encrypted data key could be decrypted with the given key',
      where,
    );
  }
  const { key, commitment } = derive(dataKeyOf(material), header.messageId);
  material.zeroUnencryptedDataKey();
  if (!timingSafeEqual(commitment, header.commitment)) {
    key.fill(0);
    throw formatError(FormatErrorCode.HEADER_AUTH, 'key commitment does not match the header', where);
  }
  const aead = createAead(key);
  if (!aead.open(ZERO_IV, header.body, EMPTY, header.authTag, EMPTY)) {
    aead.destroy();
    key.fill(0);
    throw formatError(FormatErrorCode.HEADER_AUTH, 'header authentication failed', where);
  }
  return { key, aead };
}
