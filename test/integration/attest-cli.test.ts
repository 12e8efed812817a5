// `membrane attest verify` and `membrane attest` through the real entry point (bin/membrane.mjs,
// which runs dist/runtime/cli.js), on the real SEV-SNP fixture and on altered copies.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const fixtures = resolve(root, '..', 'shared', 'fixtures', 'sev-snp');
const report = join(fixtures, 'snp_report.bin');
const pem = join(fixtures, 'uvm_host_amd_certificate.pem');
const json = join(fixtures, 'uvm_host_amd_certificate.json');
const work = mkdtempSync(join(tmpdir(), 'membrane-attest-cli-'));
after(() => rmSync(work, { recursive: true, force: true }));

function membrane(...args: string[]) {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'membrane.mjs'), ...args], {
    cwd: root,
    encoding: 'utf8',
    // No hardware here; keep the host's security-context variables out of the child.
    env: { PATH: process.env.PATH ?? '' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('attest verify: the real fixture passes, with a field dump and every check', () => {
  const r = membrane('attest', 'verify', '--report', report, '--certs', pem);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /host_data\s+cadd74f71ebb8fbf9782baab649612520f3c416bc5ce9ac768808ddc8d9b031c/);
  assert.match(
    r.stdout,
    /measurement\s+51068107cdc7ee3d89c7821b05bca6147eb77b2005ae759050fc049b65a1b0beabc65a9d857acecf23225f5ec76849f5/,
  );
  assert.match(r.stdout, /reported_tcb\s+0x7308000000000003/);
  assert.match(r.stdout, /policy\s+0x3001f/);
  assert.match(r.stdout, /PASS\s+report-signature/);
  assert.match(r.stdout, /PASS\s+ask-signed-by-ark/);
  assert.match(r.stdout, /Verdict: PASS/);
});

test('attest verify --json with the host JSON collateral also checks tcbm', () => {
  const r = membrane('attest', 'verify', '--report', report, '--certs', json, '--json');
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as {
    verdict: string;
    fields: Record<string, string>;
    checks: Array<{ name: string; status: string }>;
  };
  assert.equal(out.verdict, 'pass');
  assert.equal(out.fields.vmpl, '0');
  assert.equal(out.checks.find((c) => c.name === 'host-tcbm')?.status, 'pass');
});

test('attest verify: a flipped copy fails with exit 1 and names the check', () => {
  const bytes = readFileSync(report);
  for (const [off, check] of [
    [0xc0, 'report-signature'], // host_data
    [0x2a0, 'report-signature'], // signature R
    [0x400, 'report-format'], // reserved, unsigned
  ] as const) {
    const bad = Buffer.from(bytes);
    bad[off] = (bad[off] as number) ^ 0xff;
    const f = join(work, `flipped-${off}.bin`);
    writeFileSync(f, bad);
    const r = membrane('attest', 'verify', '--report', f, '--certs', pem);
    assert.equal(r.code, 1, `offset 0x${off.toString(16)}`);
    assert.match(r.stdout, new RegExp(`FAIL\\s+${check}`));
    assert.match(r.stdout, /Verdict: FAIL/);
  }
});

test('attest verify: hex report accepted; usage errors are clear', () => {
  const hexFile = join(work, 'report.hex');
  writeFileSync(hexFile, `${readFileSync(report).toString('hex')}\n`);
  assert.equal(membrane('attest', 'verify', '--report', hexFile, '--certs', pem).code, 0);
  const missing = membrane('attest', 'verify', '--report', report);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /missing required option --certs/);
  const short = join(work, 'short.bin');
  writeFileSync(short, Buffer.alloc(100));
  const s = membrane('attest', 'verify', '--report', short, '--certs', pem);
  assert.equal(s.code, 1);
  assert.match(s.stderr, /expected 1184 raw bytes.*\[SNP_REPORT_INVALID\]/);
  assert.equal(membrane('attest', 'verify', '--help').code, 0);
});

const hasSnp = ['/sys/kernel/config/tsm/report', '/dev/sev-guest', '/dev/sev'].some((p) => existsSync(p));

test('attest: no hardware -> clear error, never silently virtual', {
  skip: hasSnp && 'this host has an SEV-SNP interface',
}, () => {
  const r = membrane('attest');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no SEV-SNP evidence source found.*\[EVIDENCE_NOT_FOUND\]/s);
  assert.doesNotMatch(r.stderr, /INSECURE/);
});

test('attest --provider virtual: summary, host_data = sha256(policy file), loud warning', () => {
  const policy = join(work, 'policy.rego');
  writeFileSync(policy, 'package policy\n');
  const r = membrane(
    'attest',
    '--provider',
    'virtual',
    '--virtual-policy',
    policy,
    '--report-data',
    'abcd',
    '--json',
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /INSECURE virtual attestation: no hardware evidence/);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(out.provider, 'virtual');
  assert.equal(out.insecure, true);
  assert.equal(out.host_data, createHash('sha256').update('package policy\n').digest('hex'));
  assert.equal(out.report_data, `abcd${'00'.repeat(62)}`);
  const noPolicy = membrane('attest', '--provider', 'virtual');
  assert.equal(noPolicy.code, 1);
  assert.match(noPolicy.stderr, /needs a policy/);
});

test('attest --provider virtual --maa: token claims from the local MAA emulator', async () => {
  const dir = mkdtempSync(join(work, 'emu-'));
  const emu = spawn(
    process.execPath,
    [join(root, 'bin', 'membrane.mjs'), 'emulators', 'start', '--dir', dir, '--json'],
    {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  try {
    const first = await new Promise<string>((res, rej) => {
      let buf = '';
      emu.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const nl = buf.indexOf('\n');
        if (nl >= 0) res(buf.slice(0, nl));
      });
      emu.once('exit', (code) => rej(new Error(`emulators exited ${code}`)));
    });
    const { maaUrl, caFile } = JSON.parse(first) as { maaUrl: string; caFile: string };
    const policy = join(dir, 'policy.rego');
    writeFileSync(policy, 'package policy\n');
    const r = membrane(
      'attest',
      '--provider',
      'virtual',
      '--virtual-policy',
      policy,
      '--maa',
      maaUrl,
      '--ca',
      caFile,
      '--json',
    );
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      host_data: string;
      report_data: string;
      maa: { claims: Record<string, unknown> };
    };
    const claims = out.maa.claims;
    assert.equal(claims.iss, maaUrl);
    assert.equal(claims['x-ms-sevsnpvm-hostdata'], out.host_data);
    assert.equal(claims['x-ms-sevsnpvm-reportdata'], out.report_data);
    const keys = (claims['x-ms-runtime'] as { keys: Array<{ kty: string }> }).keys;
    assert.equal(keys[0]?.kty, 'RSA');
  } finally {
    emu.kill('SIGTERM');
  }
});
