/**
 * `membrane skr release`: attest (SEV-SNP hardware or, explicitly, the virtual
 * provider), get an MAA token bound to a fresh in-memory runtime key, and release
 * a key from Azure Key Vault / Managed HSM (or the local emulator). Prints only
 * the key type and its RFC 7638 thumbprint; the key itself goes only to --out (0600).
 */
import { closeSync, fchmodSync, openSync, readFileSync, writeSync } from 'node:fs';
import { MembraneError } from '../../policy/errors.js';
import {
  isKeyExportEnc,
  KEY_EXPORT_ENCS,
  managedIdentity,
  releaseKey,
  staticToken,
  type TokenSource,
  workloadIdentity,
} from '../../skr-client/akv/index.js';
import { selectProvider } from '../../skr-client/evidence/index.js';
import { attestSevSnp, createRuntimeKey } from '../../skr-client/maa/client.js';
import { parse, required } from './_args.js';

export const summary = 'Secure key release from Azure Key Vault / Managed HSM (attest, then release)';

const HELP = `Usage: membrane skr release --kid URL --maa URL [options]

Attests this environment to the attestation service (MAA), then releases the
key from Key Vault / Managed HSM under its release policy. The key is wrapped
to an ephemeral key that never leaves this process.

Required:
  --kid URL                 key id: https://<vault>/keys/<name>[/<version>]
  --maa URL                 attestation endpoint (the policy's authority)

Evidence:
  --provider sev-snp|virtual  default: auto-detect SEV-SNP hardware; 'virtual' is
                            INSECURE (unsigned report) and accepted only by the
                            local emulators (membrane emulators start)
  --virtual-policy FILE     policy whose SHA-256 becomes the virtual host_data

Credential for Key Vault (default: workload identity when
AZURE_FEDERATED_TOKEN_FILE is set, otherwise the managed identity):
  --access-token T          a bearer token (e.g. the emulators' token)
  --access-token-file FILE  read the bearer token from FILE
  --identity [CLIENT_ID]    IMDS managed identity (user-assigned: its client id)
  --workload-identity       AKS workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID,
                            AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST)

Other:
  --ca FILE                 extra TLS trust anchors (PEM), e.g. the emulators'
                            ca.pem (repeatable); TLS only
  --release-ca FILE         anchors (PEM) that replace the Azure roots for the
                            release signature, e.g. the emulators' ca.pem
                            (repeatable; kept apart from --ca on purpose)
  --enc ALG                 ${KEY_EXPORT_ENCS.join(' | ')}
                            (default: the service's, CKM_RSA_AES_KEY_WRAP)
  --out FILE                write the released key (raw bytes for oct, PKCS#8 DER
                            for RSA) to FILE with mode 0600
  --json                    print {kid, kty, thumbprint, out} as JSON`;

/** `--identity CLIENT_ID` / `--identity=CLIENT_ID` take an optional value, which parseArgs cannot express. */
function normaliseIdentity(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--identity=')) out.push('--identity', '--client-id', a.slice('--identity='.length));
    else if (a === '--identity' && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('-'))
      out.push('--identity', '--client-id', argv[++i]!);
    else out.push(a);
  }
  return out;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new MembraneError('USAGE', `cannot read ${what}`, { where: path, cause: e });
  }
}

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'release') throw new MembraneError('USAGE', `unknown subcommand '${sub}'\n\n${HELP}`);
  const { values, help } = parse(
    normaliseIdentity(rest),
    {
      kid: { type: 'string' },
      maa: { type: 'string' },
      provider: { type: 'string' },
      'virtual-policy': { type: 'string' },
      'access-token': { type: 'string' },
      'access-token-file': { type: 'string' },
      identity: { type: 'boolean' },
      'client-id': { type: 'string' },
      'workload-identity': { type: 'boolean' },
      ca: { type: 'string', multiple: true },
      'release-ca': { type: 'string', multiple: true },
      enc: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean' },
    },
    HELP,
  );
  if (help) return 0;
  const kid = required(values.kid, '--kid', HELP);
  const maa = required(values.maa, '--maa', HELP);
  const provider = values.provider;
  if (provider !== undefined && provider !== 'sev-snp' && provider !== 'virtual')
    throw new MembraneError('USAGE', `--provider must be sev-snp or virtual, got ${provider}\n\n${HELP}`);
  if (values['virtual-policy'] && provider !== 'virtual')
    throw new MembraneError(
      'USAGE',
      '--virtual-policy needs --provider virtual (virtual evidence is never chosen implicitly)',
    );
  const enc = values.enc;
  if (enc !== undefined && !isKeyExportEnc(enc))
    throw new MembraneError('USAGE', `--enc must be one of ${KEY_EXPORT_ENCS.join(', ')}, got ${enc}`);
  const ca = values.ca?.length ? values.ca.map((f) => readText(f, 'the --ca file')) : undefined;
  const credential = chooseCredential(values);

  const evidenceProvider = await selectProvider({
    provider,
    virtualPolicy: values['virtual-policy']
      ? Buffer.from(readText(values['virtual-policy'], 'the --virtual-policy file'), 'utf8')
      : undefined,
  });
  const runtime = await createRuntimeKey();
  const evidence = await evidenceProvider.getEvidence(runtime.reportData);
  const { token } = await attestSevSnp({ endpoint: maa, evidence, runtime, ca });
  const trustAnchors = values['release-ca']?.length
    ? values['release-ca'].map((f) => readText(f, 'the --release-ca file'))
    : undefined;
  const released = await releaseKey({ kid, maaToken: token, runtime, credential, enc, ca, trustAnchors });
  try {
    if (values.out) writeSecret(values.out, released.key);
  } finally {
    released.key.fill(0);
  }
  if (values.json) {
    console.log(
      JSON.stringify({ kid, kty: released.kty, thumbprint: released.thumbprint, out: values.out ?? null }),
    );
  } else {
    console.log(`released ${kid}`);
    console.log(`  kty:        ${released.kty}`);
    console.log(`  thumbprint: ${released.thumbprint}  (RFC 7638, SHA-256)`);
    console.log(
      values.out ? `  written to: ${values.out} (mode 0600)` : '  key not written (use --out FILE)',
    );
  }
  return 0;
}

function chooseCredential(values: {
  'access-token'?: string;
  'access-token-file'?: string;
  identity?: boolean;
  'client-id'?: string;
  'workload-identity'?: boolean;
}): TokenSource {
  const chosen = [
    values['access-token'] !== undefined && '--access-token',
    values['access-token-file'] !== undefined && '--access-token-file',
    values.identity && '--identity',
    values['workload-identity'] && '--workload-identity',
  ].filter(Boolean);
  if (chosen.length > 1)
    throw new MembraneError('USAGE', `choose one credential, not ${chosen.join(' and ')}`);
  if (values['client-id'] !== undefined && !values.identity)
    throw new MembraneError('USAGE', '--client-id goes with --identity');
  if (values['access-token'] !== undefined) return staticToken(values['access-token']);
  if (values['access-token-file'] !== undefined)
    return staticToken(readText(values['access-token-file'], 'the --access-token-file'));
  if (values['workload-identity']) return workloadIdentity();
  if (values.identity) return managedIdentity({ clientId: values['client-id'] });
  return process.env.AZURE_FEDERATED_TOKEN_FILE ? workloadIdentity() : managedIdentity();
}

/** Creates/truncates `path` with mode 0600 (fixed before any byte is written) and writes `data`. */
function writeSecret(path: string, data: Buffer): void {
  let fd: number;
  try {
    fd = openSync(path, 'w', 0o600);
  } catch (e) {
    throw new MembraneError('OUTPUT_FAILED', 'cannot open --out file for writing', { where: path, cause: e });
  }
  try {
    fchmodSync(fd, 0o600);
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off);
  } finally {
    closeSync(fd);
  }
}
