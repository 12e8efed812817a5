/**
 * Membrane's Raw AES keyring: the AWS Encryption SDK's Raw AES keyring on the wire
 * (aws-encryption-sdk-specification framework/raw-aes-keyring.md), with a wrapping key
 * that can be wiped. The SDK's RawAesKeyringNode keeps the key in a KeyObject plus a
 * private verification copy in a closure that nothing outside can reach, so "zero every
 * copy of a DEK when keys are destroyed" (issue 12, defect 2) cannot hold with it.
 *
 * Here the wrapping key lives in exactly one Buffer the keyring owns; destroy() zeroes it
 * and every later use throws KEYRING_DESTROYED. Each wrap/unwrap makes a transient
 * AES-GCM context (aead.ts) and frees it before returning (OpenSSL cleanses the key
 * schedule on free), so no native copy outlives a call.
 *
 * Wire format (what RawAesKeyringNode writes, so objects sealed before still open):
 *   provider ID   = key namespace
 *   provider info = key name (UTF-8) | u32 tag length in bits (128) | u32 IV length (12) | IV
 *   ciphertext    = AES-256-GCM(wrapping key, IV, AAD = serialized encryption context)(data key) | tag
 * The AAD is the header's key/value-pair serialization (entries sorted by UTF-8 key
 * bytes, no length prefix, empty for an empty context), as the spec and every other
 * ESDK compute it. The JavaScript SDK's keyring, by default, sorted with localeCompare
 * instead (aws-encryption-sdk-javascript issue 428), which differs for keys such as
 * "Zone" vs "membrane:path"; objects it wrote that way still open: on decrypt, when the
 * two orders differ, the legacy AAD is tried after the spec's.
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import {
  EncryptedDataKey,
  KeyringNode,
  KeyringTraceFlag,
  type NodeDecryptionMaterial,
  type NodeEncryptionMaterial,
} from '@aws-crypto/client-node';
import { MembraneError } from '../../policy/errors.js';
import { createAead } from './aead.js';
import {
  type EncryptionContext,
  serializeEncryptionContext,
  serializeEntries,
} from './encryption-context.js';
import { IV_LENGTH, KEY_LENGTH, TAG_LENGTH } from './suite.js';

export const KeyringErrorCode = {
  /** The wrapping key or a keyring name is unusable (wrong length, empty name, reserved namespace). */
  INVALID: 'KEY_INVALID',
  /** The keyring was destroyed (its key zeroed): the keys were released at stop. */
  DESTROYED: 'KEYRING_DESTROYED',
} as const;

const TAG_BITS = TAG_LENGTH * 8;
const INFO_TAIL = 4 + 4 + IV_LENGTH;
const ENCRYPT_FLAGS =
  KeyringTraceFlag.WRAPPING_KEY_ENCRYPTED_DATA_KEY | KeyringTraceFlag.WRAPPING_KEY_SIGNED_ENC_CTX;
const DECRYPT_FLAGS =
  KeyringTraceFlag.WRAPPING_KEY_DECRYPTED_DATA_KEY | KeyringTraceFlag.WRAPPING_KEY_VERIFIED_ENC_CTX;

export interface AesKeyringNames {
  readonly namespace: string;
  readonly name: string;
}

export class ZeroableAesKeyring extends KeyringNode {
  readonly keyNamespace: string;
  readonly keyName: string;
  readonly #nameBytes: Buffer;
  /** The one copy of the wrapping key; undefined once destroyed. */
  #key: Buffer | undefined;

  /**
   * Takes ownership of `wrappingKey`: from now on only the keyring may use it, and
   * destroy() zeroes it. To keep a buffer of your own, use `ZeroableAesKeyring.copying`
   * (or `dekKeyring`), which copies once.
   */
  constructor(wrappingKey: Buffer, names: AesKeyringNames) {
    super();
    if (wrappingKey.length !== KEY_LENGTH) {
      throw new MembraneError(
        KeyringErrorCode.INVALID,
        `an AES-256 wrapping key must be ${KEY_LENGTH} bytes, got ${wrappingKey.length}`,
      );
    }
    if (!names.namespace || !names.name) {
      throw new MembraneError(
        KeyringErrorCode.INVALID,
        'a Raw AES keyring needs a key namespace and a key name',
      );
    }
    // The spec reserves "aws-kms" so a raw key can never pose as a KMS key.
    if (names.namespace === 'aws-kms') {
      throw new MembraneError(KeyringErrorCode.INVALID, "the key namespace 'aws-kms' is reserved");
    }
    this.keyNamespace = names.namespace;
    this.keyName = names.name;
    this.#nameBytes = Buffer.from(names.name, 'utf8');
    this.#key = wrappingKey;
  }

  /** A keyring over a private copy of `key` (one copy, in a buffer of its own); the caller keeps `key`. */
  static copying(key: Uint8Array, names: AesKeyringNames): ZeroableAesKeyring {
    // Buffer.alloc gives the key an ArrayBuffer of its own (never the shared pool), so
    // zeroing it wipes the only bytes it ever occupied.
    const own = Buffer.alloc(key.length);
    own.set(key);
    try {
      return new ZeroableAesKeyring(own, names);
    } catch (e) {
      own.fill(0);
      throw e;
    }
  }

  get destroyed(): boolean {
    return this.#key === undefined;
  }

  /** Zeroes the wrapping key; idempotent. Every later encrypt or decrypt throws KEYRING_DESTROYED. */
  destroy(): void {
    this.#key?.fill(0);
    this.#key = undefined;
  }

  async _onEncrypt(material: NodeEncryptionMaterial): Promise<NodeEncryptionMaterial> {
    const key = this.#live();
    const aad = serializeEncryptionContext(material.encryptionContext);
    if (!material.hasUnencryptedDataKey) {
      // A fresh array of its own: the SDK insists (byteOffset 0), then moves it into a
      // KeyObject and zeroes it.
      const generated = new Uint8Array(material.suite.keyLengthBytes);
      randomFillSync(generated);
      material.setUnencryptedDataKey(generated, {
        keyNamespace: this.keyNamespace,
        keyName: this.keyName,
        flags: KeyringTraceFlag.WRAPPING_KEY_GENERATED_DATA_KEY,
      });
    }
    const held = material.getUnencryptedDataKey();
    // The SDK holds the data key as a KeyObject; export() is a transient copy, wiped below.
    const dataKey = held instanceof Uint8Array ? held : held.export();
    const iv = randomBytes(IV_LENGTH);
    const sealed = Buffer.alloc(dataKey.length + TAG_LENGTH);
    const aead = createAead(key);
    try {
      aead.seal(iv, aad, dataKey, sealed.subarray(dataKey.length), sealed.subarray(0, dataKey.length));
    } finally {
      aead.destroy();
      if (dataKey !== held) dataKey.fill(0);
    }
    const info = Buffer.concat([this.#nameBytes, u32(TAG_BITS), u32(IV_LENGTH), iv]);
    material.addEncryptedDataKey(
      new EncryptedDataKey({
        providerId: this.keyNamespace,
        providerInfo: info.toString('utf8'),
        rawInfo: info,
        encryptedDataKey: sealed,
      }),
      ENCRYPT_FLAGS,
    );
    return material;
  }

  async _onDecrypt(
    material: NodeDecryptionMaterial,
    encryptedDataKeys: EncryptedDataKey[],
  ): Promise<NodeDecryptionMaterial> {
    const key = this.#live();
    if (material.hasValidKey()) return material;
    const keyLength = material.suite.keyLengthBytes;
    const aads = candidateAads(material.encryptionContext);
    // Serially, until one EDK opens; a failure is not an error (another keyring may own it).
    for (const edk of encryptedDataKeys) {
      const parts = this.#parse(edk, keyLength);
      if (!parts) continue;
      for (const aad of aads) {
        // Own ArrayBuffer (the SDK requires it); the SDK zeroes it once it holds a KeyObject.
        const dataKey = Buffer.alloc(keyLength);
        const aead = createAead(key);
        let opened: boolean;
        try {
          opened = aead.open(parts.iv, aad, parts.ciphertext, parts.tag, dataKey);
        } finally {
          aead.destroy();
        }
        if (!opened) continue;
        return material.setUnencryptedDataKey(dataKey, {
          keyNamespace: this.keyNamespace,
          keyName: this.keyName,
          flags: DECRYPT_FLAGS,
        });
      }
    }
    return material;
  }

  #live(): Buffer {
    if (!this.#key) {
      throw new MembraneError(
        KeyringErrorCode.DESTROYED,
        `keyring ${this.keyNamespace}/${this.keyName} was destroyed (its key is zeroed)`,
      );
    }
    return this.#key;
  }

  /** The spec's "attempt to decrypt if and only if": ours by ID and exact name, tag 128, IV 12, right length. */
  #parse(
    edk: EncryptedDataKey,
    keyLength: number,
  ): { iv: Buffer; ciphertext: Buffer; tag: Buffer } | undefined {
    if (edk.providerId !== this.keyNamespace) return undefined;
    const raw = edk.rawInfo; // a copy per read: read once
    if (!(raw instanceof Uint8Array)) return undefined;
    const info = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    const n = this.#nameBytes.length;
    if (info.length !== n + INFO_TAIL || !info.subarray(0, n).equals(this.#nameBytes)) return undefined;
    if (info.readUInt32BE(n) !== TAG_BITS || info.readUInt32BE(n + 4) !== IV_LENGTH) return undefined;
    const blob = edk.encryptedDataKey;
    if (blob.byteLength !== keyLength + TAG_LENGTH) return undefined;
    const sealed = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
    return {
      iv: info.subarray(n + 8),
      ciphertext: sealed.subarray(0, keyLength),
      tag: sealed.subarray(keyLength),
    };
  }
}

/** The spec's AAD, then the JavaScript SDK's legacy (localeCompare-sorted) one when it differs. */
function candidateAads(ctx: EncryptionContext): Buffer[] {
  const spec = serializeEncryptionContext(ctx);
  // Exactly the SDK's `Object.entries(ctx).sort(([a], [b]) => a.localeCompare(b))`.
  const legacyOrder = Object.entries(ctx).sort(([a], [b]) => a.localeCompare(b));
  const legacy = serializeEntries(
    legacyOrder.map(([k, v]) => [Buffer.from(k, 'utf8'), Buffer.from(v, 'utf8')] as const),
  );
  return legacy.equals(spec) ? [spec] : [spec, legacy];
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}
