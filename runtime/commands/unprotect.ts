/**
 * `membrane unprotect`: decrypts a tree of objects (or one object), checking each
 * object's binding against (datasource, path relative to --in), and, when a
 * manifest is present, its ciphertext SHA-256 and sizes, and which objects are
 * missing or extra.
 *
 * Frames are verified one by one, so a damaged object is detected only when the
 * stream reaches the damage; its plaintext therefore goes to a 0600 temporary in
 * the output directory that is renamed into place only after the whole object
 * (and its manifest entry) checked out, and is unlinked otherwise. A failure
 * never leaves a partial plaintext file behind; other objects continue.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isMembraneError, MembraneError } from '../../policy/errors.js';
import { MANIFEST_NAME, type Manifest, type ManifestObject, parseManifest } from '../../policy/manifest.js';
import { isValidName, NAME_EXPECTED } from '../../policy/spec.js';
import { decryptIterable, type Keyring, normalizeObjectPath } from '../../proxies/core/index.js';
import { READ_CAPS } from '../read-capped.js';
import { parse, required } from './_args.js';
import {
  isInside,
  makeParents,
  prepareOutputDir,
  readInput,
  removeEmptyDirs,
  SECRET_MODE,
  type TreeEntry,
  tempPathFor,
  trackTemp,
  walkTree,
} from './_files.js';
import { exactlyOne, keyringFromFlags } from './_keyfiles.js';
import { formatBytes, Progress } from './_progress.js';

export const summary = 'decrypt Membrane objects (a file or a tree), verifying bindings and the manifest';

const help = `Usage: membrane unprotect --in <dir|file> --out <dir> --datasource <name>
                          (--dek dek.key | --private-key kek.pem)
                          [--manifest FILE] [--manifest-digest HEX] [--path P] [--json] [--progress]

Decrypts every object under --in (or the single object --in) into <out>/<path>.
Each object must be bound to --datasource and to its path relative to --in (a
single file: its base name); an object that was moved, renamed or swapped fails.

When a manifest is present (--manifest, or <in>/manifest.json when --in is a
directory) its digest is verified first, then each object's ciphertext SHA-256 and
sizes; objects it lists that are absent, and objects it does not list, are
failures (unlisted objects are not decrypted). --manifest-digest pins the
manifest: anything else is refused before any decryption.

A failed object never leaves plaintext behind: output goes to a temporary (0600)
that is renamed into place only when the whole object verified. Other objects
continue; every failure is reported with its path and error code.

Options:
  --in PATH               directory of objects, or one object
  --out DIR               output directory (created if missing; not inside --in)
  --datasource NAME       the datasource the objects must be bound to
  --dek FILE              32-byte data key
  --private-key PEM       RSA private key (PKCS#8 PEM) the objects were encrypted to
  --manifest FILE         manifest to check against (default: <in>/manifest.json if present)
  --manifest-digest HEX   require the manifest to have this digest (implies a manifest is required)
  --path P                with a single object: its object path (default: its base name);
                          the output goes to <out>/P
  --json                  per-object results as JSON on stdout
  --progress              progress on stderr even when it is not a terminal
  -h, --help              this help

Exit status: 0 when every object decrypted and verified, 1 if any failed, 2 on a usage error.`;

const options = {
  in: { type: 'string' },
  out: { type: 'string' },
  datasource: { type: 'string' },
  dek: { type: 'string' },
  'private-key': { type: 'string' },
  manifest: { type: 'string' },
  'manifest-digest': { type: 'string' },
  path: { type: 'string' },
  json: { type: 'boolean' },
  progress: { type: 'boolean' },
} as const;

export interface ObjectResult {
  path: string;
  ok: boolean;
  plaintextBytes?: number;
  ciphertextBytes?: number;
  ciphertextSha256?: string;
  /** From the manifest, when there is one. */
  messageId?: string;
  error?: { code: string; message: string };
}

const fail = (path: string, code: string, message: string): ObjectResult => ({
  path,
  ok: false,
  error: { code, message },
});

async function exists(path: string): Promise<boolean> {
  return fsp.stat(path).then(
    () => true,
    () => false,
  );
}

/** Decrypts one object into <out>/<rel>; all-or-nothing. */
async function unprotectOne(
  entry: TreeEntry,
  out: string,
  opts: { keyring: Keyring; datasource: string; listed?: ManifestObject },
  progress: Progress,
): Promise<ObjectResult> {
  const dest = join(out, ...entry.rel.split('/'));
  const created = await makeParents(dirname(dest));
  const tmp = tempPathFor(dest);
  const untrack = trackTemp(tmp);
  const sha = createHash('sha256');
  let ciphertextBytes = 0;
  let plaintextBytes = 0;
  const openOpts = { keyring: opts.keyring, expect: { datasource: opts.datasource, path: entry.rel } };
  try {
    await pipeline(
      createReadStream(entry.abs, { highWaterMark: 1 << 20 }),
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          sha.update(chunk);
          ciphertextBytes += chunk.length;
          progress.bytes(chunk.length);
          yield chunk;
        }
      },
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of decryptIterable(source, openOpts)) {
          plaintextBytes += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(tmp, { flags: 'wx', mode: SECRET_MODE, flush: true }),
    );
    const digest = sha.digest('hex');
    const m = opts.listed;
    if (m) {
      const diffs: string[] = [];
      if (m.ciphertextSha256 !== digest)
        diffs.push(`ciphertext SHA-256 ${digest}, manifest ${m.ciphertextSha256}`);
      if (m.ciphertextBytes !== ciphertextBytes)
        diffs.push(`ciphertext ${ciphertextBytes} bytes, manifest ${m.ciphertextBytes}`);
      if (m.plaintextBytes !== plaintextBytes)
        diffs.push(`plaintext ${plaintextBytes} bytes, manifest ${m.plaintextBytes}`);
      if (diffs.length > 0)
        throw new MembraneError(
          'MANIFEST_MISMATCH',
          `object is not the one the manifest pins: ${diffs.join('; ')}`,
          { where: entry.rel },
        );
    }
    await fsp.rename(tmp, dest);
    return {
      path: entry.rel,
      ok: true,
      plaintextBytes,
      ciphertextBytes,
      ciphertextSha256: digest,
      ...(m ? { messageId: m.messageId } : {}),
    };
  } catch (e) {
    await fsp.unlink(tmp).catch(() => {});
    await removeEmptyDirs(dirname(dest), created);
    if (isMembraneError(e)) return fail(entry.rel, e.code, e.message);
    return fail(entry.rel, 'IO', `${(e as Error).message} (at ${entry.rel})`);
  } finally {
    untrack();
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
  exactlyOne(values.dek, values['private-key'], ['--dek', '--private-key'], help);
  const pin = values['manifest-digest'];
  if (pin !== undefined && !/^[0-9a-fA-F]{64}$/.test(pin))
    throw new MembraneError('USAGE', `--manifest-digest must be 64 hex characters\n\n${help}`);

  const { isDir, entries: all } = await walkTree(inPath);
  if (values.path !== undefined) {
    if (isDir)
      throw new MembraneError('USAGE', `--path applies only when --in is a single object\n\n${help}`);
    let normal = '';
    try {
      normal = normalizeObjectPath(values.path);
    } catch {}
    if (normal !== values.path)
      throw new MembraneError(
        'USAGE',
        `--path must be a normalized relative object path, got '${values.path}'\n\n${help}`,
      );
    all[0]!.rel = values.path;
  }
  if (isDir && isInside(out, inPath))
    throw new MembraneError('USAGE', `--out must not be inside --in\n\n${help}`);

  // The manifest: explicit, or the tree's own. Verified (digest, pin) before any decryption.
  let manifestPath = values.manifest;
  if (manifestPath === undefined && isDir && (await exists(join(inPath, MANIFEST_NAME))))
    manifestPath = join(inPath, MANIFEST_NAME);
  if (manifestPath === undefined && pin !== undefined)
    throw new MembraneError(
      'USAGE',
      `--manifest-digest needs a manifest (--manifest, or <in>/${MANIFEST_NAME})\n\n${help}`,
    );
  let manifest: Manifest | undefined;
  if (manifestPath !== undefined) {
    manifest = parseManifest(
      (await readInput(manifestPath, '--manifest', READ_CAPS.document)).toString('utf8'),
      manifestPath,
      pin,
    );
    if (manifest.datasource !== datasource)
      throw new MembraneError(
        'MANIFEST_MISMATCH',
        `manifest is for datasource '${manifest.datasource}', not '${datasource}'`,
        { where: manifestPath },
      );
  }

  const manifestAbs = manifestPath === undefined ? undefined : resolve(manifestPath);
  const entries = all.filter((e) => !(isDir && e.rel === MANIFEST_NAME) && resolve(e.abs) !== manifestAbs);
  for (const e of entries) {
    if (resolve(out, e.rel) === resolve(e.abs))
      throw new MembraneError('USAGE', `--out would overwrite the input object\n\n${help}`, { where: e.abs });
  }
  const keyring = await keyringFromFlags(values.dek, {
    path: values['private-key'],
    kind: 'private',
    flag: '--private-key',
  });
  await prepareOutputDir(out);

  const listed = new Map((manifest?.objects ?? []).map((o) => [o.path, o]));
  const results: ObjectResult[] = [];
  const extra: string[] = [];
  const missing: string[] = [];
  const todo: TreeEntry[] = [];
  for (const e of entries) {
    let rel: string;
    try {
      rel = normalizeObjectPath(e.rel);
    } catch {
      rel = '';
    }
    if (rel !== e.rel)
      results.push(fail(e.rel, 'INPUT_UNSUPPORTED', `not a valid object path (at ${e.rel})`));
    else if (!e.regular)
      results.push(fail(e.rel, 'INPUT_UNSUPPORTED', `not a regular file; not followed (at ${e.rel})`));
    else if (manifest && !listed.has(e.rel)) {
      extra.push(e.rel);
      results.push(
        fail(e.rel, 'MANIFEST_EXTRA', `object is not listed in the manifest; not decrypted (at ${e.rel})`),
      );
    } else todo.push(e);
  }
  if (manifest) {
    // A single-object run checks that object only; a tree run accounts for every listed object.
    const present = new Set(entries.map((e) => e.rel));
    for (const o of isDir ? manifest.objects : []) {
      if (!present.has(o.path)) {
        missing.push(o.path);
        results.push(
          fail(o.path, 'MANIFEST_MISSING', `object listed in the manifest is missing (at ${o.path})`),
        );
      }
    }
  }

  const progress = new Progress(
    'unprotect',
    todo.length,
    todo.reduce((n, e) => n + e.size, 0),
    values.progress === true,
  );
  try {
    for (const e of todo) {
      results.push(await unprotectOne(e, out, { keyring, datasource, listed: listed.get(e.rel) }, progress));
      progress.fileDone();
    }
  } finally {
    progress.finish();
  }

  results.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const failed = results.filter((r) => !r.ok);
  if (values.json) {
    console.log(
      JSON.stringify({
        ok: failed.length === 0,
        datasource,
        out,
        manifest: manifest ? { path: manifestPath, digest: manifest.digest, verified: true } : null,
        objects: results,
        missing,
        extra,
        failed: failed.length,
      }),
    );
  } else {
    for (const r of failed) console.error(`FAIL ${r.path}: ${r.error!.message} [${r.error!.code}]`);
    const done = results.filter((r) => r.ok);
    const pt = done.reduce((n, r) => n + (r.plaintextBytes ?? 0), 0);
    if (!manifest) console.error('membrane unprotect: note: no manifest; ciphertext hashes were not checked');
    console.log(
      `unprotected ${done.length} object(s), ${formatBytes(pt)}, into ${out}` +
        (manifest ? `; manifest ${manifest.digest} verified` : '') +
        (failed.length ? `; ${failed.length} FAILED` : ''),
    );
  }
  return failed.length === 0 ? 0 : 1;
}
