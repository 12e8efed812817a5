/**
 * The HTTP egress proxy with real clients over real sockets: curl, wget, python3 urllib
 * and Node (undici fetch through a ProxyAgent). Allowed calls reach their upstream;
 * denied calls get 403 with Membrane-Reason, and their upstream receives no connection
 * at all. Loopback only: names resolve through an injected resolver to 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fetch, ProxyAgent } from 'undici';
import { type HttpEgressServer, startHttpEgress } from '../../proxies/http/server.js';
import { fakeEngine, run, startUpstream, type Upstream } from '../helpers/http-egress.js';

let allowed: Upstream;
let denied: Upstream;
let proxy: HttpEgressServer;

before(async () => {
  allowed = await startUpstream();
  denied = await startUpstream();
  proxy = await startHttpEgress({
    name: 'http-egress',
    engine: fakeEngine({
      rules: [{ host: 'api.test', methods: ['GET', 'POST'] }],
      allowAddresses: [`127.0.0.1:${allowed.port}`],
    }),
    resolver: async () => [{ address: '127.0.0.1', family: 4 }],
  });
});
after(async () => {
  await proxy.close();
  await allowed.close();
  await denied.close();
});

interface Outcome {
  status: number;
  body: string;
  reason: string | undefined;
}
type Client = (url: string, proxyUrl: string) => Promise<Outcome>;

const fromCurlOutput = (out: string): Outcome => {
  // -i: every response head then the body; the last head is the final answer.
  const heads = out.split(/\r\n\r\n/);
  const last = heads.findLast((h) => /^HTTP\/1\.[01] \d{3}/.test(h)) ?? '';
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(last)?.[1] ?? 0);
  const reason = /^membrane-reason:\s*(.*)$/im.exec(last)?.[1]?.trim();
  return { status, body: heads.slice(heads.indexOf(last) + 1).join('\r\n\r\n'), reason };
};

const clients: [string, Client][] = [
  [
    'curl',
    async (url, proxyUrl) =>
      fromCurlOutput((await run('curl', ['-sS', '-i', '--max-time', '30', '-x', proxyUrl, url])).stdout),
  ],
  [
    'wget',
    async (url, proxyUrl) => {
      const r = await run('wget', ['-S', '-O', '-', '--content-on-error', '--tries=1', '--timeout=30', url], {
        http_proxy: proxyUrl,
      });
      // -S prints each response head indented by two spaces; the last head is the answer.
      const lines = r.stderr.split('\n');
      const start = lines.findLastIndex((l) => l.startsWith('  HTTP/'));
      const end = lines.findIndex((l, i) => i > start && !l.startsWith('  '));
      const last = start < 0 ? '' : lines.slice(start, end < 0 ? undefined : end).join('\n');
      return {
        status: Number(/HTTP\/1\.[01] (\d{3})/.exec(last)?.[1] ?? 0),
        body: r.stdout,
        reason: /^ {2}membrane-reason:\s*(.*)$/im.exec(last)?.[1]?.trim(),
      };
    },
  ],
  [
    'python3 urllib',
    async (url, proxyUrl) => {
      const script = `
import sys, urllib.request, urllib.error, json
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": sys.argv[2]}))
try:
    r = opener.open(sys.argv[1], timeout=30); status, hdrs, body = r.status, r.headers, r.read()
except urllib.error.HTTPError as e:
    status, hdrs, body = e.code, e.headers, e.read()
print(json.dumps({"status": status, "reason": hdrs.get("Membrane-Reason"), "body": body.decode()}))`;
      const r = await run('python3', ['-c', script, url, proxyUrl]);
      return JSON.parse(r.stdout) as Outcome;
    },
  ],
  [
    'node fetch (undici ProxyAgent)',
    async (url, proxyUrl) => {
      const u = new URL(proxyUrl);
      const token = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
      // proxyTunnel: false — plain http:// goes as an absolute-form request, as HTTP_PROXY users do.
      const agent = new ProxyAgent({ uri: `http://${u.host}`, token, proxyTunnel: false });
      try {
        const r = await fetch(url, { dispatcher: agent });
        return {
          status: r.status,
          body: await r.text(),
          reason: r.headers.get('membrane-reason') ?? undefined,
        };
      } finally {
        await agent.close();
      }
    },
  ],
];

describe('real HTTP clients through the egress proxy', () => {
  for (const [name, client] of clients) {
    test(`${name}: an allowed call reaches its upstream and gets its answer`, async () => {
      const before = allowed.seen.length;
      const r = await client(`http://api.test:${allowed.port}/v1/items?x=1`, proxy.proxyUrl);
      assert.equal(r.status, 200);
      assert.match(r.body, /hello GET \/v1\/items\?x=1 0/);
      assert.equal(allowed.seen.length, before + 1);
      assert.equal(allowed.seen.at(-1)?.headers.host, `api.test:${allowed.port}`);
      assert.equal(allowed.seen.at(-1)?.headers['proxy-authorization'], undefined);
    });

    test(`${name}: a denied call gets 403 with the reason, and its upstream sees no connection`, async () => {
      const r = await client(`http://evil.test:${denied.port}/steal`, proxy.proxyUrl);
      assert.equal(r.status, 403);
      assert.equal(r.reason, 'default-deny: no rule allows evil.test');
      assert.equal(denied.connections, 0);
    });
  }

  test('a client without the proxy password gets 407 and nothing is dialed', async () => {
    const u = new URL(proxy.proxyUrl);
    const bare = `http://${u.host}`;
    const wrong = `http://membrane:not-the-password@${u.host}`;
    for (const p of [bare, wrong]) {
      const r = fromCurlOutput(
        (await run('curl', ['-sS', '-i', '-x', p, `http://api.test:${denied.port}/`])).stdout,
      );
      assert.equal(r.status, 407);
      assert.match(r.reason ?? '', /^auth: proxy authentication required/);
    }
    assert.equal(denied.connections, 0);
  });
});
