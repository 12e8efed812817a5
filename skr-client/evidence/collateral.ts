/**
 * Platform collateral for SEV-SNP evidence, found the way the Azure
 * confidential sidecar finds it (microsoft/confidential-sidecar-containers,
 * pkg/common/info.go):
 *
 *   1. a security-context directory — given explicitly, else $UVM_SECURITY_CONTEXT_DIR —
 *      holding `security-policy-base64`, `host-amd-cert-base64`, `reference-info-base64`
 *      (the directory itself, or its single `security-context-*` subdirectory);
 *   2. for each item still missing, the environment variables UVM_SECURITY_POLICY,
 *      UVM_HOST_AMD_CERTIFICATE, UVM_REFERENCE_INFO (same base64 contents);
 *   3. for the certificate chain only, the host's THIM endpoint
 *      (GET http://169.254.169.254/metadata/THIM/amd/certification, `Metadata: true`),
 *      which answers the same JSON unencoded.
 *
 * host-amd-cert decodes to JSON {vcekCert, tcbm, certificateChain, cacheControl};
 * the chain handed on is VCEK + ASK + ARK in PEM.
 */
import { X509Certificate } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MembraneError } from '../../policy/errors.js';
import { http } from '../http.js';
import type { Collateral } from './types.js';

export const THIM_URL = 'http://169.254.169.254/metadata/THIM/amd/certification';
export const SECURITY_CONTEXT_FILES = {
  securityPolicy: 'security-policy-base64',
  hostAmdCert: 'host-amd-cert-base64',
  referenceInfo: 'reference-info-base64',
} as const;
export const COLLATERAL_ENV = {
  securityContextDir: 'UVM_SECURITY_CONTEXT_DIR',
  securityPolicy: 'UVM_SECURITY_POLICY',
  hostAmdCert: 'UVM_HOST_AMD_CERTIFICATE',
  referenceInfo: 'UVM_REFERENCE_INFO',
} as const;

export interface CollateralOptions {
  /** Explicit security-context directory (wins over $UVM_SECURITY_CONTEXT_DIR). */
  securityContextDir?: string;
  /** Environment to read; default process.env. */
  env?: Record<string, string | undefined>;
  /** THIM endpoint; default THIM_URL. `false` disables the fallback. */
  thimUrl?: string | false;
  /** Per-attempt timeout for THIM (default 5 s) and retries (default 2). */
  thimTimeoutMs?: number;
  thimRetries?: number;
  /** Fail when no certificate chain is found anywhere (default true). */
  requireCertChain?: boolean;
}

export interface LoadedCollateral {
  collateral: Collateral;
  /** Where each item came from, for `membrane attest` and logs. */
  sources: { securityPolicy?: string; certChain?: string; referenceInfo?: string };
}

/** THIM / host-amd-cert JSON. */
export interface ThimCerts {
  vcekCert: string;
  tcbm: string;
  certificateChain: string;
  cacheControl?: string;
}

function decodeBase64(text: string, what: string, where: string): Buffer {
  const s = text.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(s) || s.length % 4 === 1)
    throw new MembraneError('COLLATERAL_INVALID', `${what} is not valid base64`, { where });
  return Buffer.from(s, s.includes('-') || s.includes('_') ? 'base64url' : 'base64');
}

const PEM_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** THIM JSON -> {pem chain VCEK+ASK+ARK, tcbm}, each certificate checked to parse. */
export function thimCertsToChain(json: unknown, where: string): { pem: string; tcbm: string } {
  const j = json as Partial<ThimCerts> | null;
  if (!j || typeof j !== 'object' || typeof j.vcekCert !== 'string' || typeof j.certificateChain !== 'string')
    throw new MembraneError(
      'COLLATERAL_INVALID',
      'host AMD certificate JSON lacks vcekCert/certificateChain strings',
      { where },
    );
  const certs = [...(j.vcekCert.match(PEM_RE) ?? []), ...(j.certificateChain.match(PEM_RE) ?? [])];
  if (certs.length !== 3)
    throw new MembraneError(
      'COLLATERAL_INVALID',
      `host AMD certificates: expected VCEK + ASK + ARK (3 PEM certificates), found ${certs.length}`,
      { where },
    );
  certs.forEach((p, i) => {
    try {
      new X509Certificate(p);
    } catch (e) {
      throw new MembraneError('COLLATERAL_INVALID', `host AMD certificate #${i + 1} does not parse`, {
        where,
        cause: e,
      });
    }
  });
  const tcbm = typeof j.tcbm === 'string' ? j.tcbm : '';
  if (tcbm && !/^[0-9a-fA-F]{1,16}$/.test(tcbm))
    throw new MembraneError('COLLATERAL_INVALID', `host AMD certificate tcbm "${tcbm}" is not hex`, {
      where,
    });
  return { pem: `${certs.join('\n')}\n`, tcbm };
}

function parseHostAmdCert(base64: string, where: string): { pem: string; tcbm: string } {
  const raw = decodeBase64(base64, 'host AMD certificate', where);
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw new MembraneError('COLLATERAL_INVALID', 'host AMD certificate is not base64 of JSON', {
      where,
      cause: e,
    });
  }
  return thimCertsToChain(json, where);
}

const hasAny = async (dir: string) => {
  for (const f of Object.values(SECURITY_CONTEXT_FILES)) {
    try {
      await stat(join(dir, f));
      return true;
    } catch {
      /* keep looking */
    }
  }
  return false;
};

/**
 * The directory that actually holds the three files: `dir` itself, or its
 * single `security-context-*` child (hcsshim mounts one per container).
 */
export async function locateSecurityContext(dir: string): Promise<string> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(dir);
  } catch (e) {
    throw new MembraneError('COLLATERAL_NOT_FOUND', 'security context directory does not exist', {
      where: dir,
      cause: e,
    });
  }
  if (!st.isDirectory())
    throw new MembraneError('COLLATERAL_NOT_FOUND', 'security context path is not a directory', {
      where: dir,
    });
  if (await hasAny(dir)) return dir;
  const subs: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }))
    if (e.isDirectory() && e.name.startsWith('security-context-')) subs.push(join(dir, e.name));
  const found: string[] = [];
  for (const s of subs) if (await hasAny(s)) found.push(s);
  if (found.length === 1) return found[0] as string;
  if (found.length > 1)
    throw new MembraneError(
      'COLLATERAL_NOT_FOUND',
      `several security-context-* directories (${found.map((f) => f.slice(dir.length + 1)).join(', ')}); name one explicitly`,
      { where: dir },
    );
  throw new MembraneError(
    'COLLATERAL_NOT_FOUND',
    `no ${Object.values(SECURITY_CONTEXT_FILES).join(' / ')} in the directory or a security-context-* subdirectory`,
    { where: dir },
  );
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MembraneError(
      'COLLATERAL_INVALID',
      `cannot read security context file: ${(e as Error).message}`,
      {
        where: path,
        cause: e,
      },
    );
  }
}

export async function loadCollateral(opts: CollateralOptions = {}): Promise<LoadedCollateral> {
  const env = opts.env ?? process.env;
  const collateral: Collateral = {};
  const sources: LoadedCollateral['sources'] = {};
  let policyB64: [string, string] | undefined;
  let certB64: [string, string] | undefined;
  let refB64: [string, string] | undefined;

  // 1. security-context directory
  const dirGiven = opts.securityContextDir ?? (env[COLLATERAL_ENV.securityContextDir] || undefined);
  if (dirGiven) {
    const dir = await locateSecurityContext(dirGiven);
    const read = async (name: string): Promise<[string, string] | undefined> => {
      const p = join(dir, name);
      const v = await readOptional(p);
      return v?.trim() ? [v, p] : undefined;
    };
    policyB64 = await read(SECURITY_CONTEXT_FILES.securityPolicy);
    certB64 = await read(SECURITY_CONTEXT_FILES.hostAmdCert);
    refB64 = await read(SECURITY_CONTEXT_FILES.referenceInfo);
  }
  // 2. environment variables, for whatever the directory did not hold
  const fromEnv = (name: string): [string, string] | undefined => {
    const v = env[name];
    return v?.trim() ? [v, `$${name}`] : undefined;
  };
  policyB64 ??= fromEnv(COLLATERAL_ENV.securityPolicy);
  certB64 ??= fromEnv(COLLATERAL_ENV.hostAmdCert);
  refB64 ??= fromEnv(COLLATERAL_ENV.referenceInfo);

  if (policyB64) {
    collateral.securityPolicy = decodeBase64(policyB64[0], 'security policy', policyB64[1]);
    sources.securityPolicy = policyB64[1];
  }
  if (refB64) {
    collateral.uvmReferenceInfo = decodeBase64(refB64[0], 'UVM reference info', refB64[1]);
    sources.referenceInfo = refB64[1];
  }
  if (certB64) {
    const { pem, tcbm } = parseHostAmdCert(certB64[0], certB64[1]);
    collateral.vcekCertChainPem = pem;
    if (tcbm) collateral.tcbm = tcbm;
    sources.certChain = certB64[1];
  }

  // 3. THIM, for the certificate chain only
  if (!collateral.vcekCertChainPem && opts.thimUrl !== false) {
    const url = opts.thimUrl ?? THIM_URL;
    try {
      const res = await http('host THIM certificate endpoint', url, {
        headers: { Metadata: 'true' },
        // THIM is plain http on the link-local IMDS address by design (never routed off the host).
        allowInsecureHttp: true,
        timeoutMs: opts.thimTimeoutMs ?? 5000,
        retries: opts.thimRetries ?? 2,
        hint: 'the THIM endpoint exists only on Azure confidential hosts; elsewhere provide the security context or UVM_HOST_AMD_CERTIFICATE',
      });
      const { pem, tcbm } = thimCertsToChain(res.json(), url);
      collateral.vcekCertChainPem = pem;
      if (tcbm) collateral.tcbm = tcbm;
      sources.certChain = url;
    } catch (e) {
      if (opts.requireCertChain !== false)
        throw new MembraneError(
          'COLLATERAL_NOT_FOUND',
          `no VCEK certificate chain: ${dirGiven ? `no ${SECURITY_CONTEXT_FILES.hostAmdCert} in ${dirGiven}` : `${COLLATERAL_ENV.securityContextDir} unset`}, ${COLLATERAL_ENV.hostAmdCert} unset, and the THIM endpoint failed: ${(e as Error).message}`,
          { cause: e },
        );
    }
  } else if (!collateral.vcekCertChainPem && opts.requireCertChain !== false) {
    throw new MembraneError(
      'COLLATERAL_NOT_FOUND',
      `no VCEK certificate chain: no security context ${SECURITY_CONTEXT_FILES.hostAmdCert}, ${COLLATERAL_ENV.hostAmdCert} unset, THIM fallback disabled`,
    );
  }
  return { collateral, sources };
}
