/**
 * Datasink semantics without FUSE (the same operations the kernel drives):
 * commits are one object per file, sealed and bound to {sink, path}; write-once
 * for objects this mount did not write; renames re-seal under the new name and
 * delete the old object; trusted mode seals to the recipient only; open mode
 * enforces output-rule names and sizes with audit events; failed commits surface.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { MembraneError } from '../../policy/errors.js';
import type { VolumeOptions } from '../../proxies/blob-volume/options.js';
import type { SinkVolume } from '../../proxies/blob-volume/sink-ops.js';
import { assembleVolume } from '../../proxies/blob-volume/volume.js';
import { dekKeyring, type Keyring, openBuffer, rsaKeyring, sealBuffer } from '../../proxies/core/index.js';
import { MemoryStore, recorder } from '../helpers/memory-store.js';

const SINK = 'results';
const dek = randomBytes(32);
const keyring = dekKeyring(dek);
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function sink(protection: VolumeOptions['protection'], store = new MemoryStore()) {
  const stagingDir = await mkdtemp(join(tmpdir(), 'membrane-sink-test-'));
  dirs.push(stagingDir);
  const rec = recorder();
  const v = await assembleVolume({
    name: SINK,
    mountpoint: join(stagingDir, 'unused-mountpoint'),
    store,
    kind: 'datasink',
    protection,
    stagingDir,
    audit: rec.audit,
    metrics: rec.metrics,
    listingTtlMs: 0,
    log: () => {},
  });
  const ops = v.sink as SinkVolume;
  const write = async (
    path: string,
    data: Buffer | string,
    opts: { flush?: boolean; release?: boolean } = {},
  ) => {
    const buf = Buffer.from(data);
    const fh = await ops.create(path, 0o644);
    await ops.write(path, fh, buf, buf.length, 0);
    if (opts.flush !== false) await ops.flush(path, fh);
    if (opts.release !== false) await ops.release(path, fh);
    return fh;
  };
  const read = async (path: string) => {
    const fh = await ops.open(path, O_RDONLY);
    const buf = Buffer.alloc((await ops.getattr(path)).size);
    const n = await ops.read(path, fh, buf, buf.length, 0);
    await ops.release(path, fh);
    return buf.subarray(0, n);
  };
  return { store, ops, rec, write, read, close: () => v.close() };
}

const code = (c: string) => (e: unknown) => e instanceof MembraneError && e.code === c;
const open = (store: MemoryStore, path: string, kr: Keyring = keyring) =>
  openBuffer(store.objects.get(path)!.data, { keyring: kr, expect: { datasource: SINK, path } });

test('secure: close commits one sealed object bound to {sink, path}; reopen and rewrite replaces it', async () => {
  const s = await sink({ mode: 'secure', keyring });
  await s.write('report.csv', 'id,amount\n1,10\n');
  assert.deepEqual([...s.store.objects.keys()], ['report.csv']);
  assert.equal((await open(s.store, 'report.csv')).toString(), 'id,amount\n1,10\n');
  await assert.rejects(
    openBuffer(s.store.objects.get('report.csv')!.data, {
      keyring,
      expect: { datasource: SINK, path: 'other.csv' },
    }),
    code('FORMAT_CONTEXT_MISMATCH'),
  );
  assert.equal((await s.read('report.csv')).toString(), 'id,amount\n1,10\n', 'read back from staging');
  // Rewrite in place through a read-write handle.
  const fh = await s.ops.open('report.csv', O_RDWR);
  await s.ops.write('report.csv', fh, Buffer.from('ID'), 2, 0);
  await s.ops.flush('report.csv', fh);
  await s.ops.release('report.csv', fh);
  assert.equal((await open(s.store, 'report.csv')).toString(), 'ID,amount\n1,10\n');
  const commits = s.rec.events.filter((e) => e.type === 'object.committed');
  assert.equal(commits.length, 2);
  assert.equal((commits[0]!.details as { volume: string }).volume, SINK);
  assert.ok(s.rec.counts.bytesEncrypted > 0);
  await s.close();
});

test('a flush by a handle that wrote nothing does not commit; release commits a new empty file', async () => {
  const s = await sink({ mode: 'secure', keyring });
  const fh = await s.ops.create('empty', 0o644);
  await s.ops.flush('empty', fh); // e.g. the shell closing the original fd after dup2
  assert.equal(s.store.objects.size, 0);
  await s.ops.release('empty', fh);
  assert.equal((await open(s.store, 'empty')).length, 0);
  await s.close();
});

test('write-once: objects that existed before the mount cannot be changed, only read', async () => {
  const store = new MemoryStore();
  store.set(
    'old.csv',
    await sealBuffer(Buffer.from('previous run'), {
      keyring,
      binding: { datasource: SINK, path: 'old.csv' },
    }),
  );
  const s = await sink({ mode: 'secure', keyring }, store);
  await assert.rejects(s.ops.create('old.csv', 0o644), code('VOLUME_WRITE_ONCE'));
  await assert.rejects(s.ops.open('old.csv', O_WRONLY), code('VOLUME_WRITE_ONCE'));
  await assert.rejects(s.ops.truncate('old.csv', 0), code('VOLUME_WRITE_ONCE'));
  await assert.rejects(s.ops.unlink('old.csv'), code('VOLUME_WRITE_ONCE'));
  await assert.rejects(s.ops.rename('old.csv', 'new.csv'), code('VOLUME_WRITE_ONCE'));
  await s.write('mine.csv', 'x');
  await assert.rejects(s.ops.rename('mine.csv', 'old.csv'), code('VOLUME_WRITE_ONCE'));
  assert.equal((await s.read('old.csv')).toString(), 'previous run');
  assert.equal((await s.ops.getattr('old.csv')).perm, 0o444);
  assert.equal((await open(store, 'old.csv')).toString(), 'previous run');
  await s.close();
});

test('rename re-seals under the new path and deletes the old object; directories move with their files', async () => {
  const s = await sink({ mode: 'secure', keyring });
  await s.ops.mkdir('tmp', 0o755);
  await s.write('tmp/a.part', 'alpha');
  await s.write('tmp/b.part', 'beta');
  await s.ops.rename('tmp/a.part', 'tmp/a.csv');
  assert.deepEqual([...s.store.objects.keys()].sort(), ['tmp/a.csv', 'tmp/b.part']);
  assert.equal((await open(s.store, 'tmp/a.csv')).toString(), 'alpha');
  await s.ops.mkdir('final', 0o755);
  await s.ops.rmdir('final');
  await s.ops.rename('tmp', 'final');
  assert.deepEqual([...s.store.objects.keys()].sort(), ['final/a.csv', 'final/b.part']);
  assert.equal((await open(s.store, 'final/b.part')).toString(), 'beta');
  assert.deepEqual((await s.ops.readdir('final')).sort(), ['a.csv', 'b.part']);
  await assert.rejects(s.ops.getattr('tmp'), code('VOLUME_NOT_FOUND'));
  // Rename onto one of our files replaces it.
  await s.ops.rename('final/a.csv', 'final/b.part');
  assert.deepEqual([...s.store.objects.keys()], ['final/b.part']);
  assert.equal((await open(s.store, 'final/b.part')).toString(), 'alpha');
  await s.close();
});

test('unlink deletes the committed object; unlink-while-open (libfuse hidden rename) never commits', async () => {
  const s = await sink({ mode: 'secure', keyring });
  await s.write('gone.txt', 'bye');
  await s.ops.unlink('gone.txt');
  assert.equal(s.store.objects.size, 0);
  await assert.rejects(s.ops.getattr('gone.txt'), code('VOLUME_NOT_FOUND'));
  const fh = await s.write('open.txt', 'still open', { release: false });
  assert.ok(s.store.objects.has('open.txt'));
  await s.ops.rename('open.txt', '.fuse_hidden0000000100000001');
  assert.equal(s.store.objects.size, 0, 'its object goes at once');
  await s.ops.write('.fuse_hidden0000000100000001', fh, Buffer.from('more'), 4, 0);
  await s.ops.release('.fuse_hidden0000000100000001', fh);
  await s.ops.unlink('.fuse_hidden0000000100000001');
  assert.equal(s.store.objects.size, 0, 'never committed again');
  assert.deepEqual(await s.ops.readdir(''), []);
  await s.close();
});

test('directories: mkdir, rmdir of non-empty, EEXIST, ENOTDIR, parents must exist', async () => {
  const s = await sink({ mode: 'secure', keyring });
  await s.ops.mkdir('d', 0o755);
  await assert.rejects(s.ops.mkdir('d', 0o755), code('VOLUME_EXISTS'));
  await assert.rejects(s.ops.create('missing/x', 0o644), code('VOLUME_NOT_FOUND'));
  await s.write('d/f', '1');
  await assert.rejects(s.ops.rmdir('d'), code('VOLUME_NOT_EMPTY'));
  await assert.rejects(s.ops.rmdir('d/f'), code('VOLUME_NOT_DIR'));
  await assert.rejects(s.ops.create('d/f/x', 0o644), code('VOLUME_NOT_DIR'));
  await assert.rejects(s.ops.unlink('d'), code('VOLUME_IS_DIR'));
  await s.ops.unlink('d/f');
  await s.ops.rmdir('d');
  assert.deepEqual(await s.ops.readdir(''), []);
  await s.close();
});

test('trusted: sealed to the recipient only; the sink cannot read objects it did not write', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const store = new MemoryStore();
  store.set('earlier.bin', Buffer.from('opaque'));
  const s = await sink({ mode: 'trusted', recipient: rsaKeyring({ publicKey }) }, store);
  await s.write('result.json', '{"ok":true}');
  assert.equal((await open(store, 'result.json', rsaKeyring({ privateKey }))).toString(), '{"ok":true}');
  await assert.rejects(open(store, 'result.json', keyring), code('FORMAT_NO_KEY'));
  assert.equal(
    (await s.read('result.json')).toString(),
    '{"ok":true}',
    'read back from staging during the mount',
  );
  await assert.rejects(s.ops.open('earlier.bin', O_RDONLY), code('VOLUME_UNREADABLE'));
  assert.equal((await s.ops.getattr('earlier.bin')).perm, 0);
  await s.close();
});

test('open mode: plaintext out, output-rule names and sizes enforced with audit events', async () => {
  const s = await sink({ mode: 'open', outputRules: { allow: ['*.csv', 'logs/**'], maxObjectBytes: 10 } });
  await s.write('ok.csv', '1234567890');
  assert.equal(s.store.objects.get('ok.csv')!.data.toString(), '1234567890', 'stored as plaintext');
  await assert.rejects(s.ops.create('secret.bin', 0o644), code('OUTPUT_DENIED'));
  await s.write('a.csv', 'x');
  await assert.rejects(s.ops.rename('a.csv', 'a.bin'), code('OUTPUT_DENIED'));
  const fh = await s.ops.open('a.csv', O_RDWR);
  await assert.rejects(s.ops.write('a.csv', fh, Buffer.alloc(5), 5, 6), code('OUTPUT_TOO_LARGE'));
  await assert.rejects(s.ops.ftruncate('a.csv', fh, 11), code('OUTPUT_TOO_LARGE'));
  await s.ops.release('a.csv', fh);
  await assert.rejects(s.ops.truncate('a.csv', 100), code('OUTPUT_TOO_LARGE'));
  const denied = s.rec.events.filter((e) => e.type === 'output.denied');
  assert.deepEqual(
    denied.map((e) => [e.subject, (e.details as { rule: string }).rule]),
    [
      ['secret.bin', 'name'],
      ['a.bin', 'name'],
      ['a.csv', 'size'],
      ['a.csv', 'size'],
      ['a.csv', 'size'],
    ],
  );
  assert.deepEqual([...s.store.objects.keys()].sort(), ['a.csv', 'ok.csv']);
  assert.equal(s.store.objects.get('a.csv')!.data.toString(), 'x');
  await s.close();
});

test('a failed commit is an error for close(), audited, and retried by flushAll', async () => {
  const store = new MemoryStore();
  const s = await sink({ mode: 'secure', keyring }, store);
  const put = store.put.bind(store);
  let fail = true;
  store.put = async (...a: Parameters<MemoryStore['put']>) => {
    if (fail) throw new MembraneError('STORE_IO', 'network down');
    return put(...a);
  };
  const fh = await s.ops.create('r.csv', 0o644);
  await s.ops.write('r.csv', fh, Buffer.from('data'), 4, 0);
  await assert.rejects(s.ops.flush('r.csv', fh), code('VOLUME_COMMIT_FAILED'));
  assert.equal(s.rec.events.at(-1)!.type, 'object.commit_failed');
  await assert.rejects(s.ops.release('r.csv', fh), code('VOLUME_COMMIT_FAILED'));
  assert.deepEqual(
    (await s.ops.flushAll()).map((f) => f.path),
    ['r.csv'],
  );
  fail = false;
  assert.deepEqual(await s.ops.flushAll(), []);
  assert.equal((await open(store, 'r.csv')).toString(), 'data');
  await s.close();
});

test('renaming an open file frees its old name at once; a new file there is never deleted by the move', async () => {
  const s = await sink({ mode: 'secure', keyring });
  const fh = await s.write('x', 'first', { release: false }); // committed at x, still open
  await s.ops.rename('x', 'y');
  assert.deepEqual([...s.store.objects.keys()], [], 'old object removed; y commits at close');
  await s.write('x', 'second'); // a new file under the old name
  await s.ops.write('y', fh, Buffer.from('FIRST'), 5, 0);
  await s.ops.flush('y', fh);
  await s.ops.release('y', fh);
  assert.deepEqual([...s.store.objects.keys()].sort(), ['x', 'y']);
  assert.equal((await open(s.store, 'x')).toString(), 'second');
  assert.equal((await open(s.store, 'y')).toString(), 'FIRST');
  await s.close();
});
