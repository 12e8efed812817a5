/**
 * DNS rebinding cannot work: the proxy resolves once, checks every answer and dials
 * exactly the checked address. A real stub DNS server on 127.0.0.1 answers a name with a
 * "public" address (a documentation address the test's dial hook maps onto a loopback
 * listener) and then with a loopback address, alternately, and another name with both
 * at once. Over 1,200 requests, the listener on the loopback answer receives no
 * connection at all.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Pool } from 'undici';
import type { Dialer } from '../../proxies/http/ports.js';
import { directDialer, dnsResolver } from '../../proxies/http/resolvers.js';
import { type HttpEgressServer, startHttpEgress } from '../../proxies/http/server.js';
import { fakeEngine, startUpstream, type Upstream } from '../helpers/http-egress.js';
import { type StubDns, startStubDns } from '../helpers/stub-dns.js';

const PUBLIC = '203.0.113.7';
const HIDDEN = '127.0.0.2';
let good: Upstream;
let hidden: Upstream;
let dns: StubDns;
let proxy: HttpEgressServer;
const dialed: string[] = [];

before(async () => {
  good = await startUpstream();
  hidden = await startUpstream({ host: HIDDEN });
  dns = await startStubDns((name, n) => {
    if (name === 'rebind.test') return n % 2 === 0 ? [PUBLIC] : [HIDDEN];
    if (name === 'mixed.test') return [PUBLIC, HIDDEN];
    return [];
  });
  const dial: Dialer = (ip, port) => {
    dialed.push(ip);
    if (ip === PUBLIC) return directDialer('127.0.0.1', good.port);
    if (!ip.startsWith('127.')) throw new Error(`test must never dial ${ip}`);
    return directDialer(ip, port);
  };
  proxy = await startHttpEgress({
    name: 'http-egress',
    auth: false,
    engine: fakeEngine({
      rules: [{ host: 'rebind.test' }, { host: 'mixed.test' }],
      publicForTest: [PUBLIC],
      limits: { requestsPerSecond: 100_000 },
    }),
    resolver: dnsResolver([dns.server], 10_000),
    dial,
  });
});
after(async () => {
  await proxy.close();
  await dns.close();
  await good.close();
  await hidden.close();
});

async function many(host: string, n: number): Promise<Map<number, number>> {
  const pool = new Pool(`http://127.0.0.1:${proxy.port}`, { connections: 8 });
  const statuses = new Map<number, number>();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const r = await pool.request({
        method: 'GET',
        path: `http://${host}:${hidden.port}/secret`,
        headers: { host },
      });
      await r.body.text();
      statuses.set(r.statusCode, (statuses.get(r.statusCode) ?? 0) + 1);
      if (r.statusCode === 403)
        assert.match(
          String(r.headers['membrane-reason']),
          new RegExp(
            `^address\\.loopback: ${host.replace('.', '\\.')} resolves to 127\\.0\\.0\\.2 \\(loopback\\)`,
          ),
        );
    }
  };
  try {
    await Promise.all(Array.from({ length: 8 }, worker));
  } finally {
    await pool.close();
  }
  return statuses;
}

test('a name that answers public then loopback never gets a connection to the loopback answer (1,000 requests)', async () => {
  const statuses = await many('rebind.test', 1000);
  const ok = statuses.get(200) ?? 0;
  const refused = statuses.get(403) ?? 0;
  assert.equal(ok + refused, 1000, JSON.stringify([...statuses]));
  assert.ok(ok > 0 && refused > 0, 'both answers were seen');
  assert.equal(good.seen.length, ok);
  assert.equal(hidden.connections, 0);
  assert.ok((dns.queries.get('rebind.test') ?? 0) >= 1000, 'every request resolved afresh');
});

test('a name that answers public and loopback at once is refused every time (200 requests)', async () => {
  const statuses = await many('mixed.test', 200);
  assert.deepEqual([...statuses], [[403, 200]]);
  assert.equal(hidden.connections, 0);
});

test('no denied address was ever dialed', () => {
  assert.deepEqual(
    dialed.filter((ip) => ip !== PUBLIC),
    [],
  );
});
