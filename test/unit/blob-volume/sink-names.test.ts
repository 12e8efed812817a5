/**
 * Issue 12, defects 3, 11 and 13 at the volume's operations (no FUSE): names the store
 * cannot hold and names Membrane reserves are refused when the app gives them, with an
 * audit event; a datasource over a missing store refuses to assemble; a closed sink
 * commits nothing more.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { errnoOf } from '../../../proxies/blob-volume/errno.js';
import type { AuditEvent } from '../../../proxies/blob-volume/hooks.js';
import type { SinkVolume } from '../../../proxies/blob-volume/sink-ops.js';
import { FsStore } from '../../../proxies/blob-volume/store/fs-store.js';
import { assembleVolume } from '../../../proxies/blob-volume/volume.js';
import { dekKeyring } from '../../../proxies/core/index.js';

const base = await mkdtemp(join(tmpdir(), 'membrane-names-'));
after(() => rm(base, { recursive: true, force: true }));
let n = 0;

async function sink() {
  const dir = join(base, `s${n++}`);
  await mkdir(dir, { recursive: true });
  const events: AuditEvent[] = [];
  const v = await assembleVolume({
    name: 'out',
    mountpoint: join(dir, 'mnt'),
    store: new FsStore(join(dir, 'store')),
    kind: 'datasink',
    protection: { mode: 'secure', keyring: dekKeyring(randomBytes(32)) },
    stagingDir: join(dir, 'staging'),
    audit: { emit: (e) => void events.push(e) },
    listingTtlMs: 0,
    log: () => {},
  });
  return { ops: v.sink as SinkVolume, events, store: join(dir, 'store'), close: () => v.close() };
}

const errnoIs = (name: keyof typeof constants.errno) => (e: unknown) => {
  assert.equal(errnoOf(e), -constants.errno[name], String(e));
  return true;
};

test('defect 12.3: names the store cannot hold are refused at create, mkdir and rename with ENAMETOOLONG', async () => {
  const { ops, events, store, close } = await sink();
  const long = 'x'.repeat(256);
  await assert.rejects(ops.create(long, 0o644), errnoIs('ENAMETOOLONG'));
  await assert.rejects(ops.mkdir(long), errnoIs('ENAMETOOLONG'));
  // A deep path: every segment is fine, the whole is longer than the store can hold.
  let dir = '';
  for (let i = 0; i < 19; i++) {
    dir = dir ? `${dir}/${'d'.repeat(200)}` : 'd'.repeat(200);
    await ops.mkdir(dir);
  }
  await assert.rejects(ops.create(`${dir}/${'f'.repeat(250)}`, 0o644), errnoIs('ENAMETOOLONG'));
  const fh = await ops.create('ok.csv', 0o644);
  await ops.write('ok.csv', fh, Buffer.from('a'), 1, 0);
  await ops.release('ok.csv', fh);
  await assert.rejects(ops.rename('ok.csv', `${'y'.repeat(300)}.csv`), errnoIs('ENAMETOOLONG'));
  await assert.rejects(ops.rename('d'.repeat(200), 'z'.repeat(256)), errnoIs('ENAMETOOLONG'));
  assert.deepEqual(await ops.flushAll(), [], 'nothing is left to fail at unmount');
  assert.deepEqual(await readdir(store), ['ok.csv']);
  assert.ok(events.filter((e) => e.type === 'name.too_long').length >= 5);
  await close();
});

test('defect 12.3: the Azure store declares its 1024-character name limit, prefix included', async () => {
  const { AzureBlobStore } = await import('../../../proxies/blob-volume/store/azure-blob.js');
  const az = new AzureBlobStore({
    url: 'http://127.0.0.1:10000/devstoreaccount1',
    container: 'cc0',
    prefix: 'runs/42',
    auth: { kind: 'anonymous' },
  });
  assert.equal(az.limits.pathBytes, 1024 - 'runs/42/'.length);
  assert.equal(az.limits.segments, 252);
  await az.close?.();
});

test("defect 12.11: Membrane's own names are reserved in sinks (EACCES, audited)", async () => {
  const { ops, events, store, close } = await sink();
  await ops.mkdir('sub');
  for (const name of ['.membrane-tmp-0011', 'sub/.membrane-tmp-x', 'manifest.json', '.membrane-staging-1']) {
    await assert.rejects(ops.create(name, 0o644), errnoIs('EACCES'), name);
  }
  await assert.rejects(ops.mkdir('.membrane-tmp-dir'), errnoIs('EACCES'));
  const fh = await ops.create('report.csv', 0o644);
  await ops.release('report.csv', fh);
  await assert.rejects(ops.rename('report.csv', 'manifest.json'), errnoIs('EACCES'));
  await assert.rejects(ops.rename('sub', '.membrane-tmp-sub'), errnoIs('EACCES'));
  // manifest.json is reserved at the root only.
  const deep = await ops.create('sub/manifest.json', 0o644);
  await ops.release('sub/manifest.json', deep);
  assert.deepEqual((await readdir(store)).sort(), ['report.csv', 'sub']);
  assert.equal(events.filter((e) => e.type === 'name.reserved').length, 7);
  await close();
});

test('defect 12.13: a datasource whose store path is missing or a regular file refuses to mount', async () => {
  const file = join(base, 'not-a-dir');
  await writeFile(file, 'x');
  for (const [root, code] of [
    [join(base, 'missing-store'), 'STORE_NOT_FOUND'],
    [file, 'STORE_CONFIG'],
  ] as const) {
    await assert.rejects(
      assembleVolume({
        name: 'in',
        mountpoint: join(base, 'mnt-in'),
        store: new FsStore(root),
        kind: 'datasource',
        protection: { mode: 'secure', keyring: dekKeyring(randomBytes(32)) },
        log: () => {},
      }),
      { code },
      root,
    );
  }
});

test('defect 12.6: a closed sink commits nothing more (keys may be zeroed next)', async () => {
  const { ops, events, store, close } = await sink();
  const fh = await ops.create('late.csv', 0o644);
  await ops.write('late.csv', fh, Buffer.from('late'), 4, 0);
  // What SinkVolume.close() does first; the mount may still be up if unmount failed.
  (ops as unknown as { p: { committer: { close(): void } } }).p.committer.close();
  const failed = await ops.flushAll();
  assert.deepEqual(
    failed.map((f) => (f.error as { code: string }).code),
    ['VOLUME_CLOSED'],
  );
  assert.deepEqual(await readdir(store).catch(() => []), []);
  assert.ok(events.some((e) => e.type === 'object.commit_failed' && e.details?.code === 'VOLUME_CLOSED'));
  await close();
});
