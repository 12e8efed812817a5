/**
 * The dataset manifest `membrane protect` writes next to the objects
 * (`<out>/manifest.json`) and `membrane unprotect` checks:
 *
 *   { "version": 1, "datasource": "...", "frameLength": 65536, "suite": "0x0478",
 *     "objects": [ { "path", "plaintextBytes", "ciphertextBytes", "messageId", "ciphertextSha256" } ],
 *     "digest": "<hex>" }
 *
 * `objects` is sorted by `path` (JavaScript string order = UTF-16 code units).
 *
 * digest = lowercase hex SHA-256 of the RFC 8785 (JCS) canonical JSON of the
 * manifest object WITHOUT its `digest` member. JCS fixes member order, number
 * and string encoding, so any implementation recomputes the same digest from
 * the parsed JSON regardless of whitespace or member order in the file. A
 * digest in the file only detects accidental damage (whoever edits the file can
 * recompute it); its purpose is to be PINNED elsewhere — a clean-room spec or
 * `unprotect --manifest-digest` — after which each object's ciphertext SHA-256
 * pins its exact bytes (and so its message ID, header and every frame).
 */
import { createHash } from 'node:crypto';
import canonicalizeModule from 'canonicalize';
import { z } from 'zod';
import { MembraneError } from './errors.js';
import { normalizeObjectPath } from './object-path.js';

// The package is CommonJS (`module.exports = fn`) but its typings declare an ES default
// export, which NodeNext types as the module object; at run time the default IS the function.
const canonicalize = canonicalizeModule as unknown as (input: unknown) => string | undefined;

export const MANIFEST_NAME = 'manifest.json';
export const MANIFEST_VERSION = 1;
/** The only suite Membrane writes and reads (proxies/core/suite.ts SUITE_ID; policy/ cannot import it). */
export const SUITE_HEX = '0x0478';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex characters');

const objectSchema = z
  .object({
    path: z.string().min(1),
    plaintextBytes: z.number().int().nonnegative(),
    ciphertextBytes: z.number().int().positive(),
    messageId: hex64,
    ciphertextSha256: hex64,
  })
  .strict();

const manifestSchema = z
  .object({
    version: z.literal(MANIFEST_VERSION),
    datasource: z.string().min(1),
    frameLength: z.number().int().positive(),
    suite: z.literal(SUITE_HEX),
    objects: z.array(objectSchema),
    digest: hex64,
  })
  .strict();

export type ManifestObject = z.infer<typeof objectSchema>;
export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestBody = Omit<Manifest, 'digest'>;

/** SHA-256 hex of the JCS canonical form of everything but `digest`. */
export function manifestDigest(body: ManifestBody | Manifest): string {
  const { digest: _ignored, ...rest } = body as Manifest;
  const canonical = canonicalize(rest);
  if (canonical === undefined) throw new MembraneError('MANIFEST_INVALID', 'manifest is not serialisable');
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

export const byPath = (a: { path: string }, b: { path: string }) =>
  a.path < b.path ? -1 : a.path > b.path ? 1 : 0;

export function buildManifest(datasource: string, frameLength: number, objects: ManifestObject[]): Manifest {
  const body: ManifestBody = {
    version: MANIFEST_VERSION,
    datasource,
    frameLength,
    suite: SUITE_HEX,
    objects: [...objects].sort(byPath),
  };
  return { ...body, digest: manifestDigest(body) };
}

export function serializeManifest(m: Manifest): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}

/**
 * Parses and verifies a manifest: schema, digest, sorted unique normalized
 * paths, and (when given) the pinned digest. Any failure throws; a manifest
 * is either wholly trusted or not used.
 */
export function parseManifest(text: string, where: string, pinnedDigest?: string): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new MembraneError('MANIFEST_INVALID', `manifest is not JSON: ${(e as Error).message}`, { where });
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new MembraneError(
      'MANIFEST_INVALID',
      `manifest does not match version ${MANIFEST_VERSION}: ${issue.path.join('.') || '(root)'}: ${issue.message}`,
      { where },
    );
  }
  const m = parsed.data;
  // Recompute over what was parsed (raw, so nothing the schema might drop escapes the digest).
  const actual = manifestDigest(raw as Manifest);
  if (actual !== m.digest)
    throw new MembraneError(
      'MANIFEST_DIGEST',
      `manifest digest does not match its content (file says ${m.digest}, content hashes to ${actual}): it was modified`,
      { where },
    );
  if (pinnedDigest !== undefined && pinnedDigest.toLowerCase() !== m.digest)
    throw new MembraneError(
      'MANIFEST_DIGEST',
      `manifest digest ${m.digest} is not the pinned digest ${pinnedDigest.toLowerCase()}`,
      { where },
    );
  for (let i = 0; i < m.objects.length; i++) {
    const p = m.objects[i]!.path;
    let normal: string;
    try {
      normal = normalizeObjectPath(p);
    } catch {
      normal = '';
    }
    if (normal !== p || p === MANIFEST_NAME)
      throw new MembraneError('MANIFEST_INVALID', `manifest lists an invalid object path '${p}'`, { where });
    if (i > 0 && byPath(m.objects[i - 1]!, m.objects[i]!) >= 0)
      throw new MembraneError('MANIFEST_INVALID', `manifest objects are not sorted and unique at '${p}'`, {
        where,
      });
  }
  return m;
}
