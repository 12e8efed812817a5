/**
 * Provenance of outputs and names in stores (issue 12, defects 10 and 12), without FUSE: a sealed
 * datasink assembled over an fs store with a run key, as `membrane up` mounts it, then the real
 * `membrane unprotect` (node bin/membrane.mjs) verifying the store as the consumer would.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { OPAQUE_NAME_RE, sinkManifestRun } from '../../policy/sink-manifest.js';
import { FsStore } from '../../proxies/blob-volume/store/index.js';
import { assembleVolume } from '../../proxies/blob-volume/volume.js';
import { rsaKeyring } from '../../proxies/core/index.js';
import { createRunKey, type RunKey } from '../../runtime/provenance.js';

const root = resolve(import.meta.dirname, '..', '..', '..');
const bin = join(root, 'bin', 'membrane.mjs');
const SINK = 'results';
const FILES: Record<string, string> = {
  'reports/quarterly-summary.csv': 'region,total\nnorth,42\n',
  'reports/2024/covert-channel-name.txt': 'hello',
  'top-secret-merger.json': '{"ok":true}',
};

let dir: string;
let consumerPem: string;
let consumerPub: string;

function membrane(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'membrane-provenance-'));
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  consumerPem = join(dir, 'consumer.pem');
  consumerPub = join(dir, 'consumer.pub.pem');
  writeFileSync(consumerPem, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  writeFileSync(consumerPub, publicKey.export({ format: 'pem', type: 'spki' }));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** One run of a trusted sink into `store`: writes `files`, commits, writes the signed manifest. */
async function run(store: string, files: Record<string, string>): Promise<{ key: RunKey; pub: string }> {
  const key = createRunKey();
  const stagingDir = mkdtempSync(join(dir, 'staging-'));
  const v = await assembleVolume({
    name: SINK,
    mountpoint: join(stagingDir, 'unused-mountpoint'),
    store: new FsStore(store),
    kind: 'datasink',
    protection: { mode: 'trusted', recipient: rsaKeyring({ publicKey: readFileSync(consumerPub, 'utf8') }) },
    stagingDir,
    listingTtlMs: 0,
    provenance: key.provenance(),
    log: () => {},
  });
  const ops = v.sink!;
  for (const [path, text] of Object.entries(files)) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) await ops.mkdir(parts.slice(0, i).join('/')).catch(() => {});
    const buf = Buffer.from(text);
    const fh = await ops.create(path, 0o644);
    await ops.write(path, fh, buf, buf.length, 0);
    await ops.flush(path, fh);
    await ops.release(path, fh);
  }
  assert.deepEqual(await ops.flushAll(), []);
  await v.manifest!.write();
  await v.close();
  key.destroy();
  const pub = join(dir, `run-${key.runId}.pub.pem`);
  writeFileSync(pub, key.publicKeyPem);
  return { key, pub };
}

function unprotect(store: string, ...extra: string[]) {
  const out = mkdtempSync(join(dir, 'out-'));
  const r = membrane(
    'unprotect',
    '--in',
    store,
    '--out',
    out,
    '--datasource',
    SINK,
    '--private-key',
    consumerPem,
    '--json',
    ...extra,
  );
  const json = r.out.trim() ? JSON.parse(r.out) : undefined;
  const codes = new Map<string, string>(
    (json?.objects ?? [])
      .filter((o: { ok: boolean }) => !o.ok)
      .map((o: { path: string; error: { code: string } }) => [o.path, o.error.code]),
  );
  return { ...r, out, json, codes };
}

function readTree(d: string): Record<string, string> {
  const res: Record<string, string> = {};
  const walk = (p: string, rel: string) => {
    for (const e of readdirSync(p, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(join(p, e.name), r);
      else res[r] = readFileSync(join(p, e.name), 'utf8');
    }
  };
  walk(d, '');
  return res;
}

test('defect 12.12: a sealed sink stores no plaintext file or directory name, and unprotect restores the tree', async () => {
  const store = mkdtempSync(join(dir, 'store-'));
  const { pub } = await run(store, FILES);
  const listing = readdirSync(store, { recursive: true }).map(String);
  for (const name of listing)
    assert.ok(
      OPAQUE_NAME_RE.test(name) || sinkManifestRun(name) !== undefined,
      `unexpected store name ${name}`,
    );
  const words = Object.keys(FILES).flatMap((p) => p.split('/'));
  const text =
    listing.join('\n') + readFileSync(join(store, listing.find((n) => sinkManifestRun(n))!), 'utf8');
  for (const w of words)
    for (const enc of [
      w,
      Buffer.from(w).toString('hex'),
      Buffer.from(w).toString('base64'),
      Buffer.from(w).toString('base64url'),
    ])
      assert.ok(!text.includes(enc), `store listing or manifest reveals '${w}' (as ${enc})`);
  const r = unprotect(store, '--signer', pub);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(readTree(r.out), FILES);
});

test('defect 12.10: a report forged with `membrane protect --recipient consumer.pub.pem` is refused by unprotect', async () => {
  const store = mkdtempSync(join(dir, 'store-'));
  const { pub } = await run(store, FILES);
  // The storage operator holds the consumer's public key, as everyone does.
  const forgedIn = mkdtempSync(join(dir, 'forged-in-'));
  writeFileSync(join(forgedIn, 'report.csv'), 'region,total\nnorth,1000000\n');
  const forgedOut = join(dir, `forged-out-${randomBytes(4).toString('hex')}`);
  const p = membrane(
    'protect',
    '--in',
    forgedIn,
    '--out',
    forgedOut,
    '--datasource',
    SINK,
    '--recipient',
    consumerPub,
  );
  assert.equal(p.code, 0, p.err);
  cpSync(join(forgedOut, 'report.csv'), join(store, 'report.csv'));
  const opaque = 'f'.repeat(64);
  cpSync(join(forgedOut, 'report.csv'), join(store, opaque));

  const r = unprotect(store, '--signer', pub);
  assert.equal(r.code, 1);
  assert.equal(r.codes.get('report.csv'), 'PROVENANCE_FORGED');
  assert.equal(r.codes.get(opaque), 'PROVENANCE_FORGED');
  assert.deepEqual(readTree(r.out), FILES, 'the genuine outputs still verify; nothing forged is written');
  // Without a way to check provenance, a sink is not unprotected at all.
  const bare = unprotect(store);
  assert.equal(bare.code, 2);
  assert.match(bare.err, /--signer or --maa/);
  // A store stripped of its manifests has no provenance.
  const stripped = mkdtempSync(join(dir, 'stripped-'));
  cpSync(join(forgedOut, 'report.csv'), join(stripped, 'report.csv'));
  const s = unprotect(stripped, '--signer', pub);
  assert.equal(s.code, 1);
  assert.match(s.err, /PROVENANCE_NO_MANIFEST/);
});

test('defect 12.10: modified, missing and re-signed outputs and manifests are refused with typed errors', async () => {
  const cases: [string, (store: string, names: string[]) => void, RegExp | [string, string]][] = [
    [
      'an object replaced by another genuine object of the run',
      (store, names) => cpSync(join(store, names[0]!), join(store, names[1]!)),
      ['*', 'PROVENANCE_MODIFIED'],
    ],
    ['an object deleted', (store, names) => unlinkSync(join(store, names[0]!)), ['*', 'PROVENANCE_MISSING']],
    [
      'a manifest edited (run counter)',
      (store) => {
        const m = readdirSync(store).find((n) => sinkManifestRun(n))!;
        const j = JSON.parse(readFileSync(join(store, m), 'utf8'));
        j.time = new Date(Date.parse(j.time) + 1000).toISOString();
        writeFileSync(join(store, m), JSON.stringify(j));
      },
      /PROVENANCE_SIGNATURE/,
    ],
    [
      "a manifest re-signed with the operator's own key",
      (store) => {
        const m = readdirSync(store).find((n) => sinkManifestRun(n))!;
        const j = JSON.parse(readFileSync(join(store, m), 'utf8'));
        const k = createRunKey();
        j.signer.publicKey = k.publicKey.toString('base64url');
        j.signer.thumbprint = k.thumbprint;
        writeFileSync(join(store, m), JSON.stringify(j));
      },
      /PROVENANCE_UNBOUND/,
    ],
  ];
  for (const [what, tamper, expected] of cases) {
    const store = mkdtempSync(join(dir, 'store-'));
    const { pub } = await run(store, FILES);
    const names = readdirSync(store)
      .filter((n) => OPAQUE_NAME_RE.test(n))
      .sort();
    tamper(store, names);
    const r = unprotect(store, '--signer', pub);
    assert.equal(r.code, 1, `${what}: ${r.err}`);
    if (Array.isArray(expected))
      assert.ok([...r.codes.values()].includes(expected[1]), `${what}: ${[...r.codes.values()]}`);
    else assert.match(r.err, expected, what);
  }
});

test('defect 12.10: runs are numbered; a store rolled back to an earlier run is refused with --run', async () => {
  const store = mkdtempSync(join(dir, 'store-'));
  const first = await run(store, { 'a.csv': 'run one' });
  const second = await run(store, { 'a.csv': 'run two' });
  const manifests = readdirSync(store)
    .filter((n) => sinkManifestRun(n))
    .sort();
  assert.deepEqual(
    manifests.map((n) => sinkManifestRun(n)),
    [1, 2],
  );
  const ok = unprotect(store, '--signer', second.pub, '--run', '2');
  assert.equal(ok.code, 0, ok.err);
  assert.deepEqual(readTree(ok.out), { 'a.csv': 'run two' });
  assert.equal(ok.json.sink.otherRunObjects, 1, 'run 1 objects are skipped, not refused');
  // The operator deletes run 2's manifest: run 1 is all that is left.
  rmSync(join(store, manifests[1]!));
  const rolled = unprotect(store, '--signer', first.pub, '--run', '2');
  assert.equal(rolled.code, 1);
  assert.match(rolled.err, /PROVENANCE_ROLLBACK/);
  const gone = unprotect(store, '--signer', second.pub);
  assert.equal(gone.code, 1);
  assert.match(gone.err, /PROVENANCE_UNBOUND/);
  const late = unprotect(
    store,
    '--signer',
    first.pub,
    '--not-before',
    new Date(Date.now() + 3600_000).toISOString(),
  );
  assert.equal(late.code, 1);
  assert.match(late.err, /PROVENANCE_ROLLBACK/);
});
