/**
 * The three modes and both ways through CONNECT, with real TLS on loopback:
 *  - open: plain forwarding; CONNECT is a blind tunnel (no interception);
 *  - open + inspection: bodies streamed through the inspector; a finding blocks with 403
 *    before the finding's bytes leave (also inside an intercepted tunnel); report passes;
 *  - trusted: upstream TLS verified by the proxy (plain http:// from the app is carried
 *    over TLS; inner requests of an intercepted tunnel are decided by path);
 *  - secure: what the upstream receives decrypts with the AWS Encryption SDK and the DEK
 *    under the binding context; a sealed answer is opened; a flipped byte is refused.
 * The real run CA, upstream TLS, sealing and inspector; a fake policy engine (fixtures).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { dekKeyring } from '../../proxies/core/index.js';
import type { TlsToolkit } from '../../proxies/http/ports.js';
import { bindingContext, SEALED_CONTENT_TYPE, sealBody } from '../../proxies/http/seal.js';
import { type HttpEgressServer, startHttpEgress } from '../../proxies/http/server.js';
import { loadInspector, loadTlsToolkit } from '../../proxies/http/toolkit.js';
import {
  type Certs,
  fakeEngine,
  header,
  makeCerts,
  oracleDecrypt,
  rawRequest,
  run,
  startUpstream,
  type Upstream,
} from '../helpers/http-egress.js';

let certs: Certs;
let tlsUp: Upstream;
let plainUp: Upstream;
let proxy: HttpEgressServer;
let toolkit: TlsToolkit;
const contexts: string[] = [];
const dek = randomBytes(32);
const keyring = dekKeyring(dek);
const CARD = '4111111111111111';

before(async () => {
  certs = makeCerts();
  // The real toolkit, with the hosts the run CA minted leaves for recorded.
  const real = await loadTlsToolkit();
  toolkit = {
    ...real,
    createRunCa: async (o) => {
      const ca = await real.createRunCa(o);
      return {
        certPem: ca.certPem,
        secureContextFor: (host) => {
          contexts.push(host);
          return ca.secureContextFor(host);
        },
        destroy: () => ca.destroy(),
      };
    },
  };
  tlsUp = await startUpstream({
    certs,
    handler: (req, body, res) => {
      if (req.url?.startsWith('/orders') || req.url?.startsWith('/tampered')) {
        // The upstream answers as a secure-mode peer would: sealed, bound to this exchange's response.
        const path = (req.url ?? '').split('?')[0] as string;
        const ctx = bindingContext({ method: req.method ?? '', host: 'secure.test', path }, 'response');
        const answer = sealBody(
          Readable.from([Buffer.from(`answer to ${body.length} sealed bytes`)]),
          keyring,
          ctx,
        );
        void (async () => {
          const parts: Buffer[] = [];
          for await (const c of answer) parts.push(c as Buffer);
          const sealed = Buffer.concat(parts);
          if (path === '/tampered') sealed[sealed.length - 20] ^= 1;
          res.writeHead(200, { 'content-type': SEALED_CONTENT_TYPE, 'membrane-sealed': 'v1' });
          res.end(sealed);
        })();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`tls hello ${req.method} ${req.url} ${body.length}`);
    },
  });
  plainUp = await startUpstream();
  const tls = { ca: certs.upstreamCa };
  proxy = await startHttpEgress({
    name: 'http-egress',
    auth: false,
    engine: fakeEngine({
      rules: [
        { host: 'open.test' },
        { host: 'api.test', mode: 'trusted', tls, paths: ['/v1/'] },
        { host: 'wrongca.test', mode: 'trusted', tls: { ca: certs.runCa } },
        { host: 'inspect.test', tls, inspect: { pii: ['card'], action: 'block' } },
        { host: 'report.test', inspect: { pii: ['card'], action: 'report' } },
        { host: 'secure.test', mode: 'secure', tls, dek: 'orders' },
      ],
      allowAddresses: ['127.0.0.1'],
    }),
    resolver: async () => [{ address: '127.0.0.1', family: 4 }],
    toolkit,
    inspector: await loadInspector(),
    stateDir: certs.dir,
    keyringFor: (name) => {
      assert.equal(name, 'orders');
      return keyring;
    },
  });
});
after(async () => {
  await proxy.close();
  await tlsUp.close();
  await plainUp.close();
  certs.cleanup();
});

const curl = async (args: string[]) => {
  const r = await run('curl', [
    '-sS',
    '-i',
    '--max-time',
    '30',
    '-x',
    `http://127.0.0.1:${proxy.port}`,
    ...args,
  ]);
  const heads = r.stdout.split('\r\n\r\n');
  const last =
    heads.findLast(
      (h) => /^HTTP\/1\.[01] \d{3}/.test(h) && !/^HTTP\/1\.[01] 200 Connection Established/i.test(h),
    ) ?? '';
  return {
    status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(last)?.[1] ?? 0),
    reason: header(last, 'membrane-reason'),
    body: heads.slice(heads.indexOf(last) + 1).join('\r\n\r\n'),
    stderr: r.stderr,
  };
};
const caFile = (name: 'up-ca.pem' | 'run-ca.pem') => join(certs.dir, name);

describe('open mode', () => {
  test('CONNECT to an open destination without inspection is a blind tunnel (the app verifies the upstream itself)', async () => {
    const seen = contexts.length;
    const r = await curl(['--cacert', caFile('up-ca.pem'), `https://open.test:${tlsUp.port}/plain`]);
    assert.equal(r.status, 200, r.stderr);
    assert.match(r.body, /^tls hello GET \/plain 0/);
    assert.equal(contexts.length, seen, 'no leaf was minted: nothing was intercepted');
  });

  test('a body with a card number split across chunks is blocked before the number leaves', async () => {
    const head = `POST http://inspect.test:${plainUp.port}/upload HTTP/1.1\r\nHost: inspect.test\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const parts = [`${'a'.repeat(999)} `, `${CARD.slice(0, 8)}`, `${CARD.slice(8)} ${'b'.repeat(99)}`];
    const body = parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join('') + '0\r\n\r\n';
    const r = await rawRequest(proxy.port, head + body);
    assert.equal(r.status, 403);
    assert.match(
      header(r.head, 'membrane-reason') ?? '',
      /^inspect: request body contains a card value \(pii\.card at byte 1000\)/,
    );
    assert.ok(!tlsUp.received().includes(CARD.slice(0, 8)));
    assert.ok(!plainUp.received().includes(CARD.slice(0, 8)));
  });

  test('a report-only inspection lets the body through', async () => {
    const r = await curl(['--data-binary', `card=${CARD}`, `http://report.test:${plainUp.port}/form`]);
    assert.equal(r.status, 200);
    assert.equal(plainUp.seen.at(-1)?.body.toString(), `card=${CARD}`);
  });

  test('inside an intercepted tunnel the inspector blocks the same body, and a clean one passes', async () => {
    const url = `https://inspect.test:${tlsUp.port}/upload`;
    const bad = await curl(['--cacert', proxy.caFile as string, '--data-binary', `n=${CARD}`, url]);
    assert.equal(bad.status, 403, bad.stderr);
    assert.match(bad.reason ?? '', /^inspect: /);
    const good = await curl(['--cacert', proxy.caFile as string, '--data-binary', 'n=4111111111111112', url]);
    assert.equal(good.status, 200, good.stderr);
    assert.match(good.body, /^tls hello POST \/upload 18/);
  });
});

test('plain HTTP inside an intercepted tunnel is decided and inspected request by request', async () => {
  const s = connect(proxy.port, '127.0.0.1');
  try {
    const read = () =>
      new Promise<string>((resolve, reject) => {
        let got = '';
        const on = (c: Buffer) => {
          got += c.toString('latin1');
          if (
            /\r\n\r\n/.test(got) &&
            (!/content-length: (\d+)/i.test(got) ||
              got.split('\r\n\r\n')[1]?.length === Number(/content-length: (\d+)/i.exec(got)?.[1]))
          ) {
            s.off('data', on);
            resolve(got);
          }
        };
        s.on('data', on);
        s.once('error', reject);
      });
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write(`CONNECT report.test:${plainUp.port} HTTP/1.1\r\nHost: report.test\r\n\r\n`);
    assert.match(await read(), /^HTTP\/1\.1 200 Connection Established/);
    s.write('GET /inside HTTP/1.1\r\nHost: report.test\r\n\r\n');
    const answer = await read();
    assert.match(answer, /^HTTP\/1\.1 200/);
    assert.match(answer, /hello GET \/inside 0/);
    assert.ok(
      contexts.every((h) => h !== 'report.test'),
      'no TLS was terminated: the first byte was not a handshake',
    );
  } finally {
    s.destroy();
  }
});

describe('trusted mode', () => {
  test('CONNECT is intercepted with the run CA and re-originated over verified TLS', async () => {
    const r = await curl(['--cacert', proxy.caFile as string, `https://api.test:${tlsUp.port}/v1/items`]);
    assert.equal(r.status, 200, r.stderr);
    assert.match(r.body, /^tls hello GET \/v1\/items 0/);
    assert.ok(contexts.includes('api.test'));
  });

  test('inner requests are decided one by one: a path no rule allows is refused inside the tunnel', async () => {
    const r = await curl([
      '--cacert',
      proxy.caFile as string,
      `https://api.test:${tlsUp.port}/admin/../admin/users`,
    ]);
    assert.equal(r.status, 403);
    assert.equal(r.reason, 'default-deny: no rule allows api.test');
  });

  test('the app may send plain http:// and the proxy carries it over verified TLS', async () => {
    const r = await curl([`http://api.test:${tlsUp.port}/v1/plain`]);
    assert.equal(r.status, 200);
    assert.match(r.body, /^tls hello GET \/v1\/plain 0/);
  });

  test('an upstream whose certificate does not verify is refused with 502', async () => {
    const r = await curl([`http://wrongca.test:${tlsUp.port}/v1/x`]);
    assert.equal(r.status, 502);
    assert.match(r.reason ?? '', /^upstream\.tls: .*unknown CA/);
  });
});

describe('secure mode', () => {
  test('the upstream receives a sealed body that the SDK opens with the DEK and the binding context', async () => {
    const r = await curl([
      '-H',
      'content-type: text/csv',
      '--data-binary',
      'id,amount\n1,10\n',
      `http://secure.test:${tlsUp.port}/orders`,
    ]);
    assert.equal(r.status, 200, r.reason);
    const got = tlsUp.seen.at(-1);
    assert.equal(got?.headers['content-type'], SEALED_CONTENT_TYPE);
    assert.equal(got?.headers['membrane-sealed'], 'v1');
    assert.ok(!got?.body.includes('amount'));
    const { plaintext, messageHeader } = await oracleDecrypt(keyring, got?.body as Buffer);
    assert.equal(plaintext.toString(), 'id,amount\n1,10\n');
    assert.equal(messageHeader.encryptionContext['membrane:method'], 'POST');
    assert.equal(messageHeader.encryptionContext['membrane:host'], 'secure.test');
    assert.equal(messageHeader.encryptionContext['membrane:path'], '/orders');
    assert.equal(messageHeader.encryptionContext['membrane:direction'], 'request');
    assert.equal(messageHeader.encryptionContext['content-type'], 'text/csv');
    // the sealed answer was opened for the app
    assert.equal(r.body, `answer to ${got?.body.length} sealed bytes`);
    assert.match(r.stderr, /^$/);
  });

  test('a sealed answer with one flipped byte is refused with 502 and nothing of it is passed on', async () => {
    const r = await curl(['--data-binary', 'x', `http://secure.test:${tlsUp.port}/tampered`]);
    assert.equal(r.status, 502);
    assert.match(r.reason ?? '', /^seal: sealed body refused/);
    assert.doesNotMatch(r.body, /answer to/);
  });
});

describe('decision log and audit', () => {
  test('every request leaves one canonical JSON line, and refusals are audited as http.denied', async () => {
    const dir = certs.dir;
    const events: { type: string; details?: Record<string, unknown> }[] = [];
    const p = await startHttpEgress({
      name: 'logged',
      auth: false,
      engine: fakeEngine({ rules: [{ host: 'api.test' }], allowAddresses: ['127.0.0.1'] }),
      resolver: async () => [{ address: '127.0.0.1', family: 4 }],
      decisionLog: join(dir, 'decisions.jsonl'),
      audit: { emit: (e) => events.push(e) },
    });
    try {
      await rawRequest(
        p.port,
        `GET http://api.test:${plainUp.port}/a?secret=1 HTTP/1.1\r\nHost: api.test\r\n\r\n`,
      );
      await rawRequest(p.port, 'GET http://evil.test/b HTTP/1.1\r\nHost: evil.test\r\n\r\n');
    } finally {
      await p.close();
    }
    const lines = readFileSync(join(dir, 'decisions.jsonl'), 'utf8').trim().split('\n');
    assert.equal(lines.length, 2);
    const [ok, denied] = lines.map((l) => JSON.parse(l));
    assert.deepEqual(Object.keys(ok), [...Object.keys(ok)].sort(), 'canonical: keys sorted');
    assert.equal(ok.verdict, 'allow');
    assert.equal(ok.rule, 'allow[0]');
    assert.equal(ok.status, 200);
    assert.equal(ok.path, '/a');
    assert.deepEqual(ok.address, { ip: '127.0.0.1', class: 'loopback' });
    assert.ok(ok.bytes.received > 0);
    assert.equal(ok.v, 1);
    assert.equal(ok.policy, 'f'.repeat(64));
    assert.ok(!lines[0]?.includes('secret=1'), 'no query strings in the log');
    assert.equal(denied.verdict, 'deny');
    assert.equal(denied.rule, 'default-deny');
    assert.equal(denied.status, 403);
    assert.equal(denied.address, null);
    assert.deepEqual(
      events.map((e) => [e.type, e.details?.rule]),
      [['http.denied', 'default-deny']],
    );
  });
});
