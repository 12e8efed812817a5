/**
 * Blob stores against their contract, and azure-blob against a real Azurite
 * (started from node_modules by the test itself; no network beyond loopback).
 *
 * The same contract suite runs on every store factory: fs, azure-blob with
 * SharedKey, and azure-blob with a container SAS under a prefix reached through
 * a recording loopback proxy. Azure-only tests then cover block uploads, the
 * auth modes and their failures, retries (503/429/resets via a fault-injecting
 * proxy), and a core-sealed object read back in random ranges.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isMembraneError } from '../../policy/errors.js';
import {
  AzureBlobStore,
  type AzureBlobTuning,
  accountSas,
  type BlobStore,
  containerSas,
  FsStore,
  openStore,
  StoreErrorCode,
} from '../../proxies/blob-volume/store/index.js';
import { dekKeyring, ObjectReader, sealBuffer } from '../../proxies/core/index.js';
import { type Azurite, startAzurite } from '../helpers/azurite.js';
import { bytes } from '../helpers/core.js';

// ---------------------------------------------------------------- fixtures

let azP: Promise<Azurite> | undefined;
const azurite = () => {
  azP ??= startAzurite();
  return azP;
};
const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c().catch(() => {});
  if (azP) await (await azP).stop();
});

const sharedKey = (az: Azurite) => ({ kind: 'shared-key' as const, account: az.account, key: az.key });
const hour = () => new Date(Date.now() + 3600_000);

interface Recorded {
  method: string;
  url: string;
}
type Fault = 'forward' | 'reset' | 'drop-response' | { status: number; headers?: Record<string, string> };

/** Loopback HTTP proxy in front of Azurite: records requests and injects faults per request. */
interface Proxy {
  url: string;
  requests: Recorded[];
  plan: (req: IncomingMessage, n: number) => Fault;
}
async function startProxy(targetPort: number, account: string): Promise<Proxy> {
  const proxy: Proxy = { url: '', requests: [], plan: () => 'forward' };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    proxy.requests.push({ method: req.method ?? '', url: req.url ?? '' });
    const fault = proxy.plan(req, proxy.requests.length);
    if (fault === 'reset') {
      req.socket.destroy();
      return;
    }
    if (typeof fault === 'object') {
      req.resume();
      res.writeHead(fault.status, { 'x-ms-error-code': 'ServerBusy', ...fault.headers });
      res.end();
      return;
    }
    const up = request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        if (fault === 'drop-response') {
          // The service acted on the request, but its answer never reaches the client.
          ur.resume();
          ur.on('end', () => req.socket.destroy());
          return;
        }
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${account}`;
  closers.push(
    () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(r);
      }),
  );
  return proxy;
}

let containerSeq = 0;
async function azureStore(
  cfg: {
    container?: string;
    prefix?: string;
    url?: string;
    auth?: ConstructorParameters<typeof AzureBlobStore>[0]['auth'];
  },
  tuning: AzureBlobTuning = {},
): Promise<AzureBlobStore> {
  const az = await azurite();
  const container = cfg.container ?? `t${process.pid}-${++containerSeq}`;
  const admin = new AzureBlobStore({ url: az.url, container, auth: sharedKey(az) });
  await admin.createContainerIfMissing();
  await admin.close();
  const s = new AzureBlobStore(
    { url: cfg.url ?? az.url, container, prefix: cfg.prefix, auth: cfg.auth ?? sharedKey(az) },
    { baseDelayMs: 5, ...tuning },
  );
  closers.push(() => s.close());
  return s;
}

interface Harness {
  store: BlobStore;
  /** Requests seen on the wire, when the store sits behind the recording proxy. */
  requests?: Recorded[];
}
const factories: { name: string; make(): Promise<Harness> }[] = [
  {
    name: 'fs',
    make: async () => {
      const dir = await mkdtemp(join(tmpdir(), 'membrane-fs-store-'));
      closers.push(() => rm(dir, { recursive: true, force: true }));
      return { store: new FsStore(dir) };
    },
  },
  {
    name: 'azure-blob (shared key)',
    make: async () => ({ store: await azureStore({}, { blockSize: 64 * 1024, listPageSize: 2 }) }),
  },
  {
    name: 'azure-blob (container SAS, prefix, via proxy)',
    make: async () => {
      const az = await azurite();
      const proxy = await startProxy(az.port, az.account);
      const container = `sas${process.pid}-${++containerSeq}`;
      const sas = containerSas({
        account: az.account,
        key: az.key,
        container,
        permissions: 'racwdl',
        expiresOn: hour(),
        protocol: 'https,http',
      });
      const store = await azureStore(
        { container, prefix: 'tenant/a/', url: proxy.url, auth: { kind: 'sas', sas } },
        { blockSize: 64 * 1024, listPageSize: 2 },
      );
      return { store, requests: proxy.requests };
    },
  },
];

function code(c: string) {
  return (e: unknown) => {
    assert.ok(isMembraneError(e, c), `expected ${c}, got ${(e as Error)?.stack ?? e}`);
    return true;
  };
}

async function* chunked(buf: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < buf.length; o += size) yield new Uint8Array(buf.subarray(o, o + size));
}

async function paths(store: BlobStore, prefix?: string): Promise<string[]> {
  const out: string[] = [];
  for await (const b of store.list(prefix)) out.push(b.path);
  return out.sort();
}

/** Seeded PRNG for reproducible random ranges. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

// ---------------------------------------------------------------- contract

for (const f of factories) {
  describe(`BlobStore contract: ${f.name}`, () => {
    let h: Harness;
    let s: BlobStore;
    before(async () => {
      h = await f.make();
      s = h.store;
    });

    test('put, stat and ranged reads (inside, across and past the end)', async () => {
      const data = bytes(1000, 11);
      const info = await s.put('obj/one.bin', data);
      assert.equal(info.path, 'obj/one.bin');
      assert.equal(info.size, 1000);
      const st = await s.stat('obj/one.bin');
      assert.ok(st);
      assert.equal(st.size, 1000);
      assert.equal(st.etag, info.etag);
      assert.ok(st.lastModified instanceof Date && !Number.isNaN(st.lastModified.getTime()));
      const cases: [number, number, Buffer][] = [
        [0, 10, data.subarray(0, 10)],
        [500, 501, data.subarray(500, 501)],
        [0, 1000, data],
        [990, 1000, data.subarray(990)],
        [995, 2000, data.subarray(995)],
        [1000, 1010, Buffer.alloc(0)],
        [5000, 6000, Buffer.alloc(0)],
        [10, 10, Buffer.alloc(0)],
      ];
      for (const [a, b, want] of cases) {
        assert.deepEqual(await s.read('obj/one.bin', a, b), want, `range [${a}, ${b})`);
      }
      assert.deepEqual(await s.read('obj/one.bin', 0, 4, { ifMatch: info.etag }), data.subarray(0, 4));
    });

    test('empty objects', async () => {
      const info = await s.put('obj/empty', new Uint8Array(0));
      assert.equal(info.size, 0);
      assert.equal((await s.stat('obj/empty'))?.size, 0);
      assert.equal((await s.read('obj/empty', 0, 100)).length, 0);
      const fromStream = await s.put('obj/empty-stream', chunked(Buffer.alloc(0), 10));
      assert.equal(fromStream.size, 0);
      assert.equal((await s.read('obj/empty-stream', 0, 1, { ifMatch: fromStream.etag })).length, 0);
    });

    test('streamed put of many odd-sized chunks reads back identical', async () => {
      const data = bytes(300_001, 12);
      const info = await s.put('obj/streamed.bin', chunked(data, 7777));
      assert.equal(info.size, data.length);
      assert.deepEqual(await s.read('obj/streamed.bin', 0, data.length), data);
      assert.deepEqual(await s.read('obj/streamed.bin', 65_530, 131_080), data.subarray(65_530, 131_080));
    });

    test('list with prefix, across pages', async () => {
      for (const p of ['list/a/1', 'list/a/2', 'list/a/3', 'list/b/1', 'list/ab', 'other/x']) {
        await s.put(p, Buffer.from(p));
      }
      assert.deepEqual(await paths(s, 'list/a/'), ['list/a/1', 'list/a/2', 'list/a/3']);
      assert.deepEqual(await paths(s, 'list/a'), ['list/a/1', 'list/a/2', 'list/a/3', 'list/ab']);
      assert.deepEqual(await paths(s, 'list/'), ['list/a/1', 'list/a/2', 'list/a/3', 'list/ab', 'list/b/1']);
      assert.deepEqual(await paths(s, 'nothing-here/'), []);
      const all = await paths(s);
      for (const p of ['list/a/1', 'list/ab', 'other/x', 'obj/one.bin']) assert.ok(all.includes(p), p);
      for await (const b of s.list('list/b/')) {
        assert.equal(b.size, 'list/b/1'.length);
        assert.equal(b.etag, (await s.stat(b.path))?.etag);
      }
      if (h.requests) {
        // maxresults=2: five objects under list/ need three pages.
        const pages = h.requests.filter(
          (r) => r.url.includes('comp=list') && r.url.includes('prefix=tenant%2Fa%2Flist%2F&'),
        );
        assert.ok(pages.length >= 3, `expected paged listing, saw ${pages.length} request(s)`);
        assert.ok(pages.some((r) => r.url.includes('marker=')));
      }
    });

    test('ETag changes on overwrite; ifMatch and ifNoneMatch', async () => {
      const v1 = await s.put('cond/x', Buffer.from('one'));
      const v2 = await s.put('cond/x', Buffer.from('two!'));
      assert.notEqual(v1.etag, v2.etag);
      assert.equal((await s.stat('cond/x'))?.etag, v2.etag);
      await assert.rejects(
        s.put('cond/x', Buffer.from('three'), { ifNoneMatch: '*' }),
        code(StoreErrorCode.PRECONDITION),
      );
      await assert.rejects(
        s.put('cond/x', Buffer.from('three'), { ifMatch: v1.etag }),
        code(StoreErrorCode.PRECONDITION),
      );
      assert.equal((await s.read('cond/x', 0, 100)).toString(), 'two!');
      const v3 = await s.put('cond/x', Buffer.from('three'), { ifMatch: v2.etag });
      assert.equal((await s.read('cond/x', 0, 100, { ifMatch: v3.etag })).toString(), 'three');
      await assert.rejects(s.read('cond/x', 0, 100, { ifMatch: v2.etag }), code(StoreErrorCode.PRECONDITION));
      await assert.rejects(
        s.read('cond/x', 50, 100, { ifMatch: v2.etag }),
        code(StoreErrorCode.PRECONDITION),
      );
      const fresh = await s.put('cond/new', Buffer.from('n'), { ifNoneMatch: '*' });
      assert.equal(fresh.size, 1);
      await assert.rejects(
        s.put('cond/absent', Buffer.from('n'), { ifMatch: v3.etag }),
        code(StoreErrorCode.PRECONDITION),
      );
      assert.equal(await s.stat('cond/absent'), undefined);
    });

    test('delete, with and without a version pin', async () => {
      const v = await s.put('del/x', Buffer.from('x'));
      await s.put('del/y', Buffer.from('y'));
      await assert.rejects(
        s.delete('del/x', { ifMatch: '"0x0000000000000000"' }),
        code(StoreErrorCode.PRECONDITION),
      );
      await s.delete('del/x', { ifMatch: v.etag });
      await s.delete('del/y');
      assert.equal(await s.stat('del/x'), undefined);
      assert.deepEqual(await paths(s, 'del/'), []);
      await assert.rejects(s.delete('del/x'), code(StoreErrorCode.NOT_FOUND));
    });

    test('missing objects and invalid paths', async () => {
      assert.equal(await s.stat('missing/x'), undefined);
      await assert.rejects(s.read('missing/x', 0, 10), code(StoreErrorCode.NOT_FOUND));
      await assert.rejects(s.read('missing/x', 0, 0), code(StoreErrorCode.NOT_FOUND));
      for (const bad of ['', '/', '../x', 'a/../../b', 'a\\b']) {
        await assert.rejects(s.put(bad, Buffer.from('x')), code(StoreErrorCode.INVALID_PATH), bad);
      }
    });

    test('awkward object names round-trip through put, stat, read and list', async () => {
      const names = [
        'names/dir with space/file name.txt',
        'names/ünïcödé/数据/🙂.bin',
        'names/hash#and?query.txt',
        'names/percent%20literal%2F.txt',
        "names/quote'paren(1)*!.txt",
        'names/plus+equals=amp&semi;.txt',
        'names/tilde~at@dollar$comma,colon:.txt',
      ];
      for (const [i, n] of names.entries()) {
        const info = await s.put(n, Buffer.from(`content ${i}`));
        assert.equal(info.path, n);
        assert.equal((await s.stat(n))?.size, `content ${i}`.length, n);
        assert.equal((await s.read(n, 0, 100)).toString(), `content ${i}`, n);
      }
      assert.deepEqual(await paths(s, 'names/'), [...names].sort());
      assert.deepEqual(await paths(s, 'names/hash#'), ['names/hash#and?query.txt']);
    });

    test('atomic put: a failing source leaves the previous object', async () => {
      const old = await s.put('atomic/fail', bytes(5000, 1));
      async function* broken(): AsyncGenerator<Uint8Array> {
        yield bytes(200_000, 2);
        throw new Error('source died');
      }
      await assert.rejects(
        s.put('atomic/fail', broken()),
        (e: unknown) =>
          isMembraneError(e, StoreErrorCode.IO) && (e.cause as Error)?.message === 'source died',
      );
      const st = await s.stat('atomic/fail');
      assert.equal(st?.etag, old.etag);
      assert.deepEqual(await s.read('atomic/fail', 0, 10_000), bytes(5000, 1));
      assert.deepEqual(await paths(s, 'atomic/'), ['atomic/fail']);
    });

    test('atomic put: readers see the previous object until the new one is committed', async () => {
      const oldData = bytes(5000, 3);
      const newData = bytes(400_000, 4);
      const old = await s.put('atomic/swap', oldData);
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      let reached!: () => void;
      const midway = new Promise<void>((r) => {
        reached = r;
      });
      async function* slow(): AsyncGenerator<Uint8Array> {
        yield newData.subarray(0, 200_000);
        reached();
        await gate;
        yield newData.subarray(200_000);
      }
      const pending = s.put('atomic/swap', slow());
      await midway;
      if (h.requests) await until(() => h.requests!.some((r) => r.url.includes('comp=block&')));
      assert.equal((await s.stat('atomic/swap'))?.etag, old.etag);
      assert.deepEqual(await s.read('atomic/swap', 0, 1_000_000), oldData);
      release();
      const info = await pending;
      assert.notEqual(info.etag, old.etag);
      assert.deepEqual(await s.read('atomic/swap', 0, 1_000_000, { ifMatch: info.etag }), newData);
    });

    test('preconditions hold at commit time against a concurrent writer', async () => {
      const data = bytes(400_000, 5);
      const interfering = (p: string, what: string) =>
        async function* (): AsyncGenerator<Uint8Array> {
          yield data.subarray(0, 100_000);
          yield data.subarray(100_000, 200_000);
          await s.put(p, Buffer.from(what)); // lands while our upload is in progress
          yield data.subarray(200_000);
        };
      await assert.rejects(
        s.put('race/once', interfering('race/once', 'winner')(), { ifNoneMatch: '*' }),
        code(StoreErrorCode.PRECONDITION),
      );
      assert.equal((await s.read('race/once', 0, 100)).toString(), 'winner');

      const base = await s.put('race/cas', Buffer.from('base'));
      await assert.rejects(
        s.put('race/cas', interfering('race/cas', 'other')(), { ifMatch: base.etag }),
        code(StoreErrorCode.PRECONDITION),
      );
      assert.equal((await s.read('race/cas', 0, 100)).toString(), 'other');
    });

    test('a core-sealed object is read back in random ranges through ObjectReader', async () => {
      const keyring = dekKeyring(randomBytes(32));
      const binding = { datasource: 'ledgers', path: 'org-a/ledger.csv' };
      const plain = bytes(300_000, 6);
      const sealed = await sealBuffer(plain, { keyring, binding, frameLength: 4096 });
      const info = await s.put('sealed/org-a/ledger.csv', sealed);
      const fetch = (a: number, b: number) => s.read('sealed/org-a/ledger.csv', a, b, { ifMatch: info.etag });
      const reader = await ObjectReader.open(fetch, { keyring, expect: binding });
      try {
        const layout = reader.layout(info.size);
        assert.equal(layout.plaintextSize, plain.length);
        const rand = rng(42);
        for (let i = 0; i < 40; i++) {
          const a = Math.floor(rand() * plain.length);
          const b = Math.min(plain.length + 100, a + 1 + Math.floor(rand() * 20_000));
          assert.deepEqual(await reader.read(layout, a, b, fetch), plain.subarray(a, b), `[${a}, ${b})`);
        }
        assert.deepEqual(await reader.read(layout, 0, plain.length, fetch), plain);
      } finally {
        reader.close();
      }
    });
  });
}

// ---------------------------------------------------------------- azure-blob specifics

describe('azure-blob against Azurite', () => {
  test('a 20 MiB object goes up as staged blocks plus one block list, and reads back identical', async () => {
    const az = await azurite();
    const proxy = await startProxy(az.port, az.account);
    const s = await azureStore({ url: proxy.url }, { blockSize: 1024 * 1024, uploadConcurrency: 3 });
    const data = bytes(20 * 1024 * 1024, 7);
    const info = await s.put('big/20mib.bin', chunked(data, 300_000), { sizeHint: data.length });
    assert.equal(info.size, data.length);
    const puts = proxy.requests.filter((r) => r.method === 'PUT' && r.url.includes('/big/20mib.bin'));
    assert.equal(puts.filter((r) => r.url.includes('comp=block&')).length, 20);
    assert.equal(puts.filter((r) => r.url.includes('comp=blocklist')).length, 1);
    assert.equal(puts.length, 21, 'no single-shot Put Blob for a multi-block object');
    const back = await s.read('big/20mib.bin', 0, data.length + 1);
    assert.equal(
      createHash('sha256').update(back).digest('hex'),
      createHash('sha256').update(data).digest('hex'),
    );
    const rand = rng(7);
    for (let i = 0; i < 10; i++) {
      const a = Math.floor(rand() * data.length);
      const b = a + Math.floor(rand() * 3 * 1024 * 1024);
      assert.deepEqual(await s.read('big/20mib.bin', a, b), data.subarray(a, Math.min(b, data.length)));
    }
    // An in-memory buffer larger than a block is also staged (zero-copy slices).
    const small = await azureStore({ url: proxy.url }, { blockSize: 64 * 1024 });
    const before = proxy.requests.length;
    await small.put('big/buffer.bin', data.subarray(0, 200_000));
    assert.equal(proxy.requests.slice(before).filter((r) => r.url.includes('comp=block&')).length, 4);
    assert.deepEqual(await small.read('big/buffer.bin', 0, 300_000), data.subarray(0, 200_000));
  });

  test('openStore builds either store from one config shape', async () => {
    const az = await azurite();
    const seeded = await azureStore({ container: 'openstore' });
    await seeded.put('hello.txt', Buffer.from('hi'));
    const s = openStore({
      type: 'azure-blob',
      url: `${az.url}/`,
      container: 'openstore',
      auth: sharedKey(az),
    });
    assert.equal(s.kind, 'azure-blob');
    assert.equal((await s.read('hello.txt', 0, 10)).toString(), 'hi');
    await (s as AzureBlobStore).close();
    const dir = await mkdtemp(join(tmpdir(), 'membrane-openstore-'));
    closers.push(() => rm(dir, { recursive: true, force: true }));
    assert.equal(openStore({ type: 'fs', path: dir }).kind, 'fs');
    assert.throws(() => openStore({ type: 'nope' } as never), code('STORE_CONFIG'));
  });

  test('SharedKey with a wrong key: STORE_AUTH, actionable, not retried, no secret in the message', async () => {
    const az = await azurite();
    const proxy = await startProxy(az.port, az.account);
    await azureStore({ container: 'badkey' });
    const wrongKey = randomBytes(64).toString('base64');
    const s = await azureStore({
      container: 'badkey',
      url: proxy.url,
      auth: { kind: 'shared-key', account: az.account, key: wrongKey },
    });
    const n0 = proxy.requests.length;
    const err = await s.put('x', Buffer.from('x')).then(
      () => assert.fail('expected STORE_AUTH'),
      (e: unknown) => e as Error,
    );
    assert.ok(isMembraneError(err, StoreErrorCode.AUTH), String(err));
    assert.match(err.message, /403/);
    assert.match(err.message, /account name .*key/);
    assert.ok(!err.message.includes(wrongKey) && !err.message.includes(wrongKey.slice(0, 12)));
    assert.ok(!err.message.includes(az.key.slice(0, 12)));
    assert.equal(proxy.requests.length - n0, 1, '403 must not be retried');
    assert.throws(
      () =>
        new AzureBlobStore({
          url: az.url,
          container: 'badkey',
          auth: { kind: 'shared-key', account: az.account, key: 'not base64!' },
        }),
      (e: unknown) =>
        isMembraneError(e, StoreErrorCode.AUTH) && !(e as Error).message.includes('not base64!'),
    );
  });

  test('SAS: container and account SAS work; read-only, expired and wrong-protocol SAS are STORE_AUTH without the token', async () => {
    const az = await azurite();
    const container = 'sasmodes';
    const admin = await azureStore({ container });
    await admin.put('doc.txt', Buffer.from('shared'));
    const base = { account: az.account, key: az.key, container, protocol: 'https,http' as const };
    const mk = (sas: string) => azureStore({ container, auth: { kind: 'sas', sas } });

    const acct = await mk(
      `?${accountSas({ account: az.account, key: az.key, permissions: 'rwdlac', expiresOn: hour(), protocol: 'https,http' })}`,
    );
    assert.equal((await acct.read('doc.txt', 0, 100)).toString(), 'shared');
    await acct.put('by-account-sas.txt', Buffer.from('ok'));

    const readOnly = await mk(containerSas({ ...base, permissions: 'rl', expiresOn: hour() }));
    assert.equal((await readOnly.read('doc.txt', 0, 100)).toString(), 'shared');
    assert.ok((await paths(readOnly)).includes('by-account-sas.txt'));
    const refused = [
      readOnly.put('nope.txt', Buffer.from('x')).catch((e: unknown) => e),
      (
        await mk(
          containerSas({
            ...base,
            permissions: 'rl',
            expiresOn: new Date(Date.now() - 60_000),
            startsOn: new Date(Date.now() - 3600_000),
          }),
        )
      )
        .read('doc.txt', 0, 10)
        .catch((e: unknown) => e),
      (await mk(containerSas({ ...base, permissions: 'rl', expiresOn: hour(), protocol: 'https' })))
        .read('doc.txt', 0, 10)
        .catch((e: unknown) => e),
    ];
    for (const p of refused) {
      const e = (await p) as Error;
      assert.ok(isMembraneError(e, StoreErrorCode.AUTH), String(e));
      assert.match(e.message, /SAS token/);
      assert.doesNotMatch(e.message, /sig=[^<]/);
      assert.doesNotMatch(e.message, /\?|se=|sp=/);
    }
    assert.throws(
      () =>
        new AzureBlobStore({
          url: `${az.url}?sv=2021-08-06&sig=SECRETSIG`,
          container,
          auth: { kind: 'anonymous' },
        }),
      (e: unknown) => isMembraneError(e, 'STORE_CONFIG') && !(e as Error).message.includes('SECRETSIG'),
    );
    assert.throws(
      () => new AzureBlobStore({ url: az.url, container, auth: { kind: 'sas', sas: 'sv=2021-08-06&sp=r' } }),
      code('STORE_CONFIG'),
    );
  });

  test('anonymous access reads a public container and is refused on a private one', async () => {
    const az = await azurite();
    const admin = new AzureBlobStore({ url: az.url, container: 'public', auth: sharedKey(az) });
    closers.push(() => admin.close());
    assert.equal(await admin.createContainerIfMissing({ publicAccess: 'container' }), true);
    await admin.put('open/readme.txt', Buffer.from('public data'));
    const anon = await azureStore({ container: 'public', auth: { kind: 'anonymous' } });
    assert.deepEqual(await paths(anon), ['open/readme.txt']);
    assert.equal((await anon.read('open/readme.txt', 7, 100)).toString(), 'data');
    await assert.rejects(anon.put('open/x', Buffer.from('x')), code(StoreErrorCode.AUTH));
    const priv = await azureStore({ container: 'private', auth: { kind: 'anonymous' } });
    // Azurite answers 403 here (Azure itself may answer 404: the message then says so).
    await assert.rejects(
      paths(priv),
      (e: unknown) => code(StoreErrorCode.AUTH)(e) && /anonymous/.test((e as Error).message),
    );
  });

  test('a missing container is reported as such', async () => {
    const az = await azurite();
    const s = new AzureBlobStore({ url: az.url, container: 'does-not-exist', auth: sharedKey(az) });
    closers.push(() => s.close());
    await assert.rejects(
      paths(s),
      (e: unknown) =>
        isMembraneError(e, StoreErrorCode.NOT_FOUND) &&
        /container 'does-not-exist'/.test((e as Error).message),
    );
    assert.throws(
      () => new AzureBlobStore({ url: az.url, container: 'Bad_Name', auth: sharedKey(az) }),
      code('STORE_CONFIG'),
    );
  });

  test('retries: 503 twice then success; 429 honours Retry-After; resets; persistent 500 gives up', async () => {
    const az = await azurite();
    const proxy = await startProxy(az.port, az.account);
    const delays: number[] = [];
    const s = await azureStore(
      { container: 'retries', url: proxy.url },
      { maxAttempts: 4, baseDelayMs: 10, sleep: async (ms) => void delays.push(ms) },
    );
    const failFirst = (n: number, fault: Fault) => {
      let left = n;
      proxy.plan = () => (left-- > 0 ? fault : 'forward');
    };

    failFirst(2, { status: 503 });
    let n0 = proxy.requests.length;
    await s.put('r/one', Buffer.from('one'));
    assert.equal(proxy.requests.length - n0, 3);
    assert.equal(delays.length, 2);
    assert.ok(delays[1] >= delays[0] / 2, 'backoff grows (within jitter)');

    failFirst(1, { status: 429, headers: { 'retry-after': '3' } });
    delays.length = 0;
    assert.equal((await s.read('r/one', 0, 10)).toString(), 'one');
    assert.deepEqual(delays.length, 1);
    assert.ok(delays[0] >= 3000, `Retry-After honoured (slept ${delays[0]} ms)`);

    failFirst(2, 'reset');
    n0 = proxy.requests.length;
    assert.equal((await s.stat('r/one'))?.size, 3);
    assert.equal(proxy.requests.length - n0, 3);

    failFirst(100, { status: 500 });
    n0 = proxy.requests.length;
    await assert.rejects(
      s.read('r/one', 0, 10),
      (e: unknown) =>
        isMembraneError(e, StoreErrorCode.IO) && /500.*after 4 attempt/.test((e as Error).message),
    );
    assert.equal(proxy.requests.length - n0, 4);

    failFirst(100, { status: 404 });
    n0 = proxy.requests.length;
    await assert.rejects(s.read('r/one', 0, 10), code(StoreErrorCode.NOT_FOUND));
    assert.equal(proxy.requests.length - n0, 1, 'client errors are not retried');
    proxy.plan = () => 'forward';
  });

  test('a commit whose response was lost is recognised as ours on retry', async () => {
    const az = await azurite();
    const proxy = await startProxy(az.port, az.account);
    const s = await azureStore(
      { container: 'lostresponse', url: proxy.url },
      { sleep: async () => {}, blockSize: 64 * 1024 },
    );
    let dropped = 0;
    proxy.plan = (req) => (req.method === 'PUT' && dropped++ === 0 ? 'drop-response' : 'forward');
    const single = await s.put('once/small', Buffer.from('mine'), { ifNoneMatch: '*' });
    assert.equal(single.size, 4);
    assert.equal((await s.read('once/small', 0, 10, { ifMatch: single.etag })).toString(), 'mine');

    const data = bytes(200_000, 8);
    let seen = 0;
    proxy.plan = (req) => (req.url?.includes('comp=blocklist') && seen++ === 0 ? 'drop-response' : 'forward');
    const multi = await s.put('once/large', data, { ifNoneMatch: '*' });
    assert.equal(seen, 2, 'block list was sent twice');
    assert.deepEqual(await s.read('once/large', 0, 300_000, { ifMatch: multi.etag }), data);

    // ...while a real competitor still loses: the object is not ours.
    await assert.rejects(
      s.put('once/large', Buffer.from('late'), { ifNoneMatch: '*' }),
      code(StoreErrorCode.PRECONDITION),
    );
    // A delete retried after its first attempt went through is a success.
    let dels = 0;
    proxy.plan = (req) => (req.method === 'DELETE' && dels++ === 0 ? 'drop-response' : 'forward');
    await s.delete('once/small');
    assert.equal(await s.stat('once/small'), undefined);
    proxy.plan = () => 'forward';
  });
});

// ---------------------------------------------------------------- bearer (mock service)

describe('azure-blob bearer auth (mock endpoint)', () => {
  test('sends Authorization: Bearer with x-ms-version; a 401 is STORE_AUTH without the token', async () => {
    const seen: { auth?: string; version?: string }[] = [];
    const server = createServer((req, res) => {
      seen.push({ auth: req.headers.authorization, version: req.headers['x-ms-version'] as string });
      if (req.headers.authorization !== 'Bearer good-token') {
        res.writeHead(401, {
          'x-ms-error-code': 'InvalidAuthenticationInfo',
          'content-type': 'application/xml',
        });
        res.end(
          '<?xml version="1.0"?><Error><Code>InvalidAuthenticationInfo</Code><Message>Server failed to authenticate the request. Bearer bad-token rejected\nRequestId:1</Message></Error>',
        );
        return;
      }
      res.writeHead(200, { 'content-length': '5', etag: '"0x1"', 'last-modified': new Date().toUTCString() });
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const good = new AzureBlobStore({
        url,
        container: 'data',
        auth: { kind: 'bearer', token: async () => 'good-token' },
      });
      const info = await good.stat('a/b.bin');
      assert.equal(info?.size, 5);
      assert.equal(seen[0].auth, 'Bearer good-token');
      assert.match(seen[0].version ?? '', /^\d{4}-\d{2}-\d{2}$/);
      await good.close();

      const bad = new AzureBlobStore({
        url,
        container: 'data',
        auth: { kind: 'bearer', token: async () => 'bad-token' },
      });
      const err = await bad.read('a/b.bin', 0, 1).catch((e: unknown) => e as Error);
      assert.ok(isMembraneError(err, StoreErrorCode.AUTH), String(err));
      assert.match(err.message, /audience/);
      assert.ok(!err.message.includes('bad-token'), err.message);
      await bad.close();

      const broken = new AzureBlobStore({
        url,
        container: 'data',
        auth: {
          kind: 'bearer',
          token: async () => {
            throw new Error('IMDS unreachable');
          },
        },
      });
      await assert.rejects(broken.stat('x'), code(StoreErrorCode.AUTH));
      await broken.close();
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
