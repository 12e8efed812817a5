import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkEgress } from '../../../policy/egress/check-egress.js';
import { normaliseHost } from '../../../policy/egress/host.js';
import { decisionLine } from '../../../policy/egress/record.js';
import {
  compileEgressPolicy,
  compilePathGlob,
  decideRequest,
  normalisePath,
} from '../../../policy/egress/rules.js';
import { parseEgressPolicy } from '../../../policy/egress/schema.js';
import type { EgressRequest } from '../../../policy/egress/types.js';

test('hosts are normalised before matching: case, trailing dot, IDNA, brackets, IPv4 literal forms', () => {
  const rows: Array<[string, string, 'name' | 'ipv4' | 'ipv6']> = [
    ['Example.COM', 'example.com', 'name'],
    ['example.com.', 'example.com', 'name'],
    ['bücher.de', 'xn--bcher-kva.de', 'name'],
    ['XN--BCHER-KVA.de', 'xn--bcher-kva.de', 'name'],
    ['ＥＸＡＭＰＬＥ.com', 'example.com', 'name'],
    ['a_b.example', 'a_b.example', 'name'],
    ['127.0.0.1', '127.0.0.1', 'ipv4'],
    ['127.0.0.1.', '127.0.0.1', 'ipv4'],
    ['2130706433', '127.0.0.1', 'ipv4'],
    ['0x7f.1', '127.0.0.1', 'ipv4'],
    ['0x7F000001', '127.0.0.1', 'ipv4'],
    ['0177.0.0.1', '127.0.0.1', 'ipv4'],
    ['127.1', '127.0.0.1', 'ipv4'],
    ['127.0.1', '127.0.0.1', 'ipv4'],
    ['0x7f.0.0.0x1', '127.0.0.1', 'ipv4'],
    ['0', '0.0.0.0', 'ipv4'],
    ['[::1]', '::1', 'ipv6'],
    ['::1', '::1', 'ipv6'],
    ['[::FFFF:127.0.0.1]', '::ffff:7f00:1', 'ipv6'],
    ['[2001:DB8:0:0:0:0:0:1]', '2001:db8::1', 'ipv6'],
  ];
  for (const [input, host, kind] of rows) {
    const n = normaliseHost(input);
    assert.ok(n.ok, `${input}: ${n.ok ? '' : n.reason}`);
    assert.deepEqual([n.host, n.kind], [host, kind], input);
  }
});

test('malformed hosts are refused with a reason', () => {
  const rows: Array<[string, RegExp]> = [
    ['', /empty/],
    ['a..b', /empty label/],
    ['.example.com', /empty label/],
    ['1.2.3.4.5', /not a valid host/],
    ['256.0.0.1', /not a valid host/],
    ['0x100000000', /not a valid host/],
    ['example.com:443', /IPv6/],
    ['[127.0.0.1]', /IPv6/],
    ['[fe80::1%25eth0]', /zone/],
    ['evil.com/x', /character/],
    ['evil.com@good.com', /character/],
    ['a b', /character/],
    ['x\u0000.com', /character/],
    ['-lead.example', /DNS label/],
    ['*.example.com', /DNS label/],
    [`${'a'.repeat(64)}.com`, /DNS label/],
    [`${'a.'.repeat(130)}com`, /253/],
    ['example.123', /not a valid host|numeric/],
  ];
  for (const [input, re] of rows) {
    const n = normaliseHost(input);
    assert.equal(n.ok, false, input);
    if (!n.ok) assert.match(n.reason, re, input);
  }
});

test('paths are normalised: unreserved escapes decoded, queries cut, dot segments and bad escapes refused', () => {
  assert.deepEqual(normalisePath('/%61pi/v1?x=1#f'), { ok: true, path: '/api/v1' });
  assert.deepEqual(normalisePath('/a%2fb'), { ok: true, path: '/a%2Fb' });
  for (const bad of ['/a/../b', '/a/%2e%2E/b', '/./a', 'a', '/%zz', '/%4', '/a b', '/ä', '/\u0000'])
    assert.equal(normalisePath(bad).ok, false, bad);
});

test('path globs: * stays in a segment, ** crosses segments, ? is one character, classes and alternatives; hostile input stays linear', () => {
  const rows: Array<[string, string, boolean]> = [
    ['/api/*', '/api/x', true],
    ['/api/*', '/api/x/y', false],
    ['/api/**', '/api/x/y', true],
    ['/api/**', '/api', false],
    ['/api/*/items', '/api/7/items', true],
    ['/api/*/items', '/api/7/8/items', false],
    ['/**/items', '/a/b/items', true],
    ['/v?/x', '/v1/x', true],
    ['/v?/x', '/v10/x', false],
    ['/v?/x', '/v//x', false],
    ['/exact', '/exact', true],
    ['/exact', '/exact/', false],
    ['/*.json', '/a.json', true],
    ['/', '/', true],
    ['/', '/a', false],
    ['/v[12]/x', '/v2/x', true],
    ['/{a,b}/x', '/b/x', true],
    ['/api/**/items', '/api/items', true],
    ['/**/a/**/a/**/c', `/${'a/'.repeat(5000)}b`, false],
  ];
  for (const [g, s, want] of rows)
    assert.equal(compilePathGlob(g).matches(s), want, `${g} ~ ${s.slice(0, 30)}`);
});

const POLICY = `
mode: trusted
allow:
  - host: api.example.com
    paths: ["/v1/**"]
    methods: [GET, post]
  - host: "*.example.org"
    ports: [443, "8000-8100"]
    action: report
  - host: files.example.net
    mode: open
    inspect: {pii: [card, iban]}
  - host: vault.example.net
    mode: secure
    dek: outbound
  - host: 203.0.113.0/24
    ports: [8443]
  - host: pinned.example.com
    tls: {pins: ["${'A'.repeat(43)}="]}
  - host: "*"
    ports: [9999]
deny:
  - host: "*.example.com"
    methods: [DELETE]
  - host: bad.example.org
  - host: "*.example.org"
    paths: ["/admin/**"]
    action: report
`;
const policy = compileEgressPolicy(parseEgressPolicy(POLICY));
const req = (
  method: string,
  host: string,
  port: number,
  path?: string,
  scheme: 'http' | 'https' = 'https',
): EgressRequest => ({
  method,
  scheme,
  host,
  port,
  ...(path !== undefined ? { path } : {}),
});

test('rules: deny first, then the first matching allow; ports, methods, paths, wildcards, report, default deny', () => {
  const rows: Array<[EgressRequest, string, string]> = [
    [req('GET', 'api.example.com', 443, '/v1/users'), 'allow', 'allow[0]'],
    [req('GET', 'API.Example.com.', 443, '/v1/users'), 'allow', 'allow[0]'],
    [req('POST', 'api.example.com', 443, '/v1/users'), 'allow', 'allow[0]'],
    [req('post', 'api.example.com', 443, '/v1/users'), 'allow', 'allow[0]'],
    [req('PUT', 'api.example.com', 443, '/v1/users'), 'deny', 'default-deny'],
    [req('GET', 'api.example.com', 443, '/v2/users'), 'deny', 'default-deny'],
    [req('GET', 'api.example.com', 443, '/v1/../admin'), 'deny', 'malformed-path'],
    [req('GET', 'api.example.com', 80, '/v1/users', 'http'), 'allow', 'allow[0]'],
    [req('GET', 'api.example.com', 8080, '/v1/users'), 'deny', 'default-deny'],
    // deny beats allow, whatever the order
    [req('DELETE', 'api.example.com', 443, '/v1/users'), 'deny', 'deny[0]'],
    [req('delete', 'api.example.com', 443, '/v1/users'), 'deny', 'deny[0]'],
    // *.suffix matches subdomains, not the apex
    [req('GET', 'a.example.org', 443, '/'), 'report', 'allow[1]'],
    [req('GET', 'a.b.example.org', 8050, '/'), 'report', 'allow[1]'],
    [req('GET', 'example.org', 443, '/'), 'deny', 'default-deny'],
    [req('GET', 'a.example.org', 8101, '/'), 'deny', 'default-deny'],
    [req('GET', 'bad.example.org', 443, '/'), 'deny', 'deny[1]'],
    // a report-only deny lets the request through, flagged with the deny rule
    [req('GET', 'a.example.org', 443, '/admin/x'), 'report', 'deny[2]'],
    // IP/CIDR hosts match IP literals in every accepted form
    [req('GET', '203.0.113.9', 8443, '/'), 'allow', 'allow[4]'],
    [req('GET', '[::ffff:203.0.113.9]', 8443, '/'), 'allow', 'allow[4]'],
    [req('GET', '3405803785', 8443, '/'), 'allow', 'allow[4]'],
    [req('GET', '203.0.113.9', 443, '/'), 'deny', 'default-deny'],
    // "*" is any host (addresses are checked afterwards)
    [req('GET', 'anything.test', 9999, '/'), 'allow', 'allow[6]'],
    [req('GET', '127.0.0.1', 9999, '/'), 'allow', 'allow[6]'],
    // a CONNECT is decided on host and port
    [req('CONNECT', 'api.example.com', 443), 'allow', 'allow[0]'],
    [req('CONNECT', 'api.example.com', 8443), 'deny', 'default-deny'],
    [req('CONNECT', 'bad.example.org', 443), 'deny', 'deny[1]'],
    // malformed requests fail closed
    [req('GET', 'a..b', 443, '/'), 'deny', 'malformed-host'],
    [req('G E T', 'api.example.com', 443, '/v1/x'), 'deny', 'malformed-request'],
    [req('GET', 'api.example.com', 0, '/v1/x'), 'deny', 'malformed-request'],
    [req('GET', 'api.example.com', 65536, '/v1/x'), 'deny', 'malformed-request'],
    [
      { ...req('GET', 'api.example.com', 443, '/v1/x'), scheme: 'ftp' as 'http' },
      'deny',
      'malformed-request',
    ],
  ];
  for (const [r, verdict, rule] of rows) {
    const d = decideRequest(policy, r);
    assert.deepEqual(
      [d.verdict, d.rule],
      [verdict, rule],
      `${r.method} ${r.host}:${r.port}${r.path ?? ''}: ${d.reason}`,
    );
    assert.ok(d.reason.length > 0);
  }
});

test('an allow decision carries the rule mode, TLS, inspection and DEK settings', () => {
  assert.equal(decideRequest(policy, req('GET', 'api.example.com', 443, '/v1/x')).mode, 'trusted');
  const open = decideRequest(policy, req('POST', 'files.example.net', 443, '/up'));
  assert.deepEqual([open.mode, open.inspect], ['open', { pii: ['card', 'iban'], action: 'block' }]);
  const secure = decideRequest(policy, req('POST', 'vault.example.net', 443, '/x'));
  assert.deepEqual([secure.mode, secure.dek], ['secure', 'outbound']);
  assert.deepEqual(decideRequest(policy, req('GET', 'pinned.example.com', 443, '/')).tls, {
    pins: [`${'A'.repeat(43)}=`],
  });
});

test('decideRequest never throws on hostile input', () => {
  const hostile = [
    { method: 'GET', scheme: 'https', host: 'x'.repeat(1_000_000), port: 443, path: '/' },
    { method: 'GET', scheme: 'https', host: 'a.example.org', port: 443, path: `/${'a/'.repeat(100_000)}` },
    { method: undefined, scheme: undefined, host: undefined, port: undefined },
    { method: 'GET', scheme: 'https', host: '\u0000', port: Number.NaN, path: '/' },
    { method: 'GET', scheme: 'https', host: { toString: () => 'x' }, port: 443, path: 42 },
  ] as unknown as EgressRequest[];
  for (const h of hostile) assert.equal(decideRequest(policy, h).verdict, 'deny');
});

test('the policy digest is SHA-256 over canonical JSON: key order does not matter, content does', () => {
  const a = compileEgressPolicy(
    parseEgressPolicy('{"mode":"open","allow":[{"host":"a.example","ports":[443]}]}'),
  );
  const b = compileEgressPolicy(
    parseEgressPolicy('allow:\n  - ports: [443]\n    host: a.example\nmode: open\n'),
  );
  const c = compileEgressPolicy(parseEgressPolicy('mode: open\nallow: [{host: b.example, ports: [443]}]\n'));
  assert.match(a.digest, /^[0-9a-f]{64}$/);
  assert.equal(a.digest, b.digest);
  assert.notEqual(a.digest, c.digest);
});

test('referenced files are bound by content: the digest changes with the CA file, not with its path', () => {
  const pem = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
  const text = (ca: string) => `mode: trusted\nallow: [{host: a.example, tls: {ca: ${ca}}}]\n`;
  const one = compileEgressPolicy(parseEgressPolicy(text('ca.pem')), { 'ca.pem': pem });
  const two = compileEgressPolicy(parseEgressPolicy(text('other/ca.pem')), { 'other/ca.pem': pem });
  const three = compileEgressPolicy(parseEgressPolicy(text('ca.pem')), {
    'ca.pem': pem.replace('AAAA', 'BBBB'),
  });
  assert.equal(one.digest, two.digest);
  assert.notEqual(one.digest, three.digest);
  assert.equal(decideRequest(one, req('GET', 'a.example', 443, '/')).tls?.ca, pem);
});

test('check-egress answers {allowed, reason, rule, address} for IP literals, names and resolver answers', () => {
  const p = compileEgressPolicy(
    parseEgressPolicy('mode: open\nallow: [{host: "*"}]\ndeny: [{host: blocked.example}]\n'),
  );
  const keys = (r: object) => Object.keys(r).sort();
  const literal = checkEgress(p, { url: 'http://2130706433/' });
  assert.deepEqual(keys(literal), ['address', 'allowed', 'reason', 'rule']);
  assert.deepEqual(
    [literal.allowed, literal.rule, literal.address],
    [false, 'address:loopback', { ip: '127.0.0.1', class: 'loopback' }],
  );
  const name = checkEgress(p, { url: 'https://api.example/x' });
  assert.deepEqual([name.allowed, name.rule, name.address], [true, 'allow[0]', null]);
  const resolved = checkEgress(p, { url: 'https://api.example/x', answers: ['8.8.8.8', '10.0.0.1'] });
  assert.deepEqual(
    [resolved.allowed, resolved.rule, resolved.address],
    [false, 'address:private', { ip: '10.0.0.1', class: 'private' }],
  );
  const good = checkEgress(p, { url: 'https://api.example/x', answers: ['8.8.8.8'] });
  assert.deepEqual([good.allowed, good.address], [true, { ip: '8.8.8.8', class: 'public' }]);
  assert.equal(checkEgress(p, { url: 'https://blocked.example/' }).rule, 'deny[0]');
  assert.equal(checkEgress(p, { url: 'ftp://api.example/' }).allowed, false);
  assert.equal(checkEgress(p, { url: 'https://user:pw@api.example/' }).allowed, false);
});

test('a decision record is one canonical JSON line', () => {
  const line = decisionLine({
    v: 1,
    policy: 'ab'.repeat(32),
    id: 'r1',
    time: '2025-01-01T00:00:00.000Z',
    method: 'GET',
    host: 'api.example.com',
    port: 443,
    path: '/v1',
    verdict: 'allow',
    rule: 'allow[0]',
    reason: 'ok',
    address: { ip: '8.8.8.8', class: 'public' },
    bytes: { sent: 1, received: 2 },
    timings: { total: 3, decision: 0.01 },
  });
  assert.ok(!line.includes('\n'));
  assert.ok(
    line.startsWith('{"address":{"class":"public","ip":"8.8.8.8"},"bytes":{"received":2,"sent":1},"host":'),
  );
  assert.deepEqual(JSON.parse(line).timings, { decision: 0.01, total: 3 });
});
