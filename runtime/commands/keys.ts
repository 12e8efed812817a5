/**
 * `membrane keys <generate-dek|generate-kek|wrap-dek|unwrap-dek>`: the key files
 * a publisher needs. A DEK file is 32 raw bytes; a KEK is an RSA key pair in PEM
 * (PKCS#8 private, SPKI public). Wrapping is RSA-OAEP with SHA-256 for both the
 * OAEP hash and MGF1 — what Azure Key Vault calls RSA-OAEP-256 and what the Azure
 * clean room uses for its wrapped-DEK secrets — so a DEK wrapped here unwraps
 * there, and vice versa. Key bytes are never printed; outputs identify keys by
 * dekKeyId / rsaThumbprint only.
 */
import { constants, generateKeyPair, privateDecrypt, publicEncrypt, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import { MembraneError } from '../../policy/errors.js';
import { dekKeyId, rsaThumbprint } from '../../proxies/core/index.js';
import { parse, required } from './_args.js';
import { assertWritable, PUBLIC_MODE, readInput, SECRET_MODE, writeNewFile } from './_files.js';
import { loadRsaKey, readDek } from './_keyfiles.js';

export const summary = 'generate data keys (DEK) and RSA key-encryption keys (KEK); wrap and unwrap DEKs';

const DEK_BYTES = 32;

const help = `Usage: membrane keys <subcommand> [options]

Subcommands:
  generate-dek --out dek.key [--force] [--json]
      Writes 32 random bytes (an AES-256 data key) to a new file, mode 0600.
  generate-kek --out PREFIX [--bits 2048|3072] [--force] [--json]
      Writes an RSA key pair: PREFIX.pem (PKCS#8 private key, mode 0600) and
      PREFIX.pub.pem (SPKI public key). Default 3072 bits.
  wrap-dek --dek dek.key --kek-public kek.pub.pem --out wrapped.bin [--force] [--json]
      Encrypts the DEK to the KEK's public key with RSA-OAEP (SHA-256 for the hash
      and MGF1, a.k.a. RSA-OAEP-256). The output is the raw RSA ciphertext.
  unwrap-dek --wrapped wrapped.bin --kek kek.pem --out dek.key [--force] [--json]
      Decrypts a wrapped DEK (raw, or base64 text) with the KEK's private key into
      a new file, mode 0600.

Existing output files are never overwritten unless --force. Key bytes are never
printed; --json reports key ids (DEK) and RFC 7638 thumbprints (RSA).

Exit status: 0 on success, 1 on failure, 2 on a usage error.`;

type Sub = (argv: string[]) => Promise<number>;

function emit(json: boolean | undefined, obj: Record<string, unknown>, text: string): void {
  console.log(json ? JSON.stringify(obj) : text);
}

function subHelp(name: string): string {
  return `${help}\n\n(subcommand: ${name})`;
}

const generateDek: Sub = async (argv) => {
  const h = subHelp('generate-dek');
  const { values, help: shown } = parse(
    argv,
    { out: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' } },
    h,
  );
  if (shown) return 0;
  const out = required(values.out, '--out', h);
  const dek = randomBytes(DEK_BYTES);
  try {
    await writeNewFile(out, dek, { mode: SECRET_MODE, force: values.force });
    const keyId = dekKeyId(dek);
    emit(
      values.json,
      { out, keyId, bytes: DEK_BYTES },
      `wrote a ${DEK_BYTES}-byte DEK to ${out} (key id ${keyId})`,
    );
  } finally {
    dek.fill(0);
  }
  return 0;
};

const generateKek: Sub = async (argv) => {
  const h = subHelp('generate-kek');
  const { values, help: shown } = parse(
    argv,
    {
      out: { type: 'string' },
      bits: { type: 'string' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    h,
  );
  if (shown) return 0;
  const prefix = required(values.out, '--out', h);
  const bits = values.bits === undefined ? 3072 : Number(values.bits);
  if (bits !== 2048 && bits !== 3072)
    throw new MembraneError('USAGE', `--bits must be 2048 or 3072, got '${values.bits}'\n\n${h}`);
  // PREFIX names files: "dir/" or "dir" (a directory) would write hidden "dir/.pem" files.
  const base = prefix.split('/').pop() ?? '';
  const isDir = await fsp
    .stat(prefix)
    .then((s) => s.isDirectory())
    .catch(() => false);
  if (base === '' || base === '.' || base === '..' || isDir)
    throw new MembraneError(
      'USAGE',
      `--out is a file name prefix (writes PREFIX.pem and PREFIX.pub.pem), not a directory: try ${prefix.replace(/\/*$/, '')}/kek\n\n${h}`,
      { where: prefix },
    );
  const privPath = `${prefix}.pem`;
  const pubPath = `${prefix}.pub.pem`;
  // Check both before generating, so a refusal never leaves half a pair behind.
  await assertWritable(privPath, values.force);
  await assertWritable(pubPath, values.force);
  const { privateKey, publicKey } = await promisify(generateKeyPair)('rsa', {
    modulusLength: bits,
    publicExponent: 0x10001,
  });
  await writeNewFile(privPath, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, {
    mode: SECRET_MODE,
    force: values.force,
  });
  await writeNewFile(pubPath, publicKey.export({ type: 'spki', format: 'pem' }) as string, {
    mode: PUBLIC_MODE,
    force: values.force,
  });
  const thumbprint = rsaThumbprint(publicKey);
  emit(
    values.json,
    { privateKey: privPath, publicKey: pubPath, bits, thumbprint },
    `wrote RSA-${bits} key pair: ${privPath} (private, 0600) and ${pubPath} (public); thumbprint ${thumbprint}`,
  );
  return 0;
};

const OAEP = { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' } as const;

const wrapDek: Sub = async (argv) => {
  const h = subHelp('wrap-dek');
  const { values, help: shown } = parse(
    argv,
    {
      dek: { type: 'string' },
      'kek-public': { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    h,
  );
  if (shown) return 0;
  const dekPath = required(values.dek, '--dek', h);
  const kekPath = required(values['kek-public'], '--kek-public', h);
  const out = required(values.out, '--out', h);
  await assertWritable(out, values.force);
  const kek = await loadRsaKey(kekPath, 'public', '--kek-public');
  const dek = await readDek(dekPath);
  try {
    const wrapped = publicEncrypt({ key: kek, ...OAEP }, dek);
    await writeNewFile(out, wrapped, { mode: SECRET_MODE, force: values.force });
    const keyId = dekKeyId(dek);
    const thumbprint = rsaThumbprint(kek);
    emit(
      values.json,
      { out, keyId, kekThumbprint: thumbprint, algorithm: 'RSA-OAEP-256', bytes: wrapped.length },
      `wrapped DEK ${keyId} to KEK ${thumbprint} (RSA-OAEP-256) into ${out}`,
    );
  } finally {
    dek.fill(0);
  }
  return 0;
};

/** Raw RSA ciphertext is exactly modulus-size; otherwise accept base64 text (as Key Vault secrets hold it). */
function wrappedBytes(file: Buffer, modulusBytes: number, path: string): Buffer {
  if (file.length === modulusBytes) return file;
  const text = file.toString('latin1').trim();
  if (/^[A-Za-z0-9+/_-]+=*$/.test(text)) {
    const decoded = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (decoded.length === modulusBytes) return decoded;
  }
  throw new MembraneError(
    'KEY_UNWRAP',
    `--wrapped must be a ${modulusBytes}-byte RSA ciphertext (raw or base64) for this KEK, got ${file.length} bytes`,
    { where: path },
  );
}

const unwrapDek: Sub = async (argv) => {
  const h = subHelp('unwrap-dek');
  const { values, help: shown } = parse(
    argv,
    {
      wrapped: { type: 'string' },
      kek: { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    h,
  );
  if (shown) return 0;
  const wrappedPath = required(values.wrapped, '--wrapped', h);
  const kekPath = required(values.kek, '--kek', h);
  const out = required(values.out, '--out', h);
  await assertWritable(out, values.force);
  const kek = await loadRsaKey(kekPath, 'private', '--kek');
  const modulusBytes = (kek.asymmetricKeyDetails?.modulusLength ?? 0) / 8;
  const wrapped = wrappedBytes(await readInput(wrappedPath, '--wrapped'), modulusBytes, wrappedPath);
  let dek: Buffer;
  try {
    dek = privateDecrypt({ key: kek, ...OAEP }, wrapped);
  } catch (e) {
    throw new MembraneError(
      'KEY_UNWRAP',
      'cannot unwrap the DEK: wrong KEK, or the wrapped DEK is damaged or not RSA-OAEP-256',
      { where: wrappedPath, cause: e },
    );
  }
  try {
    if (dek.length !== DEK_BYTES)
      throw new MembraneError(
        'KEY_UNWRAP',
        `unwrapped key is ${dek.length} bytes, a DEK must be ${DEK_BYTES}`,
        { where: wrappedPath },
      );
    await writeNewFile(out, dek, { mode: SECRET_MODE, force: values.force });
    const keyId = dekKeyId(dek);
    emit(values.json, { out, keyId, bytes: DEK_BYTES }, `unwrapped DEK ${keyId} into ${out}`);
  } finally {
    dek.fill(0);
  }
  return 0;
};

const subcommands: Record<string, Sub> = {
  'generate-dek': generateDek,
  'generate-kek': generateKek,
  'wrap-dek': wrapDek,
  'unwrap-dek': unwrapDek,
};

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(help);
    return 0;
  }
  if (sub === undefined) throw new MembraneError('USAGE', `missing subcommand\n\n${help}`);
  const run = Object.hasOwn(subcommands, sub) ? subcommands[sub] : undefined;
  if (!run) throw new MembraneError('USAGE', `unknown subcommand '${sub}'\n\n${help}`);
  return run(rest);
}
