/**
 * Issue 12, defect 6 (memory): every open sink file could keep 16 staging blocks in
 * memory with no global cap (600 open files → 556 MiB). Drives a sink's operations
 * directly (no FUSE) with many files open at once, written in interleaved and
 * concurrent 128 KiB writes (FUSE big_writes), under a small staging-memory budget;
 * then reads everything back while still open, commits, and reads the committed
 * objects back through a datasource over the same store.
 */
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { MembraneError } from '../../../policy/errors.js';
import { resolveOptions } from '../../../proxies/blob-volume/options.js';
import type { SinkVolume } from '../../../proxies/blob-volume/sink-ops.js';
import type { SourceVolume } from '../../../proxies/blob-volume/source-ops.js';
import { FsStore } from '../../../proxies/blob-volume/store/fs-store.js';
import { assembleVolume } from '../../../proxies/blob-volume/volume.js';
import { dekKeyring } from '../../../proxies/core/index.js';

const base = await mkdtemp(join(tmpdir(), 'membrane-stmem-'));
after(() => rm(base, { recursive: true, force: true }));

const FILES = 300;
const FILE_BYTES = 256 << 10;
const WRITE = 128 << 10;
const BUDGET = 4 << 20;

/** File i's content: deterministic, distinct per file and per offset (AES-CTR keystream). */
const patternKey = randomBytes(16);
function content(i: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(i, 0);
  return createCipheriv('aes-128-ctr', patternKey, iv).update(Buffer.alloc(FILE_BYTES));
}

test('defect 12.6: many open sink files stay within the staging memory budget', {
  timeout: 300_000,
}, async () => {
  const keyring = dekKeyring(randomBytes(32));
  const store = join(base, 'store');
  const v = await assembleVolume({
    name: 'many',
    mountpoint: join(base, 'mnt'),
    store: new FsStore(store),
    kind: 'datasink',
    protection: { mode: 'secure', keyring },
    stagingDir: join(base, 'staging'),
    stagingMemoryBytes: BUDGET,
    listingTtlMs: 60_000,
    log: () => {},
  });
  const ops = v.sink as SinkVolume;
  const mem = v.stagingMemory;
  assert.ok(mem, 'a datasink has a staging-memory budget');
  const within = (when: string) => {
    const s = mem.stats;
    assert.ok(s.usedBytes <= BUDGET, `${when}: ${s.usedBytes} bytes accounted, budget ${BUDGET}`);
  };

  const files = Array.from({ length: FILES }, (_, i) => ({ path: `f${i}.bin`, fh: 0, i }));
  try {
    for (const f of files) f.fh = await ops.create(f.path, 0o644);
    // Every file open; each offset written for all files before the next (interleaved),
    // 16 files at a time concurrently so evictions happen while other writes are in flight.
    for (let pos = 0; pos < FILE_BYTES; pos += WRITE) {
      for (let g = 0; g < FILES; g += 16) {
        await Promise.all(
          files.slice(g, g + 16).map(async (f) => {
            const chunk = content(f.i).subarray(pos, pos + WRITE);
            assert.equal(await ops.write(f.path, f.fh, chunk, chunk.length, pos), chunk.length);
          }),
        );
        within(`writing at ${pos}, files ${g}..${g + 15}`);
      }
    }
    // Everything written is held by open files: 75 MiB of plaintext against a 4 MiB budget.
    assert.ok(mem.stats.evictions > 0, 'the budget evicted blocks of other files');
    // Every open file reads back what was written (sealed blocks come back from staging).
    for (let g = 0; g < FILES; g += 8) {
      await Promise.all(
        files.slice(g, g + 8).map(async (f) => {
          const buf = Buffer.alloc(FILE_BYTES);
          assert.equal(await ops.read(f.path, f.fh, buf, buf.length, 0), FILE_BYTES);
          assert.ok(buf.equals(content(f.i)), `${f.path} reads back byte-exact while open`);
        }),
      );
      within(`reading back files ${g}..${g + 7}`);
    }
    for (const f of files) {
      await ops.flush(f.path, f.fh);
      await ops.release(f.path, f.fh);
    }
    assert.deepEqual(await ops.flushAll(), []);
  } finally {
    await v.close();
  }
  const s = mem.stats;
  assert.ok(s.peakBytes <= BUDGET, `peak ${s.peakBytes} bytes accounted, budget ${BUDGET}`);
  assert.equal(s.usedBytes, 0, 'every accounted byte is released once the files are closed');
  assert.deepEqual(await readdir(join(base, 'staging')), [], 'staging files are removed at close');

  // The committed objects decrypt to exactly what was written.
  assert.equal((await readdir(store)).length, FILES);
  const src = await assembleVolume({
    name: 'many',
    mountpoint: join(base, 'mnt-src'),
    store: new FsStore(store),
    kind: 'datasource',
    protection: { mode: 'secure', keyring },
    log: () => {},
  });
  try {
    const reader = src.ops as SourceVolume;
    for (const f of files) {
      const fh = await reader.open(f.path, 0);
      const buf = Buffer.alloc(FILE_BYTES + 1);
      let got = 0;
      for (;;) {
        const n = await reader.read(f.path, fh, buf.subarray(got), buf.length - got, got);
        if (n === 0) break;
        got += n;
      }
      await reader.release(f.path, fh);
      assert.equal(got, FILE_BYTES, `${f.path} committed size`);
      assert.ok(buf.subarray(0, got).equals(content(f.i)), `${f.path} commits byte-exact`);
    }
  } finally {
    await src.close();
  }
});

test('a staging memory budget that is not a whole number of bytes of at least 1 MiB is refused', () => {
  const opts = {
    name: 'v',
    mountpoint: join(base, 'mnt-opts'),
    store: new FsStore(join(base, 'store-opts')),
    kind: 'datasink' as const,
    protection: { mode: 'open' as const },
  };
  assert.equal(resolveOptions(opts).stagingMemoryBytes, 64 << 20, 'default 64 MiB');
  assert.equal(resolveOptions({ ...opts, stagingMemoryBytes: 1 << 20 }).stagingMemoryBytes, 1 << 20);
  for (const bad of [0, -1, (1 << 20) - 1, (1 << 20) + 0.5, Number.NaN]) {
    assert.throws(
      () => resolveOptions({ ...opts, stagingMemoryBytes: bad }),
      (e: unknown) =>
        e instanceof MembraneError && e.code === 'VOLUME_OPTIONS' && e.message.includes('stagingMemoryBytes'),
      String(bad),
    );
  }
});
