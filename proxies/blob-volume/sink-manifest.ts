/**
 * Provenance and opaque names for secure and trusted datasinks (issue 12, defects 10 and 12).
 *
 * `OpaqueSinkStore` wraps the sink's BlobStore: every object path the app uses is stored under
 * HMAC-SHA-256(name key, path) in hex, the name key being 32 random bytes made at mount and
 * zeroed at close. The store therefore sees no plaintext file or directory names (the tree is
 * flat), only sizes and times. The wrapper keeps a ledger (path -> opaque name, stored size,
 * SHA-256 of the stored message, hashed as the bytes stream to put()), which is what the manifest
 * lists. Listing shows only this mount's own objects: earlier runs' objects have names this mount
 * cannot map back (they are in those runs' sealed manifests), and manifests are metadata.
 *
 * `SinkManifestWriter` writes this run's signed manifest (format: policy/sink-manifest.ts): the
 * ledger sealed with the sink's own keyring, bound to {sink, manifest name}, signed with the run
 * key through `SinkProvenance.sign` (the volume never holds the private key), the attestation
 * token attached. The run counter is the highest manifest already in the store + 1, and
 * `previous` is the SHA-256 of that manifest file, so consumers can refuse rollbacks.
 * The sink-ops hooks are: this store wrapper (put/delete feed the ledger) and volume.ts calling
 * `writer.write()` after each flush of the sink and once more after unmount.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { isMembraneError, MembraneError } from '../../policy/errors.js';
import {
  ed25519Thumbprint,
  SINK_MANIFEST_FORMAT,
  type SinkManifestEntry,
  type SinkManifestUnsigned,
  serializeSinkManifest,
  serializeSinkManifestBody,
  signingBytes,
  sinkManifestName,
  sinkManifestRun,
} from '../../policy/sink-manifest.js';
import { type Keyring, sealBuffer } from '../core/index.js';
import type { OutputProvenance } from '../proxy.js';
import { VolumeErrorCode } from './errno.js';
import type { BlobInfo, BlobStore, PutOptions } from './store/types.js';

/** What the runtime hands a sealed datasink: capabilities, never the private key itself. */
/** The run's signing capability (proxies/proxy.ts): the volume never holds the private key. */
export type SinkProvenance = OutputProvenance;

export class OpaqueSinkStore implements BlobStore {
  readonly kind: string;
  readonly description: string;
  private readonly key = randomBytes(32);
  private readonly byName = new Map<string, string>();
  /** Committed objects of this mount by path; what the manifest lists. */
  readonly ledger = new Map<string, SinkManifestEntry>();
  /** Bumped on every ledger change, so the writer knows when a manifest is stale. */
  generation = 0;

  constructor(readonly inner: BlobStore) {
    this.kind = inner.kind;
    this.description = inner.description;
  }

  nameOf(path: string): string {
    const name = createHmac('sha256', this.key).update(path, 'utf8').digest('hex');
    this.byName.set(name, path);
    return name;
  }

  private logical(info: BlobInfo, path: string): BlobInfo {
    return { path, size: info.size, etag: info.etag, lastModified: info.lastModified };
  }

  async *list(prefix = ''): AsyncIterable<BlobInfo> {
    for await (const info of this.inner.list()) {
      const path = this.byName.get(info.path);
      if (path === undefined || !path.startsWith(prefix)) continue;
      yield this.logical(info, path);
    }
  }

  async stat(path: string): Promise<BlobInfo | undefined> {
    const info = await this.inner.stat(this.nameOf(path));
    return info && this.logical(info, path);
  }

  read(path: string, start: number, end: number, opts?: { ifMatch?: string }): Promise<Buffer> {
    return this.inner.read(this.nameOf(path), start, end, opts);
  }

  async put(
    path: string,
    source: AsyncIterable<Uint8Array> | Uint8Array,
    opts?: PutOptions,
  ): Promise<BlobInfo> {
    const name = this.nameOf(path);
    const sha = createHash('sha256');
    let bytes = 0;
    async function* hashing(chunks: AsyncIterable<Uint8Array>) {
      for await (const chunk of chunks) {
        sha.update(chunk);
        bytes += chunk.length;
        yield chunk;
      }
    }
    let hashed: AsyncIterable<Uint8Array> | Uint8Array;
    if (source instanceof Uint8Array) {
      sha.update(source);
      bytes = source.length;
      hashed = source;
    } else hashed = hashing(source);
    const info = await this.inner.put(name, hashed, opts);
    if (info.size !== bytes)
      throw new MembraneError(VolumeErrorCode.COMMIT_FAILED, 'stored size differs from the bytes sent', {
        where: path,
      });
    this.ledger.set(path, { path, name, storedBytes: bytes, storedSha256: sha.digest('hex') });
    this.generation++;
    return this.logical(info, path);
  }

  async delete(path: string, opts?: { ifMatch?: string }): Promise<void> {
    try {
      await this.inner.delete(this.nameOf(path), opts);
    } finally {
      // Gone or not, a deleted path must not stay in the manifest; a failed delete keeps
      // the object, which then lacks a manifest entry and is refused: fail closed.
      if (this.ledger.delete(path)) this.generation++;
    }
  }

  /** Zeroes the name key (names already computed stay valid for the ledger). */
  destroy(): void {
    this.key.fill(0);
  }
}

export class SinkManifestWriter {
  private run = 0;
  private previous: string | null = null;
  private written: { etag: string; generation: number } | undefined;

  constructor(
    private readonly o: {
      sink: string;
      mode: 'secure' | 'trusted';
      keyring: Keyring;
      store: OpaqueSinkStore;
      provenance: SinkProvenance;
    },
  ) {}

  /** Finds the newest manifest in the store: this run is the next one. */
  async prepare(): Promise<void> {
    let newest: string | undefined;
    let run = 0;
    for await (const info of this.o.store.inner.list()) {
      const n = sinkManifestRun(info.path);
      if (n !== undefined && n > run) {
        run = n;
        newest = info.path;
      }
    }
    if (newest !== undefined) {
      const info = await this.o.store.inner.stat(newest);
      const bytes = info
        ? await this.o.store.inner.read(newest, 0, info.size, { ifMatch: info.etag })
        : undefined;
      this.previous = bytes ? createHash('sha256').update(bytes).digest('hex') : null;
    }
    this.run = run + 1;
  }

  get manifestName(): string {
    return sinkManifestName(this.run);
  }

  /** Writes (or rewrites) this run's manifest when the ledger changed since the last write. */
  async write(): Promise<void> {
    const { store, provenance: p, sink, keyring } = this.o;
    if (this.run === 0) throw new MembraneError(VolumeErrorCode.OPTIONS, 'sink manifest not prepared');
    if (this.written?.generation === store.generation) return;
    const generation = store.generation;
    const name = this.manifestName;
    const objects = [...store.ledger.values()].sort((a, b) =>
      a.path < b.path ? -1 : a.path > b.path ? 1 : 0,
    );
    const body = serializeSinkManifestBody({ format: SINK_MANIFEST_FORMAT, sink, runId: p.runId, objects });
    const sealed = await sealBuffer(body, { keyring, binding: { datasource: sink, path: name } });
    const unsigned: SinkManifestUnsigned = {
      format: SINK_MANIFEST_FORMAT,
      sink,
      mode: this.o.mode,
      runId: p.runId,
      run: this.run,
      previous: this.previous,
      time: (p.now?.() ?? new Date()).toISOString(),
      sealed: Buffer.from(sealed).toString('base64'),
      signer: {
        alg: 'Ed25519',
        publicKey: Buffer.from(p.publicKey).toString('base64url'),
        thumbprint: ed25519Thumbprint(p.publicKey),
      },
      attestation: p.attestation ? { endpoint: p.attestation.endpoint, token: p.attestation.token } : null,
    };
    const signature = Buffer.from(p.sign(signingBytes(unsigned))).toString('base64url');
    try {
      const info = await store.inner.put(
        name,
        serializeSinkManifest({ ...unsigned, signature }),
        this.written ? { ifMatch: this.written.etag } : { ifNoneMatch: '*' },
      );
      this.written = { etag: info.etag, generation };
    } catch (e) {
      throw new MembraneError(
        VolumeErrorCode.COMMIT_FAILED,
        isMembraneError(e, 'STORE_PRECONDITION')
          ? `another writer created sink manifest ${name} (run ${this.run}): one writer per sink store`
          : `cannot write sink manifest ${name}`,
        { where: `volume '${sink}'`, cause: e },
      );
    }
  }
}
