/**
 * The pure modules of the blob volume, table-driven: output-rule globs and limits,
 * errno mapping, staging block arithmetic, read-ahead decisions, the frame
 * cache's LRU-by-bytes accounting, path helpers.
 */
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { test } from 'node:test';
import { MembraneError } from '../../policy/errors.js';
import { blockContent, blockCount, pieces, slotOffset } from '../../proxies/blob-volume/blocks.js';
import { errnoOf, isIntegrityError, VolumeErrorCode } from '../../proxies/blob-volume/errno.js';
import { FrameCache } from '../../proxies/blob-volume/frame-cache.js';
import { unescapeMountPath } from '../../proxies/blob-volume/mountpoint.js';
import { compileGlob, OutputRulesPolicy } from '../../proxies/blob-volume/output-rules.js';
import { ancestors, objectPath, rebase } from '../../proxies/blob-volume/paths.js';
import { ReadAhead } from '../../proxies/blob-volume/read-ahead.js';

test('output-rule globs match whole object paths', () => {
  const table: [string, string, boolean][] = [
    ['*.csv', 'a.csv', true],
    ['*.csv', 'dir/a.csv', false],
    ['*.csv', 'a.csv.exe', false],
    ['*.csv', '.csv', true],
    ['reports/*.csv', 'reports/q1.csv', true],
    ['reports/*.csv', 'reports/2024/q1.csv', false],
    ['reports/**', 'reports/2024/q1.csv', true],
    ['reports/**', 'reportsX/q1.csv', false],
    ['**/*.csv', 'q1.csv', true],
    ['**/*.csv', 'a/b/c/q1.csv', true],
    ['**/*.csv', 'a/b/c/q1.json', false],
    ['out-?.txt', 'out-1.txt', true],
    ['out-?.txt', 'out-12.txt', false],
    ['out-?.txt', 'out-/.txt', false],
    ['out-[0-9].txt', 'out-7.txt', true],
    ['out-[0-9].txt', 'out-x.txt', false],
    ['out-[!0-9].txt', 'out-x.txt', true],
    ['out-[!0-9].txt', 'out-7.txt', false],
    ['*.{csv,json}', 'r.json', true],
    ['*.{csv,json}', 'r.xml', false],
    ['a.b', 'aXb', false],
    ['a+b(1).txt', 'a+b(1).txt', true],
    ['report', 'report', true],
    ['report', 'report/x', false],
  ];
  for (const [pattern, path, expected] of table) {
    assert.equal(compileGlob(pattern).test(path), expected, `${pattern} vs ${path}`);
  }
});

test('malformed output-rule patterns are refused with VOLUME_OPTIONS', () => {
  for (const bad of ['', '/abs/*.csv', 'a[bc', '{a,b', '{a,{b}}']) {
    assert.throws(
      () => compileGlob(bad),
      (e: unknown) => e instanceof MembraneError && e.code === 'VOLUME_OPTIONS',
      bad,
    );
  }
});

test('output rules: names and sizes', () => {
  const open = new OutputRulesPolicy({});
  assert.ok(open.allowsName('anything/at/all'));
  assert.ok(open.allowsSize(Number.MAX_SAFE_INTEGER));
  const none = new OutputRulesPolicy({ allow: [] });
  assert.ok(!none.allowsName('a.csv'));
  const p = new OutputRulesPolicy({ allow: ['*.csv', 'logs/**'], maxObjectBytes: 100 });
  assert.ok(p.allowsName('x.csv') && p.allowsName('logs/a/b') && !p.allowsName('x.txt'));
  assert.ok(p.allowsSize(100) && !p.allowsSize(101) && p.allowsSize(0));
  assert.throws(() => new OutputRulesPolicy({ maxObjectBytes: -1 }), /maxObjectBytes/);
});

test('errno mapping: integrity is EIO, policy is EACCES/EFBIG/EROFS, unknown is EIO', () => {
  const E = constants.errno;
  const table: [unknown, number][] = [
    [new MembraneError('FORMAT_FRAME_AUTH', 'x'), -E.EIO],
    [new MembraneError('FORMAT_HEADER_AUTH', 'x'), -E.EIO],
    [new MembraneError('FORMAT_CONTEXT_MISMATCH', 'x'), -E.EIO],
    [new MembraneError('FORMAT_TRUNCATED', 'x'), -E.EIO],
    [new MembraneError('FORMAT_NO_KEY', 'x'), -E.EIO],
    [new MembraneError(VolumeErrorCode.MANIFEST_MISMATCH, 'x'), -E.EIO],
    [new MembraneError(VolumeErrorCode.OBJECT_MISSING, 'x'), -E.EIO],
    [new MembraneError(VolumeErrorCode.OBJECT_CHANGED, 'x'), -E.EIO],
    [new MembraneError(VolumeErrorCode.STAGING_AUTH, 'x'), -E.EIO],
    [new MembraneError(VolumeErrorCode.COMMIT_FAILED, 'x'), -E.EIO],
    [new MembraneError('STORE_IO', 'x'), -E.EIO],
    [new MembraneError('STORE_AUTH', 'x'), -E.EIO],
    [new MembraneError('STORE_PRECONDITION', 'x'), -E.EIO],
    [new MembraneError('STORE_INVALID_PATH', 'x'), -E.EINVAL],
    [new MembraneError(VolumeErrorCode.READ_ONLY, 'x'), -E.EROFS],
    [new MembraneError(VolumeErrorCode.WRITE_ONCE, 'x'), -E.EACCES],
    [new MembraneError(VolumeErrorCode.UNREADABLE, 'x'), -E.EACCES],
    [new MembraneError(VolumeErrorCode.OUTPUT_NAME, 'x'), -E.EACCES],
    [new MembraneError(VolumeErrorCode.OUTPUT_SIZE, 'x'), -E.EFBIG],
    [new MembraneError(VolumeErrorCode.NOT_FOUND, 'x'), -E.ENOENT],
    [new MembraneError(VolumeErrorCode.EXISTS, 'x'), -E.EEXIST],
    [new MembraneError(VolumeErrorCode.NOT_DIR, 'x'), -E.ENOTDIR],
    [new MembraneError(VolumeErrorCode.IS_DIR, 'x'), -E.EISDIR],
    [new MembraneError(VolumeErrorCode.NOT_EMPTY, 'x'), -E.ENOTEMPTY],
    [new MembraneError(VolumeErrorCode.BAD_HANDLE, 'x'), -E.EBADF],
    [new MembraneError(VolumeErrorCode.INVALID_NAME, 'x'), -E.EINVAL],
    [new MembraneError(VolumeErrorCode.NOT_SUPPORTED, 'x'), -E.EPERM],
    [new MembraneError('SOMETHING_NEW', 'x'), -E.EIO],
    [Object.assign(new Error('disk full'), { code: 'ENOSPC' }), -E.ENOSPC],
    [Object.assign(new Error('odd'), { code: 'EXDEV' }), -E.EIO],
    [new TypeError('bug'), -E.EIO],
    [undefined, -E.EIO],
  ];
  for (const [e, expected] of table) assert.equal(errnoOf(e), expected, String((e as Error)?.message ?? e));
  assert.ok(isIntegrityError(new MembraneError('FORMAT_FRAME_AUTH', 'x')));
  assert.ok(!isIntegrityError(new MembraneError('STORE_IO', 'x')));
});

test('staging pieces cover a range exactly, cut at block boundaries', () => {
  for (const B of [1, 3, 16]) {
    for (let pos = 0; pos < 3 * B + 2; pos++) {
      for (let len = 0; len < 3 * B + 2; len++) {
        const ps = pieces(pos, len, B);
        let expectOffset = 0;
        for (const p of ps) {
          assert.equal(p.offset, expectOffset);
          assert.equal(p.index * B + p.blockOffset, pos + p.offset, 'piece starts where the byte is');
          assert.ok(p.length > 0 && p.blockOffset + p.length <= B, 'piece stays in its block');
          expectOffset += p.length;
        }
        assert.equal(expectOffset, len);
        if (len > 0) assert.equal(ps.length, Math.floor((pos + len - 1) / B) - Math.floor(pos / B) + 1);
      }
    }
  }
  assert.throws(() => pieces(-1, 1, 4), RangeError);
  assert.equal(blockCount(0, 4), 0);
  assert.equal(blockCount(9, 4), 3);
  assert.deepEqual(
    [0, 1, 2, 3].map((i) => blockContent(i, 9, 4)),
    [4, 4, 1, 0],
  );
  assert.equal(slotOffset(3, 4096, 16), 3 * 4112);
});

test('read-ahead: opens on sequential reads, doubles, stops on random reads', () => {
  const F = 100;
  const ra = new ReadAhead({ maxFrames: 8, initialFrames: 2 });
  const out: (string | undefined)[] = [];
  const step = (start: number, end: number) => {
    const w = ra.next(start, end, F, 1_000_000);
    out.push(w ? `${w.first}-${w.last}` : undefined);
  };
  step(0, 100); // first read at 0: sequential, but one read is not a pattern yet
  step(100, 200); // second: window 2 beyond frame 1
  step(200, 300); // frame 2, horizon 3: still ahead by 1 = window(4)/2 -> refill
  step(300, 400); // window 8 now
  step(400, 500); // horizon 11 is more than half a window ahead of frame 4: wait
  step(50_000_000, 50_000_010); // random jump (beyond the 1 MiB slack)
  step(500, 600); // back: random again
  step(600, 700); // sequential again, but needs two reads in a row
  step(700, 800); // window restarts at 2
  assert.deepEqual(out, [undefined, '2-3', '4-6', '7-11', undefined, undefined, undefined, undefined, '8-9']);
});

test('read-ahead: tolerates slightly out-of-order concurrent reads; clamps at the end; can be disabled', () => {
  const ra = new ReadAhead({ maxFrames: 4, initialFrames: 4, slackBytes: 300 });
  assert.equal(ra.next(0, 100, 100, 6), undefined);
  assert.deepEqual(ra.next(200, 300, 100, 6), { first: 3, last: 5 }); // 100-200 not seen yet: still sequential
  assert.equal(ra.next(100, 200, 100, 6), undefined);
  assert.equal(ra.next(300, 400, 100, 6), undefined); // horizon 5 is the last frame
  const off = new ReadAhead({ maxFrames: 0 });
  assert.equal(off.next(0, 10, 10, 5), undefined);
  assert.equal(off.next(10, 20, 10, 5), undefined);
});

test('frame cache: LRU by bytes, recycles evicted buffers, drops one object version, zeroes on clear', () => {
  const c = new FrameCache(16); // keeps up to 4 bytes of free buffers
  const a = c.allocate(4).fill(1);
  const b = c.allocate(4).fill(2);
  const d = c.allocate(4).fill(3);
  c.set(FrameCache.key(1, 0), a);
  c.set(FrameCache.key(1, 1), b);
  assert.ok(c.get(FrameCache.key(1, 0))); // a is now most recent
  c.set(FrameCache.key(2, 0), d);
  c.set(FrameCache.key(2, 1), c.allocate(4));
  c.set(FrameCache.key(2, 2), c.allocate(4)); // 20 > 16: evicts b (least recent)
  assert.equal(c.bytes, 16);
  assert.ok(!c.has(FrameCache.key(1, 1)) && c.has(FrameCache.key(1, 0)));
  assert.equal(c.allocate(4), b, 'the evicted buffer is reused for the next frame of its size');
  assert.notEqual(c.allocate(4), b);
  c.set(FrameCache.key(3, 0), Buffer.alloc(17)); // larger than the cache: not kept
  assert.ok(!c.has(FrameCache.key(3, 0)));
  c.dropObject(2);
  assert.ok(c.has(FrameCache.key(1, 0)) && !c.has(FrameCache.key(2, 0)));
  assert.equal(c.bytes, 4);
  c.clear();
  assert.equal(c.bytes, 0);
  assert.deepEqual([...a], [0, 0, 0, 0], 'cached frames are zeroed');
  assert.deepEqual([...d], [0, 0, 0, 0], 'free buffers are zeroed');
  const big = new FrameCache(16); // free list holds at most a quarter: 4 bytes
  const x = big.allocate(4).fill(7);
  const y = big.allocate(4).fill(8);
  big.recycle(x);
  big.recycle(y);
  assert.deepEqual([...y], [0, 0, 0, 0], 'beyond the free-list bound a buffer is zeroed and dropped');
});

test('paths: FUSE path to object path, refusing names an object path cannot carry', () => {
  assert.equal(objectPath('/'), '');
  assert.equal(objectPath('/a/b.csv'), 'a/b.csv');
  for (const bad of ['/a\\b', '/a/../b', '/x\0y']) {
    assert.throws(
      () => objectPath(bad),
      (e: unknown) => e instanceof MembraneError && e.code === 'VOLUME_INVALID_NAME',
    );
  }
  assert.deepEqual(ancestors('a/b/c'), ['', 'a', 'a/b']);
  assert.equal(rebase('src/x/y', 'src', 'dst/q'), 'dst/q/x/y');
  assert.equal(unescapeMountPath('/tmp/with\\040space'), '/tmp/with space');
});
