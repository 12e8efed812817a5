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
 *
 * A secure or trusted datasink written by `membrane up` holds opaque object names and one signed
 * manifest per run (policy/sink-manifest.ts). Then (`--signer` or `--maa`, or a sink manifest in
 * --in) the signed manifest is the only source of names and of trust: runtime/sink-verify.ts picks
 * and verifies it, each listed object's stored SHA-256 is checked before decryption, and every
 * other object is refused (forged, PROVENANCE_FORGED) unless another run's manifest lists it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isMembraneError, MembraneError } from '../../policy/errors.js';
import { MANIFEST_NAME, type Manifest, type ManifestObject, parseManifest } from '../../policy/manifest.js';
import { ProvenanceErrorCode } from '../../policy/sink-manifest.js';
import { decryptIterable, type Keyring, normalizeObjectPath } from '../../proxies/core/index.js';
import { ed25519PublicKeyRaw } from '../provenance.js';
import { type SinkTrust, sinkManifestNames, type VerifiedSink, verifySink } from '../sink-verify.js';
import { parse, required } from './_args.js';
import {
  isInside,
  makeParents,
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
       membrane unprotect --in <sink dir> --out <dir> --datasource <sink> (--dek K | --private-key P)
                          (--signer run-key.pub.pem | --maa URL [--ca PEM] [--expect-claim k=v]...)
                          [--run N] [--not-before TIME]

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

A datasink of \`membrane up\` (secure or trusted) stores opaque names and a signed
manifest per run. Its outputs are restored under their names only from the newest
manifest signed by the run key, which must be bound: --signer names the run key
(<statusDir>/run-key.pub.pem of that run), or --maa verifies the attestation token
in the manifest with the issuer's signing keys, that it carries the key, and every
--expect-claim. Objects no signed manifest lists (forged), modified or missing
objects, and manifests older than --run / --not-before (rolled back) fail.

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
  --signer PEM            a sink: the run key (Ed25519 public key, PEM or JWK) that signed it
  --maa URL               a sink: verify the manifest's attestation token with this issuer
  --ca PEM                TLS trust for --maa (e.g. the local emulators' CA)
  --expect-claim K=V      a sink with --maa: the token's claim K must be V (repeatable)
  --run N                 a sink: refuse a newest manifest of a run before N (rollback)
  --not-before TIME       a sink: refuse a manifest written before TIME (ISO 8601)
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
  signer: { type: 'string' },
  maa: { type: 'string' },
  ca: { type: 'string' },
  'expect-claim': { type: 'string', multiple: true },
  run: { type: 'string' },
  'not-before': { type: 'string' },
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
  opts: {
    keyring: Keyring;
    datasource: string;
    listed?: ManifestObject;
    /** A sink object: its name in the signed manifest, and the stored bytes it signed. */
    signed?: { path: string; storedBytes: number; storedSha256: string };
  },
  progress: Progress,
): Promise<ObjectResult> {
  const rel = opts.signed?.path ?? entry.rel;
  if (opts.signed) {
    // Before any decryption: the stored message must be the one the run signed.
    const sha = createHash('sha256');
    let n = 0;
    for await (const chunk of createReadStream(entry.abs)) {
      sha.update(chunk);
      n += (chunk as Buffer).length;
    }
    if (n !== opts.signed.storedBytes || sha.digest('hex') !== opts.signed.storedSha256)
      return fail(
        rel,
        ProvenanceErrorCode.MODIFIED,
        `stored object ${entry.rel} is not the one the run signed (size or SHA-256 differ) (at ${rel})`,
      );
  }
  const dest = join(out, ...rel.split('/'));
  const created = await makeParents(dirname(dest));
  const tmp = tempPathFor(dest);
  const untrack = trackTemp(tmp);
  const sha = createHash('sha256');
  let ciphertextBytes = 0;
  let plaintextBytes = 0;
  const openOpts = { keyring: opts.keyring, expect: { datasource: opts.datasource, path: rel } };
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
      path: rel,
      ok: true,
      plaintextBytes,
      ciphertextBytes,
      ciphertextSha256: digest,
      ...(m ? { messageId: m.messageId } : {}),
    };
  } catch (e) {
    await fsp.unlink(tmp).catch(() => {});
    await removeEmptyDirs(dirname(dest), created);
    if (isMembraneError(e)) return fail(rel, e.code, e.message);
    return fail(rel, 'IO', `${(e as Error).message} (at ${rel})`);
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
  if (datasource === '') throw new MembraneError('USAGE', `--datasource must not be empty\n\n${help}`);
  exactlyOne(values.dek, values['private-key'], ['--dek', '--private-key'], help);
  const pin = values['manifest-digest'];
  if (pin !== undefined && !/^[0-9a-fA-F]{64}$/.test(pin))
    throw new MembraneError('USAGE', `--manifest-digest must be 64 hex characters\n\n${help}`);

  const trust = await sinkTrust(values);
  const { isDir, entries: all } = await walkTree(inPath);
  if (trust !== undefined || (isDir && (await sinkManifestNames(inPath)).length > 0)) {
    if (!isDir)
      throw new MembraneError(
        'USAGE',
        `a sink is verified as a whole: --in must be its directory\n\n${help}`,
      );
    if (values.manifest !== undefined || pin !== undefined || values.path !== undefined)
      throw new MembraneError(
        'USAGE',
        `--manifest, --manifest-digest and --path do not apply to a sink\n\n${help}`,
      );
    if (trust === undefined)
      throw new MembraneError(
        'USAGE',
        `--in holds a signed sink manifest: verify it with --signer or --maa (outputs without provenance are not restored)\n\n${help}`,
      );
    if (isInside(out, inPath)) throw new MembraneError('USAGE', `--out must not be inside --in\n\n${help}`);
    const keyring = await keyringFromFlags(values.dek, {
      path: values['private-key'],
      kind: 'private',
      flag: '--private-key',
    });
    const verified = await verifySink(inPath, datasource, keyring, trust);
    await fsp.mkdir(out, { recursive: true });
    return unprotectSink(
      all,
      out,
      datasource,
      keyring,
      verified,
      values.json === true,
      values.progress === true,
    );
  }
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
      (await readInput(manifestPath, '--manifest')).toString('utf8'),
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
  await fsp.mkdir(out, { recursive: true });

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

type Values = ReturnType<typeof parse<typeof options>>['values'];

/** The sink trust options, or undefined when none was given. */
async function sinkTrust(values: Values): Promise<SinkTrust | undefined> {
  const expect = (values['expect-claim'] ?? []).map((kv): [string, string] => {
    const i = kv.indexOf('=');
    if (i <= 0) throw new MembraneError('USAGE', `--expect-claim must be NAME=VALUE, got '${kv}'\n\n${help}`);
    return [kv.slice(0, i), kv.slice(i + 1)];
  });
  const given = [values.signer, values.maa, values.run, values['not-before']].some((v) => v !== undefined);
  if (!given && expect.length === 0 && values.ca === undefined) return undefined;
  if ((values.signer === undefined) === (values.maa === undefined))
    throw new MembraneError('USAGE', `a sink is verified with exactly one of --signer or --maa\n\n${help}`);
  if (values.maa === undefined && (expect.length > 0 || values.ca !== undefined))
    throw new MembraneError('USAGE', `--expect-claim and --ca go with --maa\n\n${help}`);
  let minRun: number | undefined;
  if (values.run !== undefined) {
    minRun = Number(values.run);
    if (!/^[1-9][0-9]{0,11}$/.test(values.run))
      throw new MembraneError('USAGE', `--run must be a run number (1 or more)\n\n${help}`);
  }
  let notBefore: Date | undefined;
  if (values['not-before'] !== undefined) {
    notBefore = new Date(values['not-before']);
    if (Number.isNaN(notBefore.getTime()))
      throw new MembraneError('USAGE', `--not-before must be an ISO 8601 time\n\n${help}`);
  }
  return {
    signer:
      values.signer === undefined
        ? undefined
        : ed25519PublicKeyRaw((await readInput(values.signer, '--signer')).toString('utf8'), values.signer),
    maa:
      values.maa === undefined
        ? undefined
        : {
            endpoint: values.maa,
            ca: values.ca === undefined ? undefined : (await readInput(values.ca, '--ca')).toString('utf8'),
            expect,
          },
    minRun,
    notBefore,
  };
}

/** A verified sink: its signed manifest names and pins every object restored. */
async function unprotectSink(
  all: TreeEntry[],
  out: string,
  datasource: string,
  keyring: Keyring,
  v: VerifiedSink,
  json: boolean,
  showProgress: boolean,
): Promise<number> {
  const results: ObjectResult[] = [];
  const todo: { e: TreeEntry; signed: { path: string; storedBytes: number; storedSha256: string } }[] = [];
  const present = new Set<string>();
  let skipped = 0;
  for (const e of all) {
    if (v.manifestNames.has(e.rel)) continue;
    present.add(e.rel);
    const listed = e.regular ? v.byName.get(e.rel) : undefined;
    if (listed) todo.push({ e, signed: listed });
    else if (e.regular && v.otherRuns.has(e.rel)) skipped++;
    else
      results.push(
        fail(
          e.rel,
          ProvenanceErrorCode.FORGED,
          `object is not in the signed manifest of run ${v.manifest.run}: no provenance; not decrypted (at ${e.rel})`,
        ),
      );
  }
  const missing: string[] = [];
  for (const o of v.byName.values()) {
    if (present.has(o.name)) continue;
    missing.push(o.path);
    results.push(
      fail(o.path, ProvenanceErrorCode.MISSING, `signed object is missing from the store (at ${o.path})`),
    );
  }
  const progress = new Progress(
    'unprotect',
    todo.length,
    todo.reduce((n, t) => n + t.e.size, 0),
    showProgress,
  );
  try {
    for (const t of todo) {
      results.push(await unprotectOne(t.e, out, { keyring, datasource, signed: t.signed }, progress));
      progress.fileDone();
    }
  } finally {
    progress.finish();
  }
  results.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const failed = results.filter((r) => !r.ok);
  const m = v.manifest;
  if (json) {
    console.log(
      JSON.stringify({
        ok: failed.length === 0,
        datasource,
        out,
        sink: {
          manifest: v.manifestName,
          run: m.run,
          runId: m.runId,
          time: m.time,
          signer: m.signer.thumbprint,
          attested: v.claims !== undefined,
          otherRunObjects: skipped,
        },
        objects: results,
        missing,
        failed: failed.length,
      }),
    );
  } else {
    for (const r of failed) console.error(`FAIL ${r.path}: ${r.error!.message} [${r.error!.code}]`);
    const done = results.filter((r) => r.ok);
    console.log(
      `unprotected ${done.length} object(s), ${formatBytes(done.reduce((n, r) => n + (r.plaintextBytes ?? 0), 0))}, ` +
        `into ${out}; run ${m.run} (${m.runId}) manifest signed by ${m.signer.thumbprint}` +
        (v.claims ? ', bound to its attestation' : '') +
        (skipped ? `; ${skipped} object(s) of other runs skipped` : '') +
        (failed.length ? `; ${failed.length} FAILED` : ''),
    );
  }
  return failed.length === 0 ? 0 : 1;
}
