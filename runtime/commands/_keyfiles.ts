/**
 * Reading key files for the CLI: errors name the flag and the file, never the
 * content; secret files readable by others draw a warning.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { MembraneError } from '../../policy/errors.js';
import { dekKeyring, type Keyring, rsaKeyring } from '../../proxies/core/index.js';
import { readInput } from './_files.js';

const MIN_RSA_BITS = 2048;

/** A DEK file holds exactly 32 raw bytes (what `membrane keys generate-dek` writes). */
export async function readDek(path: string, flag = '--dek'): Promise<Buffer> {
  const dek = await readInput(path, flag);
  if (dek.length !== 32) {
    dek.fill(0);
    throw new MembraneError('KEY_INVALID', `${flag} must hold exactly 32 raw bytes, it holds ${dek.length}`, {
      where: path,
    });
  }
  await warnIfShared(path, flag);
  return dek;
}

/** Secret key files readable by group/other are a mistake worth a warning (not an error: CI runners). */
export async function warnIfShared(path: string, flag: string): Promise<void> {
  const st = await fsp.stat(path).catch(() => undefined);
  if (st && (st.mode & 0o077) !== 0)
    console.error(
      `membrane: warning: ${flag} file ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`,
    );
}

/** Loads an RSA key from PEM; errors name the flag and file, never the content. */
export async function loadRsaKey(path: string, kind: 'public' | 'private', flag: string): Promise<KeyObject> {
  const pem = await readInput(path, flag);
  let key: KeyObject;
  try {
    key = kind === 'public' ? createPublicKey(pem) : createPrivateKey(pem);
  } catch (e) {
    throw new MembraneError(
      'KEY_INVALID',
      `${flag} is not a PEM ${kind} key${kind === 'private' ? ' (passphrase-protected keys are not supported)' : ''}`,
      { where: path, cause: e },
    );
  } finally {
    pem.fill(0);
  }
  if (key.asymmetricKeyType !== 'rsa')
    throw new MembraneError('KEY_INVALID', `${flag} must be an RSA key, got ${key.asymmetricKeyType}`, {
      where: path,
    });
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS)
    throw new MembraneError('KEY_INVALID', `${flag} must be at least ${MIN_RSA_BITS} bits, got ${bits}`, {
      where: path,
    });
  if (kind === 'private') await warnIfShared(path, flag);
  return key;
}

/** Exactly one of two key flags, or a usage error naming both. */
export function exactlyOne(
  a: string | undefined,
  b: string | undefined,
  names: [string, string],
  help: string,
): void {
  if ((a === undefined) === (b === undefined))
    throw new MembraneError('USAGE', `give exactly one of ${names[0]} or ${names[1]}\n\n${help}`);
}

/**
 * The keyring for --dek FILE or an RSA key file (--recipient public / --private-key
 * private). The DEK buffer read from disk is wiped; the keyring keeps its own copy.
 */
export async function keyringFromFlags(
  dekPath: string | undefined,
  rsa: { path: string | undefined; kind: 'public' | 'private'; flag: string },
): Promise<Keyring> {
  if (dekPath !== undefined) {
    const dek = await readDek(dekPath);
    try {
      return dekKeyring(dek);
    } finally {
      dek.fill(0);
    }
  }
  if (rsa.path === undefined) throw new MembraneError('USAGE', `missing ${rsa.flag}`);
  const key = await loadRsaKey(rsa.path, rsa.kind, rsa.flag);
  return rsaKeyring(rsa.kind === 'public' ? { publicKey: key } : { privateKey: key });
}
