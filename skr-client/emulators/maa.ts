/**
 * Local Microsoft Azure Attestation emulator — NOT FOR PRODUCTION.
 *
 * Serves the MAA endpoints a client and Key Vault need:
 *   POST /attest/SevSnpVm?api-version=…   body {report, runtimeData:{data, dataType}, nonce}
 *   GET  /certs                           JWKS (n/e and x5c)
 *   GET  /.well-known/openid-configuration
 * It accepts VIRTUAL evidence only (an unsigned SNP report: sigAlgo 0, zero signature),
 * checks report_data[0:32] == SHA-256(runtime data) as MAA does, and issues an RS256
 * token with the MAA SEV-SNP claim set. Tokens also carry `x-ms-membrane-emulator: true`
 * so nothing downstream can mistake them for real ones.
 */
import { createHash, createPublicKey, type JsonWebKey, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, type JWK, SignJWT } from 'jose';
import { isMembraneError } from '../../policy/errors.js';
import { parseSnpReport, type SnpReport, snpPolicyFlags, snpTcbParts } from '../snp/report.js';
import type { EmulatorCa } from './ca.js';
import { HttpError, type Request, type Response, type RunningServer, startHttpsServer } from './server.js';

export const EMULATOR_BANNER = 'emulator — not for production';
/** MAA tokens are valid for 8 hours. */
const TOKEN_LIFETIME_S = 8 * 3600;

export interface MaaEmulator extends RunningServer {
  /** Issuer (== url): what release policies name as `authority`. */
  issuer: string;
  jwks: { keys: JWK[] };
}

const hex = (b: Buffer) => b.toString('hex');

function decodeB64(s: unknown, what: string): Buffer {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(s) || s.length === 0)
    throw new HttpError(400, 'InvalidParameter', `${what} must be a non-empty base64url string`);
  return Buffer.from(s, 'base64url'); // Node's decoder also takes the standard alphabet
}

/** The MAA SEV-SNP claim set for a (virtual) report. */
export function snpClaims(report: SnpReport): Record<string, unknown> {
  const flags = snpPolicyFlags(report.policy);
  const tcb = snpTcbParts(report.reportedTcb, report.cpuid.family);
  return {
    'x-ms-attestation-type': 'sevsnpvm',
    'x-ms-compliance-status': 'azure-compliant-uvm',
    'x-ms-sevsnpvm-authorkeydigest': hex(report.authorKeyDigest),
    'x-ms-sevsnpvm-bootloader-svn': tcb.bootloader,
    'x-ms-sevsnpvm-familyId': hex(report.familyId),
    'x-ms-sevsnpvm-guestsvn': report.guestSvn,
    'x-ms-sevsnpvm-hostdata': hex(report.hostData),
    'x-ms-sevsnpvm-idkeydigest': hex(report.idKeyDigest),
    'x-ms-sevsnpvm-imageId': hex(report.imageId),
    'x-ms-sevsnpvm-is-debuggable': flags.debug,
    'x-ms-sevsnpvm-launchmeasurement': hex(report.measurement),
    'x-ms-sevsnpvm-microcode-svn': tcb.microcode,
    'x-ms-sevsnpvm-migration-allowed': flags.migrateMa,
    'x-ms-sevsnpvm-reportdata': hex(report.reportData),
    'x-ms-sevsnpvm-reportid': hex(report.reportId),
    'x-ms-sevsnpvm-smt-allowed': flags.smt,
    'x-ms-sevsnpvm-snpfw-svn': tcb.snp,
    'x-ms-sevsnpvm-tee-svn': tcb.tee,
    'x-ms-sevsnpvm-vmpl': report.vmpl,
  };
}

function isVirtual(r: SnpReport): boolean {
  return r.sigAlgo === 0 && r.signature.r.every((b) => b === 0) && r.signature.s.every((b) => b === 0);
}

/** Reads the SNP report out of the MAA `report` field (see skr-client/maa/client.ts for the encoding). */
function readReport(field: unknown): SnpReport {
  const outer = decodeB64(field, 'report');
  let raw: Buffer;
  if (outer.length === 1184)
    raw = outer; // a bare report is tolerated
  else {
    let j: { SnpReport?: unknown };
    try {
      j = JSON.parse(outer.toString('utf8')) as { SnpReport?: unknown };
    } catch {
      throw new HttpError(
        400,
        'InvalidParameter',
        'report must be base64url of JSON {SnpReport, VcekCertChain, Endorsements}',
      );
    }
    raw = decodeB64(j.SnpReport, 'report.SnpReport');
  }
  try {
    return parseSnpReport(raw);
  } catch (e) {
    throw new HttpError(
      400,
      'InvalidParameter',
      isMembraneError(e) ? e.message : 'report.SnpReport does not parse',
    );
  }
}

export async function startMaaEmulator(opts: {
  ca: EmulatorCa;
  host?: string;
  port?: number;
  log?: (line: string) => void;
}): Promise<MaaEmulator> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const signing = opts.ca.maaSigning;
  const pub = createPublicKey(signing.privateKey).export({ format: 'jwk' }) as JsonWebKey;
  const kid = await calculateJwkThumbprint({ kty: 'RSA', n: pub.n!, e: pub.e! });
  const jwks = {
    keys: [{ kty: 'RSA', kid, use: 'sig', alg: 'RS256', n: pub.n!, e: pub.e!, x5c: signing.x5c }],
  };
  let issuer = '';

  const attest = async (req: Request): Promise<Response> => {
    if (!req.query.get('api-version'))
      throw new HttpError(400, 'InvalidParameter', 'the api-version query parameter is required');
    const body = req.json() as {
      report?: unknown;
      runtimeData?: { data?: unknown; dataType?: unknown };
      nonce?: unknown;
    };
    if (typeof body !== 'object' || body === null)
      throw new HttpError(400, 'InvalidParameter', 'body must be a JSON object');
    const report = readReport(body.report);
    if (!isVirtual(report))
      throw new HttpError(
        400,
        'InvalidParameter',
        'this emulator accepts only virtual (unsigned) SEV-SNP evidence; send hardware evidence to Azure Attestation',
      );
    const claims: Record<string, unknown> = snpClaims(report);
    if (body.runtimeData !== undefined) {
      const data = decodeB64(body.runtimeData?.data, 'runtimeData.data');
      const digest = createHash('sha256').update(data).digest();
      if (!digest.equals(report.reportData.subarray(0, 32)))
        throw new HttpError(
          400,
          'InvalidParameter',
          'runtime data does not match the report: report_data[0:32] must be SHA-256 of runtimeData.data',
        );
      const type = body.runtimeData?.dataType ?? 'Binary';
      if (type === 'JSON') {
        try {
          claims['x-ms-runtime'] = JSON.parse(data.toString('utf8'));
        } catch {
          throw new HttpError(
            400,
            'InvalidParameter',
            'runtimeData.dataType is JSON but the data is not JSON',
          );
        }
      } else if (type !== 'Binary')
        throw new HttpError(400, 'InvalidParameter', 'runtimeData.dataType must be JSON or Binary');
    }
    if (body.nonce !== undefined) claims.nonce = String(body.nonce);
    claims['x-ms-ver'] = '1.0';
    claims['x-ms-membrane-emulator'] = true;
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid, jku: `${issuer}/certs`, typ: 'JWT' })
      .setIssuer(issuer)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + TOKEN_LIFETIME_S)
      .setJti(randomUUID())
      .sign(signing.privateKey);
    return { status: 200, body: { token } };
  };

  const server = await startHttpsServer({
    tls: opts.ca.tls,
    host: opts.host ?? '127.0.0.1',
    port: opts.port ?? 0,
    handler: async (req) => {
      if (req.method === 'POST' && req.path === '/attest/SevSnpVm') return attest(req);
      if (req.method === 'GET' && req.path === '/certs') return { status: 200, body: jwks };
      if (req.method === 'GET' && req.path === '/.well-known/openid-configuration')
        return {
          status: 200,
          body: {
            issuer,
            jwks_uri: `${issuer}/certs`,
            response_types_supported: ['token', 'none'],
            id_token_signing_alg_values_supported: ['RS256'],
            claims_supported: ['x-ms-attestation-type', 'x-ms-sevsnpvm-hostdata', 'x-ms-runtime', 'x-ms-ver'],
          },
        };
      throw new HttpError(404, 'NotFound', `no such endpoint: ${req.method} ${req.path}`);
    },
  });
  issuer = server.url;
  log(`MAA ${EMULATOR_BANNER}: ${issuer}`);
  return { ...server, issuer, jwks };
}
