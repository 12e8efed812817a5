/**
 * `membrane attest`: obtain SEV-SNP evidence (or, explicitly, insecure virtual
 * evidence) and print what it says; with --maa, exchange it for an attestation
 * token and print the token's claims.
 * `membrane attest verify`: verify a saved report against its AMD certificate
 * chain offline — field dump, every check, verdict (exit 0 pass / 1 fail).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { MembraneError } from '../../policy/errors.js';
import { thimCertsToChain } from '../../skr-client/evidence/collateral.js';
import { type SnpEvidence, selectProvider } from '../../skr-client/evidence/index.js';
import { attestSevSnp, createRuntimeKey } from '../../skr-client/maa/client.js';
import {
  parseSnpReport,
  SNP_REPORT_SIZE,
  type SnpReport,
  snpPolicyFlags,
  snpTcbParts,
  tcbHex,
} from '../../skr-client/snp/report.js';
import { checkSnpReport, type SnpVerdict, splitPemChain } from '../../skr-client/snp/verify.js';
import { parse, required } from './_args.js';

export const summary = 'show SEV-SNP evidence (optionally an MAA token), or verify a saved report';

const help = `Usage: membrane attest [--provider sev-snp|virtual] [--virtual-policy FILE] [--maa URL] [--ca FILE] [--json]
       membrane attest verify --report R --certs C.pem [--json]

Obtains an attestation report from this guest and prints a summary: provider, source,
host_data, measurement, report_data, TCB, and where the collateral came from. A hardware
report is also verified locally against its VCEK -> ASK -> ARK chain.

Providers: auto-detected SEV-SNP (configfs-tsm, then /dev/sev-guest, then /dev/sev) unless
--provider is given. 'virtual' is INSECURE (an unsigned report for local emulators only)
and is used only when asked for.

Options:
  --provider P            sev-snp | virtual (default: auto-detect SEV-SNP; never virtual)
  --virtual-policy FILE   policy whose SHA-256 becomes the virtual report's host_data
  --security-context DIR  Azure security-context directory (default $UVM_SECURITY_CONTEXT_DIR)
  --report-data HEX       up to 64 bytes bound into the report (default 32 random bytes);
                          ignored with --maa, which binds the runtime key
  --maa URL               attest with this Microsoft Azure Attestation endpoint (or emulator)
                          and print the token's claims
  --ca FILE               extra PEM trust anchors for HTTPS (e.g. the emulators' CA)
  --json                  machine-readable output
  -h, --help              this help

Run 'membrane attest verify --help' for offline verification.`;

const verifyHelp = `Usage: membrane attest verify --report R --certs C.pem [--tcbm HEX] [--trusted-ark FILE] [--json]

Verifies a saved SEV-SNP attestation report offline: prints every report field, then each
check (report signature with the VCEK, VCEK -> ASK -> ARK signatures, ARK is a pinned AMD
root, certificate validity, VCEK TCB / hwID vs the report, host tcbm) and the verdict.

Options:
  --report R          the report: 1184 raw bytes (or the same as hex / base64 text)
  --certs C           PEM chain VCEK, ASK, ARK — or the host's THIM JSON
                      {vcekCert, tcbm, certificateChain} (its tcbm is then checked too)
  --tcbm HEX          host-reported TCB to compare with reported_tcb
  --trusted-ark FILE  also trust this ARK certificate (PEM), e.g. for a product not pinned
  --json              machine-readable output
  -h, --help          this help

Exit status: 0 when every check passes, 1 when any fails.`;

const hex = (b: Buffer) => b.toString('hex');

function readFileOrUsage(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new MembraneError('USAGE', `cannot read the ${what} file: ${(e as Error).message}`, {
      where: path,
      cause: e,
    });
  }
}

/** Raw report bytes, accepting hex or base64 text of them too. */
function reportBytes(buf: Buffer, where: string): Buffer {
  if (buf.length === SNP_REPORT_SIZE) return buf;
  const text = buf.toString('latin1').replace(/\s+/g, '');
  if (/^[0-9a-fA-F]+$/.test(text) && text.length === SNP_REPORT_SIZE * 2) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) {
    const b = Buffer.from(text, /[-_]/.test(text) ? 'base64url' : 'base64');
    if (b.length === SNP_REPORT_SIZE) return b;
  }
  throw new MembraneError(
    'SNP_REPORT_INVALID',
    `report file is ${buf.length} bytes: expected ${SNP_REPORT_SIZE} raw bytes (or hex/base64 of them)`,
    { where },
  );
}

function tcbText(tcb: bigint, family: number): string {
  const p = snpTcbParts(tcb, family);
  const parts = [
    p.fmc !== undefined ? `fmc ${p.fmc}` : undefined,
    `bootloader ${p.bootloader}`,
    `tee ${p.tee}`,
    `snp ${p.snp}`,
    `microcode ${p.microcode}`,
  ].filter(Boolean);
  return `0x${tcbHex(tcb)} (${parts.join(', ')})`;
}

/** Every field, in report order, as display strings (hex for bytes and 64-bit values). */
export function reportFields(r: SnpReport): Array<[string, string]> {
  const f = snpPolicyFlags(r.policy);
  const fam = r.cpuid.family;
  const signingKey =
    r.signingKey === 0
      ? 'VCEK'
      : r.signingKey === 1
        ? 'VLEK'
        : r.signingKey === 7
          ? 'none'
          : String(r.signingKey);
  return [
    ['version', String(r.version)],
    ['guest_svn', String(r.guestSvn)],
    [
      'policy',
      `0x${r.policy.toString(16)} (abi ${f.abiMajor}.${f.abiMinor}, smt ${f.smt}, migrate_ma ${f.migrateMa}, debug ${f.debug}, single_socket ${f.singleSocket})`,
    ],
    ['family_id', hex(r.familyId)],
    ['image_id', hex(r.imageId)],
    ['vmpl', String(r.vmpl)],
    ['signature_algo', `${r.sigAlgo}${r.sigAlgo === 1 ? ' (ECDSA P-384 with SHA-384)' : ''}`],
    ['current_tcb', tcbText(r.currentTcb, fam)],
    ['platform_info', `0x${r.platformInfo.toString(16)}`],
    ['signing_key', `${signingKey} (author_key_en ${r.authorKeyEn}, mask_chip_key ${r.maskChipKey})`],
    ['report_data', hex(r.reportData)],
    ['measurement', hex(r.measurement)],
    ['host_data', hex(r.hostData)],
    ['id_key_digest', hex(r.idKeyDigest)],
    ['author_key_digest', hex(r.authorKeyDigest)],
    ['report_id', hex(r.reportId)],
    ['report_id_ma', hex(r.reportIdMa)],
    ['reported_tcb', tcbText(r.reportedTcb, fam)],
    [
      'cpuid',
      `family 0x${r.cpuid.family.toString(16)}, model 0x${r.cpuid.model.toString(16)}, stepping ${r.cpuid.stepping}`,
    ],
    ['chip_id', hex(r.chipId)],
    ['committed_tcb', tcbText(r.committedTcb, fam)],
    [
      'current_version',
      `${r.currentVersion.major}.${r.currentVersion.minor} build ${r.currentVersion.build}`,
    ],
    [
      'committed_version',
      `${r.committedVersion.major}.${r.committedVersion.minor} build ${r.committedVersion.build}`,
    ],
    ['launch_tcb', tcbText(r.launchTcb, fam)],
    ['signature_r', hex(r.signature.r)],
    ['signature_s', hex(r.signature.s)],
  ];
}

function printChecks(v: SnpVerdict): void {
  for (const c of v.checks)
    console.log(`  ${c.status.toUpperCase().padEnd(4)}  ${c.name.padEnd(22)} ${c.detail}`);
}

async function verify(argv: string[]): Promise<number> {
  const { values, help: shown } = parse(
    argv,
    {
      report: { type: 'string' },
      certs: { type: 'string' },
      tcbm: { type: 'string' },
      'trusted-ark': { type: 'string' },
      json: { type: 'boolean' },
    },
    verifyHelp,
  );
  if (shown) return 0;
  const reportPath = required(values.report, '--report', verifyHelp);
  const certsPath = required(values.certs, '--certs', verifyHelp);
  const report = reportBytes(readFileOrUsage(reportPath, 'report'), reportPath);
  const certsText = readFileOrUsage(certsPath, 'certificate').toString('utf8');
  let pem = certsText;
  let tcbm = values.tcbm;
  if (certsText.trimStart().startsWith('{')) {
    let json: unknown;
    try {
      json = JSON.parse(certsText);
    } catch (e) {
      throw new MembraneError('USAGE', 'certificate file looks like JSON but does not parse', {
        where: certsPath,
        cause: e,
      });
    }
    const c = thimCertsToChain(json, certsPath);
    pem = c.pem;
    tcbm ??= c.tcbm || undefined;
  } else if (splitPemChain(certsText).length === 0) {
    throw new MembraneError('USAGE', 'certificate file holds no PEM certificates', { where: certsPath });
  }
  const trustedArks = values['trusted-ark']
    ? [readFileOrUsage(values['trusted-ark'], 'ARK').toString('utf8')]
    : [];
  const verdict = checkSnpReport(report, pem, { tcbm, trustedArks });

  if (values.json) {
    console.log(
      JSON.stringify(
        {
          verdict: verdict.ok ? 'pass' : 'fail',
          fields: verdict.report ? Object.fromEntries(reportFields(verdict.report)) : undefined,
          checks: verdict.checks,
        },
        null,
        2,
      ),
    );
  } else {
    if (verdict.report) {
      console.log(`SEV-SNP attestation report (${reportPath})`);
      for (const [k, v] of reportFields(verdict.report)) console.log(`  ${k.padEnd(18)} ${v}`);
      console.log('');
    }
    console.log('Checks:');
    printChecks(verdict);
    console.log(`\nVerdict: ${verdict.ok ? 'PASS' : 'FAIL'}`);
  }
  return verdict.ok ? 0 : 1;
}

function parseReportData(text: string | undefined): Buffer {
  if (text === undefined) return Buffer.concat([randomBytes(32), Buffer.alloc(32)]);
  const t = text.replace(/^0x/, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(t) || t.length > 128)
    throw new MembraneError('USAGE', '--report-data must be hex of at most 64 bytes');
  const b = Buffer.alloc(64);
  Buffer.from(t, 'hex').copy(b);
  return b;
}

async function show(argv: string[]): Promise<number> {
  const { values, help: shown } = parse(
    argv,
    {
      provider: { type: 'string' },
      'virtual-policy': { type: 'string' },
      'security-context': { type: 'string' },
      'report-data': { type: 'string' },
      maa: { type: 'string' },
      ca: { type: 'string' },
      json: { type: 'boolean' },
    },
    help,
  );
  if (shown) return 0;
  const provider = values.provider;
  if (provider !== undefined && provider !== 'sev-snp' && provider !== 'virtual')
    throw new MembraneError('USAGE', `--provider must be sev-snp or virtual, got "${provider}"\n\n${help}`);
  if (values['virtual-policy'] && provider !== 'virtual')
    throw new MembraneError('USAGE', '--virtual-policy applies only with --provider virtual');
  const p = await selectProvider({
    provider,
    virtualPolicy: values['virtual-policy']
      ? readFileOrUsage(values['virtual-policy'], 'virtual policy')
      : undefined,
    securityContextDir: values['security-context'],
  });
  const ca = values.ca ? readFileOrUsage(values.ca, 'CA').toString('utf8') : undefined;

  let evidence: SnpEvidence;
  let token: { token: string; claims: Record<string, unknown> } | undefined;
  if (values.maa) {
    const runtime = await createRuntimeKey();
    evidence = await p.getEvidence(runtime.reportData);
    token = await attestSevSnp({ endpoint: values.maa, evidence, runtime, ca });
  } else {
    evidence = await p.getEvidence(parseReportData(values['report-data']));
  }

  const r = parseSnpReport(evidence.report);
  const chain = evidence.collateral.vcekCertChainPem;
  const local =
    evidence.provider === 'virtual' || !chain
      ? undefined
      : checkSnpReport(evidence.report, chain, { tcbm: evidence.collateral.tcbm });
  const fam = r.cpuid.family;
  const out = {
    provider: evidence.provider,
    source: evidence.source,
    insecure: evidence.provider === 'virtual',
    host_data: hex(r.hostData),
    measurement: hex(r.measurement),
    report_data: hex(r.reportData),
    reported_tcb: tcbText(r.reportedTcb, fam),
    vmpl: r.vmpl,
    policy: `0x${r.policy.toString(16)}`,
    debug: snpPolicyFlags(r.policy).debug,
    collateral: {
      security_policy: evidence.collateral.securityPolicy
        ? `${evidence.collateral.securityPolicy.length} bytes`
        : 'absent',
      certificates: chain ? `${splitPemChain(chain).length} (VCEK, ASK, ARK)` : 'absent',
      tcbm: evidence.collateral.tcbm ?? 'absent',
      uvm_reference_info: evidence.collateral.uvmReferenceInfo
        ? `${evidence.collateral.uvmReferenceInfo.length} bytes`
        : 'absent',
      sources: evidence.collateralSources ?? {},
    },
    local_verification: local
      ? { verdict: local.ok ? 'pass' : 'fail', checks: local.checks }
      : {
          verdict:
            evidence.provider === 'virtual'
              ? 'not applicable (unsigned virtual report)'
              : 'skipped (no certificate chain)',
        },
    maa: token ? { claims: token.claims } : undefined,
  };
  if (values.json) {
    console.log(JSON.stringify(out, null, 2));
  } else {
    console.log(
      `provider      ${out.provider}${out.insecure ? '   *** INSECURE: unsigned virtual evidence ***' : ''}`,
    );
    console.log(`source        ${out.source}`);
    console.log(`host_data     ${out.host_data}`);
    console.log(`measurement   ${out.measurement}`);
    console.log(`report_data   ${out.report_data}`);
    console.log(`reported_tcb  ${out.reported_tcb}`);
    console.log(`vmpl          ${out.vmpl}`);
    console.log(`policy        ${out.policy} (debug ${out.debug})`);
    console.log('collateral');
    console.log(`  security policy     ${out.collateral.security_policy}`);
    console.log(`  certificates        ${out.collateral.certificates}`);
    console.log(`  tcbm                ${out.collateral.tcbm}`);
    console.log(`  uvm reference info  ${out.collateral.uvm_reference_info}`);
    for (const [k, v] of Object.entries(out.collateral.sources)) console.log(`  source of ${k}: ${v}`);
    console.log(`local verification: ${out.local_verification.verdict}`);
    if (local && !local.ok) printChecks(local);
    if (token) {
      console.log(`\nMAA token claims (${values.maa}):`);
      console.log(JSON.stringify(token.claims, null, 2));
    }
  }
  return local && !local.ok ? 1 : 0;
}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'verify') return verify(argv.slice(1));
  return show(argv);
}
