/**
 * Issue 12, defect 7: FsStore never follows a symbolic link below its root, whether
 * it replaces a directory on the way or the object itself.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FsStore } from '../../../proxies/blob-volume/store/fs-store.js';

const base = await mkdtemp(join(tmpdir(), 'membrane-links-'));
after(() => rm(base, { recursive: true, force: true }));

async function collect(it: AsyncIterable<{ path: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const i of it) out.push(i.path);
  return out.sort();
}

test('defect 12.7: a symlink planted in a sink store never sends objects outside it', async () => {
  const root = join(base, 'store');
  const elsewhere = join(base, 'elsewhere');
  await mkdir(join(root, 'opn'), { recursive: true });
  await mkdir(elsewhere, { recursive: true });
  await writeFile(join(elsewhere, 'secret.txt'), 'outside the store');
  await symlink(elsewhere, join(root, 'opn', 'out')); // a directory on the way
  await symlink(join(elsewhere, 'secret.txt'), join(root, 'leak.txt')); // the object itself
  const store = new FsStore(root);

  const refused: [string, () => Promise<unknown>][] = [
    ['put through a linked directory', () => store.put('opn/out/report.csv', Buffer.from('data'))],
    [
      'put write-once through a linked directory',
      () => store.put('opn/out/r2.csv', Buffer.from('data'), { ifNoneMatch: '*' }),
    ],
    ['read through a linked directory', () => store.read('opn/out/secret.txt', 0, 100)],
    ['read of a linked object', () => store.read('leak.txt', 0, 100)],
    ['openVersion of a linked object', () => store.openVersion('leak.txt', '"x"')],
    ['stat of a linked object', () => store.stat('leak.txt')],
    ['delete through a linked directory', () => store.delete('opn/out/secret.txt')],
  ];
  for (const [what, op] of refused) {
    await assert.rejects(op(), { code: what.startsWith('delete') ? 'STORE_LINK' : 'STORE_LINK' }, what);
  }
  assert.deepEqual(await readdir(elsewhere), ['secret.txt'], 'nothing landed outside the store');
  assert.equal(await store.stat('opn/out/secret.txt').catch((e: { code: string }) => e.code), 'STORE_LINK');
  assert.deepEqual(await collect(store.list()), [], 'links are never listed or entered');
  // Write-once never replaces a planted link either; a plain put replaces the link itself.
  await assert.rejects(store.put('leak.txt', Buffer.from('x'), { ifNoneMatch: '*' }), {
    code: 'STORE_PRECONDITION',
  });
  await store.put('leak.txt', Buffer.from('inside'));
  assert.equal((await store.read('leak.txt', 0, 100)).toString(), 'inside');
  assert.equal(
    (await import('node:fs')).readFileSync(join(elsewhere, 'secret.txt'), 'utf8'),
    'outside the store',
  );
});

test('defect 12.13: a store path that is missing or a regular file is refused by probe()', async () => {
  const file = join(base, 'a-file');
  await writeFile(file, 'x');
  await assert.rejects(new FsStore(join(base, 'missing')).probe(true), { code: 'STORE_NOT_FOUND' });
  await new FsStore(join(base, 'missing')).probe(false);
  await assert.rejects(new FsStore(file).probe(true), { code: 'STORE_CONFIG' });
  await assert.rejects(new FsStore(file).probe(false), { code: 'STORE_CONFIG' });
  await new FsStore(base).probe(true);
});
