/**
 * The datasource read path without FUSE: SourceObjects + SourceReader over an
 * in-memory store. Any offset and length returns exactly the plaintext (sealed
 * and plain codecs); a multi-frame miss is one ranged read; sequential reads
 * prefetch with one coalesced read; tampering, swapping, replacing and
 * manifest mismatches fail closed, are audited once, and poison the version.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { MembraneError } from '../../policy/errors.js';
import { buildManifest, serializeManifest } from '../../policy/manifest.js';
import { FrameCache } from '../../proxies/blob-volume/frame-cache.js';
import { manifestDigest, parsePinnedManifest } from '../../proxies/blob-volume/manifest.js';
import { type CodecSpec, SourceObjects } from '../../proxies/blob-volume/objects.js';
import { ReadAhead } from '../../proxies/blob-volume/read-ahead.js';
import { Reporter } from '../../proxies/blob-volume/report.js';
import { SourceReader } from '../../proxies/blob-volume/source-reader.js';
import { dekKeyring, type SealInfo } from '../../proxies/core/index.js';
import { bytes } from '../helpers/core.js';
import { MemoryStore, PinnedMemoryStore, recorder } from '../helpers/memory-store.js';

const keyring = dekKeyring(randomBytes(32));
const DS = 'ledger';

async function seal(
  plain: Buffer,
  path: string,
  frameLength: number,
  ds = DS,
  info?: SealInfo,
): Promise<Buffer> {
  const parts: Buffer[] = [];
  const { encryptIterable } = await import('../../proxies/core/index.js');
  for await (const p of encryptIterable(
    [plain],
    { keyring, binding: { datasource: ds, path }, frameLength },
    info,
  ))
    parts.push(p);
  return Buffer.concat(parts);
}

function setup(
  store: MemoryStore,
  opts: { codec?: CodecSpec; cacheBytes?: number; manifest?: ReturnType<typeof parsePinnedManifest> } = {},
) {
  const rec = recorder();
  const report = new Reporter(DS, rec.audit, rec.metrics, () => {});
  const cache = new FrameCache(opts.cacheBytes ?? 1 << 20);
  const objects = new SourceObjects({
    store,
    binding: DS,
    codec: opts.codec ?? { kind: 'sealed', keyring },
    manifest: opts.manifest,
    report,
    onClose: (o) => cache.dropObject(o.id),
  });
  const reader = new SourceReader(objects, cache, rec.metrics);
  return { rec, cache, objects, reader };
}

async function readAt(
  reader: SourceReader,
  obj: Awaited<ReturnType<SourceObjects['open']>>,
  pos: number,
  len: number,
  ra?: ReadAhead,
): Promise<Buffer> {
  const buf = Buffer.alloc(len, 0xcc);
  const n = await reader.read(obj, ra, buf, len, pos);
  return buf.subarray(0, n);
}

for (const F of [1, 7, 4096]) {
  test(`random reads return exactly the plaintext (frame length ${F})`, async () => {
    const store = new MemoryStore();
    const plain = bytes(F === 1 ? 300 : F * 9 + 5, F);
    store.set('f', await seal(plain, 'f', F));
    const { reader, objects } = setup(store, { cacheBytes: F * 3 });
    const obj = await objects.open('f', store.info('f'));
    assert.equal(obj.size, plain.length);
    let seed = F;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let k = 0; k < 300; k++) {
      const pos = next(plain.length + 10);
      const len = next(3 * F + 20) + 1;
      const got = await readAt(reader, obj, pos, len);
      assert.deepEqual(
        got,
        plain.subarray(Math.min(pos, plain.length), Math.min(pos + len, plain.length)),
        `[${pos}, +${len})`,
      );
    }
    // A sequential scan with read-ahead, small requests.
    const ra = new ReadAhead({ maxFrames: 8, initialFrames: 2 });
    const parts: Buffer[] = [];
    for (let pos = 0; pos < plain.length; pos += 1000) parts.push(await readAt(reader, obj, pos, 1000, ra));
    assert.deepEqual(Buffer.concat(parts), plain);
    obj.release();
  });
}

test('empty objects read as empty', async () => {
  const store = new MemoryStore();
  store.set('e', await seal(Buffer.alloc(0), 'e', 64));
  const { reader, objects } = setup(store);
  const obj = await objects.open('e', store.info('e'));
  assert.equal(obj.size, 0);
  assert.equal((await readAt(reader, obj, 0, 100)).length, 0);
});

test('a multi-frame miss is one ranged read; full frames bypass the cache, edge frames land in it', async () => {
  const F = 1024;
  const store = new MemoryStore();
  const plain = bytes(F * 10);
  store.set('f', await seal(plain, 'f', F));
  const { reader, objects, cache, rec } = setup(store);
  const obj = await objects.open('f', store.info('f'));
  store.reads = [];
  // [F/2, 5F + F/2): frame 0 partial, frames 1..4 whole, frame 5 partial.
  assert.deepEqual(await readAt(reader, obj, F / 2, 5 * F), plain.subarray(F / 2, F / 2 + 5 * F));
  assert.equal(store.reads.length, 1, 'one store read');
  assert.equal(cache.size, 2, 'only the two partial frames are cached');
  assert.ok(cache.has(FrameCache.key(obj.id, 0)) && cache.has(FrameCache.key(obj.id, 5)));
  assert.equal(rec.counts.framesDecrypted, 6);
  assert.equal(rec.counts.cacheMiss, 6, 'six frames missed');
  assert.equal(rec.counts.cacheHit ?? 0, 0, 'decoding a miss into the cache is not a hit');
  // Re-reading inside the edge frames is served from the cache.
  store.reads = [];
  assert.deepEqual(await readAt(reader, obj, 10, 20), plain.subarray(10, 30));
  assert.equal(store.reads.length, 0);
  assert.equal(rec.counts.cacheHit, 1);
});

test('sequential reads prefetch ahead with one coalesced read, then hit the cache', async () => {
  const F = 1024;
  const store = new MemoryStore();
  const plain = bytes(F * 64);
  store.set('f', await seal(plain, 'f', F));
  const { reader, objects } = setup(store);
  const obj = await objects.open('f', store.info('f'));
  const ra = new ReadAhead({ maxFrames: 16, initialFrames: 4 });
  store.reads = [];
  await readAt(reader, obj, 0, F, ra);
  await readAt(reader, obj, F, F, ra); // second sequential read triggers a prefetch of frames 2..5
  await new Promise((r) => setImmediate(r));
  const prefetch = store.reads.find((r) => r.end - r.start > 3 * F);
  assert.ok(prefetch, `a coalesced prefetch read: ${JSON.stringify(store.reads)}`);
  const before = store.reads.length;
  assert.deepEqual(await readAt(reader, obj, 2 * F, F, ra), plain.subarray(2 * F, 3 * F));
  assert.equal(
    store.reads.filter((r, i) => i >= before && r.start <= 2 * F + 100 && r.end > 2 * F + 100).length,
    0,
    'frame 2 came from the prefetch',
  );
  const parts = [plain.subarray(0, 3 * F)];
  for (let pos = 3 * F; pos < plain.length; pos += F) parts.push(await readAt(reader, obj, pos, F, ra));
  assert.deepEqual(Buffer.concat(parts), plain);
  assert.ok(store.reads.length < 64 / 2, `far fewer store reads than frames: ${store.reads.length}`);
});

test('a tampered frame fails the read, poisons the object version, and is audited once', async () => {
  const F = 512;
  const store = new MemoryStore();
  const plain = bytes(F * 8);
  store.set('f', await seal(plain, 'f', F));
  const { reader, objects, rec } = setup(store);
  const obj = await objects.open('f', store.info('f'));
  assert.deepEqual(await readAt(reader, obj, 0, 10), plain.subarray(0, 10)); // frame 0 fine (and cached)
  store.objects.get('f')!.data[store.objects.get('f')!.data.length - 200]! ^= 1; // in place: same ETag
  const buf = Buffer.alloc(F * 2);
  await assert.rejects(
    reader.read(obj, undefined, buf, buf.length, 6 * F),
    (e: unknown) => e instanceof MembraneError && e.code === 'FORMAT_FRAME_AUTH',
  );
  // Even the frame that was fine (and cached) is refused now.
  await assert.rejects(readAt(reader, obj, 0, 10), /failed authentication/);
  await assert.rejects(objects.open('f', store.info('f')), /failed authentication/);
  assert.equal(rec.events.length, 1);
  assert.equal(rec.events[0]!.type, 'object.auth_failure');
  assert.equal(rec.events[0]!.subject, 'f');
  assert.equal((rec.events[0]!.details as { code: string }).code, 'FORMAT_FRAME_AUTH');
  assert.equal(rec.counts.authFailure, 1);
});

test('a swapped or moved object fails at open (binding), audited once', async () => {
  const store = new MemoryStore();
  store.set('a', await seal(Buffer.from('A'), 'a', 64));
  store.set('b', await seal(Buffer.from('B'), 'b', 64));
  const a = store.objects.get('a')!.data;
  store.set('a', store.objects.get('b')!.data);
  store.set('b', a);
  store.set('other', await seal(Buffer.from('X'), 'x', 64, 'another-datasource'));
  const { objects, rec } = setup(store);
  for (const p of ['a', 'a', 'b', 'other']) {
    await assert.rejects(
      objects.open(p, store.info(p)),
      (e: unknown) => e instanceof MembraneError && e.code === 'FORMAT_CONTEXT_MISMATCH',
    );
  }
  assert.deepEqual(
    rec.events.map((e) => `${e.type} ${e.subject}`),
    ['object.auth_failure a', 'object.auth_failure b', 'object.auth_failure other'],
  );
});

test('an object replaced under an open version fails with OBJECT_CHANGED (never mixes versions)', async () => {
  const F = 256;
  const store = new MemoryStore();
  store.set('f', await seal(bytes(F * 4, 1), 'f', F));
  const { reader, objects, rec } = setup(store);
  const obj = await objects.open('f', store.info('f'));
  store.set('f', await seal(bytes(F * 4, 2), 'f', F)); // a valid new version
  await assert.rejects(
    readAt(reader, obj, 0, 10),
    (e: unknown) => e instanceof MembraneError && e.code === 'VOLUME_OBJECT_CHANGED',
  );
  assert.equal(rec.events[0]!.type, 'object.changed');
  // The new version opens and reads fine.
  const fresh = await objects.open('f', store.info('f'));
  assert.deepEqual(await readAt(reader, fresh, 0, F * 4), bytes(F * 4, 2));
});

test('pinned manifest: size mismatch refused before any read; other message ID refused after the header', async () => {
  const F = 256;
  const store = new MemoryStore();
  const plain = bytes(F * 3);
  const info: SealInfo = { messageId: '', plaintextBytes: 0 };
  const ct = await seal(plain, 'p', F, DS, info);
  store.set('p', ct);
  const m = buildManifest(DS, F, [
    {
      path: 'p',
      plaintextBytes: plain.length,
      ciphertextBytes: ct.length,
      messageId: info.messageId,
      ciphertextSha256: '0'.repeat(64),
    },
  ]);
  const manifest = parsePinnedManifest(serializeManifest(m), m.digest, DS);
  const ok = setup(store, { manifest });
  const obj = await ok.objects.open('p', store.info('p'));
  assert.deepEqual(await readAt(ok.reader, obj, 0, plain.length), plain);

  store.set('p', await seal(plain, 'p', F)); // same plaintext and size, new message ID (a rollback/replacement)
  const re = setup(store, { manifest });
  await assert.rejects(
    re.objects.open('p', store.info('p')),
    (e: unknown) => e instanceof MembraneError && e.code === 'VOLUME_MANIFEST_MISMATCH',
  );
  assert.equal(re.rec.events[0]!.type, 'object.manifest_mismatch');

  store.set('p', await seal(bytes(F * 3 + 1), 'p', F)); // another size
  const sz = setup(store, { manifest });
  store.reads = [];
  await assert.rejects(sz.objects.open('p', store.info('p')), /pinned manifest says/);
  assert.equal(store.reads.length, 0, 'size checked before any read');
});

test('pinned manifest parsing: the pinned digest, the datasource name and the format are all enforced', () => {
  const objects = [
    {
      path: 'a/b.csv',
      plaintextBytes: 3,
      ciphertextBytes: 200,
      messageId: 'ab'.repeat(32),
      ciphertextSha256: 'cd'.repeat(32),
    },
  ];
  const m = buildManifest(DS, 4096, objects);
  const text = serializeManifest(m);
  const pm = parsePinnedManifest(text, m.digest.toUpperCase(), DS);
  assert.equal(pm.get('a/b.csv')?.ciphertextBytes, 200);
  assert.equal(pm.size, 1);
  assert.throws(
    () => parsePinnedManifest(text, 'e'.repeat(64), DS),
    (e: unknown) => e instanceof MembraneError && e.code === 'MANIFEST_DIGEST',
  );
  assert.throws(() => parsePinnedManifest(text, m.digest, 'other'), /describes datasource 'ledger'/);
  const edited = JSON.parse(text);
  edited.objects[0].ciphertextBytes = 201;
  assert.throws(() => parsePinnedManifest(JSON.stringify(edited), m.digest, DS), /modified|pinned/);
  // Re-digested after the edit: self-consistent, but not what was pinned.
  const resealed = { ...edited, digest: manifestDigest(edited) };
  assert.throws(() => parsePinnedManifest(JSON.stringify(resealed), m.digest, DS), /not the pinned digest/);
  assert.throws(() => parsePinnedManifest('not json', m.digest, DS), /not JSON/);
});

test('plain codec (open mode and the passthrough ceiling) reads the stored bytes through the same path', async () => {
  const store = new MemoryStore();
  const plain = bytes(10_000);
  store.set('p', plain);
  const { reader, objects, rec } = setup(store, { codec: { kind: 'plain', frameLength: 1000 } });
  const obj = await objects.open('p', store.info('p'));
  for (const [pos, len] of [
    [0, 10_000],
    [999, 2],
    [4500, 3000],
    [9999, 5],
    [10_000, 5],
  ] as const) {
    assert.deepEqual(await readAt(reader, obj, pos, len), plain.subarray(pos, pos + len));
  }
  assert.equal(rec.counts.framesDecrypted, 0, 'nothing counted as decrypted');
});

test('stores with pinned-version readers: open handles read through one reader, closed with the last handle', async () => {
  const F = 512;
  const store = new PinnedMemoryStore();
  const plain = bytes(F * 6);
  store.set('f', await seal(plain, 'f', F));
  const { reader, objects } = setup(store);
  const obj = await objects.open('f', store.info('f'));
  obj.openHandle();
  obj.openHandle();
  store.reads = [];
  assert.deepEqual(await readAt(reader, obj, 0, F * 6), plain);
  assert.deepEqual(await readAt(reader, obj, F * 5 + 3, 7), plain.subarray(F * 5 + 3, F * 5 + 10));
  assert.equal(store.opened, 1);
  assert.ok(store.pinnedReads >= 1);
  assert.equal(store.reads.length, 0, 'no unpinned reads while handles are open');
  obj.closeHandle();
  assert.equal(store.closed, 0);
  obj.closeHandle();
  await new Promise((r) => setImmediate(r));
  assert.equal(store.closed, 1, 'closed with the last handle');
  // A later handle on a replaced version cannot pin it: the version is gone.
  store.set('f', await seal(bytes(F * 6, 9), 'f', F));
  obj.openHandle();
  await assert.rejects(
    readAt(reader, obj, F * 3, 10),
    (e: unknown) => e instanceof MembraneError && e.code === 'VOLUME_OBJECT_CHANGED',
  );
  obj.closeHandle();
  obj.release();
});
