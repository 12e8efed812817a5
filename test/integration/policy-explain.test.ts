import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { SignJWT } from 'jose';

// dist/test/integration -> repository root
const root = resolve(import.meta.dirname, '..', '..', '..');
const bin = join(root, 'bin', 'membrane.mjs');
const ISS = 'https://shared.eus2.attest.azure.net';
const HOSTDATA = 'c0ffee'.padEnd(64, '0');

let dir: string;
let tokenFile: string;
let wrappedTokenFile: string;

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, 'policy', ...args], { encoding: 'utf8', cwd: root });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function policyFile(name: string, policy: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof policy === 'string' ? policy : JSON.stringify(policy));
  return p;
}

const policyFor = (hostdata: string, authority = ISS) => ({
  version: '1.0.0',
  anyOf: [
    {
      authority,
      allOf: [
        { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
        { claim: 'x-ms-sevsnpvm-is-debuggable', equals: 'false' },
        { claim: 'x-ms-sevsnpvm-hostdata', equals: hostdata },
        {
          anyOf: [
            { claim: 'x-ms-sevsnpvm-guestsvn', greaterOrEquals: 1 },
            { claim: 'x-ms-runtime.keys', exists: true },
          ],
        },
      ],
    },
  ],
});

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'membrane-policy-'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwt = await new SignJWT({
    'x-ms-attestation-type': 'sevsnpvm',
    'x-ms-sevsnpvm-is-debuggable': false,
    'x-ms-sevsnpvm-hostdata': HOSTDATA,
    'x-ms-sevsnpvm-guestsvn': 0,
    'x-ms-runtime': { keys: [{ kty: 'RSA', kid: 'k' }] },
  })
    .setProtectedHeader({ alg: 'RS256', kid: 'test' })
    .setIssuer(ISS)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(privateKey);
  tokenFile = join(dir, 'token.jwt');
  writeFileSync(tokenFile, `${jwt}\n`);
  wrappedTokenFile = join(dir, 'token.json');
  writeFileSync(wrappedTokenFile, JSON.stringify({ token: jwt }));
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('policy explain: allowed policy exits 0 and shows every condition', () => {
  const r = run('explain', '--policy', policyFile('ok.json', policyFor(HOSTDATA)), '--token', tokenFile);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /signature is NOT verified/);
  assert.match(r.out, /token issuer: https:\/\/shared\.eus2\.attest\.azure\.net/);
  assert.match(r.out, /\[PASS\] x-ms-attestation-type equals "sevsnpvm" — actual "sevsnpvm"/);
  assert.match(r.out, /\[PASS\] x-ms-sevsnpvm-is-debuggable equals "false" — actual false/);
  assert.match(r.out, /\[FAIL\] x-ms-sevsnpvm-guestsvn greaterOrEquals 1 — actual 0: comparison is false/);
  assert.match(r.out, /\[PASS\] anyOf/);
  assert.match(r.out, /verdict: ALLOWED/);
});

test('policy explain: wrong host_data exits 1 and names the claim', () => {
  const r = run(
    'explain',
    '--policy',
    policyFile('bad.json', policyFor('f'.repeat(64))),
    '--token',
    tokenFile,
  );
  assert.equal(r.code, 1, r.err);
  assert.match(r.out, /\[FAIL\] x-ms-sevsnpvm-hostdata equals "f{64}" — actual "c0ffee0+": value differs/);
  assert.match(r.out, /verdict: DENIED — release policy not satisfied: claim x-ms-sevsnpvm-hostdata/);
});

test('policy explain: other authority denies; --json output; {"token"} wrapper and encoded policy', () => {
  const encoded = {
    contentType: 'application/json; charset=utf-8',
    data: Buffer.from(JSON.stringify(policyFor(HOSTDATA, 'https://elsewhere.attest.azure.net'))).toString(
      'base64url',
    ),
  };
  const r = run(
    'explain',
    '--policy',
    policyFile('enc.json', encoded),
    '--token',
    wrappedTokenFile,
    '--json',
  );
  assert.equal(r.code, 1, r.err);
  const out = JSON.parse(r.out) as {
    signatureVerified: boolean;
    issuer: string;
    allowed: boolean;
    failedClaims: string[];
    results: Array<{ reason?: string }>;
  };
  assert.equal(out.signatureVerified, false);
  assert.equal(out.issuer, ISS);
  assert.equal(out.allowed, false);
  assert.ok(out.failedClaims.includes('x-ms-sevsnpvm-hostdata'));
  assert.ok(out.results.every((x) => x.reason === 'no token from this authority'));
});

test('policy explain: malformed policy is a clear error with its JSON path', () => {
  const bad = { version: '1.0.0', anyOf: [{ authority: ISS, allOf: [{ claim: 'a' }] }] };
  const r = run('explain', '--policy', policyFile('malformed.json', bad), '--token', tokenFile);
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /membrane policy: invalid release policy: condition needs exactly one operator .*\(at anyOf\[0\]\.allOf\[0\]\) \[POLICY_INVALID\]/,
  );
});

test('policy explain: bad token and usage errors', () => {
  const p = policyFile('ok2.json', policyFor(HOSTDATA));
  const notJwt = join(dir, 'nonsense.jwt');
  writeFileSync(notJwt, 'hello');
  const r1 = run('explain', '--policy', p, '--token', notJwt);
  assert.equal(r1.code, 1);
  assert.match(r1.err, /not a compact JWT.*\[TOKEN_INVALID\]/);
  const r2 = run('explain', '--policy', p);
  assert.equal(r2.code, 2); // usage errors exit 2
  assert.match(r2.err, /missing required option --token/);
  const r3 = run('explain', '--help');
  assert.equal(r3.code, 0);
  assert.match(r3.out, /signature is NOT verified/);
  const r4 = run('frobnicate');
  assert.equal(r4.code, 2);
  assert.match(r4.err, /unknown subcommand 'frobnicate'/);
});
