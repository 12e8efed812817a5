/**
 * The consumer's side of sink provenance (issue 12, defects 10 and 12): which signed manifest of
 * a sink store to trust, and what it lists. Used by `membrane unprotect` on a sink.
 *
 * Selection: with `--signer`, the newest manifest signed by that key (offline: the consumer got
 * the run key from a channel it trusts); with `--maa`, the newest manifest in the store, which
 * must verify (never a fallback to an older one: that would be a rollback). Then: signature with
 * the signer key; binding (the key given, or the MAA token verified with the issuer's JWKS and
 * carrying the key's thumbprint as `x-ms-runtime.membrane-run-key`, plus every `--expect-claim`);
 * rollback (`--run`, `--not-before`); the sealed body opened with the consumer's keyring, bound
 * to {sink, manifest name}. Other runs' manifests are opened only to recognise their objects,
 * which are skipped, not trusted.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MembraneError } from '../policy/errors.js';
import {
  ProvenanceErrorCode as P,
  parseSinkManifest,
  parseSinkManifestBody,
  RUN_KEY_CLAIM,
  type SinkManifest,
  type SinkManifestEntry,
  sinkManifestRun,
  verifySinkManifestSignature,
} from '../policy/sink-manifest.js';
import { type Keyring, openBuffer } from '../proxies/core/index.js';
import { verifyMaaToken } from '../skr-client/maa/client.js';
import { readInput } from './commands/_files.js';

export interface SinkTrust {
  /** Raw Ed25519 public key of the run (`--signer`). */
  signer?: Buffer;
  /** `--maa URL` with its TLS trust and `--expect-claim k=v` pairs. */
  maa?: { endpoint: string; ca?: string; expect: [string, string][] };
  /** `--run N`: refuse a manifest of an earlier run. */
  minRun?: number;
  /** `--not-before T`: refuse a manifest written before T. */
  notBefore?: Date;
}

export interface VerifiedSink {
  manifest: SinkManifest;
  manifestName: string;
  /** This run's objects by opaque store name. */
  byName: Map<string, SinkManifestEntry>;
  /** Opaque names other runs' manifests list (skipped, not trusted). */
  otherRuns: Set<string>;
  /** Every manifest file name (never an object). */
  manifestNames: Set<string>;
  /** The token's claims, when the binding was checked with MAA. */
  claims?: Record<string, unknown>;
}

/** Manifest file names at the top of a sink directory, newest first. */
export async function sinkManifestNames(dir: string): Promise<string[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter(
    (n) => sinkManifestRun(n) !== undefined,
  );
  return names.sort((a, b) => sinkManifestRun(b)! - sinkManifestRun(a)!);
}

async function load(dir: string, name: string): Promise<SinkManifest> {
  const text = (await readInput(join(dir, name), 'sink manifest')).toString('utf8');
  return parseSinkManifest(text, name);
}

async function openBody(m: SinkManifest, name: string, keyring: Keyring) {
  const plain = await openBuffer(Buffer.from(m.sealed, 'base64'), {
    keyring,
    expect: { datasource: m.sink, path: name },
  });
  return parseSinkManifestBody(plain.toString('utf8'), m, name);
}

export async function verifySink(
  dir: string,
  sink: string,
  keyring: Keyring,
  trust: SinkTrust,
): Promise<VerifiedSink> {
  const names = await sinkManifestNames(dir);
  if (names.length === 0)
    throw new MembraneError(
      P.NO_MANIFEST,
      'no signed sink manifest in the store: its objects have no provenance',
      {
        where: dir,
      },
    );
  let chosen: { name: string; m: SinkManifest } | undefined;
  if (trust.signer) {
    const want = trust.signer.toString('base64url');
    for (const name of names) {
      const m = await load(dir, name).catch(() => undefined);
      if (m?.signer.publicKey === want && m.sink === sink) {
        chosen = { name, m };
        break;
      }
    }
    if (!chosen)
      throw new MembraneError(P.UNBOUND, `no manifest of sink '${sink}' is signed by the --signer key`, {
        where: dir,
      });
  } else {
    chosen = { name: names[0]!, m: await load(dir, names[0]!) };
  }
  const { name, m } = chosen;
  if (m.sink !== sink)
    throw new MembraneError(P.BAD_MANIFEST, `manifest is for sink '${m.sink}', not '${sink}'`, {
      where: name,
    });
  if (sinkManifestRun(name) !== m.run)
    throw new MembraneError(P.BAD_MANIFEST, `manifest says run ${m.run} but is stored as ${name}`, {
      where: name,
    });
  verifySinkManifestSignature(m, name);

  let claims: Record<string, unknown> | undefined;
  if (trust.maa) claims = await checkAttestation(m, name, trust.maa);
  else if (!trust.signer)
    throw new MembraneError(
      'USAGE',
      'a sink needs --maa URL (with --expect-claim) or --signer KEY to be verified',
    );

  if (trust.minRun !== undefined && m.run < trust.minRun)
    throw new MembraneError(
      P.ROLLBACK,
      `the newest manifest is run ${m.run}, older than --run ${trust.minRun}: the store was rolled back`,
      { where: name },
    );
  if (trust.notBefore && Date.parse(m.time) < trust.notBefore.getTime())
    throw new MembraneError(
      P.ROLLBACK,
      `the manifest was written at ${m.time}, before --not-before ${trust.notBefore.toISOString()}`,
      { where: name },
    );

  const body = await openBody(m, name, keyring);
  const otherRuns = new Set<string>();
  for (const other of names) {
    if (other === name) continue;
    try {
      const om = await load(dir, other);
      for (const o of (await openBody(om, other, keyring)).objects) otherRuns.add(o.name);
    } catch {
      // Unreadable: its objects are then unknown, and refused as unlisted. Fail closed.
    }
  }
  return {
    manifest: m,
    manifestName: name,
    byName: new Map(body.objects.map((o) => [o.name, o])),
    otherRuns,
    manifestNames: new Set(names),
    claims,
  };
}

async function checkAttestation(
  m: SinkManifest,
  where: string,
  maa: NonNullable<SinkTrust['maa']>,
): Promise<Record<string, unknown>> {
  if (!m.attestation)
    throw new MembraneError(
      P.UNBOUND,
      'the manifest carries no attestation token (the run did not attest); verify with --signer instead',
      { where },
    );
  const token = m.attestation.token;
  // The token's validity is judged when it was issued; the manifest must not predate it.
  let iat: number | undefined;
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
      iat?: unknown;
    };
    iat = typeof payload.iat === 'number' ? payload.iat : undefined;
  } catch {}
  if (iat === undefined)
    throw new MembraneError(P.UNBOUND, 'the attestation token has no issue time', { where });
  const claims = await verifyMaaToken(token, {
    endpoint: maa.endpoint,
    ca: maa.ca,
    currentDate: new Date(iat * 1000),
  }).catch((e: unknown) => {
    throw new MembraneError(P.UNBOUND, `the attestation token does not verify: ${(e as Error).message}`, {
      where,
      cause: e,
    });
  });
  if (Date.parse(m.time) < iat * 1000 - 60_000)
    throw new MembraneError(P.UNBOUND, 'the manifest predates its attestation token', { where });
  const runtime = claims['x-ms-runtime'] as Record<string, unknown> | undefined;
  if (runtime?.[RUN_KEY_CLAIM] !== m.signer.thumbprint)
    throw new MembraneError(
      P.UNBOUND,
      `the token's x-ms-runtime.${RUN_KEY_CLAIM} is not the manifest signer's thumbprint: the key is not the attested run's`,
      { where },
    );
  for (const [k, v] of maa.expect) {
    const actual = claims[k];
    if (actual === undefined || String(actual) !== v)
      throw new MembraneError(
        P.CLAIM,
        `attestation claim ${k} is ${actual === undefined ? 'absent' : JSON.stringify(actual)}, expected ${JSON.stringify(v)}`,
        { where },
      );
  }
  return claims;
}
