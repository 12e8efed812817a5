/**
 * Fail closed: every request the proxy cannot fully judge, or that a limit refuses, gets
 * a clear status and `Membrane-Reason: <rule or check>: <sentence>` — never a pass, and
 * never a connection to an address that was not allowed. Raw bytes over real sockets.
 */
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { EgressLimits } from '../../proxies/http/limits.js';
import type { Dialer } from '../../proxies/http/ports.js';
import { directDialer } from '../../proxies/http/resolvers.js';
import { type HttpEgressServer, startHttpEgress } from '../../proxies/http/server.js';
import { fakeEngine, header, rawRequest, startUpstream, type Upstream } from '../helpers/http-egress.js';

let up: Upstream;
let silent: Upstream;
let proxy: HttpEgressServer;
const dialed: string[] = [];

const NAMES: Record<string, string> = {
  'api.test': '127.0.0.1',
  'private.test': '10.1.2.3',
  'mixed.test': '127.0.0.1',
  'slow-connect.test': '203.0.113.9',
};

const LIMITS: Partial<EgressLimits> = {
  maxHeaderBytes: 4096,
  maxBodyBytes: 1024,
  headersTimeoutMs: 1500,
  connectTimeoutMs: 1500,
};

/** Loopback only; 203.0.113.9 gets a socket that never connects (the connect timeout's stand-in). */
const dial: Dialer = (ip, port) => {
  dialed.push(`${ip}:${port}`);
  if (ip === '203.0.113.9') return new Socket();
  if (!ip.startsWith('127.')) throw new Error(`test must never dial ${ip}`);
  return directDialer(ip, port);
};

before(async () => {
  up = await startUpstream();
  // Accepts connections and reads requests but never answers: the upstream timeout.
  silent = await startUpstream({ handler: () => {} });
  proxy = await startHttpEgress({
    name: 'http-egress',
    auth: false,
    engine: fakeEngine({
      rules: [
        { host: 'blocked.test', verdict: 'deny' },
        { host: 'api.test' },
        { host: 'private.test' },
        { host: 'slow-connect.test' },
        { host: '169.254.169.254' },
        { host: '127.0.0.1' },
      ],
      allowAddresses: ['127.0.0.1'],
      publicForTest: ['203.0.113.9'],
      limits: LIMITS,
      throwOn: 'unevaluable.test',
    }),
    resolver: async (h) => (NAMES[h] ? [{ address: NAMES[h] as string, family: 4 }] : []),
    dial,
  });
});
after(async () => {
  await proxy.close();
  await up.close();
  await silent.close();
});

const req = (line: string, headers: string[] = [], body = '') =>
  `${line}\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n${body}`;

describe('fail-closed answers', () => {
  const rows: [string, () => string | Buffer, number, RegExp][] = [
    [
      'a request line that is not HTTP',
      () => 'GARBAGE\r\n\r\n',
      400,
      /^request: the request could not be parsed/,
    ],
    [
      'an origin-form request (not a proxy request)',
      () => req('GET / HTTP/1.1', ['Host: api.test']),
      400,
      /^request: a proxy request needs an absolute/,
    ],
    [
      'a scheme other than http',
      () => req('GET ftp://api.test/ HTTP/1.1', ['Host: api.test']),
      400,
      /^request: scheme ftp: is not proxied/,
    ],
    [
      'credentials in the URL',
      () => req(`GET http://u:p@api.test:${up.port}/ HTTP/1.1`, ['Host: api.test']),
      400,
      /credentials in the request URL/,
    ],
    [
      'a CONNECT target without a port',
      () => req('CONNECT api.test HTTP/1.1', ['Host: api.test']),
      400,
      /^request: the CONNECT target must be host:port/,
    ],
    [
      'a CONNECT target with port 0',
      () => req('CONNECT api.test:0 HTTP/1.1'),
      400,
      /CONNECT target must be host:port/,
    ],
    [
      'a CONNECT target with port 99999',
      () => req('CONNECT api.test:99999 HTTP/1.1'),
      400,
      /CONNECT target must be host:port/,
    ],
    [
      'a CONNECT target with userinfo',
      () => req('CONNECT user@api.test:443 HTTP/1.1'),
      400,
      /CONNECT target must be host:port/,
    ],
    [
      'a CONNECT target with a path',
      () => req('CONNECT api.test:443/x HTTP/1.1'),
      400,
      /CONNECT target must be host:port/,
    ],
    [
      'a bracketed CONNECT target that is not IPv6',
      () => req('CONNECT [zz]:443 HTTP/1.1'),
      400,
      /CONNECT target must be host:port/,
    ],
    [
      'headers over maxHeaderBytes',
      () => req(`GET http://api.test:${up.port}/ HTTP/1.1`, [`X-Big: ${'a'.repeat(8000)}`]),
      431,
      /^limit\.headers: request headers exceed 4096 bytes/,
    ],
    [
      'header bytes that are not UTF-8',
      () =>
        Buffer.concat([
          Buffer.from(`GET http://api.test:${up.port}/ HTTP/1.1\r\nHost: api.test\r\nX-Name: `),
          Buffer.from([0xff, 0xfe, 0x41]),
          Buffer.from('\r\n\r\n'),
        ]),
      400,
      /^request\.header: header X-Name is not valid UTF-8/,
    ],
    [
      'a body over maxBodyBytes (Content-Length)',
      () =>
        req(
          `POST http://api.test:${up.port}/ HTTP/1.1`,
          ['Host: api.test', 'Content-Length: 2048'],
          'x'.repeat(2048),
        ),
      413,
      /^limit\.body: request body of 2048 bytes exceeds/,
    ],
    [
      'a denied host',
      () => req('GET http://blocked.test/ HTTP/1.1', ['Host: blocked.test']),
      403,
      /^deny\[0\]: blocked\.test is denied by rule 0$/,
    ],
    [
      'a host no rule allows',
      () => req('GET http://nowhere.test/ HTTP/1.1'),
      403,
      /^default-deny: no rule allows nowhere\.test$/,
    ],
    [
      'a rule that cannot be evaluated',
      () => req('GET http://unevaluable.test/ HTTP/1.1'),
      403,
      /^policy: the request could not be evaluated against the policy/,
    ],
    [
      'a name that resolves to a private address',
      () => req('GET http://private.test/ HTTP/1.1'),
      403,
      /^address\.private: private\.test resolves to 10\.1\.2\.3 \(private\)/,
    ],
    [
      'the cloud metadata endpoint',
      () => req('GET http://169.254.169.254/latest/meta-data HTTP/1.1'),
      403,
      /^address\.cloud-metadata: /,
    ],
    ['a name that does not resolve', () => req('GET http://api2.test/ HTTP/1.1'), 403, /^default-deny/],
    [
      'a protocol upgrade (WebSocket)',
      () =>
        req(`GET http://api.test:${up.port}/ws HTTP/1.1`, [
          'Host: api.test',
          'Connection: Upgrade',
          'Upgrade: websocket',
        ]),
      403,
      /^request\.upgrade: protocol upgrades/,
    ],
    [
      'an upstream that never answers',
      () => req(`GET http://api.test:${silent.port}/ HTTP/1.1`, ['Host: api.test']),
      504,
      /^upstream: upstream timed out/,
    ],
    [
      'an upstream connect that never completes',
      () => req('GET http://slow-connect.test/ HTTP/1.1'),
      504,
      /^upstream: connect to 203\.0\.113\.9:80 timed out/,
    ],
  ];
  for (const [what, bytes, status, reason] of rows) {
    test(`${what} gets ${status} with a Membrane-Reason`, async () => {
      const r = await rawRequest(proxy.port, bytes());
      assert.equal(r.status, status, r.head);
      assert.match(header(r.head, 'membrane-reason') ?? '', reason);
    });
  }

  test('a connection to the proxy itself is refused as self before any dial', async () => {
    const n = dialed.length;
    const r = await rawRequest(proxy.port, req(`GET http://127.0.0.1:${proxy.port}/ HTTP/1.1`));
    assert.equal(r.status, 403);
    assert.match(header(r.head, 'membrane-reason') ?? '', /^address\.self: /);
    assert.equal(dialed.length, n);
  });

  test('denied addresses are never dialed', () => {
    assert.deepEqual(
      dialed.filter((d) => !d.startsWith('127.') && !d.startsWith('203.0.113.9:')),
      [],
    );
  });

  test('a chunked body that grows past maxBodyBytes gets 413 and never completes upstream', async () => {
    const before = up.seen.length;
    const chunk = 'x'.repeat(600);
    const body = `${(600).toString(16)}\r\n${chunk}\r\n`.repeat(3) + '0\r\n\r\n';
    const r = await rawRequest(
      proxy.port,
      req(
        `POST http://api.test:${up.port}/upload HTTP/1.1`,
        ['Host: api.test', 'Transfer-Encoding: chunked'],
        body,
      ),
    );
    assert.equal(r.status, 413);
    assert.match(header(r.head, 'membrane-reason') ?? '', /^limit\.body: request body exceeds 1024 bytes/);
    assert.equal(up.seen.length, before);
  });
});

describe('rate, concurrency, tunnel and budget limits', () => {
  async function limited(limits: Partial<EgressLimits>) {
    return startHttpEgress({
      name: 'limited',
      auth: false,
      engine: fakeEngine({ rules: [{ host: 'api.test' }], allowAddresses: ['127.0.0.1'], limits }),
      resolver: async () => [{ address: '127.0.0.1', family: 4 }],
    });
  }

  test('past requestsPerSecond the proxy answers 429', async () => {
    const p = await limited({ requestsPerSecond: 0.001 });
    try {
      const get = req(`GET http://api.test:${up.port}/ HTTP/1.1`, ['Host: api.test']);
      assert.equal((await rawRequest(p.port, get)).status, 200);
      const r = await rawRequest(p.port, get);
      assert.equal(r.status, 429);
      assert.match(
        header(r.head, 'membrane-reason') ?? '',
        /^limit\.rate: more than 0\.001 requests per second/,
      );
    } finally {
      await p.close();
    }
  });

  test('past maxConcurrentRequests the proxy answers 429 while the first is in flight', async () => {
    let release: () => void = () => {};
    let arrived: () => void = () => {};
    const inFlight = new Promise<void>((r) => {
      arrived = r;
    });
    const held = await startUpstream({
      handler: (_q, _b, res) => {
        release = () => res.end('done');
        arrived();
      },
    });
    const p = await limited({ maxConcurrentRequests: 1 });
    try {
      const get = req(`GET http://api.test:${held.port}/ HTTP/1.1`, ['Host: api.test']);
      const first = rawRequest(p.port, get);
      await inFlight;
      const r = await rawRequest(p.port, get);
      assert.equal(r.status, 429);
      assert.match(
        header(r.head, 'membrane-reason') ?? '',
        /^limit\.concurrency: more than 1 requests are in flight/,
      );
      release();
      assert.equal((await first).status, 200);
    } finally {
      await p.close();
      await held.close();
    }
  });

  test('past maxTunnels a CONNECT gets 429', async () => {
    const p = await limited({ maxTunnels: 1 });
    const s = new Socket();
    try {
      await new Promise<void>((resolve, reject) => {
        s.connect(p.port, '127.0.0.1');
        s.once('data', (c: Buffer) =>
          c.toString().startsWith('HTTP/1.1 200') ? resolve() : reject(new Error(c.toString())),
        );
        s.once('error', reject);
        s.write(`CONNECT api.test:${up.port} HTTP/1.1\r\nHost: api.test\r\n\r\n`);
      });
      const r = await rawRequest(p.port, req(`CONNECT api.test:${up.port} HTTP/1.1`));
      assert.equal(r.status, 429);
      assert.match(
        header(r.head, 'membrane-reason') ?? '',
        /^limit\.concurrency: more than 1 tunnels are open/,
      );
    } finally {
      s.destroy();
      await p.close();
    }
  });

  test('once bytesPerDestination is spent the destination is refused with 403', async () => {
    const p = await limited({ bytesPerDestination: 10 });
    try {
      const get = req(`GET http://api.test:${up.port}/ HTTP/1.1`, ['Host: api.test']);
      assert.equal((await rawRequest(p.port, get)).status, 200);
      const r = await rawRequest(p.port, get);
      assert.equal(r.status, 403);
      assert.match(
        header(r.head, 'membrane-reason') ?? '',
        /^limit\.budget: the byte budget for api\.test:\d+ \(10\) is spent/,
      );
    } finally {
      await p.close();
    }
  });
});
