/**
 * `membrane up` end to end against the local emulators, with real FUSE mounts:
 * the happy path (readiness, the app reads plaintext and writes a sealed output,
 * its exit code is ours), fail-closed starts (nothing mounted, one clear message,
 * audited), and shutdown on SIGTERM.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { dekKeyring, openBuffer, rsaKeyring, sealBuffer } from '../../proxies/core/index.js';
import { type RunningEmulators, startEmulators } from '../../skr-client/emulators/index.js';
import { http } from '../../skr-client/http.js';

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = join(repoRoot, 'bin', 'membrane.mjs');

let emu: RunningEmulators;
let work: string;
const policy = Buffer.from('package policy\n# up.slow.test clean room\n');
const hostData = createHash('sha256').update(policy).digest('hex');
const dek = randomBytes(32);
const kek = generateKeyPairSync('rsa', { modulusLength: 2048 });
const consumer = generateKeyPairSync('rsa', { modulusLength: 2048 });
const csv = Buffer.from('id,amount\n1,10\n2,20\n3,30\n');

async function kv(method: 'PUT', path: string, body: unknown) {
  return http('test key vault', `${emu.kvUrl}${path}?api-version=7.4`, {
    method,
    headers: { authorization: `Bearer ${emu.accessToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ca: emu.caPem,
    retries: 0,
  });
}

function releasePolicy(requiredHostData: string) {
  const p = {
    version: '1.0.0',
    anyOf: [
      { authority: emu.maaUrl, allOf: [{ claim: 'x-ms-sevsnpvm-hostdata', equals: requiredHostData }] },
    ],
  };
  return {
    contentType: 'application/json; charset=utf-8',
    data: Buffer.from(JSON.stringify(p)).toString('base64url'),
  };
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'membrane-up-'));
  emu = await startEmulators({ dir: join(work, 'emu'), log: () => {} });
  const jwk = createPrivateKey(kek.privateKey.export({ type: 'pkcs8', format: 'pem' })).export({
    format: 'jwk',
  });
  for (const [name, required] of [
    ['kek', hostData],
    ['kek-other', 'f'.repeat(64)],
  ] as const) {
    await kv('PUT', `/keys/${name}`, {
      key: { ...jwk, kty: 'RSA-HSM', key_ops: ['wrapKey', 'unwrapKey'] },
      attributes: { exportable: true },
      release_policy: releasePolicy(required),
    });
  }
  const { publicEncrypt, constants } = await import('node:crypto');
  const wrapped = publicEncrypt(
    { key: kek.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    dek,
  );
  await kv('PUT', '/secrets/dek', { value: wrapped.toString('base64') });
  await writeFile(join(work, 'policy.rego'), policy);
  await writeFile(join(work, 'token'), emu.accessToken, { mode: 0o600 });
  await writeFile(join(work, 'consumer.pub.pem'), consumer.publicKey.export({ type: 'spki', format: 'pem' }));
  await mkdir(join(work, 'store', 'data'), { recursive: true });
  await writeFile(
    join(work, 'store', 'data', 'ledger.csv'),
    await sealBuffer(csv, { keyring: dekKeyring(dek), binding: { datasource: 'data', path: 'ledger.csv' } }),
  );
});

after(async () => {
  await emu?.close();
  await rm(work, { recursive: true, force: true });
});

function spec(name: string, kekName = 'kek'): string {
  const w = (...p: string[]) => join(work, name, ...p);
  return `version: 1
name: ${name}
attestation:
  provider: virtual
  allowInsecureVirtual: true
  virtualPolicyFile: ${join(work, 'policy.rego')}
  maa: { endpoint: ${emu.maaUrl} }
  ca: ${emu.caFile}
  releaseTrustAnchors: ${emu.caFile}
identities:
  - { name: vault, kind: static-token, tokenFile: ${join(work, 'token')} }
keys:
  keks:
    - { name: kek, broker: azure-akv, kid: ${emu.kvUrl}/keys/${kekName}, identity: vault }
  deks:
    - { name: dek, source: { kind: akv-secret, vault: ${emu.kvUrl}, secret: dek, identity: vault }, wrappedBy: kek }
datasources:
  - name: data
    store: { type: fs, path: ${join(work, 'store', 'data')} }
    protection: { mode: secure, key: dek }
    mount: ${w('mnt', 'data')}
datasinks:
  - name: out
    store: { type: fs, path: ${w('out-store')} }
    protection: { mode: trusted, recipientPublicKey: ${join(work, 'consumer.pub.pem')} }
    mount: ${w('mnt', 'out')}
runtime:
  statusDir: ${w('status')}
  healthPort: 0
  auditLog: ${w('audit.log')}
`;
}

async function writeSpec(name: string, kekName?: string): Promise<string> {
  await mkdir(join(work, name), { recursive: true });
  const f = join(work, name, 'cleanroom.yaml');
  await writeFile(f, spec(name, kekName));
  return f;
}

async function auditTypes(name: string): Promise<string[]> {
  const lines = (await readFile(join(work, name, 'audit.log'), 'utf8')).trim().split('\n');
  return lines.map((l) => (JSON.parse(l) as { type: string }).type);
}

async function mountedUnder(dir: string): Promise<string[]> {
  return (await readFile('/proc/mounts', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(dir));
}

test('happy path and defect 12.10: the app reads plaintext, its sealed outputs verify against the attestation, a forged report is refused', async () => {
  const file = await writeSpec('happy');
  const status = join(work, 'happy', 'status');
  // Both readiness markers: <name>.<kind>.ready and, for one more release, <name>.volume.ready.
  // `ls -l /proc/$$/fd`: the descriptors the application holds (inherited, plus the shell's own copies of stdio).
  const app = `cp "$1/ledger.csv" "$2/copy.csv" && wc -l < "$1/ledger.csv" > "$2/count.txt" && ls -l /proc/$$/fd > "$3" && test -f "${join(status, 'data.blob-volume.ready')}" && test -f "${join(status, 'data.volume.ready')}" && exit 7`;
  const res = await run(process.execPath, [
    bin,
    'up',
    '-f',
    file,
    '--',
    'sh',
    '-c',
    app,
    'app',
    join(work, 'happy', 'mnt', 'data'),
    join(work, 'happy', 'mnt', 'out'),
    join(work, 'happy', 'app-fds.txt'),
  ]).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(res.code, 7, `exit code of the app is membrane's (${res.stderr})`);
  // The application inherits stdio only: no /dev/fuse (it could serve the volume's FUSE
  // requests itself), no sockets, no audit log.
  const fds = (await readFile(join(work, 'happy', 'app-fds.txt'), 'utf8'))
    .split('\n')
    .map((l) => /(\d+) -> (.*)$/.exec(l))
    .filter((m) => m !== null)
    .map((m) => `${m[1]} -> ${m[2]}`);
  assert.ok(fds.length >= 3, `the listing was read (${fds.join('; ')})`);
  // 0-2 are stdio (socketpairs from the test's execFile); above them only the shell's own saved copies of those.
  for (const fd of fds.filter((f) => Number(f.split(' ')[0]) > 2))
    assert.doesNotMatch(
      fd,
      /\/dev\/fuse|audit|\.lock|\.log|\.jsonl/,
      `the application inherits only stdio (${fds.join('; ')})`,
    );
  // The output left only sealed to the consumer, under opaque names (defect 12.12).
  const outStore = join(work, 'happy', 'out-store');
  const names = await readdir(outStore);
  for (const n of names) assert.match(n, /^([0-9a-f]{64}|membrane-sink-manifest\.\d{12}\.json)$/);
  for (const stored of names.filter((n) => n.length === 64).map((n) => readFile(join(outStore, n))))
    assert.notDeepEqual((await stored).subarray(0, csv.length), csv);
  // The consumer verifies the run's signed manifest against its attestation (defect 12.10).
  await writeFile(join(work, 'consumer.pem'), consumer.privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
  });
  const unprotect = (...extra: string[]) =>
    run(process.execPath, [
      bin,
      'unprotect',
      '--in',
      outStore,
      '--out',
      join(work, 'happy', `plain-${randomBytes(4).toString('hex')}`),
      '--datasource',
      'out',
      '--private-key',
      join(work, 'consumer.pem'),
      '--maa',
      emu.maaUrl,
      '--ca',
      emu.caFile,
      '--expect-claim',
      `x-ms-sevsnpvm-hostdata=${hostData}`,
      '--json',
      ...extra,
    ]).then(
      (r) => ({
        code: 0,
        out: JSON.parse(r.stdout) as { out: string; objects: { path: string; error?: { code: string } }[] },
        stderr: r.stderr,
      }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        out: (e.stdout.trim() ? JSON.parse(e.stdout) : { out: '', objects: [] }) as {
          out: string;
          objects: { path: string; error?: { code: string } }[];
        },
        stderr: e.stderr,
      }),
    );
  const ok = await unprotect('--run', '1');
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(await readFile(join(ok.out.out, 'copy.csv')), csv);
  assert.equal((await readFile(join(ok.out.out, 'count.txt'), 'utf8')).trim(), '4');
  const wrongClaim = await unprotect('--expect-claim', `x-ms-sevsnpvm-hostdata=${'0'.repeat(64)}`);
  assert.equal(wrongClaim.code, 1);
  assert.match(wrongClaim.stderr, /PROVENANCE_CLAIM/);
  // The forgery of issue 12: the storage operator seals a "report" to the consumer's public key.
  const forgedIn = join(work, 'happy', 'forged-in');
  await mkdir(forgedIn, { recursive: true });
  await writeFile(join(forgedIn, 'copy.csv'), 'id,amount\n1,999999\n');
  await run(process.execPath, [
    bin,
    'protect',
    '--in',
    forgedIn,
    '--out',
    join(work, 'happy', 'forged-out'),
    '--datasource',
    'out',
    '--recipient',
    join(work, 'consumer.pub.pem'),
  ]);
  await writeFile(join(outStore, 'copy.csv'), await readFile(join(work, 'happy', 'forged-out', 'copy.csv')));
  const forged = await unprotect();
  assert.equal(forged.code, 1);
  assert.deepEqual(
    forged.out.objects.filter((o) => o.error).map((o) => [o.path, o.error!.code]),
    [['copy.csv', 'PROVENANCE_FORGED']],
  );
  // Torn down: nothing mounted, markers gone, the audit trail complete and intact.
  assert.deepEqual(await mountedUnder(join(work, 'happy')), []);
  assert.deepEqual(await readdir(join(work, 'happy', 'status')), []);
  const types = await auditTypes('happy');
  for (const t of [
    'cleanroom.starting',
    'keys.released',
    'provenance.run_key',
    'proxy.started',
    'cleanroom.ready',
    'application.exited',
    'proxy.stopped',
    'cleanroom.stopped',
  ]) {
    assert.ok(types.includes(t), `audit has ${t}`);
  }
  // Kind-neutral lifecycle events: started in spec order, stopped in reverse, each naming kind, mode, endpoint.
  const records = (await readFile(join(work, 'happy', 'audit.log'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; subject?: string; details?: Record<string, unknown> });
  const lifecycle = records
    .filter((r) => r.type.startsWith('proxy.'))
    .map((r) => `${r.type} ${r.subject} ${r.details?.kind} ${r.details?.mode}`);
  assert.deepEqual(lifecycle, [
    'proxy.started data blob-volume secure',
    'proxy.started out blob-volume trusted',
    'proxy.stopped out blob-volume trusted',
    'proxy.stopped data blob-volume secure',
  ]);
  assert.deepEqual(records.find((r) => r.type === 'proxy.started')?.details?.endpoint, {
    type: 'mount',
    path: join(work, 'happy', 'mnt', 'data'),
  });
  await run(process.execPath, [bin, 'audit', 'verify', '--file', join(work, 'happy', 'audit.log')]);
});

test('fail closed: a release policy the clean room does not satisfy aborts the start, names the claim, mounts nothing', async () => {
  const file = await writeSpec('denied', 'kek-other');
  const res = await run(process.execPath, [bin, 'up', '-f', file, '--', 'true']).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(res.code, 1);
  assert.match(res.stderr, /x-ms-sevsnpvm-hostdata/);
  assert.deepEqual(await mountedUnder(join(work, 'denied')), []);
  assert.ok(!existsSync(join(work, 'denied', 'status', 'data.volume.ready')));
  const types = await auditTypes('denied');
  assert.ok(types.includes('cleanroom.start_failed'));
  assert.ok(!types.includes('cleanroom.ready'));
});

test('fail closed: an invalid spec is refused before anything happens, naming the field', async () => {
  await mkdir(join(work, 'invalid'), { recursive: true });
  const f = join(work, 'invalid', 'cleanroom.yaml');
  await writeFile(f, spec('invalid').replace('mode: trusted', 'mode: trustd'));
  const res = await run(process.execPath, [bin, 'up', '-f', f]).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(res.code, 1);
  assert.match(res.stderr, /datasinks\[0\]\.protection\.mode/);
  assert.ok(!existsSync(join(work, 'invalid', 'audit.log')), 'nothing started');
});

test('the deprecated protection.egress still works: up warns, the open sink applies it as output rules', async () => {
  await mkdir(join(work, 'legacy'), { recursive: true });
  const f = join(work, 'legacy', 'cleanroom.yaml');
  const w = (...p: string[]) => join(work, 'legacy', ...p);
  const openSink = `  - name: public
    store: { type: fs, path: ${w('public-store')} }
    protection: { mode: open, egress: { allow: ['*.csv'] } }
    mount: ${w('mnt', 'public')}
runtime:`;
  await writeFile(
    f,
    spec('legacy').replace('runtime:', openSink) +
      'application:\n  env: { MEMBRANE_TEST_FROM_SPEC: "yes" }\n',
  );
  const app = `test "$MEMBRANE_TEST_FROM_SPEC" = yes && echo a,b > "$1/ok.csv" && ! echo x > "$1/no.bin"`;
  const res = await run(process.execPath, [
    bin,
    'up',
    '-f',
    f,
    '--',
    'sh',
    '-c',
    app,
    'app',
    w('mnt', 'public'),
  ]).then(
    (r) => ({ code: 0, stderr: r.stderr }),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(res.code, 0, res.stderr);
  assert.match(
    res.stderr,
    /WARNING: .*datasinks\[1\]\.protection\.egress: deprecated: renamed to outputRules/,
  );
  assert.equal(await readFile(w('public-store', 'ok.csv'), 'utf8'), 'a,b\n');
  assert.ok(!existsSync(w('public-store', 'no.bin')));
  const types = await auditTypes('legacy');
  assert.ok(types.includes('output.denied'));
});

test('serving without a command: ready on GET /ready, SIGTERM drains, unmounts and exits 0', async () => {
  const file = await writeSpec('serve');
  const child: ChildProcess = spawn(process.execPath, [bin, 'up', '-f', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const port = await new Promise<number>((resolvePort, reject) => {
    const t = setInterval(() => {
      const m = /GET http:\/\/127\.0\.0\.1:(\d+)\/ready/.exec(stderr);
      if (m) {
        clearInterval(t);
        resolvePort(Number(m[1]));
      }
    }, 50);
    child.on('exit', (c) => {
      clearInterval(t);
      reject(new Error(`membrane up exited ${c}: ${stderr}`));
    });
  });
  const ready = await fetch(`http://127.0.0.1:${port}/ready`);
  assert.equal(ready.status, 200);
  const body = (await ready.json()) as { volumes: string[]; proxies: Array<{ name: string; kind: string }> };
  assert.deepEqual(body.volumes.sort(), ['data', 'out']);
  assert.deepEqual(
    body.proxies.map((p) => `${p.name} ${p.kind}`),
    ['data blob-volume', 'out blob-volume'],
  );
  // The app (here: a shell in another process) sees plaintext while the room runs.
  const { stdout } = await run('cat', [join(work, 'serve', 'mnt', 'data', 'ledger.csv')]);
  assert.equal(stdout, csv.toString());
  await writeFile(join(work, 'serve', 'mnt', 'out', 'late.txt'), 'written while serving\n');
  const code = await new Promise<number | null>((r) => {
    child.removeAllListeners('exit');
    child.on('exit', (c) => r(c));
    child.kill('SIGTERM');
  });
  assert.equal(code, 0);
  assert.deepEqual(await mountedUnder(join(work, 'serve')), []);
  // One object under an opaque name, next to this run's signed manifest.
  const stored = (await readdir(join(work, 'serve', 'out-store'))).filter((n) => /^[0-9a-f]{64}$/.test(n));
  assert.equal(stored.length, 1);
  const late = await openBuffer(await readFile(join(work, 'serve', 'out-store', stored[0]!)), {
    keyring: rsaKeyring({ privateKey: consumer.privateKey }),
    expect: { datasource: 'out', path: 'late.txt' },
  });
  assert.equal(late.toString(), 'written while serving\n');
  assert.ok((await auditTypes('serve')).includes('cleanroom.stopped'));
});

test('SIGKILL of the runtime mid-write never leaves a corrupt object in the sink store', async () => {
  const file = await writeSpec('killed');
  const out = join(work, 'killed', 'mnt', 'out');
  const store = join(work, 'killed', 'out-store');
  // The app rewrites 4 MiB files in a loop; every close commits one object.
  const app =
    'i=0; while true; do i=$((i+1)); dd if=/dev/urandom of="$1/f$((i % 3)).bin" bs=1M count=4 2>/dev/null; done';
  const child = spawn(process.execPath, [bin, 'up', '-f', file, '--', 'sh', '-c', app, 'app', out], {
    stdio: 'ignore',
    detached: true, // its own process group: the kill takes the runtime and the app at once
  });
  // Wait until some objects were committed, then kill in the middle of the next writes.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const committed = existsSync(store) ? (await readdir(store)).filter((n) => !n.startsWith('.')) : [];
    if (committed.length >= 2) break;
    if (Date.now() > deadline) throw new Error('no commits within 60 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 150));
  process.kill(-child.pid!, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  for (const m of await mountedUnder(join(work, 'killed')))
    await run('fusermount', ['-u', '-z', m]).catch(() => {});
  // Every object in the store is complete and authentic; temp files are not objects.
  const objects = (await readdir(store)).filter((n) => !n.startsWith('.membrane-tmp-'));
  assert.ok(objects.length >= 2);
  for (const name of objects) {
    // Opaque store names (defect 12.12): the object is bound to one of the app's three names.
    const bytes = await readFile(join(store, name));
    const opened = await Promise.all(
      ['f0.bin', 'f1.bin', 'f2.bin'].map((path) =>
        openBuffer(bytes, {
          keyring: rsaKeyring({ privateKey: consumer.privateKey }),
          expect: { datasource: 'out', path },
        }).catch(() => undefined),
      ),
    );
    const plain = opened.find((p) => p !== undefined);
    assert.equal(plain?.length, 4 * 1024 * 1024, `${name} is a whole, authentic file`);
  }
});
