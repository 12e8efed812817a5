/**
 * Key Vault secrets, as the Azure clean room uses them: the data-encryption
 * key (DEK) of a dataset is stored as a secret holding the DEK wrapped with a
 * released RSA key-encryption key (KEK).
 *
 * Wrapped-DEK format (azure-cleanroom `generate_wrapped_dek`): RSA-OAEP with
 * SHA-256 and MGF1-SHA-256, empty label, the ciphertext stored as standard
 * base64 text. We also accept base64url and hex (what other tools write); the
 * right decoding is the one whose length equals the KEK's modulus size, so the
 * three can never be confused.
 */
import { constants, createPrivateKey, privateDecrypt } from 'node:crypto';
import { MembraneError } from '../../policy/errors.js';
import { assertSecureUrl, http } from '../http.js';
import { KEY_VAULT_API_VERSION, serviceError } from './release.js';
import { resourceForVault, type TokenSource } from './token.js';

export interface KeyVaultSecret {
  /** Full secret id: {vault}/secrets/{name}/{version}. */
  id: string;
  value: string;
  contentType?: string;
}

export async function getSecret(opts: {
  vault: string;
  name: string;
  version?: string;
  credential: TokenSource;
  ca?: string | string[];
  apiVersion?: string;
  timeoutMs?: number;
  retries?: number;
}): Promise<KeyVaultSecret> {
  const vault = new URL(opts.vault).origin;
  if (!/^[0-9A-Za-z-]{1,127}$/.test(opts.name))
    throw new MembraneError(
      'AKV_URL_INVALID',
      `secret name must be 1-127 letters, digits or dashes: ${opts.name}`,
    );
  if (opts.version !== undefined && !/^[0-9A-Za-z]+$/.test(opts.version))
    throw new MembraneError('AKV_URL_INVALID', `secret version must be alphanumeric: ${opts.version}`);
  const path = `${vault}/secrets/${opts.name}${opts.version ? `/${opts.version}` : ''}`;
  assertSecureUrl('Azure Key Vault secret read', new URL(path)); // before a bearer token exists
  const token = await opts.credential.getToken(resourceForVault(vault));
  const res = await http(
    'Azure Key Vault secret read',
    `${path}?api-version=${opts.apiVersion ?? KEY_VAULT_API_VERSION}`,
    {
      headers: { authorization: `Bearer ${token}` },
      ca: opts.ca,
      timeoutMs: opts.timeoutMs,
      retries: opts.retries,
      accept: [401, 403, 404],
    },
  );
  if (res.status !== 200) {
    const { code, message } = serviceError(res.body);
    const said = message ? ` (service said: ${code ? `${code}: ` : ''}${message})` : '';
    const what =
      res.status === 404
        ? 'secret not found — check the vault URL, secret name and version'
        : res.status === 401
          ? `Key Vault rejected the access token — check its audience (${resourceForVault(vault)}) and expiry`
          : 'the identity may not read secrets in this vault — grant secrets/get ("Key Vault Secrets User")';
    throw new MembraneError(
      res.status === 404 ? 'AKV_NOT_FOUND' : res.status === 401 ? 'AKV_UNAUTHORIZED' : 'AKV_FORBIDDEN',
      `${what} (HTTP ${res.status})${said}`,
      { where: path },
    );
  }
  const j = res.json<{ id?: unknown; value?: unknown; contentType?: unknown }>();
  if (typeof j.value !== 'string')
    throw new MembraneError('AKV_BAD_RESPONSE', 'Key Vault secret has no string value', { where: path });
  return {
    id: typeof j.id === 'string' ? j.id : path,
    value: j.value,
    contentType: typeof j.contentType === 'string' ? j.contentType : undefined,
  };
}

/**
 * Unwraps a wrapped DEK (secret value) with a released RSA KEK (PKCS#8 DER).
 * RSA-OAEP-256: SHA-256 and MGF1-SHA-256, empty label.
 */
export function unwrapDekWithKek(secretValue: string, rsaPkcs8: Buffer): Buffer {
  let kek: ReturnType<typeof createPrivateKey>;
  try {
    kek = createPrivateKey({ key: rsaPkcs8, format: 'der', type: 'pkcs8' });
  } catch (e) {
    throw new MembraneError('DEK_UNWRAP_FAILED', 'the KEK is not a PKCS#8 private key', { cause: e });
  }
  const bits = kek.asymmetricKeyDetails?.modulusLength;
  if (kek.asymmetricKeyType !== 'rsa' || !bits)
    throw new MembraneError('DEK_UNWRAP_FAILED', 'the KEK must be an RSA key to unwrap a wrapped DEK');
  const wrapped = decodeWrapped(secretValue.trim(), bits / 8);
  try {
    return privateDecrypt(
      { key: kek, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      wrapped,
    );
  } catch (e) {
    throw new MembraneError(
      'DEK_UNWRAP_FAILED',
      'wrapped DEK does not decrypt with the released KEK (RSA-OAEP-256) — was it wrapped with another KEK or another padding?',
      { cause: e },
    );
  }
}

function decodeWrapped(text: string, modulusBytes: number): Buffer {
  const candidates: Buffer[] = [];
  if (/^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0) candidates.push(Buffer.from(text, 'hex'));
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(text)) candidates.push(Buffer.from(text, 'base64'));
  if (/^[A-Za-z0-9_-]+={0,2}$/.test(text)) candidates.push(Buffer.from(text, 'base64url'));
  const hit = candidates.find((b) => b.length === modulusBytes);
  if (!hit)
    throw new MembraneError(
      'DEK_UNWRAP_FAILED',
      `wrapped DEK secret is not a ${modulusBytes}-byte RSA ciphertext in base64, base64url or hex (${text.length} characters)`,
    );
  return hit;
}
