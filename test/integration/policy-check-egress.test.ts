import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';

// dist/test/integration -> repository root
const root = resolve(import.meta.dirname, '..', '..', '..');
const bin = join(root, 'bin', 'membrane.mjs');
let dir: string;
let policy: string;

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, 'policy', 'check-egress', ...args], {
    encoding: 'utf8',
    cwd: root,
    timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'membrane-egress-'));
  policy = file(
    'egress.yaml',
    `mode: trusted
allow:
  - host: api.example.com
    methods: [GET]
    paths: ["/v1/**"]
  - host: "*.partner.example"
    action: report
  - host: localhost
    ports: [8080]
  - host: "*"
    ports: [9443]
deny:
  - host: 10.0.0.0/8
allowAddresses: ["127.0.0.1:8080"]
`,
  );
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('check-egress --json prints exactly {allowed, reason, rule, address} and exits 0 whether allowed or not', () => {
  const rows: Array<[string[], boolean, string, { ip: string; class: string } | null]> = [
    [['--url', 'https://api.example.com/v1/users'], true, 'allow[0]', null],
    [['--url', 'https://api.example.com/v1/users', '--method', 'POST'], false, 'default-deny', null],
    [['--url', 'https://x.partner.example/'], true, 'allow[1]', null],
    [['--url', 'https://evil.example/'], false, 'default-deny', null],
    [['--url', 'http://0x7f.1:9443/'], false, 'address:loopback', { ip: '127.0.0.1', class: 'loopback' }],
    [
      ['--url', 'http://[::ffff:169.254.169.254]:9443/'],
      false,
      'address:cloud-metadata',
      { ip: '::ffff:a9fe:a9fe', class: 'cloud-metadata' },
    ],
    [['--url', 'http://10.1.2.3:9443/'], false, 'deny[0]', { ip: '10.1.2.3', class: 'private' }],
    [['--url', 'https://8.8.8.8:9443/'], true, 'allow[3]', { ip: '8.8.8.8', class: 'public' }],
    [['--url', 'ftp://api.example.com/'], false, 'malformed-request', null],
  ];
  for (const [args, allowed, rule, address] of rows) {
    const r = run('--policy', policy, '--json', ...args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
    const out = JSON.parse(r.out) as Record<string, unknown>;
    assert.deepEqual(Object.keys(out), ['allowed', 'reason', 'rule', 'address']);
    assert.deepEqual([out.allowed, out.rule, out.address], [allowed, rule, address], args.join(' '));
    assert.equal(typeof out.reason, 'string');
  }
});

test('with --resolve every answer for a name is checked (localhost: loopback, allowed only where allowAddresses names it)', () => {
  const r = run('--policy', policy, '--json', '--resolve', '--url', 'http://localhost:8080/');
  assert.equal(r.code, 0, r.err);
  const out = JSON.parse(r.out) as { allowed: boolean; rule: string; address: { ip: string; class: string } };
  assert.equal(out.address.class, 'loopback');
  // localhost may also resolve to ::1, which allowAddresses does not name: then it is refused.
  if (out.address.ip === '127.0.0.1') assert.deepEqual([out.allowed, out.rule], [true, 'allow[2]']);
  else assert.deepEqual([out.allowed, out.rule], [false, 'address:loopback']);
});

test('without --json the verdict, rule, reason, address and policy digest are printed', () => {
  const r = run('--policy', policy, '--url', 'https://api.example.com/v1/x');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ALLOWED {2}GET https:\/\/api\.example\.com\/v1\/x$/m);
  assert.match(r.out, /^rule: {4}allow\[0\]$/m);
  assert.match(r.out, /^address: not checked/m);
  assert.match(r.out, /^policy: {2}sha256:[0-9a-f]{64}$/m);
});

test('an invalid or unreadable policy file exits 1 naming the problem', () => {
  const bad = file('bad.yaml', 'mode: open\nallow: [{host: "a..b"}]\n');
  const r = run('--policy', bad, '--url', 'https://a.example/');
  assert.equal(r.code, 1);
  assert.match(r.err, /allow\[0\]\.host: .*empty label.*\[EGRESS_POLICY_INVALID\]/s);
  const missing = run('--policy', join(dir, 'nope.yaml'), '--url', 'https://a.example/');
  assert.equal(missing.code, 1);
  assert.match(missing.err, /cannot read the egress policy file/);
  const ca = file('ca-ref.yaml', 'mode: trusted\nallow: [{host: a.example, tls: {ca: missing-ca.pem}}]\n');
  const noCa = run('--policy', ca, '--url', 'https://a.example/');
  assert.equal(noCa.code, 1);
  assert.match(noCa.err, /allow\[0\]\.tls\.ca/);
});

test('referenced files are read relative to the policy file', () => {
  file('ca.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  const p = file('with-ca.yaml', 'mode: trusted\nallow: [{host: a.example, tls: {ca: ca.pem}}]\n');
  const r = run('--policy', p, '--json', '--url', 'https://a.example/');
  assert.equal(r.code, 0, r.err);
  assert.equal((JSON.parse(r.out) as { allowed: boolean }).allowed, true);
});

test('usage errors exit 2', () => {
  assert.equal(run('--url', 'https://a.example/').code, 2);
  assert.equal(run('--policy', policy).code, 2);
  assert.equal(run('--policy', policy, '--url', 'not a url').code, 2);
  assert.equal(run('--policy', policy, '--url', 'https://a.example/', '--bogus').code, 2);
  assert.equal(run('--policy', policy, '--url', 'https://a.example/', '--method', 'G T').code, 2);
});
