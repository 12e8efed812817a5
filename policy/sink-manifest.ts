/**
 * The signed sink manifest: provenance of a run's outputs (issue 12, defects 10 and 12).
 *
 * Every run of `membrane up` writes, for each secure or trusted datasink, one manifest into the
 * sink store, `membrane-sink-manifest.<run, 12 digits>.json`:
 *
 *   { "format": "membrane-sink-manifest/1", "sink", "mode": "secure"|"trusted",
 *     "runId": uuid, "run": n (previous run + 1), "previous": sha256 hex of the previous
 *     manifest file's bytes | null, "time": ISO 8601,
 *     "sealed": base64 of an ESDK message (the sink's own protection, bound to
 *               {datasource: sink, path: <manifest name>}) holding the body below,
 *     "signer": { "alg": "Ed25519", "publicKey": base64url of the raw 32-byte key, "thumbprint" },
 *     "attestation": { "endpoint", "token" } | null,
 *     "signature": base64url Ed25519 over the RFC 8785 form of everything but `signature` }
 *
 * body: { "format", "sink", "runId", "objects": [{ "path", "name", "storedBytes", "storedSha256" }] }
 *
 * Why this shape: the names of objects are the covert channel of defect 12, so they live only in
 * the sealed body (the store sees opaque names); the signature covers the sealed bytes, so the
 * body is authenticated by the run key too. The run key (Ed25519, made in memory at `membrane up`,
 * never written) is bound to the attestation by its RFC 7638 thumbprint, carried in the MAA runtime
 * data as `membrane-run-key` (so in the token's `x-ms-runtime` claim). Whoever holds only the
 * consumer's public key (the storage operator) can seal an object but cannot sign a manifest.
 *
 * Pure: schema, canonical bytes, names, thumbprints, signature check. No I/O.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import canonicalizeModule from 'canonicalize';
import { z } from 'zod';
import { MembraneError } from './errors.js';
import { normalizeObjectPath } from './object-path.js';

// CommonJS package typed as an ES default export (see policy/manifest.ts).
const canonicalize = canonicalizeModule as unknown as (input: unknown) => string | undefined;

export const SINK_MANIFEST_FORMAT = 'membrane-sink-manifest/1';
/** The runtime-data member (MAA `x-ms-runtime` claim) carrying the run key's thumbprint. */
export const RUN_KEY_CLAIM = 'membrane-run-key';

export const ProvenanceErrorCode = {
  /** A sink is expected (trust options given, or a sink manifest present) but no usable manifest. */
  NO_MANIFEST: 'PROVENANCE_NO_MANIFEST',
  /** A manifest file that does not parse or does not match the schema. */
  BAD_MANIFEST: 'PROVENANCE_BAD_MANIFEST',
  /** The manifest's signature does not verify with its signer key. */
  SIGNATURE: 'PROVENANCE_SIGNATURE',
  /** The signer is not the expected key, or not the key bound to the attestation token. */
  UNBOUND: 'PROVENANCE_UNBOUND',
  /** An `--expect-claim` does not hold in the attestation token. */
  CLAIM: 'PROVENANCE_CLAIM',
  /** A stored object no signed manifest lists (e.g. made by `membrane protect`). */
  FORGED: 'PROVENANCE_FORGED',
  /** A listed object whose stored bytes are not the ones the manifest signed. */
  MODIFIED: 'PROVENANCE_MODIFIED',
  /** A listed object absent from the store. */
  MISSING: 'PROVENANCE_MISSING',
  /** The manifest is older than `--run` / `--not-before` allow. */
  ROLLBACK: 'PROVENANCE_ROLLBACK',
} as const;

const MANIFEST_RE = /^membrane-sink-manifest\.(\d{12})\.json$/;
/** Opaque object names: lowercase hex HMAC-SHA-256 (see proxies/blob-volume/sink-manifest.ts). */
export const OPAQUE_NAME_RE = /^[0-9a-f]{64}$/;

export function sinkManifestName(run: number): string {
  if (!Number.isSafeInteger(run) || run < 1 || run > 999_999_999_999)
    throw new MembraneError(ProvenanceErrorCode.BAD_MANIFEST, `run counter out of range: ${run}`);
  return `membrane-sink-manifest.${String(run).padStart(12, '0')}.json`;
}

/** The run counter of a manifest file name, or undefined if `name` is not one. */
export function sinkManifestRun(name: string): number | undefined {
  const m = MANIFEST_RE.exec(name);
  return m ? Number(m[1]) : undefined;
}

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex characters');
const b64url = z.string().regex(/^[A-Za-z0-9_-]+$/, 'expected base64url');

const envelopeSchema = z
  .object({
    format: z.literal(SINK_MANIFEST_FORMAT),
    sink: z.string().min(1),
    mode: z.enum(['secure', 'trusted']),
    runId: z.string().uuid(),
    run: z.number().int().min(1).max(999_999_999_999),
    previous: hex64.nullable(),
    time: z.string().datetime(),
    sealed: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'expected base64'),
    signer: z.object({ alg: z.literal('Ed25519'), publicKey: b64url, thumbprint: b64url }).strict(),
    attestation: z
      .object({ endpoint: z.string().min(1), token: z.string().min(1) })
      .strict()
      .nullable(),
    signature: b64url,
  })
  .strict();

const entrySchema = z
  .object({
    path: z.string().min(1),
    name: z.string().regex(OPAQUE_NAME_RE, 'expected an opaque name (64 hex)'),
    storedBytes: z.number().int().nonnegative(),
    storedSha256: hex64,
  })
  .strict();

const bodySchema = z
  .object({
    format: z.literal(SINK_MANIFEST_FORMAT),
    sink: z.string().min(1),
    runId: z.string().uuid(),
    objects: z.array(entrySchema),
  })
  .strict();

export type SinkManifest = z.infer<typeof envelopeSchema>;
export type SinkManifestUnsigned = Omit<SinkManifest, 'signature'>;
export type SinkManifestEntry = z.infer<typeof entrySchema>;
export type SinkManifestBody = z.infer<typeof bodySchema>;

function canonicalBytes(value: unknown): Buffer {
  const c = canonicalize(value);
  if (c === undefined) throw new MembraneError(ProvenanceErrorCode.BAD_MANIFEST, 'not serialisable');
  return Buffer.from(c, 'utf8');
}

/** The bytes the run key signs: RFC 8785 JSON of the manifest without `signature`. */
export function signingBytes(m: SinkManifestUnsigned | SinkManifest): Buffer {
  const { signature: _ignored, ...rest } = m as SinkManifest;
  return canonicalBytes(rest);
}

export function serializeSinkManifest(m: SinkManifest): Buffer {
  return Buffer.from(`${JSON.stringify(m, null, 2)}\n`, 'utf8');
}

export function serializeSinkManifestBody(b: SinkManifestBody): Buffer {
  return canonicalBytes(b);
}

/** RFC 7638 thumbprint of an Ed25519 public key (raw 32 bytes): members in lexicographic order. */
export function ed25519Thumbprint(publicKeyRaw: Uint8Array): string {
  const x = Buffer.from(publicKeyRaw).toString('base64url');
  return createHash('sha256').update(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`, 'utf8').digest('base64url');
}

function parseWith<T>(schema: z.ZodType<T>, text: string, what: string, where: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new MembraneError(
      ProvenanceErrorCode.BAD_MANIFEST,
      `${what} is not JSON: ${(e as Error).message}`,
      {
        where,
      },
    );
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new MembraneError(
      ProvenanceErrorCode.BAD_MANIFEST,
      `${what} is not ${SINK_MANIFEST_FORMAT}: ${issue.path.join('.') || '(root)'}: ${issue.message}`,
      { where },
    );
  }
  return parsed.data;
}

export function parseSinkManifest(text: string, where: string): SinkManifest {
  const m = parseWith(envelopeSchema, text, 'sink manifest', where);
  if (ed25519Thumbprint(Buffer.from(m.signer.publicKey, 'base64url')) !== m.signer.thumbprint)
    throw new MembraneError(ProvenanceErrorCode.BAD_MANIFEST, 'signer thumbprint does not match its key', {
      where,
    });
  return m;
}

/** Parses the sealed body once opened; paths must be normalized, unique, and names unique. */
export function parseSinkManifestBody(text: string, m: SinkManifest, where: string): SinkManifestBody {
  const b = parseWith(bodySchema, text, 'sink manifest body', where);
  if (b.sink !== m.sink || b.runId !== m.runId)
    throw new MembraneError(ProvenanceErrorCode.BAD_MANIFEST, 'sealed body belongs to another sink or run', {
      where,
    });
  const paths = new Set<string>();
  const names = new Set<string>();
  for (const o of b.objects) {
    let normal = '';
    try {
      normal = normalizeObjectPath(o.path);
    } catch {}
    if (normal !== o.path || paths.has(o.path) || names.has(o.name))
      throw new MembraneError(ProvenanceErrorCode.BAD_MANIFEST, `invalid or duplicate entry '${o.path}'`, {
        where,
      });
    paths.add(o.path);
    names.add(o.name);
  }
  return b;
}

/** Checks the Ed25519 signature with the manifest's own signer key (binding is checked by the caller). */
export function verifySinkManifestSignature(m: SinkManifest, where: string): void {
  let ok = false;
  try {
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: m.signer.publicKey },
      format: 'jwk',
    });
    ok = verify(null, signingBytes(m), key, Buffer.from(m.signature, 'base64url'));
  } catch {
    ok = false;
  }
  if (!ok)
    throw new MembraneError(
      ProvenanceErrorCode.SIGNATURE,
      'sink manifest signature does not verify with its signer key: the manifest was forged or modified',
      { where },
    );
}
