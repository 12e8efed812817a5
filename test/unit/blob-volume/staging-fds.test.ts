/**
 * The staging descriptor pool (issue 12, defect 6) under concurrency: many files
 * created and used at once never hold more than `max` descriptors, and every call
 * completes (a waiter is always woken).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FdPool, type PooledFile } from '../../../proxies/blob-volume/staging-fds.js';

const base = await mkdtemp(join(tmpdir(), 'membrane-fdpool-'));
after(() => rm(base, { recursive: true, force: true }));

test('defect 12.6: concurrent creates and uses of many staging files never exceed the descriptor limit', {
  timeout: 120_000,
}, async () => {
  const MAX = 4;
  const pool = new FdPool(MAX);
  const files: PooledFile[] = Array.from({ length: 64 }, (_, i) => ({ path: join(base, `s${i}`) }));
  let peak = 0;
  const seen = () => {
    peak = Math.max(peak, pool.size);
  };
  await Promise.all(files.map((f) => pool.create(f).then(seen)));
  // Every file written and read back concurrently, several calls per file at once.
  await Promise.all(
    files.flatMap((f, i) =>
      [0, 1, 2].map((k) =>
        pool.use(f, async (fh) => {
          seen();
          const b = Buffer.from([i, k]);
          await fh.write(b, 0, 2, k * 2);
        }),
      ),
    ),
  );
  for (const [i, f] of files.entries()) {
    const got = await pool.use(f, async (fh) => {
      seen();
      const b = Buffer.alloc(6);
      await fh.read(b, 0, 6, 0);
      return b;
    });
    assert.deepEqual([...got], [i, 0, i, 1, i, 2], f.path);
  }
  assert.ok(peak <= MAX, `${peak} descriptors open at once, limit ${MAX}`);
  for (const f of files) await pool.forget(f);
  assert.equal(pool.size, 0);
  assert.equal((await readdir(base)).length, files.length);
});
