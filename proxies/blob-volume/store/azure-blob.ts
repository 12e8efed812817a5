/**
 * `azure-blob` store: Azure Blob Storage over its REST API (undici, no SDK).
 *
 * Objects are block blobs named `<prefix>/<path>` in one container. put() is
 * atomic: an object that fits in one block goes up in a single Put Blob; a
 * larger one is streamed from its source block by block (memory bounded by
 * blockSize x uploadConcurrency) with Put Block, and becomes visible only when
 * Put Block List commits the whole list — until then readers keep seeing the
 * previous version, and a failed upload leaves only uncommitted blocks that the
 * service discards. Preconditions (If-None-Match: *, If-Match) ride on the
 * committing request, so a race ends in STORE_PRECONDITION, never in a silent
 * overwrite. Each commit carries an upload id in blob metadata so that a commit
 * retried after a lost response is recognised as our own success.
 */
import { randomBytes } from 'node:crypto';
import { MembraneError } from '../../../policy/errors.js';
import {
  type AzureAuth,
  type AzureResponse,
  AzureStoreError,
  AzureTransport,
  STORE_CONFIG,
  type TransportOptions,
} from './azure-transport.js';
import { blockListXml, parseListBlobs, quoteEtag, XmlShapeError } from './azure-xml.js';
import { storePath } from './paths.js';
import { type BlobInfo, type BlobStore, type NameLimits, type PutOptions, StoreErrorCode } from './types.js';

export { AzureStoreError, STORE_CONFIG } from './azure-transport.js';

export interface AzureBlobConfig {
  /** https://<account>.blob.core.windows.net, or path-style http://127.0.0.1:PORT/devstoreaccount1 (Azurite). */
  url: string;
  container: string;
  /** Folder inside the container that is this store's root. */
  prefix?: string;
  auth: AzureAuth;
}

export interface AzureBlobTuning extends TransportOptions {
  /** Put Block size, and the largest object sent as one Put Blob. Default 8 MiB. */
  blockSize?: number;
  /** Blocks in flight per upload. Default 4. */
  uploadConcurrency?: number;
  /** maxresults per List Blobs page. Default: the service's (5000). */
  listPageSize?: number;
}

const MiB = 1024 * 1024;
const MAX_BLOCKS = 50_000;
const MAX_BLOCK_SIZE = 4000 * MiB;
const MAX_NAME_LENGTH = 1024;
/** Metadata name carrying the upload id (C#-identifier rules: letters only is safest). */
const UPLOAD_META = 'x-ms-meta-membraneupload';

export class AzureBlobStore implements BlobStore {
  readonly kind = 'azure-blob';
  readonly limits: NameLimits;
  readonly description: string;
  private readonly t: AzureTransport;
  /** '' or 'some/folder/' */
  private readonly root: string;
  private readonly blockSize: number;
  private readonly concurrency: number;
  private readonly listPageSize: number | undefined;

  constructor(cfg: AzureBlobConfig, tuning: AzureBlobTuning = {}) {
    const p = (cfg.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (p) {
      try {
        storePath(p);
      } catch {
        throw new MembraneError(
          STORE_CONFIG,
          `azure-blob prefix '${cfg.prefix}' is invalid (no '.', '..' or '\\')`,
        );
      }
    }
    this.root = p ? `${p}/` : '';
    // Azure: a blob name is at most 1024 characters and 254 segments, the prefix included
    // (learn.microsoft.com, "Naming and referencing containers, blobs, and metadata").
    // Counted in UTF-8 bytes here, which is never fewer than characters: conservative.
    this.limits = {
      pathBytes: 1024 - Buffer.byteLength(this.root),
      segmentBytes: 255,
      segments: 254 - (p ? p.split('/').length : 0),
    };
    this.blockSize = tuning.blockSize ?? 8 * MiB;
    if (!Number.isSafeInteger(this.blockSize) || this.blockSize < 1 || this.blockSize > MAX_BLOCK_SIZE) {
      throw new MembraneError(STORE_CONFIG, `azure-blob blockSize must be 1..${MAX_BLOCK_SIZE} bytes`);
    }
    this.concurrency = Math.max(1, tuning.uploadConcurrency ?? 4);
    this.listPageSize = tuning.listPageSize;
    this.t = new AzureTransport(cfg.url, cfg.container, p, cfg.auth, tuning);
    this.description = this.t.description;
  }

  /** Releases the connection pool. */
  close(): Promise<void> {
    return this.t.close();
  }

  /** Creates the container (private unless `publicAccess`); false when it already existed. */
  async createContainerIfMissing(opts: { publicAccess?: 'blob' | 'container' } = {}): Promise<boolean> {
    const res = await this.t.send({
      op: 'Create Container',
      method: 'PUT',
      query: { restype: 'container' },
      headers: { 'x-ms-blob-public-access': opts.publicAccess },
      accept: [409],
    });
    if (res.status === 409 && res.errorCode !== 'ContainerAlreadyExists') {
      throw new AzureStoreError(
        StoreErrorCode.IO,
        `Azure Blob Create Container failed for ${this.description} (HTTP 409 ${res.errorCode ?? ''})`,
        409,
        res.errorCode,
        res.attempts,
      );
    }
    return res.status === 201;
  }

  async *list(prefix = ''): AsyncIterable<BlobInfo> {
    let marker: string | undefined;
    do {
      const res = await this.t.send({
        op: 'List Blobs',
        method: 'GET',
        query: {
          restype: 'container',
          comp: 'list',
          prefix: this.root + prefix,
          marker,
          maxresults: this.listPageSize?.toString(),
        },
        where: prefix || undefined,
      });
      let page: ReturnType<typeof parseListBlobs>;
      try {
        page = parseListBlobs(res.body.toString('utf8'));
      } catch (e) {
        if (!(e instanceof XmlShapeError)) throw e;
        throw new MembraneError(
          StoreErrorCode.IO,
          `List Blobs answer from ${this.description} is malformed: ${e.message}`,
          {
            cause: e,
          },
        );
      }
      for (const b of page.blobs) {
        if (!b.name.startsWith(this.root)) continue;
        const path = b.name.slice(this.root.length);
        // Names this interface cannot address (e.g. "a//b", "x/../y", "dir/") are not objects of the store.
        if (!addressable(path)) continue;
        yield { path, size: b.size, etag: b.etag, lastModified: b.lastModified };
      }
      marker = page.nextMarker;
    } while (marker);
  }

  async stat(p: string): Promise<BlobInfo | undefined> {
    const path = storePath(p);
    const res = await this.t.send({
      op: 'Get Blob Properties',
      method: 'HEAD',
      blob: this.blobName(path),
      where: path,
      accept: [404],
    });
    return res.status === 404 ? undefined : infoFrom(path, res, Number(hdr(res, 'content-length')));
  }

  async read(p: string, start: number, end: number, opts: { ifMatch?: string } = {}): Promise<Buffer> {
    const path = storePath(p);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0) {
      throw new MembraneError(StoreErrorCode.IO, `invalid byte range [${start}, ${end})`, { where: path });
    }
    const name = this.blobName(path);
    try {
      if (end <= start) {
        // Nothing to transfer, but existence and the pinned version still count.
        await this.confirmVersion(name, path, opts.ifMatch);
        return Buffer.alloc(0);
      }
      const res = await this.t.send({
        op: 'Get Blob',
        method: 'GET',
        blob: name,
        where: path,
        headers: { 'x-ms-range': `bytes=${start}-${end - 1}`, 'if-match': opts.ifMatch },
        accept: [416],
      });
      if (res.status === 416) {
        // Range starts at or past the end (or the blob is empty): an empty read,
        // once the version pin is confirmed.
        if (opts.ifMatch) {
          await this.confirmVersion(name, path, opts.ifMatch);
        }
        return Buffer.alloc(0);
      }
      // 200 means the range was ignored (whole body); 206 is the range itself.
      const body = res.status === 200 ? res.body.subarray(start, end) : res.body;
      return body.length > end - start ? body.subarray(0, end - start) : body;
    } catch (e) {
      throw preconditionAs(e, 'object changed since it was opened (ETag no longer matches)');
    }
  }

  async put(
    p: string,
    source: AsyncIterable<Uint8Array> | Uint8Array,
    opts: PutOptions = {},
  ): Promise<BlobInfo> {
    const path = storePath(p);
    const name = this.blobName(path);
    const uploadId = randomBytes(8).toString('hex');
    const blockSize = this.blockSizeFor(opts.sizeHint);
    const preMsg =
      opts.ifNoneMatch === '*' ? 'object already exists (write-once)' : 'object changed since it was read';
    try {
      const blocks =
        source instanceof Uint8Array ? slices(toBuffer(source), blockSize) : blocksOf(source, blockSize);
      const it = blocks[Symbol.asyncIterator]();
      const first = await it.next();
      const second = first.done ? first : await it.next();
      if (second.done) {
        const body = first.done ? Buffer.alloc(0) : first.value;
        return await this.putSingle(path, name, body, opts, uploadId);
      }
      return await this.putBlocks(path, name, [first.value, second.value], it, opts, uploadId);
    } catch (e) {
      if (!(e instanceof MembraneError)) {
        // The source itself failed (like FsStore, report it as a store I/O error carrying the cause).
        throw new MembraneError(
          StoreErrorCode.IO,
          'upload aborted: its source failed; nothing was committed',
          {
            where: path,
            cause: e,
          },
        );
      }
      throw preconditionAs(e, preMsg);
    }
  }

  async delete(p: string, opts: { ifMatch?: string } = {}): Promise<void> {
    const path = storePath(p);
    try {
      const res = await this.t.send({
        op: 'Delete Blob',
        method: 'DELETE',
        blob: this.blobName(path),
        where: path,
        headers: { 'if-match': opts.ifMatch },
        accept: [404],
      });
      if (res.status === 404) {
        // A retried delete whose first attempt went through sees 404: that is our success.
        if (res.attempts > 1) return;
        throw new AzureStoreError(
          StoreErrorCode.NOT_FOUND,
          'object not found',
          404,
          res.errorCode,
          res.attempts,
          {
            where: path,
          },
        );
      }
    } catch (e) {
      throw preconditionAs(e, 'object changed');
    }
  }

  /** HEAD with If-Match: existence and the pinned version count even when no bytes are read. */
  private async confirmVersion(name: string, path: string, ifMatch: string | undefined): Promise<void> {
    await this.t.send({
      op: 'Get Blob Properties',
      method: 'HEAD',
      blob: name,
      where: path,
      headers: { 'if-match': ifMatch },
    });
  }

  private blobName(path: string): string {
    const name = this.root + path;
    if (name.length > MAX_NAME_LENGTH) {
      throw new MembraneError(
        StoreErrorCode.INVALID_PATH,
        `object path is longer than Azure's ${MAX_NAME_LENGTH}-character limit`,
        {
          where: path,
        },
      );
    }
    return name;
  }

  /** Raises the block size when the announced size would exceed the 50,000-block limit. */
  private blockSizeFor(sizeHint: number | undefined): number {
    if (!sizeHint || sizeHint <= this.blockSize * MAX_BLOCKS) return this.blockSize;
    return Math.min(MAX_BLOCK_SIZE, Math.ceil(sizeHint / MAX_BLOCKS / MiB) * MiB);
  }

  private async putSingle(
    path: string,
    name: string,
    body: Buffer,
    opts: PutOptions,
    uploadId: string,
  ): Promise<BlobInfo> {
    const res = await this.committing(path, name, uploadId, () =>
      this.t.send({
        op: 'Put Blob',
        method: 'PUT',
        blob: name,
        where: path,
        body,
        headers: {
          'x-ms-blob-type': 'BlockBlob',
          'content-type': 'application/octet-stream',
          'if-match': opts.ifMatch,
          'if-none-match': opts.ifNoneMatch,
          [UPLOAD_META]: uploadId,
        },
      }),
    );
    return 'path' in res ? res : infoFrom(path, res, body.length);
  }

  private async putBlocks(
    path: string,
    name: string,
    head: Buffer[],
    rest: AsyncIterator<Buffer>,
    opts: PutOptions,
    uploadId: string,
  ): Promise<BlobInfo> {
    // Fail before uploading gigabytes when the precondition is already false;
    // the commit below still carries it, which is what closes the race.
    if (opts.ifNoneMatch === '*' || opts.ifMatch) {
      const cur = await this.stat(path);
      if (opts.ifNoneMatch === '*' && cur) {
        throw new MembraneError(StoreErrorCode.PRECONDITION, 'object already exists (write-once)', {
          where: path,
        });
      }
      if (opts.ifMatch && cur?.etag !== opts.ifMatch) {
        throw new MembraneError(StoreErrorCode.PRECONDITION, 'object changed since it was read', {
          where: path,
        });
      }
    }
    const ids: string[] = [];
    const inflight = new Set<Promise<void>>();
    let failure: unknown;
    let size = 0;
    const stage = (block: Buffer) => {
      if (ids.length >= MAX_BLOCKS) {
        throw new MembraneError(
          StoreErrorCode.IO,
          `object exceeds ${MAX_BLOCKS} blocks of ${block.length} bytes: pass sizeHint or a larger blockSize`,
          { where: path },
        );
      }
      // Same-length ids (upload id + zero-padded index), as the service requires per blob.
      const id = Buffer.from(`${uploadId}-${ids.length.toString().padStart(6, '0')}`).toString('base64');
      ids.push(id);
      size += block.length;
      const pr: Promise<void> = this.t
        .send({
          op: 'Put Block',
          method: 'PUT',
          blob: name,
          where: path,
          query: { comp: 'block', blockid: id },
          headers: { 'content-type': 'application/octet-stream' },
          body: block,
        })
        .then(
          () => {
            inflight.delete(pr);
          },
          (e: unknown) => {
            failure ??= e;
            inflight.delete(pr);
          },
        );
      inflight.add(pr);
    };
    try {
      for (const b of head) stage(b);
      for (;;) {
        while (inflight.size >= this.concurrency && failure === undefined) await Promise.race(inflight);
        if (failure !== undefined) throw failure;
        const next = await rest.next();
        if (next.done) break;
        stage(next.value);
      }
      await Promise.all(inflight);
      if (failure !== undefined) throw failure;
    } catch (e) {
      await Promise.allSettled(inflight);
      await rest.return?.();
      throw e;
    }
    const res = await this.committing(path, name, uploadId, () =>
      this.t.send({
        op: 'Put Block List',
        method: 'PUT',
        blob: name,
        where: path,
        query: { comp: 'blocklist' },
        body: Buffer.from(blockListXml(ids), 'utf8'),
        headers: {
          'content-type': 'application/xml; charset=utf-8',
          'x-ms-blob-content-type': 'application/octet-stream',
          'if-match': opts.ifMatch,
          'if-none-match': opts.ifNoneMatch,
          [UPLOAD_META]: uploadId,
        },
      }),
    );
    return 'path' in res ? res : infoFrom(path, res, size);
  }

  /**
   * Runs a committing request. When it was retried and then failed its
   * precondition, the first attempt may have committed (response lost): the
   * upload id in the blob's metadata tells whether that object is ours.
   */
  private async committing(
    path: string,
    name: string,
    uploadId: string,
    send: () => Promise<AzureResponse>,
  ): Promise<AzureResponse | BlobInfo> {
    try {
      return await send();
    } catch (e) {
      if (e instanceof AzureStoreError && e.azureCode === 'InvalidBlockList') {
        // The service drops a blob's uncommitted blocks when another writer commits it.
        throw new AzureStoreError(
          StoreErrorCode.IO,
          'another writer committed this object during the upload, discarding its staged blocks; nothing was changed by this write — retry it',
          e.status,
          e.azureCode,
          e.attempts,
          { where: path, cause: e },
        );
      }
      if (e instanceof AzureStoreError && e.code === StoreErrorCode.PRECONDITION && e.attempts > 1) {
        const res = await this.t.send({
          op: 'Get Blob Properties',
          method: 'HEAD',
          blob: name,
          where: path,
          accept: [404],
        });
        if (res.status !== 404 && hdr(res, UPLOAD_META) === uploadId) {
          return infoFrom(path, res, Number(hdr(res, 'content-length')));
        }
      }
      throw e;
    }
  }
}

function hdr(res: AzureResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function infoFrom(path: string, res: AzureResponse, size: number): BlobInfo {
  const etag = hdr(res, 'etag');
  const lm = new Date(hdr(res, 'last-modified') ?? '');
  if (!etag || !Number.isSafeInteger(size) || Number.isNaN(lm.getTime())) {
    throw new MembraneError(
      StoreErrorCode.IO,
      'Azure Blob answer lacks ETag, Content-Length or Last-Modified',
      {
        where: path,
      },
    );
  }
  return { path, size, etag: quoteEtag(etag), lastModified: lm };
}

/** Re-words a PRECONDITION error for the operation at hand; other errors pass through. */
function preconditionAs(e: unknown, message: string): unknown {
  if (
    e instanceof MembraneError &&
    e.code === StoreErrorCode.PRECONDITION &&
    !e.message.startsWith(message)
  ) {
    const a = e instanceof AzureStoreError ? e : undefined;
    return new AzureStoreError(
      StoreErrorCode.PRECONDITION,
      message,
      a?.status,
      a?.azureCode,
      a?.attempts ?? 1,
      {
        where: e.where,
        cause: e,
      },
    );
  }
  return e;
}

function addressable(path: string): boolean {
  try {
    return storePath(path) === path;
  } catch {
    return false;
  }
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** Zero-copy blocks of an in-memory object. */
async function* slices(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let off = 0; off < buf.length; off += size) yield buf.subarray(off, Math.min(buf.length, off + size));
}

/** Re-chunks a stream into blocks of exactly `size` bytes (the last one shorter), one block buffered. */
async function* blocksOf(source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  let buf: Buffer | undefined;
  let fill = 0;
  for await (const chunk of source) {
    let off = 0;
    while (off < chunk.length) {
      buf ??= Buffer.allocUnsafe(size);
      const n = Math.min(size - fill, chunk.length - off);
      buf.set(chunk.subarray(off, off + n), fill);
      fill += n;
      off += n;
      if (fill === size) {
        yield buf;
        buf = undefined;
        fill = 0;
      }
    }
  }
  if (buf && fill > 0) yield buf.subarray(0, fill);
}
