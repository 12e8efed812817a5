import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FsStore } from '../../proxies/blob-volume/store/fs-store.js';

const root = await mkdtemp(join(tmpdir(), 'membrane-fsstore-'));
after(() => rm(root, { recursive: true, force: true }));
const store = new FsStore(root);

test('openVersion reads one version and keeps reading it after the object is replaced', async () => {
  const v1 = await store.put('a/b.bin', Buffer.from('version one'));
  const r = await store.openVersion('a/b.bin', v1.etag);
  await store.put('a/b.bin', Buffer.from('VERSION TWO!'));
  assert.equal((await r.read(0, 7)).toString(), 'version');
  assert.equal((await r.read(8, 100)).toString(), 'one', 'short only at the end');
  await r.close();
  await assert.rejects(store.openVersion('a/b.bin', v1.etag), { code: 'STORE_PRECONDITION' });
  await assert.rejects(store.openVersion('a/none', v1.etag), { code: 'STORE_NOT_FOUND' });
});

test('sweep removes orphaned temp files of interrupted puts, and nothing else', async () => {
  await store.put('keep/x.bin', Buffer.from('x'));
  await writeFile(join(root, 'keep', '.membrane-tmp-deadbeef'), 'partial');
  await writeFile(join(root, '.membrane-tmp-cafe'), 'partial');
  assert.deepEqual(
    (await collect(store.list())).sort(),
    ['a/b.bin', 'keep/x.bin'],
    'temp files are never listed',
  );
  assert.equal(await store.sweep(), 2);
  assert.deepEqual((await readdir(join(root, 'keep'))).sort(), ['x.bin']);
  assert.equal(await store.sweep(), 0);
});

async function collect(it: AsyncIterable<{ path: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const i of it) out.push(i.path);
  return out;
}
