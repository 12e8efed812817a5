/**
 * `http-egress` as a proxy kind: entries from the spec, a running proxy on loopback with
 * the environment the app needs, proxy authentication, self-connection refused for the
 * runtime's own listeners, metrics through ctx.meter, drain that finishes in-flight
 * requests, and an idempotent close after which nothing listens.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseEgressPolicy } from '../../policy/egress/index.js';
import type { CleanRoomSpec } from '../../policy/spec.js';
import { appEnvFor, DECISION_LOG_FILE, httpEgressKind, runHttpEgress } from '../../proxies/http/kind.js';
import type { AuditEvent, ProxyContext } from '../../proxies/proxy.js';
import { fakeEngine, run, startUpstream, type Upstream } from '../helpers/http-egress.js';

let up: Upstream;
let health: Upstream;
let held: Upstream;
let release: () => void = () => {};
let arrived: () => void = () => {};
let dir: string;

before(async () => {
  up = await startUpstream();
  health = await startUpstream();
  held = await startUpstream({
    handler: (_q, _b, res) => {
      release = () => res.end('finished');
      arrived();
    },
  });
  dir = mkdtempSync(join(tmpdir(), 'membrane-http-kind-'));
});
after(async () => {
  await up.close();
  await health.close();
  await held.close();
  rmSync(dir, { recursive: true, force: true });
});

function context(events: AuditEvent[], counted: Map<string, number>, lines: string[]): ProxyContext {
  return {
    name: 'http-egress',
    audit: { emit: (e) => events.push(e) },
    meter: {
      counter: (spec) => ({ add: (n) => counted.set(spec.name, (counted.get(spec.name) ?? 0) + n) }),
      histogram: () => ({ record() {} }),
    },
    log: (l) => lines.push(l),
    stateDir: dir,
    dataKey: () => {
      throw new Error('no DEK in this test');
    },
    recipient: () => Promise.reject(new Error('unused')),
    token: () => Promise.reject(new Error('unused')),
    ownListeners: () => [{ host: '127.0.0.1', port: health.port }],
  };
}

describe('the http-egress kind', () => {
  test('entries: one proxy for network.http.outbound, its decision log beside the audit log; none without it', () => {
    const spec = {
      network: { http: { outbound: { mode: 'open', allow: [] } } },
      runtime: { auditLog: '/var/x/audit.log' },
    };
    const entries = httpEgressKind.entries(spec as unknown as CleanRoomSpec);
    assert.equal(entries.length, 1);
    assert.equal(httpEgressKind.entryName(entries[0] as (typeof entries)[0]), 'http-egress');
    assert.equal(entries[0]?.decisionLog, `/var/x/${DECISION_LOG_FILE}`);
    assert.deepEqual(httpEgressKind.entries({ runtime: { auditLog: '/a' } } as unknown as CleanRoomSpec), []);
  });

  test('the app environment points every client at the proxy, and at the run CA when there is one', () => {
    const env = appEnvFor({ proxyUrl: 'http://membrane:pw@127.0.0.1:1', caFile: '/s/ca.pem' });
    for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'])
      assert.equal(env[k], 'http://membrane:pw@127.0.0.1:1');
    assert.equal(env.NO_PROXY, '');
    for (const k of ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'])
      assert.equal(env[k], '/s/ca.pem');
    assert.equal(appEnvFor({ proxyUrl: 'http://x', caFile: undefined }).SSL_CERT_FILE, undefined);
  });

  test('a running proxy: the app env works with curl, self-connection is refused, drain finishes in-flight work, close is idempotent', async () => {
    const events: AuditEvent[] = [];
    const counted = new Map<string, number>();
    const lines: string[] = [];
    const entry = {
      name: 'http-egress',
      policy: parseEgressPolicy('mode: open\n', 'inline'),
      decisionLog: join(dir, DECISION_LOG_FILE),
      baseDir: dir,
    };
    const engine = fakeEngine({
      rules: [{ host: 'api.test' }, { host: 'health.test' }],
      allowAddresses: ['127.0.0.1'],
    });
    const p = await runHttpEgress(entry, context(events, counted, lines), {
      engine,
      resolver: async () => [{ address: '127.0.0.1', family: 4 }],
    });
    const port = p.endpoint.type === 'listen' ? p.endpoint.port : 0;
    try {
      assert.equal(p.kind, 'http-egress');
      assert.equal(p.mode, 'open');
      assert.ok(
        p.endpoint.type === 'listen' &&
          p.endpoint.protocol === 'http-proxy' &&
          p.endpoint.host === '127.0.0.1',
      );
      assert.match(
        p.appEnv.HTTP_PROXY ?? '',
        new RegExp(`^http://membrane:[A-Za-z0-9_-]{24}@127\\.0\\.0\\.1:${port}$`),
      );

      // `curl` with only the app environment: the per-run password travels in HTTP_PROXY.
      const ok = await run('curl', ['-sS', '-o', '-', '-w', '%{http_code}', `http://api.test:${up.port}/x`], {
        ...p.appEnv,
      });
      assert.match(ok.stdout, /200$/);

      // The runtime's own listener (here: `health`, declared in ownListeners) is never dialed through the proxy.
      const before = health.connections;
      const self = await run('curl', ['-sS', '-i', `http://health.test:${health.port}/`], { ...p.appEnv });
      assert.match(self.stdout, /^HTTP\/1\.1 403/);
      assert.match(self.stdout, /membrane-reason: address\.self: /i);
      assert.equal(health.connections, before);
      assert.ok(events.some((e) => e.type === 'http.denied'));
      assert.ok((counted.get('membrane.http.requests') ?? 0) >= 2);
      assert.ok((counted.get('membrane.http.denied') ?? 0) >= 1);

      // drain waits for the request in flight
      const inFlight = new Promise<void>((r) => {
        arrived = r;
      });
      const pending = run('curl', ['-sS', '-o', '-', `http://api.test:${held.port}/slow`], { ...p.appEnv });
      await inFlight;
      let drained = false;
      const draining = p.drain().then(() => {
        drained = true;
      });
      await new Promise((r) => setImmediate(r));
      assert.equal(drained, false, 'drain waits for the in-flight request');
      release();
      await draining;
      assert.equal((await pending).stdout, 'finished');
    } finally {
      await p.close();
    }
    await p.close();
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(undefined);
        });
        s.once('error', reject);
      }),
      /ECONNREFUSED/,
    );
    assert.ok(
      !lines.join('\n').includes(p.appEnv.HTTP_PROXY?.split(':')[2]?.split('@')[0] ?? '#'),
      'the password is never logged',
    );
  });
});
