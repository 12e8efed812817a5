/**
 * Trustee KBS client against a loopback mock KBS written from the RCAR protocol
 * description (kbs_attestation_protocol.md, protocol 0.4.0): auth -> challenge + session
 * cookie, attest (runtime-data binding checked), resource -> flattened JWE.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, test } from 'node:test';
import { FlattenedEncrypt, importJWK, type JWK, SignJWT } from 'jose';
import { isMembraneError } from '../../policy/errors.js';
import type { Evidence, EvidenceProvider } from '../../skr-client/evidence/types.js';
import {
  KbsClient,
  type KbsClientOptions,
  kbsRuntimeDigest,
  resourcePath,
} from '../../skr-client/kbs/client.js';

interface Session {
  nonce: string;
  tee: string;
  hash: string;
  pubkey?: JWK;
}

const ERR = 'https://github.com/confidential-containers/kbs/errors/';
const resources = new Map<string, Buffer>([
  ['default/key/dek', randomBytes(32)],
  ['cleanroom/secret/config', Buffer.from('{"ok":true}')],
]);

const mock = {
  version: '0.4.0',
  selectHash: undefined as string | undefined,
  denyAttestation: false,
  deniedResources: new Set<string>(),
  expireOnce: false,
  tamper: false,
  wrongAlg: false,
  authCalls: 0,
  lastAttestation: undefined as Record<string, unknown> | undefined,
};

let server: Server;
let base: string;
const sessions = new Map<string, Session>();

function reset() {
  Object.assign(mock, {
    version: '0.4.0',
    selectHash: undefined,
    denyAttestation: false,
    deniedResources: new Set<string>(),
    expireOnce: false,
    tamper: false,
    wrongAlg: false,
    authCalls: 0,
    lastAttestation: undefined,
  });
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, status: number, payload: unknown, cookie?: string) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (cookie) headers['set-cookie'] = `kbs-session-id=${cookie}; Path=/kbs/v0; HttpOnly`;
  res.writeHead(status, headers);
  res.end(JSON.stringify(payload));
}

const errorInfo = (type: string, detail: string) => ({ type: ERR + type, detail });

/** RFC 8785 canonical JSON, written independently of the client (objects sorted by key). */
function jcs(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(jcs).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${jcs((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/** The server re-serialises tee-pubkey from a typed struct: only the known members count. */
function typedPubkey(p: Record<string, string>): JWK {
  return p.kty === 'RSA'
    ? { kty: 'RSA', alg: p.alg!, n: p.n!, e: p.e! }
    : { kty: 'EC', crv: p.crv!, alg: p.alg!, x: p.x!, y: p.y! };
}

async function handle(req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url ?? '/', base);
  const cookie = /kbs-session-id=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
  const session = cookie ? sessions.get(cookie) : undefined;

  if (req.method === 'POST' && url.pathname === '/kbs/v0/auth') {
    mock.authCalls++;
    const r = JSON.parse(await body(req)) as { version: string; tee: string; 'extra-params': unknown };
    if (r.version !== mock.version)
      return send(
        res,
        401,
        errorInfo(
          'ProtocolVersion',
          `KBS Client Protocol Version Mismatch: expect =${mock.version} while the request is ${r.version}`,
        ),
      );
    if (!['snp', 'sample'].includes(r.tee)) return send(res, 401, errorInfo('UnsupportedTee', r.tee));
    const id = randomUUID();
    const nonce = randomBytes(32).toString('base64');
    sessions.set(id, { nonce, tee: r.tee, hash: mock.selectHash ?? 'sha384' });
    return send(
      res,
      200,
      {
        nonce,
        'extra-params': mock.selectHash ? { 'selected-hash-algorithm': mock.selectHash.toUpperCase() } : '',
      },
      id,
    );
  }

  if (req.method === 'POST' && url.pathname === '/kbs/v0/attest') {
    if (!session) return send(res, 401, errorInfo('RcarAttestFailed', 'cookie not found'));
    const a = JSON.parse(await body(req)) as {
      'runtime-data': { nonce: string; 'tee-pubkey': Record<string, string> };
      'tee-evidence': { primary_evidence: Record<string, string>; additional_evidence: string };
    };
    mock.lastAttestation = a as unknown as Record<string, unknown>;
    if (a['runtime-data'].nonce !== session.nonce)
      return send(res, 401, errorInfo('RcarAttestFailed', 'the nonce in the handshake session is different'));
    const pubkey = typedPubkey(a['runtime-data']['tee-pubkey']);
    const primaryRuntime = {
      'tee-pubkey': pubkey,
      nonce: session.nonce,
      'additional-evidence': a['tee-evidence'].additional_evidence,
    };
    const digest = createHash(session.hash).update(jcs(primaryRuntime)).digest();
    const ev = a['tee-evidence'].primary_evidence;
    let bound: Buffer;
    let expected: Buffer;
    if (session.tee === 'sample') {
      bound = Buffer.from(ev.report_data ?? '', 'base64');
      expected = digest;
    } else {
      bound = Buffer.from(ev.report ?? '', 'base64').subarray(0x50, 0x90);
      expected = Buffer.concat([digest, Buffer.alloc(64 - digest.length)]);
    }
    if (!bound.equals(expected))
      return send(
        res,
        401,
        errorInfo('RcarAttestFailed', 'verify TEE evidence failed: report data mismatch'),
      );
    if (mock.denyAttestation)
      return send(
        res,
        401,
        errorInfo('RcarAttestFailed', 'verify TEE evidence failed: attestation policy denied'),
      );
    session.pubkey = pubkey;
    const token = await new SignJWT({ 'tee-pubkey': pubkey, 'tcb-status': { 'snp.reported_tcb_snp': 3 } })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('mock-kbs')
      .setExpirationTime('5m')
      .sign(randomBytes(32));
    return send(res, 200, { token }, cookie);
  }

  const m = /^\/kbs\/v0\/resource\/(.+)$/.exec(url.pathname);
  if (req.method === 'GET' && m) {
    if (!session?.pubkey || mock.expireOnce) {
      mock.expireOnce = false;
      if (cookie) sessions.delete(cookie);
      return send(res, 401, errorInfo('TokenNotFound', 'The session is not authorized'));
    }
    const path = m[1]!;
    if (mock.deniedResources.has(path))
      return send(res, 401, errorInfo('PolicyDeny', 'Resource policy deny'));
    const data = resources.get(path);
    if (!data) return send(res, 404, errorInfo('ResourceNotFound', `resource ${path} not found`));
    const alg = mock.wrongAlg
      ? session.pubkey.kty === 'RSA'
        ? 'RSA-OAEP'
        : 'ECDH-ES+A128KW'
      : session.pubkey.alg!;
    const key = await importJWK(session.pubkey, alg);
    const jwe = await new FlattenedEncrypt(data).setProtectedHeader({ alg, enc: 'A256GCM' }).encrypt(key);
    if (mock.tamper) {
      const ct = Buffer.from(jwe.ciphertext, 'base64url');
      ct[0] = ct[0]! ^ 1;
      jwe.ciphertext = ct.toString('base64url');
    }
    // Trustee repeats the protected header as "aad".
    return send(res, 200, { ...jwe, aad: jwe.protected });
  }
  send(res, 404, errorInfo('NotFound', url.pathname));
}

/** An SNP-shaped provider: a 1184-byte report carrying the requested report_data. */
function provider(opts: { ignoreReportData?: boolean } = {}): EvidenceProvider & { asked: Buffer[] } {
  const asked: Buffer[] = [];
  return {
    name: 'virtual',
    source: 'test',
    asked,
    async getEvidence(reportData: Uint8Array): Promise<Evidence> {
      asked.push(Buffer.from(reportData));
      const report = Buffer.alloc(1184);
      report.writeUInt32LE(2, 0);
      if (!opts.ignoreReportData) Buffer.from(reportData).copy(report, 0x50);
      return { provider: 'virtual', source: 'test', report, collateral: {} };
    },
  };
}

before(async () => {
  server = createServer((req, res) => {
    handle(req, res).catch((e) => send(res, 500, errorInfo('Internal', String(e))));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

beforeEach(reset);

const client = (o: Partial<KbsClientOptions> = {}) =>
  new KbsClient({ url: base, tee: 'snp', provider: provider(), ...o });

for (const keyType of ['EC', 'RSA'] as const) {
  test(`snp + ${keyType} key: attest, fetch and decrypt a resource; binding is SHA-384 over JCS runtime data`, async () => {
    const p = provider();
    const c = new KbsClient({ url: base, tee: 'snp', provider: p, keyType });
    const data = await c.getResource('default/key/dek');
    assert.deepEqual(data, resources.get('default/key/dek'));
    // The attestation the mock saw: 0.4.0 shape, tee-pubkey with only the typed members.
    const a = mock.lastAttestation as {
      'runtime-data': { nonce: string; 'tee-pubkey': Record<string, string> };
      'tee-evidence': Record<string, unknown>;
    };
    assert.deepEqual(Object.keys(a), ['runtime-data', 'tee-evidence']);
    assert.deepEqual(Object.keys(a['tee-evidence']), ['primary_evidence', 'additional_evidence']);
    const pub = a['runtime-data']['tee-pubkey'];
    assert.deepEqual(
      Object.keys(pub).sort(),
      keyType === 'EC' ? ['alg', 'crv', 'kty', 'x', 'y'] : ['alg', 'e', 'kty', 'n'],
    );
    assert.equal(pub.alg, keyType === 'EC' ? 'ECDH-ES+A256KW' : 'RSA-OAEP-256');
    // What the provider was asked for: SHA-384 digest zero-padded to 64 bytes.
    const digest = createHash('sha384')
      .update(jcs({ 'tee-pubkey': pub, nonce: a['runtime-data'].nonce, 'additional-evidence': '' }))
      .digest();
    assert.deepEqual(p.asked[0], Buffer.concat([digest, Buffer.alloc(16)]));
    // The cookie session serves a second resource without a new handshake.
    assert.deepEqual(
      await c.getResource({ repository: 'cleanroom', type: 'secret', tag: 'config' }),
      resources.get('cleanroom/secret/config'),
    );
    assert.equal(mock.authCalls, 1);
  });
}

test('sample tee honours selected-hash-algorithm (SHA512) and sends the sample quote', async () => {
  mock.selectHash = 'sha512';
  const c = new KbsClient({ url: base, tee: 'sample', keyType: 'EC' });
  const att = await c.attest();
  assert.equal(att.hashAlgorithm, 'sha512');
  assert.equal(att.claims.iss, 'mock-kbs');
  const ev = (mock.lastAttestation as { 'tee-evidence': { primary_evidence: Record<string, string> } })[
    'tee-evidence'
  ].primary_evidence;
  assert.equal(ev.svn, '1');
  assert.equal(Buffer.from(ev.report_data!, 'base64').length, 64);
  assert.deepEqual(await c.getResource('default/key/dek'), resources.get('default/key/dek'));
});

test('kbsRuntimeDigest: canonical (RFC 8785) key order, additional-evidence included', () => {
  const pub = { kty: 'EC', crv: 'P-256', alg: 'ECDH-ES+A256KW', x: 'X', y: 'Y' } as const;
  const expectedJson =
    '{"additional-evidence":"","nonce":"N","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"X","y":"Y"}}';
  assert.deepEqual(
    kbsRuntimeDigest({ nonce: 'N', 'tee-pubkey': pub }, 'sha384'),
    createHash('sha384').update(expectedJson).digest(),
  );
  assert.equal(kbsRuntimeDigest({ nonce: 'N', 'tee-pubkey': pub }, 'sha256').length, 32);
});

test('resource policy denial (401 PolicyDeny) is a clear KBS_POLICY_DENIED naming the resource', async () => {
  mock.deniedResources.add('default/key/dek');
  await assert.rejects(client().getResource('default/key/dek'), (e: unknown) => {
    assert.ok(isMembraneError(e, 'KBS_POLICY_DENIED'), String(e));
    assert.match(
      e.message,
      /resource policy denied access to default\/key\/dek \(HTTP 401: PolicyDeny: Resource policy deny\)/,
    );
    assert.match(e.message, /the attestation succeeded/);
    return true;
  });
  assert.equal(mock.authCalls, 1); // a policy denial does not trigger another handshake
});

test('attestation refused by the KBS policy is KBS_ATTESTATION_REFUSED with the KBS detail', async () => {
  mock.denyAttestation = true;
  await assert.rejects(client().attest(), (e: unknown) => {
    assert.ok(isMembraneError(e, 'KBS_ATTESTATION_REFUSED'), String(e));
    assert.match(
      e.message,
      /HTTP 401: RcarAttestFailed: verify TEE evidence failed: attestation policy denied/,
    );
    return true;
  });
});

test('the mock checks the binding: evidence for other report_data is refused by the KBS', async () => {
  const c = new KbsClient({
    url: base,
    tee: 'snp',
    provider: provider(),
    // Send a report whose report_data is not the runtime-data digest.
    encodeEvidence: ({ evidence }) => {
      const r = Buffer.from(evidence!.report);
      r[0x50] = r[0x50]! ^ 0xff;
      return { report: r.toString('base64'), vcek_cert_chain: null };
    },
  });
  await assert.rejects(
    c.attest(),
    (e: unknown) => isMembraneError(e, 'KBS_ATTESTATION_REFUSED') && /report data mismatch/.test(e.message),
  );
});

test('a provider that does not bind report_data is caught before anything is sent', async () => {
  const c = new KbsClient({ url: base, tee: 'snp', provider: provider({ ignoreReportData: true }) });
  await assert.rejects(c.attest(), (e: unknown) => isMembraneError(e, 'KBS_EVIDENCE'));
  assert.equal(mock.lastAttestation, undefined);
});

test('protocol version mismatch is KBS_AUTH_REFUSED with the server detail', async () => {
  mock.version = '0.5.0';
  await assert.rejects(client().attest(), (e: unknown) => {
    assert.ok(isMembraneError(e, 'KBS_AUTH_REFUSED'), String(e));
    assert.match(e.message, /Version Mismatch: expect =0\.5\.0 while the request is 0\.4\.0/);
    assert.match(e.message, /speaks protocol 0\.4\.0/);
    return true;
  });
});

test('unknown resource is KBS_NOT_FOUND', async () => {
  await assert.rejects(
    client().getResource('default/key/missing'),
    (e: unknown) => isMembraneError(e, 'KBS_NOT_FOUND') && /default\/key\/missing/.test(e.message),
  );
});

test('an expired session is re-attested once, transparently', async () => {
  const c = client();
  await c.attest();
  mock.expireOnce = true;
  assert.deepEqual(await c.getResource('default/key/dek'), resources.get('default/key/dek'));
  assert.equal(mock.authCalls, 2);
});

for (const [name, setup, re] of [
  [
    'tampered ciphertext',
    () => {
      mock.tamper = true;
    },
    /not encrypted to this TEE key or was altered/,
  ],
  [
    'unexpected key-management algorithm',
    () => {
      mock.wrongAlg = true;
    },
    /uses an algorithm other than/,
  ],
] as const)
  for (const keyType of ['EC', 'RSA'] as const)
    test(`${name} (${keyType}) is KBS_DECRYPT_FAILED`, async () => {
      setup();
      await assert.rejects(
        new KbsClient({ url: base, tee: 'snp', provider: provider(), keyType }).getResource(
          'default/key/dek',
        ),
        (e: unknown) => isMembraneError(e, 'KBS_DECRYPT_FAILED') && re.test(e.message),
      );
    });

const pathCases: Array<[string | { repository: string; type: string; tag: string }, string | null]> = [
  ['default/key/dek', 'default/key/dek'],
  ['/default/key/dek', 'default/key/dek'],
  [{ repository: 'a', type: 'b', tag: 'c.1_x-y' }, 'a/b/c.1_x-y'],
  ['default/key', null],
  ['default/key/dek/extra', null],
  ['default/../dek', null],
  ['default/key/d%2Fek', null],
  ['default//dek', null],
];
for (const [input, expected] of pathCases)
  test(`resourcePath(${JSON.stringify(input)})`, () => {
    if (expected) assert.equal(resourcePath(input), expected);
    else
      assert.throws(
        () => resourcePath(input),
        (e: unknown) => isMembraneError(e, 'USAGE'),
      );
  });

test('constructor refuses snp without a provider and a non-http URL', () => {
  assert.throws(() => new KbsClient({ url: base, tee: 'snp' }), /needs an evidence provider/);
  assert.throws(() => new KbsClient({ url: 'ftp://x', tee: 'sample' }), /must be http\(s\)/);
});
