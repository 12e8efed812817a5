/**
 * The publisher/consumer CLI end to end, through the real entry point
 * (`node bin/membrane.mjs`, i.e. dist/): key files, protect -> unprotect round
 * trips with a DEK and with an RSA recipient, every failure leaving no plaintext
 * behind, manifest checks, SDK-written objects, and usage errors (exit 2).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import canonicalizeModule from 'canonicalize';
import { dekKeyId, dekKeyring, rsaThumbprint } from '../../proxies/core/index.js';
import { bytes, sdkEncrypt } from '../helpers/core.js';

const canonicalize = canonicalizeModule as unknown as (v: unknown) => string;
// dist/test/integration -> repository root
const root = resolve(import.meta.dirname, '..', '..', '..');
const bin = join(root, 'bin', 'membrane.mjs');
const F = 4096; // small frames so small files still span several frames
const DS = 'ledger-a';

let dir: string;
let dekFile: string;
let kekPrefix: string;

function membrane(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const mode = (p: string) => statSync(p).mode & 0o777;
const at = (...p: string[]) => join(dir, ...p);

/** Every file under `d`, as relative path -> sha256 (empty map if `d` does not exist). */
function tree(d: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(d)) return out;
  const walk = (p: string) => {
    for (const e of readdirSync(p, { withFileTypes: true })) {
      const abs = join(p, e.name);
      if (e.isDirectory()) walk(abs);
      else out.set(relative(d, abs).split('\\').join('/'), sha256(readFileSync(abs)));
    }
  };
  walk(d);
  return out;
}

/** The plaintext tree: nested dirs, empty, 1 byte, exactly 3 frames, a larger file. */
const plain: Record<string, Buffer> = {
  'a/b/c/deep.bin': bytes(F + 1, 7),
  'empty.txt': Buffer.alloc(0),
  'one.bin': Buffer.from([0x42]),
  'exact.bin': bytes(3 * F, 8),
  'big.bin': bytes(9 * F + 123, 9),
  'sub/notes.csv': Buffer.from('id,value\n1,2\n'),
};

function writeTree(d: string, files: Record<string, Buffer>): void {
  for (const [p, b] of Object.entries(files)) {
    mkdirSync(dirname(join(d, p)), { recursive: true });
    writeFileSync(join(d, p), b);
  }
}

interface UnprotectJson {
  ok: boolean;
  objects: {
    path: string;
    ok: boolean;
    plaintextBytes?: number;
    error?: { code: string; message: string };
  }[];
  missing: string[];
  extra: string[];
}
const parseJson = (s: string) => JSON.parse(s) as UnprotectJson;
const byPath = (j: UnprotectJson) => new Map(j.objects.map((o) => [o.path, o]));

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'membrane-cli-'));
  writeTree(at('in'), plain);
  dekFile = at('dek.key');
  kekPrefix = at('kek');
  assert.equal(membrane('keys', 'generate-dek', '--out', dekFile).code, 0);
  assert.equal(membrane('keys', 'generate-kek', '--out', kekPrefix, '--bits', '2048').code, 0);
  // One protected tree shared by the failure tests below (each works on its own copy).
  const r = membrane(
    'protect',
    '--in',
    at('in'),
    '--out',
    at('ct'),
    '--datasource',
    DS,
    '--dek',
    dekFile,
    '--frame-length',
    String(F),
  );
  assert.equal(r.code, 0, r.err);
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('generate-dek: 32 random bytes, mode 0600, refuses to overwrite unless --force, never prints the key', () => {
  const dek = readFileSync(dekFile);
  assert.equal(dek.length, 32);
  assert.equal(mode(dekFile), 0o600);
  const again = membrane('keys', 'generate-dek', '--out', dekFile);
  assert.equal(again.code, 2);
  assert.match(again.err, /overwrite/);
  assert.ok(readFileSync(dekFile).equals(dek), 'refused overwrite must leave the key alone');

  const f = at('forced.key');
  writeFileSync(f, 'old', { mode: 0o644 });
  const r = membrane('keys', 'generate-dek', '--out', f, '--force', '--json');
  assert.equal(r.code, 0, r.err);
  const k = readFileSync(f);
  assert.equal(k.length, 32);
  assert.equal(mode(f), 0o600, '--force must still leave a 0600 file');
  const j = JSON.parse(r.out) as { keyId: string };
  assert.equal(j.keyId, dekKeyId(k));
  for (const enc of ['hex', 'base64'] as const) assert.ok(!(r.out + r.err).includes(k.toString(enc)));
});

test('generate-kek: PKCS#8 private 0600 + SPKI public, 2048 and 3072 bits', () => {
  assert.equal(mode(`${kekPrefix}.pem`), 0o600);
  const priv = createPrivateKey(readFileSync(`${kekPrefix}.pem`));
  const pub = createPublicKey(readFileSync(`${kekPrefix}.pub.pem`));
  assert.match(readFileSync(`${kekPrefix}.pem`, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  assert.match(readFileSync(`${kekPrefix}.pub.pem`, 'utf8'), /^-----BEGIN PUBLIC KEY-----/);
  assert.equal(priv.asymmetricKeyDetails?.modulusLength, 2048);
  assert.equal(
    createPublicKey(priv).export({ format: 'der', type: 'spki' }).toString('hex'),
    pub.export({ format: 'der', type: 'spki' }).toString('hex'),
  );
  const r = membrane('keys', 'generate-kek', '--out', at('kek3072'), '--bits', '3072', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { thumbprint: string; bits: number };
  const pub3 = createPublicKey(readFileSync(at('kek3072.pub.pem')));
  assert.equal(pub3.asymmetricKeyDetails?.modulusLength, 3072);
  assert.equal(j.thumbprint, rsaThumbprint(pub3));
  assert.equal(mode(at('kek3072.pem')), 0o600);
  assert.ok(!r.out.includes('PRIVATE'));
});

test('wrap-dek / unwrap-dek round trip is RSA-OAEP with SHA-256 hash and MGF1', async () => {
  const w = membrane(
    'keys',
    'wrap-dek',
    '--dek',
    dekFile,
    '--kek-public',
    `${kekPrefix}.pub.pem`,
    '--out',
    at('wrapped.bin'),
    '--json',
  );
  assert.equal(w.code, 0, w.err);
  const wrapped = readFileSync(at('wrapped.bin'));
  assert.equal(wrapped.length, 256);
  // An independent implementation: WebCrypto's RSA-OAEP with SHA-256 fixes MGF1 to SHA-256 too.
  const key = await webcrypto.subtle.importKey(
    'pkcs8',
    createPrivateKey(readFileSync(`${kekPrefix}.pem`)).export({ format: 'der', type: 'pkcs8' }),
    { name: 'RSA-OAEP', hash: 'SHA-256' },
    false,
    ['decrypt'],
  );
  const viaWebCrypto = Buffer.from(await webcrypto.subtle.decrypt({ name: 'RSA-OAEP' }, key, wrapped));
  assert.ok(viaWebCrypto.equals(readFileSync(dekFile)));

  const u = membrane(
    'keys',
    'unwrap-dek',
    '--wrapped',
    at('wrapped.bin'),
    '--kek',
    `${kekPrefix}.pem`,
    '--out',
    at('unwrapped.key'),
    '--json',
  );
  assert.equal(u.code, 0, u.err);
  assert.ok(readFileSync(at('unwrapped.key')).equals(readFileSync(dekFile)));
  assert.equal(mode(at('unwrapped.key')), 0o600);
  assert.equal(
    (JSON.parse(u.out) as { keyId: string }).keyId,
    (JSON.parse(w.out) as { keyId: string }).keyId,
  );

  // The base64 text form (as a Key Vault secret holds it) unwraps too.
  writeFileSync(at('wrapped.b64'), `${wrapped.toString('base64')}\n`);
  const b = membrane(
    'keys',
    'unwrap-dek',
    '--wrapped',
    at('wrapped.b64'),
    '--kek',
    `${kekPrefix}.pem`,
    '--out',
    at('unwrapped2.key'),
  );
  assert.equal(b.code, 0, b.err);
  assert.ok(readFileSync(at('unwrapped2.key')).equals(readFileSync(dekFile)));

  // The wrong KEK fails cleanly and writes nothing.
  membrane('keys', 'generate-kek', '--out', at('other'), '--bits', '2048');
  const bad = membrane(
    'keys',
    'unwrap-dek',
    '--wrapped',
    at('wrapped.bin'),
    '--kek',
    at('other.pem'),
    '--out',
    at('nope.key'),
  );
  assert.equal(bad.code, 1);
  assert.match(bad.err, /KEY_UNWRAP/);
  assert.ok(!existsSync(at('nope.key')));
});

test('protect writes the same layout and a manifest whose digest is SHA-256 of its JCS form', () => {
  const ct = tree(at('ct'));
  assert.deepEqual([...ct.keys()].sort(), [...Object.keys(plain), 'manifest.json'].sort());
  const m = JSON.parse(readFileSync(at('ct', 'manifest.json'), 'utf8')) as {
    version: number;
    datasource: string;
    frameLength: number;
    suite: string;
    objects: {
      path: string;
      plaintextBytes: number;
      ciphertextBytes: number;
      messageId: string;
      ciphertextSha256: string;
    }[];
    digest: string;
  };
  assert.deepEqual([m.version, m.datasource, m.frameLength, m.suite], [1, DS, F, '0x0478']);
  const paths = m.objects.map((o) => o.path);
  assert.deepEqual(paths, [...paths].sort());
  assert.deepEqual([...paths].sort(), Object.keys(plain).sort());
  for (const o of m.objects) {
    assert.equal(o.plaintextBytes, plain[o.path]!.length, o.path);
    assert.equal(o.ciphertextSha256, ct.get(o.path), o.path);
    assert.equal(o.ciphertextBytes, statSync(at('ct', o.path)).size, o.path);
    assert.match(o.messageId, /^[0-9a-f]{64}$/);
  }
  assert.equal(new Set(m.objects.map((o) => o.messageId)).size, m.objects.length);
  const { digest, ...body } = m;
  assert.equal(digest, sha256(Buffer.from(canonicalize(body))));
  // Ciphertext is not plaintext.
  assert.notEqual(ct.get('big.bin'), sha256(plain['big.bin']!));
});

test('unprotect --dek restores identical bytes, outputs 0600, per-object JSON', () => {
  const r = membrane(
    'unprotect',
    '--in',
    at('ct'),
    '--out',
    at('pt-dek'),
    '--datasource',
    DS,
    '--dek',
    dekFile,
    '--json',
  );
  assert.equal(r.code, 0, r.err);
  const j = parseJson(r.out);
  assert.equal(j.ok, true);
  assert.equal(j.objects.length, Object.keys(plain).length);
  const got = tree(at('pt-dek'));
  assert.equal(got.size, Object.keys(plain).length);
  for (const [p, b] of Object.entries(plain)) {
    assert.equal(got.get(p), sha256(b), p);
    assert.equal(byPath(j).get(p)?.plaintextBytes, b.length, p);
  }
  assert.equal(mode(at('pt-dek', 'big.bin')), 0o600);
});

test('protect --recipient / unprotect --private-key round trip (tree and single file)', () => {
  const p = membrane(
    'protect',
    '--in',
    at('in'),
    '--out',
    at('ct-rsa'),
    '--datasource',
    DS,
    '--recipient',
    `${kekPrefix}.pub.pem`,
    '--json',
  );
  assert.equal(p.code, 0, p.err);
  assert.equal((JSON.parse(p.out) as { manifest: { frameLength: number } }).manifest.frameLength, 65536);
  const u = membrane(
    'unprotect',
    '--in',
    at('ct-rsa'),
    '--out',
    at('pt-rsa'),
    '--datasource',
    DS,
    '--private-key',
    `${kekPrefix}.pem`,
  );
  assert.equal(u.code, 0, u.err);
  const got = tree(at('pt-rsa'));
  for (const [path, b] of Object.entries(plain)) assert.equal(got.get(path), sha256(b), path);
  // The DEK is not the key for these objects.
  const wrong = membrane(
    'unprotect',
    '--in',
    at('ct-rsa'),
    '--out',
    at('pt-rsa-wrong'),
    '--datasource',
    DS,
    '--dek',
    dekFile,
  );
  assert.equal(wrong.code, 1);

  // A single file: object path is its base name; --path names a nested object.
  const s = membrane(
    'protect',
    '--in',
    at('in', 'sub', 'notes.csv'),
    '--out',
    at('ct-one'),
    '--datasource',
    DS,
    '--recipient',
    `${kekPrefix}.pub.pem`,
  );
  assert.equal(s.code, 0, s.err);
  assert.deepEqual([...tree(at('ct-one')).keys()].sort(), ['manifest.json', 'notes.csv']);
  const s2 = membrane(
    'unprotect',
    '--in',
    at('ct-one', 'notes.csv'),
    '--out',
    at('pt-one'),
    '--datasource',
    DS,
    '--private-key',
    `${kekPrefix}.pem`,
    '--manifest',
    at('ct-one', 'manifest.json'),
  );
  assert.equal(s2.code, 0, s2.err);
  assert.equal(tree(at('pt-one')).get('notes.csv'), sha256(plain['sub/notes.csv']!));
  const s3 = membrane(
    'unprotect',
    '--in',
    at('ct-rsa', 'sub', 'notes.csv'),
    '--out',
    at('pt-one-b'),
    '--datasource',
    DS,
    '--private-key',
    `${kekPrefix}.pem`,
    '--path',
    'sub/notes.csv',
  );
  assert.equal(s3.code, 0, s3.err);
  assert.equal(tree(at('pt-one-b')).get('sub/notes.csv'), sha256(plain['sub/notes.csv']!));
});

test('wrong key or wrong datasource: exit 1, every object fails, no output file', () => {
  writeFileSync(at('wrong.key'), Buffer.alloc(32, 7), { mode: 0o600 });
  const r = membrane(
    'unprotect',
    '--in',
    at('ct'),
    '--out',
    at('pt-wrong'),
    '--datasource',
    DS,
    '--dek',
    at('wrong.key'),
    '--json',
  );
  assert.equal(r.code, 1);
  const j = parseJson(r.out);
  assert.equal(j.ok, false);
  for (const o of j.objects) assert.equal(o.error?.code, 'FORMAT_NO_KEY', o.path);
  assert.equal(tree(at('pt-wrong')).size, 0);

  // Without a manifest to catch it first, the binding check does.
  cpSync(at('ct'), at('ct-nomf'), { recursive: true });
  rmSync(at('ct-nomf', 'manifest.json'));
  const d = membrane(
    'unprotect',
    '--in',
    at('ct-nomf'),
    '--out',
    at('pt-ds'),
    '--datasource',
    'other',
    '--dek',
    dekFile,
    '--json',
  );
  assert.equal(d.code, 1);
  for (const o of parseJson(d.out).objects) assert.equal(o.error?.code, 'FORMAT_CONTEXT_MISMATCH', o.path);
  assert.equal(tree(at('pt-ds')).size, 0);
});

test('a tampered object fails alone and leaves no partial plaintext; the others succeed', () => {
  cpSync(at('ct'), at('ct-tamper'), { recursive: true });
  const victim = at('ct-tamper', 'big.bin');
  const b = readFileSync(victim);
  b[b.length - 40]! ^= 0x01; // inside the last frame: earlier frames were already released
  writeFileSync(victim, b);
  const r = membrane(
    'unprotect',
    '--in',
    at('ct-tamper'),
    '--out',
    at('pt-tamper'),
    '--datasource',
    DS,
    '--dek',
    dekFile,
    '--json',
  );
  assert.equal(r.code, 1);
  const j = byPath(parseJson(r.out));
  assert.equal(j.get('big.bin')?.ok, false);
  assert.equal(j.get('big.bin')?.error?.code, 'FORMAT_FRAME_AUTH');
  const got = tree(at('pt-tamper'));
  assert.deepEqual(
    [...got.keys()].sort(),
    Object.keys(plain)
      .filter((p) => p !== 'big.bin')
      .sort(),
    'no partial or temporary file',
  );
  for (const [p, v] of Object.entries(plain)) if (p !== 'big.bin') assert.equal(got.get(p), sha256(v), p);
  // Human output names the path and the code on stderr.
  const h = membrane(
    'unprotect',
    '--in',
    at('ct-tamper'),
    '--out',
    at('pt-tamper2'),
    '--datasource',
    DS,
    '--dek',
    dekFile,
  );
  assert.equal(h.code, 1);
  assert.match(h.err, /FAIL big\.bin: .*\[FORMAT_FRAME_AUTH\]/);
});

test('two objects with swapped ciphertexts both fail with FORMAT_CONTEXT_MISMATCH', () => {
  cpSync(at('ct'), at('ct-swap'), { recursive: true });
  renameSync(at('ct-swap', 'exact.bin'), at('ct-swap', 'tmp'));
  renameSync(at('ct-swap', 'big.bin'), at('ct-swap', 'exact.bin'));
  renameSync(at('ct-swap', 'tmp'), at('ct-swap', 'big.bin'));
  const r = membrane(
    'unprotect',
    '--in',
    at('ct-swap'),
    '--out',
    at('pt-swap'),
    '--datasource',
    DS,
    '--dek',
    dekFile,
    '--json',
  );
  assert.equal(r.code, 1);
  const j = byPath(parseJson(r.out));
  for (const p of ['exact.bin', 'big.bin']) assert.equal(j.get(p)?.error?.code, 'FORMAT_CONTEXT_MISMATCH', p);
  const got = tree(at('pt-swap'));
  assert.ok(!got.has('exact.bin') && !got.has('big.bin'));
  assert.equal(got.size, Object.keys(plain).length - 2);
});

test('manifest: digest tamper, pinning, replaced, missing and extra objects', () => {
  const mf = at('ct', 'manifest.json');
  const m = JSON.parse(readFileSync(mf, 'utf8')) as { digest: string; objects: { plaintextBytes: number }[] };

  // Edited without recomputing the digest: refused before any decryption.
  cpSync(at('ct'), at('ct-mf'), { recursive: true });
  const edited = structuredClone(m);
  edited.objects[0]!.plaintextBytes += 1;
  writeFileSync(at('ct-mf', 'manifest.json'), JSON.stringify(edited));
  const t = membrane(
    'unprotect',
    '--in',
    at('ct-mf'),
    '--out',
    at('pt-mf'),
    '--datasource',
    DS,
    '--dek',
    dekFile,
  );
  assert.equal(t.code, 1);
  assert.match(t.err, /MANIFEST_DIGEST/);
  assert.equal(tree(at('pt-mf')).size, 0);

  // Reformatted (whitespace, member order) is still the same manifest: JCS.
  const { digest, ...body } = m;
  writeFileSync(at('ct-mf', 'manifest.json'), JSON.stringify({ digest, ...body }));
  const pinned = membrane(
    'unprotect',
    '--in',
    at('ct-mf'),
    '--out',
    at('pt-pin'),
    '--datasource',
    DS,
    '--dek',
    dekFile,
    '--manifest-digest',
    m.digest,
  );
  assert.equal(pinned.code, 0, pinned.err);
  const wrongPin = membrane(
    'unprotect',
    '--in',
    at('ct-mf'),
    '--out',
    at('pt-pin2'),
    '--datasource',
    DS,
    '--dek',
    dekFile,
    '--manifest-digest',
    'ab'.repeat(32),
  );
  assert.equal(wrongPin.code, 1);
  assert.match(wrongPin.err, /MANIFEST_DIGEST/);

  // A valid object for the same path and key, but not the pinned one; plus one missing and one extra.
  writeTree(at('in2'), { 'one.bin': Buffer.from([0x43]), 'new.bin': Buffer.from('new') });
  assert.equal(
    membrane('protect', '--in', at('in2'), '--out', at('ct2'), '--datasource', DS, '--dek', dekFile).code,
    0,
  );
  cpSync(at('ct2', 'one.bin'), at('ct-mf', 'one.bin'));
  cpSync(at('ct2', 'new.bin'), at('ct-mf', 'new.bin'));
  rmSync(at('ct-mf', 'sub', 'notes.csv'));
  const r = membrane(
    'unprotect',
    '--in',
    at('ct-mf'),
    '--out',
    at('pt-mf3'),
    '--datasource',
    DS,
    '--dek',
    dekFile,
    '--json',
  );
  assert.equal(r.code, 1);
  const j = parseJson(r.out);
  const o = byPath(j);
  assert.equal(o.get('one.bin')?.error?.code, 'MANIFEST_MISMATCH');
  assert.equal(o.get('sub/notes.csv')?.error?.code, 'MANIFEST_MISSING');
  assert.equal(o.get('new.bin')?.error?.code, 'MANIFEST_EXTRA');
  assert.deepEqual(j.missing, ['sub/notes.csv']);
  assert.deepEqual(j.extra, ['new.bin']);
  const got = tree(at('pt-mf3'));
  assert.ok(!got.has('one.bin') && !got.has('new.bin'));
  assert.equal(got.get('big.bin'), sha256(plain['big.bin']!));
});

test('objects written by @aws-crypto/client-node decrypt with membrane unprotect', async () => {
  const keyring = dekKeyring(readFileSync(dekFile));
  const files: Record<string, Buffer> = {
    'sdk/empty': Buffer.alloc(0),
    'sdk/frames-4096': bytes(3 * 4096 + 5, 11),
    'sdk/default-frames': bytes(70_000, 12),
  };
  const ds = 'sdk-source';
  for (const [p, b] of Object.entries(files)) {
    const frameLength = p.endsWith('4096') ? 4096 : 65536;
    const ct = await sdkEncrypt(keyring, b, { datasource: ds, path: p }, frameLength);
    mkdirSync(dirname(at('ct-sdk', p)), { recursive: true });
    writeFileSync(at('ct-sdk', p), ct);
  }
  const r = membrane(
    'unprotect',
    '--in',
    at('ct-sdk'),
    '--out',
    at('pt-sdk'),
    '--datasource',
    ds,
    '--dek',
    dekFile,
  );
  assert.equal(r.code, 0, r.err);
  const got = tree(at('pt-sdk'));
  for (const [p, b] of Object.entries(files)) assert.equal(got.get(p), sha256(b), p);
});

test('protect refuses inputs it cannot represent', () => {
  writeTree(at('in-mf'), { 'manifest.json': Buffer.from('{}'), 'x.bin': Buffer.from('x') });
  const r = membrane(
    'protect',
    '--in',
    at('in-mf'),
    '--out',
    at('ct-mf-refused'),
    '--datasource',
    DS,
    '--dek',
    dekFile,
  );
  assert.equal(r.code, 1);
  assert.match(r.err, /manifest\.json.*\[INPUT_UNSUPPORTED\]/s);
  assert.equal(tree(at('ct-mf-refused')).size, 0);
});

const usage: [string, string[], RegExp][] = [
  ['protect without --datasource', ['protect', '--in', 'IN', '--out', 'OUT', '--dek', 'DEK'], /--datasource/],
  [
    'protect with both keys',
    ['protect', '--in', 'IN', '--out', 'OUT', '--datasource', 'd', '--dek', 'DEK', '--recipient', 'PUB'],
    /--dek or --recipient/,
  ],
  [
    'protect with no key',
    ['protect', '--in', 'IN', '--out', 'OUT', '--datasource', 'd'],
    /--dek or --recipient/,
  ],
  [
    'protect --frame-length 0',
    ['protect', '--in', 'IN', '--out', 'OUT', '--datasource', 'd', '--dek', 'DEK', '--frame-length', '0'],
    /--frame-length/,
  ],
  [
    'protect --out inside --in',
    ['protect', '--in', 'IN', '--out', 'IN/x', '--datasource', 'd', '--dek', 'DEK'],
    /--out/,
  ],
  [
    'protect --in missing',
    ['protect', '--in', 'NOPE', '--out', 'OUT', '--datasource', 'd', '--dek', 'DEK'],
    /--in/,
  ],
  ['unprotect without --out', ['unprotect', '--in', 'CT', '--datasource', 'd', '--dek', 'DEK'], /--out/],
  [
    'unprotect with both keys',
    ['unprotect', '--in', 'CT', '--out', 'OUT', '--datasource', 'd', '--dek', 'DEK', '--private-key', 'PRIV'],
    /--private-key/,
  ],
  ['unprotect unknown flag', ['unprotect', '--in', 'CT', '--bogus'], /--bogus/],
  [
    'unprotect bad --manifest-digest',
    [
      'unprotect',
      '--in',
      'CT',
      '--out',
      'OUT',
      '--datasource',
      'd',
      '--dek',
      'DEK',
      '--manifest-digest',
      'xyz',
    ],
    /--manifest-digest/,
  ],
  ['keys without subcommand', ['keys'], /subcommand/],
  ['keys unknown subcommand', ['keys', 'rotate'], /rotate/],
  ['generate-dek without --out', ['keys', 'generate-dek'], /--out/],
  ['generate-kek --bits 1024', ['keys', 'generate-kek', '--out', 'OUT', '--bits', '1024'], /--bits/],
  ['wrap-dek without --kek-public', ['keys', 'wrap-dek', '--dek', 'DEK', '--out', 'OUT'], /--kek-public/],
  ['unwrap-dek without --wrapped', ['keys', 'unwrap-dek', '--kek', 'PRIV', '--out', 'OUT'], /--wrapped/],
];
for (const [name, args, flag] of usage) {
  test(`usage error, exit 2: ${name}`, () => {
    const subst: Record<string, string> = {
      IN: at('in'),
      OUT: at('usage-out'),
      DEK: dekFile,
      PUB: `${kekPrefix}.pub.pem`,
      PRIV: `${kekPrefix}.pem`,
      CT: at('ct'),
      NOPE: at('does-not-exist'),
    };
    const r = membrane(
      ...args.map((a) => a.replace(/^(IN|OUT|DEK|PUB|PRIV|CT|NOPE)(?=\/|$)/, (k) => subst[k]!)),
    );
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, flag);
    assert.match(r.err, /\[USAGE\]/);
    assert.ok(!existsSync(at('usage-out')), 'a usage error writes nothing');
  });
}

test('--help on every command exits 0', () => {
  for (const args of [
    ['keys', '--help'],
    ['protect', '--help'],
    ['unprotect', '--help'],
    ['keys', 'wrap-dek', '--help'],
  ]) {
    const r = membrane(...args);
    assert.equal(r.code, 0, args.join(' '));
    assert.match(r.out, /Usage: membrane/);
  }
});
