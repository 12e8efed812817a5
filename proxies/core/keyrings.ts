/**
 * Keyrings, named by Membrane's conventions so a reader finds the right EDK without
 * configuration:
 *
 *   Raw AES (a DEK):        namespace "membrane/dek",       name "dek-" + keyId(dek)
 *   Raw RSA (KEK/recipient): namespace "membrane/recipient", name RFC 7638 thumbprint of the public key
 *
 * A DEK's keyring is our own ZeroableAesKeyring (the SDK's Raw AES wire format, a key
 * that destroy() wipes); RSA keyrings are the SDK's RawRsaKeyringNode.
 *
 * keyId(dek) = first 16 hex chars of HMAC-SHA256(dek, "membrane key id"): a PRF
 * output, so it identifies the key without revealing anything about it. Both
 * names can be overridden for interop with keyrings created elsewhere.
 */
import { createHash, createHmac, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { type KeyringNode, RawRsaKeyringNode } from '@aws-crypto/client-node';
import { MembraneError } from '../../policy/errors.js';
import { KEY_LENGTH } from './suite.js';
import { KeyringErrorCode, ZeroableAesKeyring } from './zeroable-keyring.js';

export type { KeyringNode as Keyring };

export const DEK_NAMESPACE = 'membrane/dek';
export const RSA_NAMESPACE = 'membrane/recipient';

export function dekKeyId(dek: Uint8Array): string {
  return 'dek-' + createHmac('sha256', dek).update('membrane key id').digest('hex').slice(0, 16);
}

/**
 * Keyring over a 32-byte data key. It copies `dek` once into a buffer of its own, which
 * its destroy() zeroes; the caller keeps (and wipes) `dek` itself.
 */
export function dekKeyring(
  dek: Uint8Array,
  names: { namespace?: string; name?: string } = {},
): ZeroableAesKeyring {
  if (dek.length !== KEY_LENGTH) {
    throw new MembraneError(KeyringErrorCode.INVALID, `a DEK must be ${KEY_LENGTH} bytes, got ${dek.length}`);
  }
  return ZeroableAesKeyring.copying(dek, {
    namespace: names.namespace ?? DEK_NAMESPACE,
    name: names.name ?? dekKeyId(dek),
  });
}

/** RFC 7638 thumbprint (SHA-256, base64url) of an RSA public key. */
export function rsaThumbprint(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' }) as { e: string; n: string };
  return createHash('sha256').update(`{"e":"${jwk.e}","kty":"RSA","n":"${jwk.n}"}`).digest('base64url');
}

/**
 * Keyring over an RSA key pair or half of one: a public key can only seal
 * (a recipient), a private key can open (its public half is derived).
 */
export function rsaKeyring(
  keys: { publicKey?: string | KeyObject; privateKey?: string | KeyObject },
  names: { namespace?: string; name?: string } = {},
): KeyringNode {
  const priv = keys.privateKey ? toKey(keys.privateKey, 'private') : undefined;
  const pub = keys.publicKey ? toKey(keys.publicKey, 'public') : priv ? createPublicKey(priv) : undefined;
  if (!pub) throw new MembraneError('KEY_INVALID', 'an RSA keyring needs a public or a private key');
  if (pub.asymmetricKeyType !== 'rsa')
    throw new MembraneError('KEY_INVALID', `expected an RSA key, got ${pub.asymmetricKeyType}`);
  const bits = pub.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < 2048) throw new MembraneError('KEY_INVALID', `RSA keys must be at least 2048 bits, got ${bits}`);
  return new RawRsaKeyringNode({
    keyNamespace: names.namespace ?? RSA_NAMESPACE,
    keyName: names.name ?? rsaThumbprint(pub),
    rsaKey: {
      publicKey: pub.export({ type: 'spki', format: 'pem' }) as string,
      ...(priv ? { privateKey: priv.export({ type: 'pkcs8', format: 'pem' }) as string } : {}),
    },
    oaepHash: 'sha256',
  });
}

function toKey(k: string | KeyObject, kind: 'public' | 'private'): KeyObject {
  if (typeof k !== 'string') return k;
  try {
    return kind === 'public' ? createPublicKey(k) : createPrivateKey(k);
  } catch (e) {
    throw new MembraneError('KEY_INVALID', `not a PEM ${kind} key`, { cause: e });
  }
}
