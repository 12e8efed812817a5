import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { isMembraneError } from '../../policy/errors.js';
import { GovernanceClient } from '../../runtime/governance.js';

interface Seen {
  method: string;
  url: string;
  body: string;
  contentType?: string;
}

/** A loopback stand-in for the ccr-governance sidecar answering from a script of responses. */
async function sidecar(replies: Array<[number, string]>) {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, body, contentType: req.headers['content-type'] });
      const [status, text] = replies[Math.min(seen.length - 1, replies.length - 1)]!;
      res.writeHead(status, { 'content-type': 'application/json' }).end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, seen, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function withSidecar(
  replies: Array<[number, string]>,
  fn: (s: Awaited<ReturnType<typeof sidecar>>) => Promise<void>,
) {
  const s = await sidecar(replies);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

test('consent "enabled" lets the clean room start', () =>
  withSidecar([[200, '{"status":"enabled"}']], async (s) => {
    const g = new GovernanceClient({ consentUrl: `${s.url}/gov`, auditId: 'x' });
    assert.deepEqual(await g.checkConsent(), { status: 'enabled' });
    assert.equal(s.seen.length, 1);
    assert.equal(s.seen[0]!.method, 'POST');
    assert.equal(s.seen[0]!.url, '/gov/consentcheck/execution', 'a path prefix of the sidecar URL is kept');
  }));

const refusals: Array<[string, [number, string], string, RegExp]> = [
  [
    'disabled with a reason',
    [
      200,
      '{"status":"disabled","reason":{"code":"ContractDisabled","message":"Contract has been disabled by the following member(s): m1"}}',
    ],
    'CONSENT_DENIED',
    /status "disabled" \(ContractDisabled: Contract has been disabled by the following member\(s\): m1\)/,
  ],
  ['disabled without a reason', [200, '{"status":"disabled"}'], 'CONSENT_DENIED', /status "disabled" —/],
  ['an unknown status', [200, '{"status":"pending"}'], 'CONSENT_DENIED', /status "pending"/],
  ['no status at all', [200, '{"enabled":true}'], 'CONSENT_CHECK_FAILED', /without a "status"/],
  ['a body that is not JSON', [200, 'OK'], 'CONSENT_CHECK_FAILED', /not JSON/],
  [
    'an OData error (no clean-room policy)',
    [400, '{"error":{"code":"VerifySnpAttestationFailed","message":"The clean room policy is missing."}}'],
    'CONSENT_CHECK_FAILED',
    /HTTP 400: VerifySnpAttestationFailed: The clean room policy is missing\./,
  ],
];

for (const [name, reply, code, message] of refusals) {
  test(`consent refused: ${name} -> ${code}`, () =>
    withSidecar([reply], async (s) => {
      const g = new GovernanceClient({ consentUrl: s.url, auditId: 'x', consentRetries: 0 });
      await assert.rejects(g.checkConsent(), (e: unknown) => {
        assert.ok(isMembraneError(e, code), String(e));
        assert.match(e.message, message);
        return true;
      });
    }));
}

test('consent: transient 5xx is retried (bounded), then succeeds', () =>
  withSidecar(
    [
      [503, '{"error":{"code":"ServiceUnavailable","message":"starting"}}'],
      [200, '{"status":"enabled"}'],
    ],
    async (s) => {
      const g = new GovernanceClient({ consentUrl: s.url, auditId: 'x', consentRetries: 2 });
      assert.deepEqual(await g.checkConsent(), { status: 'enabled' });
      assert.equal(s.seen.length, 2);
    },
  ));

test('consent: an unreachable sidecar fails closed', async () => {
  const s = await sidecar([[200, '{}']]);
  await s.close(); // nothing listens on that port any more
  const g = new GovernanceClient({
    consentUrl: s.url,
    auditId: 'x',
    consentRetries: 0,
    consentTimeoutMs: 2000,
  });
  await assert.rejects(g.checkConsent(), (e: unknown) => isMembraneError(e, 'CONSENT_CHECK_FAILED'));
});

test('no consent URL: nothing to check', async () => {
  assert.equal(await new GovernanceClient({ auditId: 'x' }).checkConsent(), undefined);
});

test('audit events are PUT to /events with id and scope and a JSON body', () =>
  withSidecar([[200, '']], async (s) => {
    const g = await GovernanceClient.fromSpec({ audit: { url: s.url, scope: 'membrane' } }, 'recon');
    await g.putEvent({ seq: 1, type: 'cleanroom.ready' });
    assert.deepEqual(s.seen, [
      {
        method: 'PUT',
        url: '/events?id=recon&scope=membrane',
        body: '{"seq":1,"type":"cleanroom.ready"}',
        contentType: 'application/json',
      },
    ]);
  }));

test('audit events: id from the spec wins; no scope means no scope parameter', () =>
  withSidecar([[204, '']], async (s) => {
    const g = await GovernanceClient.fromSpec({ audit: { url: `${s.url}/`, id: 'stream-7' } }, 'recon');
    await g.putEvent({ a: 1 });
    assert.equal(s.seen[0]!.url, '/events?id=stream-7');
  }));

test('audit events: refusal after bounded retries is a typed error', () =>
  withSidecar([[500, '{"error":{"code":"InternalError","message":"ledger down"}}']], async (s) => {
    const g = new GovernanceClient({ auditUrl: s.url, auditId: 'x', eventRetries: 1 });
    await assert.rejects(g.putEvent({ a: 1 }), (e: unknown) => {
      assert.ok(isMembraneError(e, 'GOVERNANCE_EVENT_FAILED'));
      assert.match(e.message, /HTTP 500: InternalError: ledger down/);
      return true;
    });
    assert.equal(s.seen.length, 2, 'one retry, then give up');
  }));

test('fromSpec reports an unreadable CA file', async () => {
  await assert.rejects(
    GovernanceClient.fromSpec({ consent: { url: 'http://127.0.0.1:1' }, ca: '/nonexistent/ca.pem' }, 'x'),
    (e: unknown) => isMembraneError(e, 'GOVERNANCE_CONFIG'),
  );
});
