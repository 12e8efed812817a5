/**
 * Defect 12.9 (key release transport): response bodies are capped, every attempt has an
 * overall deadline (a server dripping bytes cannot hold the runtime), and plain http is
 * refused off loopback before anything is dialled. Servers here are local, on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { isMembraneError } from '../../../policy/errors.js';
import { releaseKey } from '../../../skr-client/akv/index.js';
import { http, isLoopbackHost } from '../../../skr-client/http.js';

let server: Server;
let base: string;
const timers = new Set<NodeJS.Timeout>();
const open = new Set<ServerResponse>();

before(async () => {
  server = createServer((req, res) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    if (req.url === '/endless') {
      // An endless body: write as fast as the client reads.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    } else if (req.url === '/drip') {
      // Headers at once, then one byte at a time, each well inside the idle timeout.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      const t = setInterval(() => {
        if (res.destroyed) {
          clearInterval(t);
          timers.delete(t);
        } else res.write(' ');
      }, 100);
      timers.add(t);
    } else {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  for (const t of timers) clearInterval(t);
  for (const r of open) r.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

test('defect 12.9: an endless response body is cut at the cap with a typed error', async () => {
  await assert.rejects(
    http('test service', `${base}/endless`, { retries: 0, timeoutMs: 60_000, maxBodyBytes: 1024 * 1024 }),
    (e: unknown) => {
      assert.ok(isMembraneError(e, 'HTTP_BODY_TOO_LARGE'), String(e));
      assert.match(e.message, /larger than 1048576 bytes/);
      return true;
    },
  );
});

test('defect 12.9: a body dripping one byte at a time fails at the deadline instead of hanging', async () => {
  // The drip (every 100 ms) keeps resetting undici's idle timers; only an overall deadline ends it.
  await assert.rejects(http('test service', `${base}/drip`, { retries: 0, timeoutMs: 1500 }), (e: unknown) =>
    isMembraneError(e, 'HTTP_TIMEOUT'),
  );
});

test('defect 12.9: a small answer is still read whole', async () => {
  const res = await http('test service', `${base}/ok`, { retries: 0 });
  assert.deepEqual(res.json(), { ok: true });
});

const urls: Array<[string, boolean]> = [
  ['http://127.0.0.1:1/x', true],
  ['http://127.1.2.3:1/x', true],
  ['http://[::1]:1/x', true],
  ['http://localhost:1/x', true],
  ['http://10.0.0.1/x', false],
  ['http://kv.vault.azure.example/keys/k', false],
  ['http://169.254.169.254/x', false],
  ['http://[::ffff:10.0.0.1]/x', false],
  ['ftp://127.0.0.1/x', false],
];

for (const [url, ok] of urls) {
  test(`defect 12.9: plain-http rule: ${url} is ${ok ? 'allowed (loopback)' : 'refused before dialling'}`, async () => {
    if (ok) {
      assert.equal(isLoopbackHost(new URL(url).hostname), true);
      return;
    }
    // Refused before any connection: nothing listens at these (and no traffic may leave loopback).
    await assert.rejects(http('test service', url, { retries: 0, timeoutMs: 1000 }), (e: unknown) =>
      isMembraneError(e, 'HTTP_INSECURE_URL'),
    );
  });
}

test('defect 12.9: a Key Vault release over http:// to a non-loopback vault is refused before the call', async () => {
  let asked = false;
  await assert.rejects(
    releaseKey({
      kid: 'http://vault.example/keys/k',
      maaToken: 'x',
      runtime: { privateKey: undefined as never },
      credential: {
        kind: 'static',
        getToken: async () => {
          asked = true;
          return 'bearer-token';
        },
      },
      retries: 0,
    }),
    (e: unknown) => isMembraneError(e, 'HTTP_INSECURE_URL'),
  );
  assert.equal(asked, false, 'no bearer token is even fetched for an insecure vault URL');
});
