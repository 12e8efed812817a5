/**
 * Issue 12, defect 6: thousands of files in a sink no longer hold one descriptor
 * each until unmount. Drives the sink's operations directly (no FUSE) with a small
 * descriptor limit, and checks every file reads back and commits.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { SinkVolume } from '../../../proxies/blob-volume/sink-ops.js';
import { FsStore } from '../../../proxies/blob-volume/store/fs-store.js';
import { assembleVolume } from '../../../proxies/blob-volume/volume.js';
import { dekKeyring } from '../../../proxies/core/index.js';

const base = await mkdtemp(join(tmpdir(), 'membrane-fds-'));
after(() => rm(base, { recursive: true, force: true }));
const openFds = async () => (await readdir('/proc/self/fd')).length;

test('defect 12.6: thousands of sink files stay within a bounded number of staging descriptors', {
  timeout: 120_000,
}, async () => {
  const FILES = 1000;
  const LIMIT = 16;
  const v = await assembleVolume({
    name: 'many',
    mountpoint: join(base, 'mnt'),
    store: new FsStore(join(base, 'store')),
    kind: 'datasink',
    protection: { mode: 'secure', keyring: dekKeyring(randomBytes(32)) },
    stagingDir: join(base, 'staging'),
    stagingFds: LIMIT,
    listingTtlMs: 60_000,
    log: () => {},
  });
  const ops = v.sink as SinkVolume;
  const before = await openFds();
  // Half the files stay open (written, not closed) while the others are committed.
  const open: { path: string; fh: number; data: Buffer }[] = [];
  for (let i = 0; i < FILES; i++) {
    const path = `f${i}.bin`;
    const data = randomBytes(100 + (i % 7) * 40_000); // some span several staging blocks
    const fh = await ops.create(path, 0o644);
    await ops.write(path, fh, data, data.length, 0);
    if (i % 2 === 0) {
      await ops.flush(path, fh);
      await ops.release(path, fh);
    } else open.push({ path, fh, data });
  }
  assert.ok((await openFds()) - before <= LIMIT + 4, `descriptors grew by ${(await openFds()) - before}`);
  // Every open file still reads back what was written (descriptors reopened as needed).
  for (const f of open.slice(0, 100)) {
    const buf = Buffer.alloc(f.data.length);
    const n = await ops.read(f.path, f.fh, buf, buf.length, 0);
    assert.equal(n, f.data.length);
    assert.ok(buf.equals(f.data), f.path);
  }
  for (const f of open) await ops.release(f.path, f.fh);
  assert.deepEqual(await ops.flushAll(), []);
  assert.equal((await readdir(join(base, 'store'))).length, FILES);
  await v.close();
  assert.deepEqual(await readdir(join(base, 'staging')), [], 'staging files are removed at close');
  const onStaging = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(join(base, 'staging'))) onStaging.push(target);
  }
  assert.deepEqual(onStaging, [], 'no staging descriptor is left open');
});
