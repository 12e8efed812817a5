/**
 * The runtime's side of the proxy contract without any real proxy: a scripted kind shows
 * the start loop's order, reverse close, audit of each outcome, the application's
 * environment, and the contexts' capabilities (keyrings, never key bytes; typed errors).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isMembraneError, MembraneError } from '../../policy/errors.js';
import type { CleanRoomSpec } from '../../policy/spec.js';
import { openBuffer, sealBuffer } from '../../proxies/core/index.js';
import type { AuditEvent, ProxyContext, ProxyKindModule, RunningProxy } from '../../proxies/proxy.js';
import { createProxyContext } from '../../runtime/proxy-context.js';
import type { ProxyKindRow } from '../../runtime/proxy-kinds.js';
import { ProxySet } from '../../runtime/proxy-set.js';
import { noopMeter } from '../../runtime/telemetry.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function scratch(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'membrane-proxy-set-'));
  dirs.push(d);
  return d;
}

interface FakeEntry {
  name: string;
  env?: Record<string, string>;
  failStart?: boolean;
  failClose?: boolean;
  port?: number;
}

/** A kind whose entries come from `fake` and whose proxies record what happens to them. */
function fakeKind(journal: string[], seen: ProxyContext[] = []): ProxyKindModule<FakeEntry> {
  return {
    kind: 'http-egress',
    entries: (spec) => (spec as unknown as { fake: FakeEntry[] }).fake,
    entryName: (e) => e.name,
    async start(e, ctx) {
      seen.push(ctx);
      if (e.failStart) throw new MembraneError('FAKE_START', `cannot start ${e.name}`);
      journal.push(`start ${e.name}`);
      let closed = false;
      return {
        name: e.name,
        kind: 'http-egress',
        mode: 'open',
        endpoint: { type: 'listen', host: '127.0.0.1', port: e.port ?? 1, protocol: 'http-proxy' },
        appEnv: e.env ?? {},
        drain: async () => {},
        close: async () => {
          if (e.failClose) throw new MembraneError('FAKE_CLOSE', `${e.name} is stuck`);
          if (!closed) journal.push(`close ${e.name}`);
          closed = true;
        },
      } satisfies RunningProxy;
    },
  };
}

function setFor(dir: string, events: AuditEvent[], deks = new Map<string, Buffer>()) {
  return new ProxySet({
    sources: {
      keys: { deks },
      identities: new Map(),
      audit: { emit: (e) => events.push(e) },
      meter: () => noopMeter,
      log: () => {},
    },
    statusDir: dir,
    otherListeners: () => [{ host: '127.0.0.1', port: 8290 }],
  });
}

const rowOf = (kind: ProxyKindModule<FakeEntry>, inSpec = true): ProxyKindRow => ({
  kind: kind.kind,
  inSpec: () => inSpec,
  load: async () => kind as unknown as ProxyKindModule,
});
const specWith = (fake: FakeEntry[]) => ({ fake }) as unknown as CleanRoomSpec;

test('proxies start in entry order and close in reverse; each outcome is audited, a failed close too', async () => {
  const dir = await scratch();
  const journal: string[] = [];
  const events: AuditEvent[] = [];
  const set = setFor(dir, events);
  const kind = fakeKind(journal);
  await set.startAll(specWith([{ name: 'a' }, { name: 'b', failClose: true }, { name: 'c' }]), [rowOf(kind)]);
  assert.deepEqual(await readdir(dir).then((n) => n.sort()), [
    'a.http-egress.ready',
    'b.http-egress.ready',
    'c.http-egress.ready',
    'proxy-state',
  ]);
  const failures = await set.closeAll(() => {});
  assert.deepEqual(journal, ['start a', 'start b', 'start c', 'close c', 'close a']);
  assert.deepEqual(
    failures.map((f) => `${f.name}: ${f.error.message}`),
    ['b: b is stuck'],
  );
  assert.deepEqual(
    events.map((e) => `${e.type} ${e.subject}`),
    [
      'proxy.started a',
      'proxy.started b',
      'proxy.started c',
      'proxy.stopped c',
      'proxy.stop_failed b',
      'proxy.stopped a',
    ],
  );
  assert.equal((events[4]!.details as { code: string }).code, 'FAKE_CLOSE');
  assert.deepEqual(await readdir(dir), [], 'markers and state removed even after a failed close');
});

test('a kind the spec does not use is never loaded', async () => {
  const dir = await scratch();
  const set = setFor(dir, []);
  let loaded = false;
  await set.startAll(specWith([]), [
    {
      kind: 'sql-gate',
      inSpec: () => false,
      load: async () => {
        loaded = true;
        return fakeKind([]) as unknown as ProxyKindModule;
      },
    },
  ]);
  assert.equal(loaded, false);
});

test('a failed start rejects with its own error, removes its state directory, and is not in the set', async () => {
  const dir = await scratch();
  const events: AuditEvent[] = [];
  const seen: ProxyContext[] = [];
  const set = setFor(dir, events);
  const kind = fakeKind([], seen);
  await assert.rejects(
    set.startAll(specWith([{ name: 'ok' }, { name: 'broken', failStart: true }]), [rowOf(kind)]),
    (e) => isMembraneError(e, 'FAKE_START'),
  );
  assert.deepEqual(
    set.running.map((p) => p.name),
    ['ok'],
  );
  assert.equal(existsSync(seen[1]!.stateDir), false);
  assert.equal(existsSync(seen[0]!.stateDir), true);
  await set.closeAll(() => {});
  assert.deepEqual(await readdir(dir), []);
});

test("the application's environment: the spec's, then every proxy's; two proxies disagreeing is refused", async () => {
  const dir = await scratch();
  const set = setFor(dir, []);
  const kind = fakeKind([]);
  await set.startAll(
    specWith([
      { name: 'web', env: { HTTP_PROXY: 'http://127.0.0.1:3128', NO_PROXY: '' } },
      { name: 'db', env: { PGHOST: '127.0.0.1', NO_PROXY: '' } },
    ]),
    [rowOf(kind)],
  );
  assert.deepEqual(set.appEnv({ HTTP_PROXY: 'http://elsewhere', APP: 'x' }), {
    HTTP_PROXY: 'http://127.0.0.1:3128',
    APP: 'x',
    NO_PROXY: '',
    PGHOST: '127.0.0.1',
  });
  await set.start(kind, { name: 'other', env: { PGHOST: '10.0.0.1' } });
  assert.throws(
    () => set.appEnv(),
    (e) => isMembraneError(e, 'PROXY_ENV_CONFLICT') && /'db' and 'other' set PGHOST/.test(e.message),
  );
  await set.closeAll(() => {});
});

test("each proxy sees Membrane's listeners: the health endpoint and the proxies started before it", async () => {
  const dir = await scratch();
  const seen: ProxyContext[] = [];
  const set = setFor(dir, []);
  await set.startAll(
    specWith([
      { name: 'first', port: 4001 },
      { name: 'second', port: 4002 },
    ]),
    [rowOf(fakeKind([], seen))],
  );
  // Asked at start time, the second one's list holds the first; asked now, both.
  assert.deepEqual(
    seen[1]!.ownListeners().map((l) => l.port),
    [8290, 4001, 4002],
  );
  await set.closeAll(() => {});
});

test('a context hands out keyrings, never bytes; unknown names are typed errors that never echo a key', async () => {
  const dir = await scratch();
  const dek = randomBytes(32);
  const recipient = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pub = join(dir, 'r.pub.pem');
  await writeFile(pub, recipient.publicKey.export({ type: 'spki', format: 'pem' }));
  const ctx = await createProxyContext(
    {
      keys: { deks: new Map([['dek-a', dek]]) },
      identities: new Map([['vault', { kind: 'static', getToken: async (r: string) => `token-for-${r}` }]]),
      audit: {
        emit: () => {
          throw new Error('a broken sink');
        },
      },
      meter: () => noopMeter,
      log: () => {},
      stateRoot: join(dir, 'state'),
      ownListeners: () => [],
    },
    'web',
    'http-egress',
  );
  assert.equal((await stat(ctx.stateDir)).mode & 0o777, 0o700);
  // The DEK keyring seals what a keyring over the same DEK opens.
  const sealed = await sealBuffer(Buffer.from('x'), {
    keyring: ctx.dataKey('dek-a'),
    binding: { datasource: 'web', path: 'p' },
  });
  assert.equal(sealed.includes(dek), false);
  assert.throws(
    () => ctx.dataKey('dek-b'),
    (e) =>
      isMembraneError(e, 'PROXY_UNKNOWN_DEK') &&
      /no DEK named 'dek-b' \(declared: dek-a\)/.test(e.message) &&
      !e.message.includes(dek.toString('hex')),
  );
  // A recipient keyring seals but cannot open.
  const toRecipient = await sealBuffer(Buffer.from('y'), {
    keyring: await ctx.recipient(pub),
    binding: { datasource: 'web', path: 'q' },
  });
  await assert.rejects(
    openBuffer(toRecipient, { keyring: await ctx.recipient(pub), expect: { datasource: 'web', path: 'q' } }),
  );
  await assert.rejects(ctx.recipient(join(dir, 'missing.pem')), (e) =>
    isMembraneError(e, 'PROXY_RECIPIENT_INVALID'),
  );
  assert.equal(await ctx.token('vault', 'https://storage.azure.com'), 'token-for-https://storage.azure.com');
  await assert.rejects(ctx.token('nobody', 'r'), (e) => isMembraneError(e, 'PROXY_UNKNOWN_IDENTITY'));
  ctx.audit.emit({ type: 'x' }); // a throwing sink never reaches the proxy
  await ctx.dispose();
  await ctx.dispose();
  assert.equal(existsSync(ctx.stateDir), false);
});
