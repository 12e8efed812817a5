#!/usr/bin/env node
// `npm run demo`: the main job of a clean room, end to end, on one machine, with no cloud.
//
//   1. Two publishers (org A, org B) protect their ledgers into an fs blob store, each with its own DEK.
//   2. Each publisher imports an RSA KEK into the (local, emulated) key vault with a release policy
//      bound to the clean room's container policy hash, and stores its DEK wrapped by that KEK.
//   3. The consumer supplies an RSA public key for the report.
//   4. `membrane up` attests (virtual evidence), gets a token, releases the KEKs, unwraps the DEKs,
//      mounts both ledgers read-only and a trusted-mode report sink, and runs the reconciliation app.
//      The app also posts its summary counts to the consumer's API over Membrane's HTTP egress proxy
//      (trusted mode: the proxy verifies the API's TLS and its pinned key) and tries to send a ledger
//      row to a host the spec does not allow; the proxy refuses it by rule, before any DNS.
//   5. The consumer decrypts the report with its private key; the demo prints it and the audit trail,
//      including the refusal's `http.denied` record.
//
// Everything runs unattended in a temporary directory that is removed at the end (--keep keeps it).
import { spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'bin', 'membrane.mjs');
const keep = process.argv.includes('--keep');
const quickBench = !process.argv.includes('--no-bench');

const bold = (s) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (n, s) => console.log(`\n${bold(`[${n}] ${s}`)}`);

/** Runs `membrane <args>`; resolves with stdout; rejects with the command's stderr. */
function membrane(args, { quiet = false } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (!quiet) process.stdout.write(d);
    });
    child.stderr.on('data', (d) => {
      err += d;
      if (!quiet) process.stderr.write(d);
    });
    child.on('exit', (code) =>
      code === 0 ? resolvePromise(out) : reject(new Error(`membrane ${args[0]} exited ${code}\n${err}`)),
    );
  });
}

/** Makes a ledger of `n` records; B's copy differs from A's in a few deliberate places. */
function ledgers(n) {
  const a = ['id,counterparty,amount,currency,date'];
  const b = [a[0]];
  for (let i = 1; i <= n; i++) {
    const id = `TX${String(i).padStart(5, '0')}`;
    const amount = ((i * 7919) % 100000) / 100;
    const date = `2026-${String(1 + (i % 12)).padStart(2, '0')}-${String(1 + (i % 28)).padStart(2, '0')}`;
    a.push(`${id},org-b,${amount.toFixed(2)},EUR,${date}`);
    if (i % 97 === 0) continue; // missing at B
    const bAmount = i % 131 === 0 ? (amount + 10).toFixed(2) : amount.toFixed(2);
    const currency = i % 173 === 0 ? 'USD' : 'EUR';
    b.push(`${id},org-a,${bAmount},${currency},${date}`);
  }
  b.push('TX99999,org-a,12.50,EUR,2026-11-20'); // missing at A
  return { a: `${a.join('\n')}\n`, b: `${b.join('\n')}\n` };
}

async function main() {
  const work = await mkdtemp(join(tmpdir(), 'membrane-demo-'));
  const p = (...s) => join(work, ...s);
  let emulators;
  let consumerApi;
  try {
    step(1, 'Publishers protect their ledgers (org A and org B), each with its own DEK');
    const { a, b } = ledgers(2000);
    const digests = {};
    for (const [org, csv] of [
      ['a', a],
      ['b', b],
    ]) {
      await mkdir(p(`plain-${org}`), { recursive: true });
      await writeFile(p(`plain-${org}`, 'ledger.csv'), csv);
      await membrane(['keys', 'generate-dek', '--out', p(`dek-${org}.key`)]);
      const res = JSON.parse(
        await membrane(
          [
            'protect',
            '--in',
            p(`plain-${org}`),
            '--out',
            p('store', `ledger-${org}`),
            '--datasource',
            `ledger-${org}`,
            '--dek',
            p(`dek-${org}.key`),
            '--json',
          ],
          { quiet: true },
        ),
      );
      digests[org] = res.manifest.digest;
      console.log(
        `  ledger-${org}: ${res.manifest.objects.length} object(s), manifest digest ${digests[org]} (pinned in the spec)`,
      );
    }

    step(2, 'Consumer creates the key pair the report will be sealed to');
    await membrane(['keys', 'generate-kek', '--out', p('consumer'), '--bits', '3072'], { quiet: true });
    console.log(
      `  consumer public key: ${p('consumer.pub.pem')} (the private key never leaves the consumer)`,
    );

    step(3, 'Local attestation service and key vault start (emulators: no cloud needed)');
    emulators = await startEmulators(p('emulators'));
    console.log(`  attestation: ${emulators.maaUrl}\n  key vault:   ${emulators.kvUrl}`);

    // The clean room's container policy; its SHA-256 is what the hardware reports as host_data.
    const policy = `package policy\n# Membrane demo clean room: reconciliation app, ledgers A and B\napi_version := "0.10.0"\n`;
    await writeFile(p('container-policy.rego'), policy);
    const hostData = createHash('sha256').update(policy).digest('hex');

    step(
      4,
      'Publishers put KEKs in the vault with release policies bound to the clean room, and wrapped DEKs as secrets',
    );
    const kv = vaultClient(emulators, await readFile(emulators.caFile, 'utf8'));
    for (const org of ['a', 'b']) {
      await membrane(['keys', 'generate-kek', '--out', p(`kek-${org}`), '--bits', '3072'], { quiet: true });
      await kv.importKek(
        `kek-${org}`,
        await readFile(p(`kek-${org}.pem`), 'utf8'),
        releasePolicy(emulators.maaUrl, hostData),
      );
      await membrane(
        [
          'keys',
          'wrap-dek',
          '--dek',
          p(`dek-${org}.key`),
          '--kek-public',
          p(`kek-${org}.pub.pem`),
          '--out',
          p(`dek-${org}.wrapped`),
        ],
        { quiet: true },
      );
      await kv.putSecret(`dek-${org}`, (await readFile(p(`dek-${org}.wrapped`))).toString('base64'));
      // The publisher's own copies of the keys are not part of the clean room.
      await rm(p(`kek-${org}.pem`));
      console.log(
        `  org ${org.toUpperCase()}: KEK kek-${org} (release requires x-ms-sevsnpvm-hostdata = ${hostData.slice(0, 16)}…), secret dek-${org}`,
      );
    }

    step(5, 'membrane up: attest, release, unwrap, mount, run the reconciliation app');
    consumerApi = await startConsumerApi(p('consumer-api'));
    console.log(
      `  consumer API: https://127.0.0.1:${consumerApi.port} (its key pinned in network.http.outbound, trusted mode)`,
    );
    const spec = cleanroomSpec({ work, emulators, digests, api: consumerApi });
    await writeFile(p('cleanroom.yaml'), spec);
    await membrane(['spec', 'validate', '-f', p('cleanroom.yaml')]);
    await membrane([
      'up',
      '-f',
      p('cleanroom.yaml'),
      '--',
      process.execPath,
      join(root, 'scripts', 'demo', 'reconcile.mjs'),
      p('mnt', 'ledger-a'),
      p('mnt', 'ledger-b'),
      p('mnt', 'report'),
      `http://127.0.0.1:${consumerApi.port}`,
    ]);
    for (const r of consumerApi.received)
      console.log(`  the consumer API received over verified TLS: ${r.method} ${r.url} ${r.body}`);
    if (consumerApi.received.length !== 1) throw new Error('the consumer API did not receive the summary');

    step(6, "The consumer verifies the run's signed manifest against the attestation, then decrypts");
    const stored = (await readdir(p('store', 'report'))).filter((n) => /^[0-9a-f]{64}$/.test(n));
    console.log(
      `  the store holds ${stored.length} object(s) under opaque names (e.g. ${stored[0]?.slice(0, 16)}…) and a signed manifest`,
    );
    await membrane(
      [
        'unprotect',
        '--in',
        p('store', 'report'),
        '--out',
        p('consumer-out'),
        '--datasource',
        'report',
        '--private-key',
        p('consumer.pem'),
        '--maa',
        emulators.maaUrl,
        '--ca',
        emulators.caFile,
        '--expect-claim',
        `x-ms-sevsnpvm-hostdata=${hostData}`,
      ],
      { quiet: true },
    );
    const report = await readFile(p('consumer-out', 'report.csv'), 'utf8');
    const lines = report.trim().split('\n');
    console.log(
      lines
        .slice(0, 12)
        .map((l) => `  | ${l}`)
        .join('\n'),
    );
    if (lines.length > 12) console.log(`  | … ${lines.length - 12} more lines`);

    step(7, 'Audit trail (hash-chained) and its verification');
    const audit = (await readFile(p('audit.log'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    for (const r of audit) console.log(`  #${r.seq} ${r.time} ${r.type}${r.subject ? ` ${r.subject}` : ''}`);
    const denied = audit.find((r) => r.type === 'http.denied');
    if (!denied) throw new Error('no http.denied record for the refused upload');
    console.log(`  the refusal, as audited:\n  ${JSON.stringify(denied)}`);
    await membrane(['audit', 'verify', '--file', p('audit.log')]);

    if (quickBench) {
      step(8, 'Hot core benchmark (quick)');
      await membrane(['bench', 'aead', '--quick']);
    }
    console.log(`\n${bold('Demo complete.')} ${keep ? `Files kept in ${work}` : ''}`);
  } finally {
    await emulators?.close();
    await consumerApi?.close();
    if (!keep) await rm(work, { recursive: true, force: true });
  }
}

/** `membrane emulators start --json` in the background; resolves once it prints its URLs. */
function startEmulators(dir) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [bin, 'emulators', 'start', '--dir', dir, '--json'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const line = buf.split('\n').find((l) => l.trim().startsWith('{'));
      if (!line) return;
      const info = JSON.parse(line);
      resolvePromise({
        ...info,
        close: () =>
          new Promise((r) => {
            child.once('exit', r);
            child.kill('SIGTERM');
          }),
      });
    });
    child.on('exit', (code) => reject(new Error(`emulators exited early (${code})`)));
  });
}

/**
 * The consumer's API: HTTPS on 127.0.0.1 with a self-signed certificate (openssl), whose
 * public key the spec pins. Records what it receives so the demo can show it arrived.
 */
async function startConsumerApi(dir) {
  await mkdir(dir, { recursive: true });
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '2',
    '-subj',
    '/CN=consumer-api',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
  ]);
  const certPem = await readFile(cert, 'utf8');
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  const received = [];
  const server = createHttpsServer({ key: await readFile(key), cert: certPem }, (req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d) => (body += d));
    req.on('end', () => {
      received.push({ method: req.method, url: req.url, body });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"received":true}\n');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    caFile: cert,
    pin: createHash('sha256').update(spki).digest('base64'),
    received,
    close: () => new Promise((r) => server.close(r)),
  };
}

/** Runs a tool; rejects with its stderr. */
function run(cmd, args) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolvePromise() : reject(new Error(`${cmd} exited ${code}: ${err}`)),
    );
  });
}

function releasePolicy(maaUrl, hostData) {
  return {
    version: '1.0.0',
    anyOf: [
      {
        authority: maaUrl,
        allOf: [
          { claim: 'x-ms-sevsnpvm-hostdata', equals: hostData },
          { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
          { claim: 'x-ms-sevsnpvm-is-debuggable', equals: false },
        ],
      },
    ],
  };
}

/** The publisher's side of the Key Vault REST API (what `az keyvault key import` does). */
function vaultClient(emu, caPem) {
  const dispatcher = new Agent({ connect: { ca: caPem } });
  const call = async (method, path, body) => {
    const res = await request(`${emu.kvUrl}${path}?api-version=7.4`, {
      method,
      dispatcher,
      headers: { authorization: `Bearer ${emu.accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`key vault ${method} ${path}: ${res.statusCode} ${text}`);
    return JSON.parse(text);
  };
  return {
    async importKek(name, pem, policy) {
      const { createPrivateKey } = await import('node:crypto');
      const jwk = createPrivateKey(pem).export({ format: 'jwk' });
      await call('PUT', `/keys/${name}`, {
        key: { ...jwk, kty: 'RSA-HSM', key_ops: ['wrapKey', 'unwrapKey', 'encrypt', 'decrypt'] },
        attributes: { exportable: true },
        release_policy: {
          contentType: 'application/json; charset=utf-8',
          data: Buffer.from(JSON.stringify(policy)).toString('base64url'),
        },
      });
    },
    putSecret: (name, value) => call('PUT', `/secrets/${name}`, { value }),
  };
}

function cleanroomSpec({ work, emulators, digests, api }) {
  const p = (...s) => join(work, ...s);
  return `# Membrane demo clean room (generated by scripts/demo.mjs)
version: 1
name: reconciliation-demo
attestation:
  provider: virtual            # development only: unsigned evidence
  allowInsecureVirtual: true
  virtualPolicyFile: ${p('container-policy.rego')}
  maa:
    endpoint: ${emulators.maaUrl}
  ca: ${emulators.caFile}                 # TLS trust for the emulators
  releaseTrustAnchors: ${emulators.caFile} # their release signatures (development only)
identities:
  - name: vault-access
    kind: static-token
    tokenFile: ${p('emulators', 'access-token')}
keys:
  keks:
    - { name: kek-a, broker: azure-akv, kid: ${emulators.kvUrl}/keys/kek-a, identity: vault-access }
    - { name: kek-b, broker: azure-akv, kid: ${emulators.kvUrl}/keys/kek-b, identity: vault-access }
  deks:
    - { name: dek-a, source: { kind: akv-secret, vault: ${emulators.kvUrl}, secret: dek-a, identity: vault-access }, wrappedBy: kek-a }
    - { name: dek-b, source: { kind: akv-secret, vault: ${emulators.kvUrl}, secret: dek-b, identity: vault-access }, wrappedBy: kek-b }
datasources:
  - name: ledger-a
    store: { type: fs, path: ${p('store', 'ledger-a')} }
    protection: { mode: secure, key: dek-a, pinnedManifestDigest: ${digests.a} }
    mount: ${p('mnt', 'ledger-a')}
  - name: ledger-b
    store: { type: fs, path: ${p('store', 'ledger-b')} }
    protection: { mode: secure, key: dek-b, pinnedManifestDigest: ${digests.b} }
    mount: ${p('mnt', 'ledger-b')}
datasinks:
  - name: report
    store: { type: fs, path: ${p('store', 'report')} }
    protection: { mode: trusted, recipientPublicKey: ${p('consumer.pub.pem')} }
    mount: ${p('mnt', 'report')}
network:
  http:
    outbound:
      mode: trusted
      allow:
        # The consumer's API only: its TLS verified against its certificate, its key pinned.
        - host: 127.0.0.1
          ports: [${api.port}]
          methods: [POST]
          paths: [/summary]
          tls: { ca: ${api.caFile}, pins: ["${api.pin}"] }
      # The API listens on loopback, which address classification refuses unless named here.
      allowAddresses: ["127.0.0.1:${api.port}"]
runtime:
  statusDir: ${p('status')}
  healthPort: 0
  auditLog: ${p('audit.log')}
`;
}

main().catch((e) => {
  console.error(`\ndemo failed: ${e.message}`);
  process.exit(1);
});
