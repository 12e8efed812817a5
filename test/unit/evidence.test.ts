import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isMembraneError } from '../../policy/errors.js';
import { loadCollateral, THIM_URL } from '../../skr-client/evidence/collateral.js';
import { ConfigfsTsmProvider, type TsmFs } from '../../skr-client/evidence/configfs-tsm.js';
import { selectProvider } from '../../skr-client/evidence/index.js';
import {
  mapDeviceError,
  parseReportResponse,
  SevDeviceProvider,
} from '../../skr-client/evidence/sev-device.js';
import { cachedCollateral } from '../../skr-client/evidence/snp-evidence.js';
import { VIRTUAL_WARNING, VirtualProvider } from '../../skr-client/evidence/virtual.js';
import { defaultAddonPath, loadSnpAddon, type SnpAddon } from '../../skr-client/native/snp-addon.js';
import { buildSnpReport, parseSnpReport, snpPolicyFlags } from '../../skr-client/snp/report.js';
import { splitPemChain } from '../../skr-client/snp/verify.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const fixtures = resolve(root, '..', 'shared', 'fixtures', 'sev-snp');
const ctxDir = join(fixtures, 'security-context');
const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest();
const readB64 = async (p: string) => Buffer.from(await readFile(p, 'utf8'), 'base64');

const tmp = () => mkdtemp(join(tmpdir(), 'membrane-evidence-'));
const noThim = { thimUrl: false as const };

// ---------------- collateral ----------------

test('collateral: security-context directory given explicitly', async () => {
  const { collateral, sources } = await loadCollateral({ securityContextDir: ctxDir, env: {}, ...noThim });
  assert.deepEqual(collateral.securityPolicy, await readB64(join(ctxDir, 'security-policy-base64')));
  assert.deepEqual(collateral.uvmReferenceInfo, await readB64(join(ctxDir, 'reference-info-base64')));
  assert.equal(collateral.tcbm, '7308000000000003');
  const certs = splitPemChain(collateral.vcekCertChainPem ?? '');
  assert.equal(certs.length, 3);
  assert.match(sources.certChain ?? '', /host-amd-cert-base64$/);
});

test('collateral: UVM_SECURITY_CONTEXT_DIR pointing at the parent of security-context-*', async () => {
  const parent = await tmp();
  try {
    await cp(ctxDir, join(parent, 'security-context-abc123'), { recursive: true });
    await mkdir(join(parent, 'unrelated'));
    const { collateral, sources } = await loadCollateral({
      env: { UVM_SECURITY_CONTEXT_DIR: parent },
      ...noThim,
    });
    assert.ok(collateral.securityPolicy && collateral.vcekCertChainPem && collateral.uvmReferenceInfo);
    assert.equal(dirname(sources.securityPolicy ?? ''), join(parent, 'security-context-abc123'));
    // Two candidates: ambiguous, must be named explicitly.
    await cp(ctxDir, join(parent, 'security-context-def456'), { recursive: true });
    await assert.rejects(
      loadCollateral({ env: { UVM_SECURITY_CONTEXT_DIR: parent }, ...noThim }),
      (e) => isMembraneError(e, 'COLLATERAL_NOT_FOUND') && /several/.test(e.message),
    );
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
});

test('collateral: explicit directory that does not exist, or holds nothing, is an error', async () => {
  const empty = await tmp();
  try {
    for (const dir of [join(empty, 'nope'), empty])
      await assert.rejects(
        loadCollateral({ securityContextDir: dir, env: {}, ...noThim }),
        (e) => isMembraneError(e, 'COLLATERAL_NOT_FOUND') && e.where === dir,
      );
  } finally {
    await rm(empty, { recursive: true, force: true });
  }
});

test('collateral: environment variables UVM_SECURITY_POLICY / UVM_HOST_AMD_CERTIFICATE / UVM_REFERENCE_INFO', async () => {
  const env = {
    UVM_SECURITY_POLICY: await readFile(join(fixtures, 'uvm_security_policy.base64'), 'utf8'),
    UVM_HOST_AMD_CERTIFICATE: (await readFile(join(fixtures, 'uvm_host_amd_certificate.json'))).toString(
      'base64',
    ),
    UVM_REFERENCE_INFO: (await readFile(join(fixtures, 'body.uvm_reference_info.bin'))).toString('base64'),
  };
  const { collateral, sources } = await loadCollateral({ env, ...noThim });
  assert.equal(
    sha256(collateral.securityPolicy ?? Buffer.alloc(0)).toString('hex'),
    'cadd74f71ebb8fbf9782baab649612520f3c416bc5ce9ac768808ddc8d9b031c',
  );
  assert.deepEqual(
    collateral.uvmReferenceInfo,
    await readFile(join(fixtures, 'body.uvm_reference_info.bin')),
  );
  const pem = await readFile(join(fixtures, 'uvm_host_amd_certificate.pem'), 'utf8');
  assert.deepEqual(splitPemChain(collateral.vcekCertChainPem ?? ''), splitPemChain(pem));
  assert.deepEqual(sources, {
    securityPolicy: '$UVM_SECURITY_POLICY',
    certChain: '$UVM_HOST_AMD_CERTIFICATE',
    referenceInfo: '$UVM_REFERENCE_INFO',
  });
});

test('collateral: malformed inputs name what is wrong', async () => {
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['policy not base64', { UVM_SECURITY_POLICY: 'not*base64!' }, /security policy is not valid base64/],
    [
      'cert not JSON',
      { UVM_HOST_AMD_CERTIFICATE: Buffer.from('hello').toString('base64') },
      /not base64 of JSON/,
    ],
    [
      'cert JSON without chain',
      { UVM_HOST_AMD_CERTIFICATE: Buffer.from('{"vcekCert":"x"}').toString('base64') },
      /vcekCert\/certificateChain/,
    ],
    [
      'two certificates only',
      {
        UVM_HOST_AMD_CERTIFICATE: Buffer.from(
          JSON.stringify({
            vcekCert: splitPemChain(
              await readFile(join(fixtures, 'uvm_host_amd_certificate.pem'), 'utf8'),
            )[0],
            certificateChain: '',
            tcbm: '1',
          }),
        ).toString('base64'),
      },
      /found 1/,
    ],
  ];
  for (const [name, env, re] of cases)
    await assert.rejects(
      loadCollateral({ env, ...noThim, requireCertChain: false }),
      (e) => isMembraneError(e, 'COLLATERAL_INVALID') && re.test(e.message),
      name,
    );
});

async function listen(handler: (req: IncomingMessage) => { status: number; body: string }): Promise<{
  server: Server;
  url: string;
  hits: IncomingMessage[];
}> {
  const hits: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    hits.push(req);
    const { status, body } = handler(req);
    res.writeHead(status, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/metadata/THIM/amd/certification`, hits };
}

test('collateral: THIM fallback on loopback (Metadata: true header), used only for the certificates', async () => {
  const thimJson = await readFile(join(fixtures, 'uvm_host_amd_certificate.json'), 'utf8');
  const { server, url, hits } = await listen((req) =>
    req.headers.metadata === 'true'
      ? { status: 200, body: thimJson }
      : { status: 400, body: '{"error":"no metadata header"}' },
  );
  try {
    assert.equal(THIM_URL, 'http://169.254.169.254/metadata/THIM/amd/certification');
    const env = { UVM_SECURITY_POLICY: await readFile(join(fixtures, 'uvm_security_policy.base64'), 'utf8') };
    const { collateral, sources } = await loadCollateral({ env, thimUrl: url });
    assert.equal(hits.length, 1);
    assert.equal(hits[0]?.method, 'GET');
    assert.equal(sources.certChain, url);
    assert.equal(sources.securityPolicy, '$UVM_SECURITY_POLICY');
    assert.equal(collateral.tcbm, '7308000000000003');
    assert.equal(splitPemChain(collateral.vcekCertChainPem ?? '').length, 3);
    // Not consulted when the security context already has the certificates.
    await loadCollateral({ securityContextDir: ctxDir, env: {}, thimUrl: url });
    assert.equal(hits.length, 1);
  } finally {
    server.close();
  }
});

test('collateral: THIM failure is a clear COLLATERAL_NOT_FOUND listing where we looked', async () => {
  const { server, url } = await listen(() => ({ status: 404, body: '{"error":"not here"}' }));
  try {
    await assert.rejects(
      loadCollateral({ env: {}, thimUrl: url, thimRetries: 0 }),
      (e) =>
        isMembraneError(e, 'COLLATERAL_NOT_FOUND') &&
        /UVM_SECURITY_CONTEXT_DIR unset/.test(e.message) &&
        /UVM_HOST_AMD_CERTIFICATE unset/.test(e.message) &&
        /THIM/.test(e.message) &&
        /404/.test(e.message),
    );
    // Certificates optional: absence is then not an error.
    const { collateral } = await loadCollateral({
      env: {},
      thimUrl: url,
      thimRetries: 0,
      requireCertChain: false,
    });
    assert.equal(collateral.vcekCertChainPem, undefined);
  } finally {
    server.close();
  }
});

// ---------------- configfs-tsm against a fake tree mimicking the ABI ----------------

interface FakeTsm {
  fs: TsmFs;
  writes: Array<{ name: string; data: Buffer }>;
  entries: string[];
}

/**
 * A directory tree behaving like /sys/kernel/config/tsm/report: mkdir makes the
 * attributes appear, every write bumps generation, outblob is produced from inblob.
 */
function fakeTsm(
  base: string,
  opts: {
    provider?: string;
    report?: (inblob: Buffer) => Buffer;
    meddle?: boolean;
    outblobError?: string;
  } = {},
): FakeTsm {
  const gen = new Map<string, number>();
  const writes: FakeTsm['writes'] = [];
  const entries: string[] = [];
  const entryOf = (p: string) => dirname(p);
  const bump = async (entry: string, by = 1) => {
    gen.set(entry, (gen.get(entry) ?? 0) + by);
    await writeFile(join(entry, 'generation'), `${gen.get(entry)}\n`);
  };
  return {
    writes,
    entries,
    fs: {
      mkdir: async (p) => {
        assert.equal(dirname(p), base, 'entries are created directly under the report directory');
        await mkdir(p);
        entries.push(basename(p));
        gen.set(p, 0);
        await writeFile(join(p, 'provider'), `${opts.provider ?? 'sev_guest'}\n`);
        await writeFile(join(p, 'generation'), '0\n');
        await writeFile(join(p, 'privlevel_floor'), '0\n');
      },
      rmdir: async (p) => {
        await rm(p, { recursive: true });
      },
      readFile: async (p) => {
        if (basename(p) === 'outblob') {
          if (opts.outblobError)
            throw Object.assign(new Error(opts.outblobError), { code: opts.outblobError });
          const inblob = await readFile(join(entryOf(p), 'inblob'));
          await writeFile(p, (opts.report ?? ((b: Buffer) => buildSnpReport({ reportData: b })))(inblob));
          if (opts.meddle) await bump(entryOf(p)); // another process writes meanwhile
        }
        return readFile(p);
      },
      writeFile: async (p, d) => {
        const data = Buffer.from(d);
        const name = basename(p);
        if (name === 'inblob' && data.length > 64)
          throw Object.assign(new Error('EINVAL'), { code: 'EINVAL' });
        writes.push({ name, data });
        await writeFile(p, data);
        await bump(entryOf(p));
      },
    },
  };
}

const ctxPolicy = () => readB64(join(ctxDir, 'security-policy-base64'));
const ctxCollateral = () => cachedCollateral({ securityContextDir: ctxDir, env: {}, ...noThim });

test('configfs-tsm: mkdir, inblob, outblob, generation check, rmdir', async () => {
  const base = await tmp();
  try {
    const hostData = sha256(await ctxPolicy());
    const t = fakeTsm(base, { report: (b) => buildSnpReport({ reportData: b, hostData }) });
    const p = new ConfigfsTsmProvider({ baseDir: base, collateral: ctxCollateral(), fs: t.fs, privlevel: 0 });
    const rd = Buffer.alloc(64);
    rd.write('nonce-123');
    const ev = await p.getEvidence(rd);
    assert.equal(ev.provider, 'sev-snp');
    assert.equal(ev.source, 'configfs-tsm');
    assert.deepEqual(parseSnpReport(ev.report).reportData, rd);
    assert.deepEqual(
      t.writes.map((w) => w.name),
      ['privlevel', 'inblob'],
    );
    assert.deepEqual(t.writes[1]?.data, rd, 'inblob gets exactly the 64 report-data bytes');
    assert.equal(t.writes[0]?.data.toString(), '0\n');
    assert.equal(splitPemChain(ev.collateral.vcekCertChainPem ?? '').length, 3);
    assert.deepEqual(await readdir(base), [], 'the report entry is removed');
    assert.match(t.entries[0] ?? '', /^membrane-\d+-[0-9a-f]{12}$/);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
});

test('configfs-tsm: failures are precise and always clean up', async () => {
  const base = await tmp();
  const hostData = sha256(await ctxPolicy());
  const good = (b: Buffer) => buildSnpReport({ reportData: b, hostData });
  const cases: Array<[string, Parameters<typeof fakeTsm>[1], string, RegExp]> = [
    ['TDX provider', { provider: 'tdx_guest', report: good }, 'EVIDENCE_UNSUPPORTED', /tdx_guest/],
    [
      'concurrent writer',
      { meddle: true, report: good },
      'EVIDENCE_CONFLICT',
      /generation 0 -> 2, expected 1/,
    ],
    [
      'report for other data',
      { report: () => buildSnpReport({ reportData: Buffer.alloc(64, 9), hostData }) },
      'EVIDENCE_MISMATCH',
      /report_data/,
    ],
    [
      'host_data not the policy',
      { report: (b) => buildSnpReport({ reportData: b }) },
      'EVIDENCE_MISMATCH',
      /host_data/,
    ],
    [
      'provider error',
      { outblobError: 'EIO', report: good },
      'EVIDENCE_FAILED',
      /reading outblob failed \(EIO\)/,
    ],
    ['truncated outblob', { report: () => Buffer.alloc(100) }, 'SNP_REPORT_INVALID', /1184/],
  ];
  try {
    for (const [name, opts, code, re] of cases) {
      const t = fakeTsm(base, opts);
      const p = new ConfigfsTsmProvider({ baseDir: base, collateral: ctxCollateral(), fs: t.fs });
      await assert.rejects(
        p.getEvidence(Buffer.alloc(64, 1)),
        (e) => isMembraneError(e, code) && re.test(e.message),
        name,
      );
      assert.deepEqual(await readdir(base), [], `${name}: entry removed`);
    }
  } finally {
    await rm(base, { recursive: true, force: true });
  }
});

test('configfs-tsm: missing interface and bad arguments', async () => {
  const p = new ConfigfsTsmProvider({ baseDir: '/nonexistent/tsm/report', collateral: ctxCollateral() });
  await assert.rejects(
    p.getEvidence(Buffer.alloc(64)),
    (e) => isMembraneError(e, 'EVIDENCE_FAILED') && /configfs mounted/.test(e.message),
  );
  await assert.rejects(p.getEvidence(Buffer.alloc(32)), (e) => isMembraneError(e, 'EVIDENCE_INVALID_INPUT'));
  assert.throws(
    () => new ConfigfsTsmProvider({ privlevel: 4, collateral: ctxCollateral() }),
    (e) => isMembraneError(e, 'EVIDENCE_INVALID_INPUT'),
  );
});

// ---------------- /dev/sev-guest and /dev/sev ----------------

function rsp(report: Buffer, size = 4000, status = 0, reportSize = 1184): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32LE(status, 0);
  b.writeUInt32LE(reportSize, 4);
  report.copy(b, 0x20);
  return b;
}

test('MSG_REPORT_RSP parsing: status, size, offset 0x20', () => {
  const report = buildSnpReport({ reportData: Buffer.alloc(64, 7) });
  assert.deepEqual(parseReportResponse(rsp(report), '/dev/sev-guest'), report);
  assert.deepEqual(
    parseReportResponse(rsp(report, 1280, 0, 0), '/dev/sev'),
    report,
    'report_size 0 tolerated',
  );
  const bad: Array<[Buffer, RegExp]> = [
    [rsp(report, 4000, 0x16), /status 0x16 \(INVALID_PARAM\)/],
    [rsp(report, 4000, 0, 100), /report_size 100/],
    [Buffer.alloc(1000), /too short/],
  ];
  for (const [b, re] of bad)
    assert.throws(
      () => parseReportResponse(b, '/dev/sev-guest'),
      (e) => isMembraneError(e, 'EVIDENCE_FAILED') && re.test(e.message),
    );
});

function fakeAddon(impl: SnpAddon['getReport']): SnpAddon & { calls: unknown[][] } {
  const calls: unknown[][] = [];
  return {
    calls,
    layout: () => {
      throw new Error('unused');
    },
    getReport: (...args) => {
      calls.push(args);
      return impl(...args);
    },
  };
}
const sysErr = (errno: number, syscall: 'open' | 'ioctl', fwError = 0, vmmError = 0) =>
  Object.assign(new Error('x'), { code: 'MEMBRANE_SNP_SYSCALL', errno, syscall, fwError, vmmError });

test('device provider: passes abi/device/report data/vmpl to the addon and returns evidence', async () => {
  const dir = await tmp();
  try {
    const device = join(dir, 'sev-guest');
    await writeFile(device, '');
    const hostData = sha256(await ctxPolicy());
    for (const abi of [6, 5] as const) {
      const addon = fakeAddon((_a, _d, ud) =>
        rsp(buildSnpReport({ reportData: ud, hostData }), abi === 6 ? 4000 : 1280),
      );
      const p = new SevDeviceProvider({ abi, device, vmpl: 1, collateral: ctxCollateral(), addon });
      const rd = Buffer.alloc(64, 0x5a);
      const ev = await p.getEvidence(rd);
      assert.equal(ev.source, device);
      assert.deepEqual(parseSnpReport(ev.report).reportData, rd);
      assert.equal(addon.calls.length, 1);
      const [a, d, ud, vmpl] = addon.calls[0] as [number, string, Buffer, number];
      assert.equal(a, abi);
      assert.equal(d, device);
      assert.deepEqual(Buffer.from(ud), rd);
      assert.equal(vmpl, 1);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('device provider: errors are mapped to actionable messages; EAGAIN is retried', async () => {
  const dir = await tmp();
  try {
    const device = join(dir, 'sev');
    await writeFile(device, '');
    const hostData = sha256(await ctxPolicy());
    const cases: Array<[5 | 6, Error, RegExp]> = [
      [6, sysErr(25, 'ioctl'), /ENOTTY.*kernel 5\.x driver\? try \/dev\/sev/],
      [5, sysErr(25, 'ioctl'), /ENOTTY.*try \/dev\/sev-guest/],
      [6, sysErr(13, 'open'), /EACCES.*run as root/],
      [6, sysErr(5, 'ioctl', 0x16, 0), /EIO.*firmware error 0x16 \(INVALID_PARAM\)/],
    ];
    for (const [abi, err, re] of cases) {
      const p = new SevDeviceProvider({
        abi,
        device,
        collateral: ctxCollateral(),
        addon: fakeAddon(() => {
          throw err;
        }),
      });
      await assert.rejects(
        p.getEvidence(Buffer.alloc(64)),
        (e) => isMembraneError(e, 'EVIDENCE_FAILED') && re.test(e.message),
        re.source,
      );
    }
    let n = 0;
    const flaky = fakeAddon((_a, _d, ud) => {
      if (n++ === 0) throw sysErr(11, 'ioctl'); // EAGAIN
      return rsp(buildSnpReport({ reportData: ud, hostData }));
    });
    const ev = await new SevDeviceProvider({
      abi: 6,
      device,
      collateral: ctxCollateral(),
      addon: flaky,
    }).getEvidence(Buffer.alloc(64, 3));
    assert.equal(flaky.calls.length, 2);
    assert.equal(parseSnpReport(ev.report).reportData[0], 3);

    const missing = new SevDeviceProvider({
      abi: 6,
      device: join(dir, 'nope'),
      collateral: ctxCollateral(),
      addon: flaky,
    });
    await assert.rejects(missing.getEvidence(Buffer.alloc(64)), (e) =>
      isMembraneError(e, 'EVIDENCE_NOT_FOUND'),
    );
    assert.equal(mapDeviceError(new Error('weird'), '/dev/x', 6).code, 'EVIDENCE_FAILED');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('addon loader: precise error when the addon is missing', () => {
  assert.throws(
    () => loadSnpAddon('/nonexistent/build/Release/membrane_snp.node'),
    (e) =>
      isMembraneError(e, 'SNP_ADDON_MISSING') &&
      /build-native/.test(e.message) &&
      /configfs-tsm/.test(e.message),
  );
});

const addonBuilt = existsSync(defaultAddonPath());

test('addon: ioctl argument layout matches the kernel ABIs', {
  skip: !addonBuilt && 'native addon not built',
}, () => {
  const l = loadSnpAddon().layout();
  // 6.x: SNP_GET_REPORT = _IOWR('S', 0x0, struct snp_guest_request_ioctl[32])
  assert.equal(l.v6.ioctl, 0xc0205300);
  assert.deepEqual(
    {
      size: l.v6.size,
      msgVersion: l.v6.msgVersion,
      reqData: l.v6.reqData,
      respData: l.v6.respData,
      exitinfo2: l.v6.exitinfo2,
    },
    { size: 32, msgVersion: 0, reqData: 8, respData: 16, exitinfo2: 24 },
  );
  assert.deepEqual(
    { reqSize: l.v6.reqSize, reqVmpl: l.v6.reqVmpl, respSize: l.v6.respSize },
    { reqSize: 96, reqVmpl: 64, respSize: 4000 },
  );
  // 5.x (ACI): _IOWR('S', 0x1, struct sev_snp_guest_request[40]); request MSG_REPORT_REQ, response MSG_REPORT_RSP
  assert.equal(l.v5.ioctl, 0xc0285301);
  assert.deepEqual(
    {
      size: l.v5.size,
      reqMsgType: l.v5.reqMsgType,
      rspMsgType: l.v5.rspMsgType,
      msgVersion: l.v5.msgVersion,
      requestLen: l.v5.requestLen,
      requestUaddr: l.v5.requestUaddr,
      responseLen: l.v5.responseLen,
      responseUaddr: l.v5.responseUaddr,
      error: l.v5.error,
      reqSize: l.v5.reqSize,
      respSize: l.v5.respSize,
    },
    {
      size: 40,
      reqMsgType: 0,
      rspMsgType: 1,
      msgVersion: 2,
      requestLen: 4,
      requestUaddr: 8,
      responseLen: 16,
      responseUaddr: 24,
      error: 32,
      reqSize: 96,
      respSize: 1280,
    },
  );
});

test('addon: real syscalls fail precisely without SEV hardware', {
  skip: !addonBuilt && 'native addon not built',
}, async () => {
  const a = loadSnpAddon();
  assert.throws(() => a.getReport(6, '/dev/null', Buffer.alloc(63), 0), /64-byte/);
  assert.throws(() => a.getReport(7 as 6, '/dev/null', Buffer.alloc(64), 0), /abi must be 5 or 6/);
  assert.throws(() => a.getReport(6, '/dev/null', Buffer.alloc(64), 4), /vmpl/);
  // /dev/null exists but is not an SEV device: the ioctl is refused (ENOTTY), mapped to a hint.
  const p = new SevDeviceProvider({ abi: 6, device: '/dev/null', collateral: ctxCollateral() });
  await assert.rejects(
    p.getEvidence(Buffer.alloc(64)),
    (e) => isMembraneError(e, 'EVIDENCE_FAILED') && /ioctl failed with ENOTTY/.test(e.message),
  );
  const p5 = new SevDeviceProvider({ abi: 5, device: '/dev/null', collateral: ctxCollateral() });
  await assert.rejects(
    p5.getEvidence(Buffer.alloc(64)),
    (e) => isMembraneError(e, 'EVIDENCE_FAILED') && /\/dev\/sev-guest/.test(e.message),
  );
});

// ---------------- virtual provider and selection ----------------

test('virtual provider: contract report shape and a loud warning per construction', async () => {
  const warnings: string[] = [];
  const policy = Buffer.from('package policy\napi_version := "0.10.0"\n');
  const p = new VirtualProvider({ policy, warn: (m) => warnings.push(m) });
  new VirtualProvider({ policy, warn: (m) => warnings.push(m) });
  assert.equal(warnings.length, 2);
  assert.match(warnings[0] ?? '', /^INSECURE virtual attestation: no hardware evidence/);
  assert.equal(warnings[0], VIRTUAL_WARNING);
  const rd = Buffer.alloc(64, 0x42);
  const ev = await p.getEvidence(rd);
  assert.equal(ev.provider, 'virtual');
  assert.equal(ev.source, 'virtual');
  assert.deepEqual(ev.collateral.securityPolicy, policy);
  const r = parseSnpReport(ev.report);
  assert.equal(r.version, 2);
  assert.equal(r.sigAlgo, 0);
  assert.equal(r.vmpl, 0);
  assert.equal(r.policy, 0x30000n);
  assert.equal(snpPolicyFlags(r.policy).debug, false);
  assert.deepEqual(r.hostData, sha256(policy));
  assert.deepEqual(r.measurement, Buffer.alloc(48));
  assert.deepEqual(r.reportData, rd);
  assert.ok(
    ev.report.subarray(0x2a0).every((x) => x === 0),
    'signature all zero',
  );
  const m = Buffer.alloc(48, 1);
  const withM = new VirtualProvider({ policy, measurement: m, warn: () => {} });
  assert.deepEqual(parseSnpReport((await withM.getEvidence(rd)).report).measurement, m);
});

test('selection: virtual only when asked for by name; auto-detect order; clear error when nothing found', async () => {
  const dir = await tmp();
  try {
    const none = {
      tsmDir: join(dir, 'tsm', 'report'),
      sevGuestDevice: join(dir, 'sev-guest'),
      sevDevice: join(dir, 'sev'),
      env: {},
      thimUrl: false as const,
    };
    const policy = Buffer.from('p');
    const warn = () => {};
    // No hardware, even with a virtual policy and allowInsecureVirtual: never virtual.
    for (const extra of [
      {},
      { virtualPolicy: policy, allowInsecureVirtual: true },
      { provider: 'sev-snp' as const, virtualPolicy: policy },
    ])
      await assert.rejects(
        selectProvider({ ...none, ...extra, warn }),
        (e) =>
          isMembraneError(e, 'EVIDENCE_NOT_FOUND') &&
          /configfs-tsm/.test(e.message) &&
          /--provider virtual/.test(e.message),
      );
    await assert.rejects(selectProvider({ ...none, provider: 'virtual' }), (e) =>
      isMembraneError(e, 'EVIDENCE_CONFIG'),
    );
    await assert.rejects(
      selectProvider({ ...none, provider: 'tdx' as 'virtual' }),
      (e) => isMembraneError(e, 'EVIDENCE_CONFIG') && /unknown evidence provider/.test(e.message),
    );
    const v = await selectProvider({ ...none, provider: 'virtual', virtualPolicy: policy, warn });
    assert.equal(v.name, 'virtual');

    // /dev/sev only -> kernel 5.x ABI; /dev/sev-guest wins over it; configfs-tsm wins over both.
    if (addonBuilt) {
      await writeFile(none.sevDevice, '');
      assert.equal((await selectProvider(none)).source, none.sevDevice);
      await writeFile(none.sevGuestDevice, '');
      assert.equal((await selectProvider(none)).source, none.sevGuestDevice);
    }
    await mkdir(none.tsmDir, { recursive: true });
    const p = await selectProvider(none);
    assert.equal(p.source, 'configfs-tsm');
    assert.equal(p.name, 'sev-snp');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
