/**
 * The privacy-proxy contract (proxies/proxy.ts), checked for every registered kind with
 * real components (kernel FUSE mounts, real sockets), through the runtime's own start loop
 * (runtime/proxy-set.ts): start reaches the endpoint; close() is idempotent and releases
 * it; a failed start rejects with a typed code and leaves nothing mounted, listening or on
 * disk; start and stop are audited; no key bytes reach a log line or an audit record.
 *
 * To add a kind: add one row to KINDS (the last test fails until every kind of
 * runtime/proxy-kinds.ts has one).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { isMembraneError } from '../../policy/errors.js';
import { type CleanRoomSpec, parseSpec } from '../../policy/spec.js';
import { dekKeyring, sealBuffer } from '../../proxies/core/index.js';
import type { AuditEvent, ProxyKind, ProxyKindModule, RunningProxy } from '../../proxies/proxy.js';
import { PROXY_KINDS } from '../../runtime/proxy-kinds.js';
import { ProxySet } from '../../runtime/proxy-set.js';
import { noopMeter } from '../../runtime/telemetry.js';

const run = promisify(execFile);

/** What a kind's row provides: a spec with one working entry, and specs whose start must fail. */
interface KindCase {
  kind: ProxyKind;
  /** The spec (its first entry of this kind is started) and the released DEKs it needs. */
  makeEntry(tmp: string): Promise<{ spec: CleanRoomSpec; deks: Map<string, Buffer> }>;
  /** Use the endpoint as an application would; resolves when it behaved. */
  reach(p: RunningProxy): Promise<void>;
  /** Something that makes the proxy log and audit (e.g. a tampered object); optional. */
  provoke?(p: RunningProxy): Promise<void>;
  /** Starts that must fail, each with its typed code. */
  failures(
    tmp: string,
  ): Promise<Array<{ why: string; spec: CleanRoomSpec; deks: Map<string, Buffer>; code: string }>>;
}

// ------------------------------------------------------------------ blob-volume

const LEDGER = Buffer.from('id,amount\n1,10\n2,20\n');

function volumeSpec(tmp: string, o: { key?: string; mount?: string } = {}): CleanRoomSpec {
  return parseSpec(
    JSON.stringify({
      version: 1,
      attestation: { provider: 'virtual', allowInsecureVirtual: true, virtualPolicyFile: 'p.rego' },
      keys: { keks: [], deks: [{ name: o.key ?? 'dek-a', source: { kind: 'file', path: 'dek.key' } }] },
      datasources: [
        {
          name: 'ledger',
          store: { type: 'fs', path: join(tmp, 'store') },
          protection: { mode: 'secure', key: o.key ?? 'dek-a' },
          mount: o.mount ?? join(tmp, 'mnt', 'ledger'),
        },
      ],
    }),
  );
}

const blobVolume: KindCase = {
  kind: 'blob-volume',
  async makeEntry(tmp) {
    const dek = randomBytes(32);
    const store = join(tmp, 'store');
    await mkdir(store, { recursive: true });
    const seal = (path: string) =>
      sealBuffer(LEDGER, { keyring: dekKeyring(dek), binding: { datasource: 'ledger', path } });
    await writeFile(join(store, 'a.csv'), await seal('a.csv'));
    const bad = await seal('tampered.csv');
    bad[bad.length - 20]! ^= 1; // inside the final frame's ciphertext or tag
    await writeFile(join(store, 'tampered.csv'), bad);
    return { spec: volumeSpec(tmp), deks: new Map([['dek-a', dek]]) };
  },
  async reach(p) {
    assert.equal(p.endpoint.type, 'mount');
    if (p.endpoint.type !== 'mount') return;
    assert.deepEqual(await readFile(join(p.endpoint.path, 'a.csv')), LEDGER);
  },
  async provoke(p) {
    if (p.endpoint.type !== 'mount') return;
    await assert.rejects(readFile(join(p.endpoint.path, 'tampered.csv')), { code: 'EIO' });
  },
  async failures(tmp) {
    const busy = join(tmp, 'busy');
    await mkdir(busy, { recursive: true });
    // The store must exist (a missing datasource store is its own refusal, STORE_NOT_FOUND).
    await mkdir(join(tmp, 'store'), { recursive: true });
    await writeFile(join(busy, 'something'), 'x');
    const dek = randomBytes(32);
    return [
      {
        why: 'the mountpoint is not empty',
        spec: volumeSpec(tmp, { mount: busy }),
        deks: new Map([['dek-a', dek]]),
        code: 'VOLUME_MOUNT_FAILED',
      },
      {
        why: 'its DEK was not released',
        spec: volumeSpec(tmp, { key: 'dek-missing' }),
        deks: new Map([['dek-a', dek]]),
        code: 'PROXY_UNKNOWN_DEK',
      },
    ];
  },
};

// ------------------------------------------------------------------ http-egress

/** A loopback upstream that answers every request with its method and path. */
const upstream = createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end(`${req.method} ${req.url}`));
});
const upstreamPort = new Promise<number>((ok) =>
  upstream.listen(0, '127.0.0.1', () => ok((upstream.address() as AddressInfo).port)),
);
after(() => upstream.close());

async function egressSpec(tmp: string, o: { dek?: string; schema?: string } = {}): Promise<CleanRoomSpec> {
  const port = await upstreamPort;
  return parseSpec(
    JSON.stringify({
      version: 1,
      runtime: { auditLog: join(tmp, 'audit.log') },
      attestation: { provider: 'virtual', allowInsecureVirtual: true, virtualPolicyFile: 'p.rego' },
      keys: { keks: [], deks: [{ name: o.dek ?? 'dek-a', source: { kind: 'file', path: 'dek.key' } }] },
      network: {
        http: {
          outbound: {
            mode: 'open',
            allow: [
              { host: '127.0.0.1', ports: [port], methods: ['GET'], paths: ['/ok/**'] },
              ...(o.schema ? [{ host: 'schema.test', inspect: { schema: o.schema, action: 'block' } }] : []),
              { host: 'sealed.test', mode: 'secure', dek: o.dek ?? 'dek-a' },
            ],
            allowAddresses: [`127.0.0.1:${port}`],
          },
        },
      },
    }),
  );
}

/** One request through the proxy as the application would send it (its environment only). */
function viaProxy(p: RunningProxy, url: string): Promise<{ status: number; body: string; reason?: string }> {
  const proxy = new URL(p.appEnv.HTTP_PROXY ?? '');
  const auth = Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`);
  return new Promise((ok, fail) => {
    const req = httpRequest(
      {
        host: proxy.hostname,
        port: Number(proxy.port),
        path: url,
        headers: { host: new URL(url).host, 'proxy-authorization': `Basic ${auth.toString('base64')}` },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () =>
          ok({
            status: res.statusCode ?? 0,
            body,
            reason: res.headers['membrane-reason'] as string | undefined,
          }),
        );
      },
    );
    req.on('error', fail);
    req.end();
  });
}

const httpEgress: KindCase = {
  kind: 'http-egress',
  async makeEntry(tmp) {
    return { spec: await egressSpec(tmp), deks: new Map([['dek-a', randomBytes(32)]]) };
  },
  async reach(p) {
    assert.equal(p.endpoint.type, 'listen');
    const port = await upstreamPort;
    const r = await viaProxy(p, `http://127.0.0.1:${port}/ok/x`);
    assert.deepEqual([r.status, r.body], [200, 'GET /ok/x']);
  },
  async provoke(p) {
    const port = await upstreamPort;
    const r = await viaProxy(p, `http://127.0.0.1:${port}/not-allowed`);
    assert.equal(r.status, 403);
    assert.ok(r.reason, 'a refusal names its reason');
  },
  async failures(tmp) {
    return [
      {
        why: 'its DEK was not released',
        spec: await egressSpec(tmp, { dek: 'dek-missing' }),
        deks: new Map([['dek-a', randomBytes(32)]]),
        code: 'PROXY_UNKNOWN_DEK',
      },
      {
        why: 'a referenced JSON schema file is missing',
        spec: await egressSpec(tmp, { schema: join(tmp, 'missing.schema.json') }),
        deks: new Map([['dek-a', randomBytes(32)]]),
        code: 'EGRESS_POLICY_INVALID',
      },
      {
        why: 'its decision log cannot be opened',
        spec: await egressSpec(join(tmp, 'no-such-dir')),
        deks: new Map([['dek-a', randomBytes(32)]]),
        code: 'HTTP_PROXY_UNAVAILABLE',
      },
    ];
  },
};

const KINDS: KindCase[] = [blobVolume, httpEgress];

// ------------------------------------------------------------------ kind-neutral machinery

const scratch: string[] = [];
const sets: ProxySet[] = [];
after(async () => {
  // A failed assertion must not leave a proxy listening (the file would never exit) ...
  for (const set of sets) await set.closeAll(() => {}).catch(() => {});
  for (const dir of scratch) {
    // ... nor a mount behind for the next run.
    for (const m of await mountsUnder(dir)) await run('fusermount', ['-u', '-z', m]).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
});

async function tempDir(kind: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `membrane-contract-${kind}-`));
  scratch.push(d);
  return d;
}

async function mountsUnder(dir: string): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/** Inodes of the TCP sockets this process listens on (/proc/net/tcp{,6} state 0A ∩ our fds). */
async function listeningSockets(): Promise<Set<string>> {
  const listening = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(f, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A' && cols[9]) listening.add(cols[9]);
    }
  }
  const ours = new Set<string>();
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && listening.has(m[1]!)) ours.add(m[1]!);
  }
  return ours;
}

function harness(tmp: string, deks: Map<string, Buffer>) {
  const events: AuditEvent[] = [];
  const lines: string[] = [];
  const statusDir = join(tmp, 'status');
  const set = new ProxySet({
    sources: {
      keys: { deks },
      identities: new Map(),
      audit: { emit: (e) => events.push(structuredClone(e)) },
      meter: () => noopMeter,
      log: (l) => lines.push(l),
    },
    statusDir,
  });
  sets.push(set);
  return { set, events, lines, statusDir };
}

async function kindModule(kind: ProxyKind): Promise<ProxyKindModule> {
  const row = PROXY_KINDS.find((r) => r.kind === kind);
  assert.ok(row, `${kind} is registered in runtime/proxy-kinds.ts`);
  return row.load();
}

/** Every way a key could be spelled in text. */
function spellings(key: Buffer): string[] {
  return [key.toString('hex'), key.toString('base64'), key.toString('base64url'), key.toString('latin1')];
}

for (const c of KINDS) {
  test(`${c.kind}: start reaches the endpoint, is audited, and close() is idempotent and releases it`, async () => {
    const tmp = await tempDir(c.kind);
    const { spec, deks } = await c.makeEntry(tmp);
    const h = harness(tmp, deks);
    await mkdir(h.statusDir, { recursive: true });
    const kind = await kindModule(c.kind);
    const entry = kind.entries(spec)[0];
    assert.ok(entry !== undefined, 'the spec has an entry of this kind');
    const before = await listeningSockets();

    const p = await h.set.start(kind, entry);
    assert.equal(p.kind, c.kind);
    assert.equal(p.name, kind.entryName(entry));
    assert.ok(['secure', 'trusted', 'open'].includes(p.mode));
    await c.reach(p);
    if (p.endpoint.type === 'mount') assert.deepEqual(await mountsUnder(p.endpoint.path), [p.endpoint.path]);
    else assert.ok((await listeningSockets()).size > before.size, 'listening');

    // The runtime's side: marker, private state directory, audit record.
    assert.ok(existsSync(join(h.statusDir, `${p.name}.${p.kind}.ready`)));
    const state = await stat(join(h.statusDir, 'proxy-state', p.name));
    assert.equal(state.mode & 0o777, 0o700);
    const started = h.events.filter((e) => e.type === 'proxy.started');
    assert.deepEqual(started, [
      {
        type: 'proxy.started',
        subject: p.name,
        details: { kind: p.kind, mode: p.mode, endpoint: p.endpoint },
      },
    ]);

    await p.drain();
    assert.deepEqual(await h.set.closeAll(() => {}), []);
    await p.close(); // a second close resolves and does nothing more
    await p.close();
    assert.deepEqual(await mountsUnder(tmp), []);
    assert.deepEqual(await listeningSockets(), before);
    assert.deepEqual(
      h.events.filter((e) => e.type.startsWith('proxy.')).map((e) => `${e.type} ${e.subject}`),
      [`proxy.started ${p.name}`, `proxy.stopped ${p.name}`],
    );
    assert.deepEqual(await readdir(h.statusDir), [], 'markers and state directories are gone');
  });

  test(`${c.kind}: a failed start rejects with a typed code and leaves nothing mounted, listening or on disk`, async () => {
    const tmp = await tempDir(c.kind);
    const kind = await kindModule(c.kind);
    for (const f of await c.failures(tmp)) {
      const h = harness(tmp, f.deks);
      await mkdir(h.statusDir, { recursive: true });
      const before = await listeningSockets();
      const entry = kind.entries(f.spec)[0];
      await assert.rejects(
        h.set.start(kind, entry),
        (e) => isMembraneError(e) && e.code === f.code,
        `${f.why}: rejects with ${f.code}`,
      );
      assert.deepEqual(await mountsUnder(tmp), [], `${f.why}: nothing mounted`);
      assert.deepEqual(await listeningSockets(), before, `${f.why}: nothing listening`);
      assert.deepEqual(h.set.running, []);
      assert.deepEqual(h.events, [], `${f.why}: no proxy.started`);
      assert.deepEqual(await h.set.closeAll(() => {}), []);
      assert.deepEqual(await readdir(h.statusDir), [], `${f.why}: no marker, no state directory`);
    }
  });

  test(`${c.kind}: no key bytes in its log lines or audit records`, async () => {
    const tmp = await tempDir(c.kind);
    const { spec, deks } = await c.makeEntry(tmp);
    const h = harness(tmp, deks);
    await mkdir(h.statusDir, { recursive: true });
    const kind = await kindModule(c.kind);
    const p = await h.set.start(kind, kind.entries(spec)[0]);
    await c.reach(p);
    await c.provoke?.(p);
    await h.set.closeAll(() => {});
    const text = [...h.lines, ...h.events.map((e) => JSON.stringify(e))].join('\n');
    if (c.provoke) assert.ok(h.events.length > 2, 'the provocation was audited');
    for (const key of deks.values())
      for (const s of spellings(key)) assert.ok(!text.includes(s), 'a key appears in the log or audit');
  });
}

test('every registered kind has a conformance row', () => {
  assert.deepEqual(
    PROXY_KINDS.map((r) => r.kind),
    KINDS.map((c) => c.kind),
  );
});
