/**
 * `membrane protect`: encrypts a file or a directory tree into the object format,
 * one object per file, bound to (datasource, path relative to --in), and writes
 * the dataset manifest (see policy/manifest.ts). Streams every file (bounded memory:
 * a read chunk plus a frame), writes each object to a temporary in its final
 * directory and renames it into place only when complete, so an interrupted run
 * never leaves a truncated object under a real name.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { MembraneError } from '../../policy/errors.js';
import {
  buildManifest,
  MANIFEST_NAME,
  type ManifestObject,
  serializeManifest,
} from '../../policy/manifest.js';
import { isValidName, NAME_EXPECTED } from '../../policy/spec.js';
import {
  DEFAULT_FRAME_LENGTH,
  encryptIterable,
  type Keyring,
  MAX_FRAME_LENGTH,
  normalizeObjectPath,
  type SealInfo,
} from '../../proxies/core/index.js';
import { parse, required } from './_args.js';
import {
  isInside,
  PUBLIC_MODE,
  prepareOutputDir,
  type TreeEntry,
  tempPathFor,
  trackTemp,
  walkTree,
} from './_files.js';
import { exactlyOne, keyringFromFlags } from './_keyfiles.js';
import { formatBytes, Progress } from './_progress.js';

export const summary = 'encrypt a file or directory tree into Membrane objects, with a manifest';

const help = `Usage: membrane protect --in <file|dir> --out <dir> --datasource <name>
                        (--dek dek.key | --recipient pub.pem) [--frame-length N] [--json] [--progress]

Encrypts every regular file under --in (or the single file --in) into one object
each (AWS Encryption SDK message format v2, suite 0x0478, framed). Each object is
bound to its datasource and its path relative to --in (a single file: its base
name) through the encryption context, and written to <out>/<path>: the same
layout, no suffix. <out>/manifest.json lists every object (path, sizes, message
ID, ciphertext SHA-256) and a digest of the whole manifest, which can be pinned.

Options:
  --in PATH          file or directory to encrypt (symlinks and special files are refused)
  --out DIR          output directory (created if missing; must not be inside --in)
  --datasource NAME  datasource name bound into every object
  --dek FILE         32-byte data key (from 'membrane keys generate-dek')
  --recipient PEM    RSA public key (SPKI PEM) to encrypt to (e.g. a KEK's .pub.pem)
  --frame-length N   frame length in bytes (default ${DEFAULT_FRAME_LENGTH}, at most ${MAX_FRAME_LENGTH})
  --json             print the manifest and its location as JSON
  --progress         progress on stderr even when it is not a terminal
  -h, --help         this help

Exit status: 0 on success, 1 on failure, 2 on a usage error.`;

const options = {
  in: { type: 'string' },
  out: { type: 'string' },
  datasource: { type: 'string' },
  dek: { type: 'string' },
  recipient: { type: 'string' },
  'frame-length': { type: 'string' },
  json: { type: 'boolean' },
  progress: { type: 'boolean' },
} as const;

export function parseFrameLength(value: string | undefined): number {
  if (value === undefined) return DEFAULT_FRAME_LENGTH;
  const n = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_FRAME_LENGTH)
    throw new MembraneError(
      'USAGE',
      `--frame-length must be an integer from 1 to ${MAX_FRAME_LENGTH}, got '${value}'\n\n${help}`,
    );
  return n;
}

/** The files to protect, checked up front so a refusal happens before any output. */
function checkInputs(entries: TreeEntry[], isDir: boolean, inPath: string, out: string): void {
  if (isDir && isInside(out, inPath))
    throw new MembraneError(
      'USAGE',
      `--out must not be inside --in (it would protect its own output)\n\n${help}`,
    );
  const odd = entries.filter((e) => !e.regular);
  if (odd.length > 0)
    throw new MembraneError(
      'INPUT_UNSUPPORTED',
      `only regular files can be protected; not following: ${odd
        .slice(0, 5)
        .map((e) => e.rel)
        .join(', ')}${odd.length > 5 ? ` and ${odd.length - 5} more` : ''}`,
      { where: inPath },
    );
  for (const e of entries) {
    if (normalizeObjectPath(e.rel) !== e.rel)
      throw new MembraneError('INPUT_UNSUPPORTED', `file name cannot be an object path`, { where: e.rel });
    if (e.rel === MANIFEST_NAME)
      throw new MembraneError(
        'INPUT_UNSUPPORTED',
        `a top-level file named ${MANIFEST_NAME} would collide with the dataset manifest; move or rename it`,
        { where: e.abs },
      );
    if (resolve(out, e.rel) === resolve(e.abs))
      throw new MembraneError('USAGE', `--out would overwrite the input file\n\n${help}`, { where: e.abs });
  }
}

/** Encrypts one file into <out>/<rel> via a temporary; returns its manifest entry. */
async function protectOne(
  entry: TreeEntry,
  out: string,
  opts: { keyring: Keyring; datasource: string; frameLength: number },
  progress: Progress,
): Promise<ManifestObject> {
  const dest = join(out, ...entry.rel.split('/'));
  await fsp.mkdir(join(dest, '..'), { recursive: true });
  const tmp = tempPathFor(dest);
  const untrack = trackTemp(tmp);
  const info: SealInfo = { messageId: '', plaintextBytes: 0 };
  const sha = createHash('sha256');
  let ciphertextBytes = 0;
  const sealOpts = {
    keyring: opts.keyring,
    binding: { datasource: opts.datasource, path: entry.rel },
    frameLength: opts.frameLength,
  };
  try {
    await pipeline(
      createReadStream(entry.abs, { highWaterMark: 1 << 20 }),
      async function* (source: AsyncIterable<Buffer>) {
        yield* encryptIterable(counted(source, progress), sealOpts, info);
      },
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          sha.update(chunk);
          ciphertextBytes += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(tmp, { flags: 'wx', mode: PUBLIC_MODE, flush: true }),
    );
    await fsp.rename(tmp, dest);
  } catch (e) {
    await fsp.unlink(tmp).catch(() => {});
    if (e instanceof MembraneError) throw e;
    throw new MembraneError('IO', `cannot protect: ${(e as Error).message}`, { where: entry.abs, cause: e });
  } finally {
    untrack();
  }
  return {
    path: entry.rel,
    plaintextBytes: info.plaintextBytes,
    ciphertextBytes,
    messageId: info.messageId,
    ciphertextSha256: sha.digest('hex'),
  };
}

async function* counted(source: AsyncIterable<Buffer>, progress: Progress): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    progress.bytes(chunk.length);
    yield chunk;
  }
}

export async function main(argv: string[]): Promise<number> {
  const { values, help: shown } = parse(argv, options, help);
  if (shown) return 0;
  const inPath = required(values.in, '--in', help);
  const out = required(values.out, '--out', help);
  const datasource = required(values.datasource, '--datasource', help);
  if (!isValidName(datasource))
    throw new MembraneError('USAGE', `--datasource: ${NAME_EXPECTED} (the spec's rule)\n\n${help}`, {
      where: datasource.length > 80 ? `${datasource.slice(0, 77)}...` : datasource,
    });
  exactlyOne(values.dek, values.recipient, ['--dek', '--recipient'], help);
  const frameLength = parseFrameLength(values['frame-length']);

  const { isDir, entries } = await walkTree(inPath);
  checkInputs(entries, isDir, inPath, out);
  const keyring = await keyringFromFlags(values.dek, {
    path: values.recipient,
    kind: 'public',
    flag: '--recipient',
  });
  await prepareOutputDir(out);

  const totalBytes = entries.reduce((n, e) => n + e.size, 0);
  const progress = new Progress('protect', entries.length, totalBytes, values.progress === true);
  const objects: ManifestObject[] = [];
  try {
    for (const entry of entries) {
      objects.push(await protectOne(entry, out, { keyring, datasource, frameLength }, progress));
      progress.fileDone();
    }
  } finally {
    progress.finish();
  }

  const manifest = buildManifest(datasource, frameLength, objects);
  const manifestPath = join(out, MANIFEST_NAME);
  const tmp = tempPathFor(manifestPath);
  try {
    await fsp.writeFile(tmp, serializeManifest(manifest), { flag: 'wx', mode: PUBLIC_MODE, flush: true });
    await fsp.rename(tmp, manifestPath);
  } catch (e) {
    await fsp.unlink(tmp).catch(() => {});
    throw new MembraneError('IO', `cannot write the manifest: ${(e as Error).message}`, {
      where: manifestPath,
      cause: e,
    });
  }

  if (values.json) {
    console.log(JSON.stringify({ ok: true, out, manifestPath, manifest }));
  } else {
    const pt = objects.reduce((n, o) => n + o.plaintextBytes, 0);
    console.log(
      `protected ${objects.length} object(s), ${formatBytes(pt)}, datasource '${datasource}', frame length ${frameLength}, into ${out}`,
    );
    console.log(`manifest ${manifestPath}, digest ${manifest.digest}`);
  }
  return 0;
}
