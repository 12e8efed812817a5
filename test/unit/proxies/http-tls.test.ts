/**
 * Verified upstream TLS (trusted mode, open mode's re-originated leg) and the per-run CA
 * (open mode's terminating leg), against real TLS servers on 127.0.0.1 whose
 * certificates are made here, independently of the code under test.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { isMembraneError } from '../../../policy/errors.js';
import { HttpErrorCode, httpErrorInfo } from '../../../proxies/http/errors.js';
import { createRunCa, type RunCa } from '../../../proxies/http/tls-ca.js';
import { connectUpstreamTls } from '../../../proxies/http/upstream-tls.js';
import {
  dial,
  type Listening,
  listen,
  makeCa,
  makeLeaf,
  silentServer,
  spkiPin,
  type TestCa,
  type TestLeaf,
  tlsServer,
} from '../../helpers/tls-certs.js';

const run = promisify(execFile);
const HOST = 'upstream.test';
// Generous: the machine is shared; a handshake on loopback takes milliseconds.
const TIMEOUT = 20_000;

/** Reads everything the upstream sends after the handshake. */
async function readAll(s: tls.TLSSocket): Promise<string> {
  let text = '';
  for await (const c of s) text += c.toString();
  return text;
}

async function connect(port: number, servername: string, settings?: { ca?: string; pins?: string[] }) {
  return connectUpstreamTls({ socket: await dial(port), servername, tls: settings, timeoutMs: TIMEOUT });
}

describe('connectUpstreamTls', () => {
  let ca: TestCa;
  let otherCa: TestCa;
  const leaves: Record<string, TestLeaf> = {};
  const servers: Record<string, Listening> = {};

  before(async () => {
    ca = await makeCa('Upstream CA');
    otherCa = await makeCa('Some other CA');
    leaves.good = await makeLeaf(ca, { dns: [HOST] });
    leaves.ip = await makeLeaf(ca, { ip: ['127.0.0.1'] });
    leaves.selfSigned = await makeLeaf(undefined, { dns: [HOST] });
    leaves.otherCa = await makeLeaf(otherCa, { dns: [HOST] });
    leaves.expired = await makeLeaf(ca, { dns: [HOST], fromDays: -10, toDays: -2 });
    leaves.notYet = await makeLeaf(ca, { dns: [HOST], fromDays: 2, toDays: 10 });
    for (const [name, leaf] of Object.entries(leaves)) servers[name] = await tlsServer(leaf);
  });
  after(async () => {
    for (const s of Object.values(servers)) await s.close();
  });

  test('a server with a leaf from the given CA and the right name is accepted, speaking http/1.1', async () => {
    const s = await connect(servers.good!.port, HOST, { ca: ca.pem });
    assert.equal(s.authorized, true);
    assert.equal(s.alpnProtocol, 'http/1.1');
    assert.equal(await readAll(s), 'hello');
  });

  test('a matching SPKI pin is accepted, whichever position it has in the list', async () => {
    const pin = leaves.good!.pin;
    const s = await connect(servers.good!.port, HOST, { ca: ca.pem, pins: [leaves.expired!.pin, pin] });
    assert.equal(await readAll(s), 'hello');
  });

  test('an IP host is verified against the IP SAN, and needs no SNI', async () => {
    for (const servername of ['127.0.0.1', '[127.0.0.1]']) {
      const s = await connect(servers.ip!.port, servername, { ca: ca.pem });
      assert.equal(await readAll(s), 'hello', servername);
    }
  });

  const refusals: {
    name: string;
    server: string;
    servername?: string;
    settings: () => { ca?: string; pins?: string[] };
    reason: RegExp;
  }[] = [
    {
      name: 'a self-signed leaf is refused when the system roots are the trust',
      server: 'selfSigned',
      settings: () => ({}),
      reason: /self-signed certificate/,
    },
    {
      name: 'a self-signed leaf is refused even with a CA bundle given',
      server: 'selfSigned',
      settings: () => ({ ca: ca.pem }),
      reason: /self-signed certificate/,
    },
    {
      name: 'a leaf from a CA other than the given one is refused as unknown CA',
      server: 'otherCa',
      settings: () => ({ ca: ca.pem }),
      reason: /unknown CA/,
    },
    {
      name: 'a leaf for another name is refused as name mismatch',
      server: 'good',
      servername: 'other.test',
      settings: () => ({ ca: ca.pem }),
      reason: /name mismatch/,
    },
    {
      name: 'an IP host is refused when the leaf has only a DNS name',
      server: 'good',
      servername: '127.0.0.1',
      settings: () => ({ ca: ca.pem }),
      reason: /name mismatch/,
    },
    {
      name: 'an expired leaf is refused as expired',
      server: 'expired',
      settings: () => ({ ca: ca.pem }),
      reason: /certificate expired/,
    },
    {
      name: 'a leaf that is not yet valid is refused as such',
      server: 'notYet',
      settings: () => ({ ca: ca.pem }),
      reason: /not yet valid/,
    },
    {
      name: 'a valid leaf whose key is not pinned is refused as pin mismatch',
      server: 'good',
      settings: () => ({ ca: ca.pem, pins: [leaves.otherCa!.pin] }),
      reason: /pin mismatch/,
    },
    {
      name: 'a pinned key does not replace chain verification',
      server: 'otherCa',
      settings: () => ({ ca: ca.pem, pins: [leaves.otherCa!.pin] }),
      reason: /unknown CA/,
    },
  ];
  for (const c of refusals) {
    test(c.name, async () => {
      await assert.rejects(
        connect(servers[c.server]!.port, c.servername ?? HOST, c.settings()),
        (e: unknown) => {
          assert.ok(isMembraneError(e, HttpErrorCode.UPSTREAM_TLS), String(e));
          assert.match(e.message, c.reason);
          return true;
        },
      );
    });
  }

  test('a server that never answers the handshake is refused with a timeout, and the socket is destroyed', async () => {
    const silent = await silentServer();
    try {
      const socket = await dial(silent.port);
      await assert.rejects(
        connectUpstreamTls({ socket, servername: HOST, tls: { ca: ca.pem }, timeoutMs: 300 }),
        (e: unknown) => isMembraneError(e, HttpErrorCode.UPSTREAM_TLS) && /timeout/.test(e.message),
      );
      assert.equal(socket.destroyed, true);
    } finally {
      await silent.close();
    }
  });

  test('every error code has an HTTP status and something to check', () => {
    for (const code of Object.values(HttpErrorCode)) {
      const info = httpErrorInfo[code];
      assert.ok(info.status >= 400 && info.status < 600, code);
      assert.ok(info.check.length > 20, code);
    }
  });
});

/** Terminates TLS like the proxy does for a CONNECT to `host`: a leaf from the run CA, picked by target. */
async function runCaServer(runCa: RunCa, host: string): Promise<Listening> {
  const app = http.createServer((req, res) => {
    res.setHeader('connection', 'close');
    res.end(`hello ${req.headers.host}`);
  });
  const server = net.createServer((raw) => {
    raw.on('error', () => {});
    const s = new tls.TLSSocket(raw, { isServer: true, secureContext: runCa.secureContextFor(host) });
    s.on('error', () => {});
    app.emit('connection', s);
  });
  const l = await listen(server);
  return {
    port: l.port,
    close: async () => {
      app.closeAllConnections();
      await l.close();
    },
  };
}

describe('createRunCa', () => {
  let runCa: RunCa;
  let dir: string;
  before(async () => {
    runCa = await createRunCa({ name: 'Membrane run CA (test)' });
    dir = mkdtempSync(join(tmpdir(), 'membrane-run-ca-'));
    writeFileSync(join(dir, 'ca.pem'), runCa.certPem);
  });
  after(() => {
    runCa.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const host of ['api.example.test', '127.0.0.1', '::1']) {
    test(`a leaf for ${host} verifies with the run CA's certificate and the host's name`, async () => {
      const server = await runCaServer(runCa, host);
      try {
        const s = await connect(server.port, host, { ca: runCa.certPem });
        assert.equal(s.authorized, true);
        s.end(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
        assert.match(await readAll(s), /^HTTP\/1\.1 200/);
      } finally {
        await server.close();
      }
    });
  }

  for (const host of ['api.example.test', '127.0.0.1']) {
    test(`curl --cacert accepts the run CA's leaf for ${host}`, async () => {
      const server = await runCaServer(runCa, host);
      try {
        const url = `https://${host}:${server.port}/`;
        const args = ['-sS', '--max-time', '60', '--cacert', join(dir, 'ca.pem'), url];
        if (!net.isIP(host)) args.push('--resolve', `${host}:${server.port}:127.0.0.1`);
        const { stdout } = await run('curl', args);
        assert.equal(stdout, `hello ${host}:${server.port}`);
      } finally {
        await server.close();
      }
    });
  }

  test("curl refuses the run CA's leaf when it does not trust the run CA", async () => {
    const server = await runCaServer(runCa, 'api.example.test');
    try {
      const url = `https://api.example.test:${server.port}/`;
      await assert.rejects(
        run('curl', [
          '-sS',
          '--max-time',
          '60',
          '--resolve',
          `api.example.test:${server.port}:127.0.0.1`,
          url,
        ]),
        /certificate/,
      );
    } finally {
      await server.close();
    }
  });

  test('leaves are cached per host and one key serves them all', () => {
    const a = runCa.secureContextFor('Cache.Example.Test.');
    assert.equal(runCa.secureContextFor('cache.example.test'), a);
    assert.notEqual(runCa.secureContextFor('other.example.test'), a);
  });

  test('the CA certificate is a short-lived CA with an EC P-256 key', () => {
    const cert = new X509Certificate(runCa.certPem);
    assert.equal(cert.ca, true);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000;
    assert.ok(days <= 3, `validity ${days} days`);
    assert.notEqual(spkiPin(runCa.certPem), '');
  });

  const badHosts = ['', 'exa mple.test', 'a..b', '-bad-.test', 'host/evil', 'x'.repeat(300)];
  for (const host of badHosts) {
    test(`a host that is neither a DNS name nor an IP literal is refused: ${JSON.stringify(host.slice(0, 20))}`, () => {
      assert.throws(
        () => runCa.secureContextFor(host),
        (e: unknown) => isMembraneError(e, HttpErrorCode.RUN_CA),
      );
    });
  }

  test('name constraints keep a leaf for a host outside the permitted names from verifying', async () => {
    const constrained = await createRunCa({ permitted: ['allowed.test'] });
    try {
      for (const [host, ok] of [
        ['api.allowed.test', true],
        ['evil.test', false],
        ['127.0.0.1', false],
      ] as const) {
        const server = await runCaServer(constrained, host);
        try {
          const attempt = connect(server.port, host, { ca: constrained.certPem });
          if (ok) {
            const s = await attempt;
            assert.equal(s.authorized, true, host);
            s.destroy();
          } else
            await assert.rejects(
              attempt,
              (e: unknown) => isMembraneError(e, HttpErrorCode.UPSTREAM_TLS),
              host,
            );
        } finally {
          await server.close();
        }
      }
    } finally {
      constrained.destroy();
    }
  });

  for (const permitted of [['10.0.0.0/33'], ['10.0.0.0/x'], ['not a name!'], ['::1/129']]) {
    test(`a name constraint that is neither a DNS name nor a CIDR is refused: ${permitted[0]}`, async () => {
      await assert.rejects(createRunCa({ permitted }), (e: unknown) =>
        isMembraneError(e, HttpErrorCode.RUN_CA),
      );
    });
  }

  test('after destroy no leaf is issued', async () => {
    const ca = await createRunCa();
    ca.secureContextFor('before.test');
    ca.destroy();
    assert.throws(
      () => ca.secureContextFor('before.test'),
      (e: unknown) => isMembraneError(e, HttpErrorCode.RUN_CA) && /destroyed/.test(e.message),
    );
  });
});
