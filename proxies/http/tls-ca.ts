/**
 * The per-run clean-room CA that open mode uses to terminate the app's TLS (so what
 * leaves can be inspected). Its private key is generated in memory for this run only
 * and is never exported or written; its certificate (public) is handed to the app
 * (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE). A stolen certificate is
 * worthless after the run: the key is gone and the validity is short.
 *
 * Certificates are assembled with @peculiar/asn1-x509 (the ASN.1 schema behind
 * @peculiar/x509) and signed with node:crypto, synchronously: `secureContextFor` runs
 * inside the TLS server's SNI callback path and must not need a promise per host.
 * ECDSA P-256 signs in about 0.1 ms, and one leaf key serves every host (as
 * mitmproxy does), so a new host costs one signature and one SecureContext (a few
 * ms, mostly OpenSSL decoding the key PEM); later connections reuse the cached one.
 */
import {
  createHash,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
} from 'node:crypto';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_nameConstraints,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  id_kp_serverAuth,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  NameConstraints,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
} from '@peculiar/asn1-x509';
import { HttpErrorCode, httpError } from './errors.js';

export interface RunCaOptions {
  /** Common name of the CA certificate (default 'Membrane run CA'). */
  name?: string;
  /** Hours the CA and its leaves stay valid (default 48, at most 30 days). */
  validityHours?: number;
  /**
   * Name constraints: DNS names (each permits itself and its subdomains) and IP
   * addresses or CIDRs the CA may issue for. A name type that is not listed is
   * excluded entirely, so the certificate cannot vouch for anything else even if it
   * leaked with a key. Absent: unconstrained (rules with `*` hosts need that).
   */
  permitted?: readonly string[];
}

export interface RunCa {
  /** PEM of the CA certificate: what the app must trust. */
  readonly certPem: string;
  /** TLS context presenting a leaf for `host` (DNS name or IP literal), issued once and cached. */
  secureContextFor(host: string): tls.SecureContext;
  /** Drops both private keys and every cached context; later calls fail with RUN_CA. */
  destroy(): void;
}

const ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const OID_CN = '2.5.4.3';
const OID_O = '2.5.4.10';
const HOUR = 3_600_000;
/** Tolerance for app clocks slightly behind ours. */
const BACKDATE = 5 * 60_000;
/** Distinct hosts kept; the oldest context is dropped beyond this (a leaf is cheap to re-issue). */
const CACHE_LIMIT = 4096;
const DNS_RE =
  /^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export async function createRunCa(opts: RunCaOptions = {}): Promise<RunCa> {
  const hours = opts.validityHours ?? 48;
  if (!(hours > 0 && hours <= 24 * 30))
    throw httpError(HttpErrorCode.RUN_CA, `run CA validity must be 1..720 hours, got ${hours}`);
  const now = Date.now();
  const notBefore = new Date(now - BACKDATE);
  const notAfter = new Date(now + hours * HOUR);
  const caName = nameOf(opts.name ?? 'Membrane run CA');

  let caKey: KeyObject | undefined = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const caSpki = spkiOf(caKey);
  const caKeyId = keyIdOf(caSpki);
  const caExtensions = [
    ext(id_ce_basicConstraints, true, new BasicConstraints({ cA: true, pathLenConstraint: 0 })),
    ext(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)),
    ext(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(caKeyId)),
  ];
  if (opts.permitted) caExtensions.push(ext(id_ce_nameConstraints, true, nameConstraints(opts.permitted)));
  const certPem = issue({
    subject: caName,
    issuer: caName,
    spki: caSpki,
    notBefore,
    notAfter,
    extensions: caExtensions,
    signer: caKey,
  });

  // One leaf key for every host of this run; tls.createSecureContext takes PEM, not a KeyObject.
  const leafPair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const leafSpki = spkiOf(leafPair.privateKey);
  let leafKeyPem: string | undefined = leafPair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const cache = new Map<string, tls.SecureContext>();

  return {
    certPem,
    secureContextFor(host: string): tls.SecureContext {
      if (!caKey || !leafKeyPem) throw httpError(HttpErrorCode.RUN_CA, 'the run CA was destroyed');
      const name = leafName(host);
      const hit = cache.get(name.value);
      if (hit) return hit;
      const leafPem = issue({
        subject: nameOf(name.value),
        issuer: caName,
        spki: leafSpki,
        notBefore,
        notAfter,
        signer: caKey,
        extensions: [
          ext(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
          ext(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature)),
          ext(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth])),
          ext(
            id_ce_subjectAltName,
            false,
            new SubjectAlternativeName([
              new GeneralName(name.ip ? { iPAddress: name.value } : { dNSName: name.value }),
            ]),
          ),
          ext(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: caKeyId })),
        ],
      });
      // `ca: []`: a server context that never asks for client certificates needs no root
      // store, and loading Node's ~140 roots is most of a context's cost.
      const ctx = tls.createSecureContext({ key: leafKeyPem, cert: leafPem, ca: [], minVersion: 'TLSv1.2' });
      if (cache.size >= CACHE_LIMIT) {
        const oldest = cache.keys().next().value;
        if (oldest !== undefined) cache.delete(oldest);
      }
      cache.set(name.value, ctx);
      return ctx;
    },
    destroy(): void {
      // JS cannot wipe a KeyObject or a string; dropping every reference is what we can do,
      // and the contexts that hold the leaf key in OpenSSL go with the cache.
      caKey = undefined;
      leafKeyPem = undefined;
      cache.clear();
    },
  };
}

/** The SAN a host gets: an IP literal (brackets stripped, canonical text) or a lower-case DNS name. */
function leafName(host: string): { value: string; ip: boolean } {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare)) return { value: bare.toLowerCase(), ip: true };
  const dns = bare.toLowerCase().replace(/\.$/, '');
  if (!DNS_RE.test(dns))
    throw httpError(
      HttpErrorCode.RUN_CA,
      `cannot issue a certificate for '${JSON.stringify(host).slice(1, -1).slice(0, 100)}': not a DNS name or IP literal`,
    );
  return { value: dns, ip: false };
}

function nameConstraints(permitted: readonly string[]): NameConstraints {
  const allow: GeneralSubtree[] = [];
  const kinds = { dns: false, v4: false, v6: false };
  for (const entry of permitted) {
    const [addr, bits] = entry.split('/');
    const family = addr ? isIP(addr) : 0;
    if (family) {
      const max = family === 4 ? 32 : 128;
      const prefix = bits === undefined ? max : Number(bits);
      if (
        !Number.isInteger(prefix) ||
        prefix < 0 ||
        prefix > max ||
        (bits !== undefined && !/^\d+$/.test(bits))
      )
        throw httpError(HttpErrorCode.RUN_CA, `run CA name constraint '${entry}': bad prefix length`);
      allow.push(subtree({ iPAddress: `${addr}/${prefix}` }));
      kinds[family === 4 ? 'v4' : 'v6'] = true;
    } else {
      const dns = entry.toLowerCase().replace(/^\*\./, '').replace(/\.$/, '');
      if (!DNS_RE.test(dns))
        throw httpError(HttpErrorCode.RUN_CA, `run CA name constraint '${entry}': not a DNS name`);
      allow.push(subtree({ dNSName: dns }));
      kinds.dns = true;
    }
  }
  // RFC 5280 leaves a name type with no permitted subtree unconstrained; exclude it instead.
  // An empty dNSName base matches every name (OpenSSL nc_dns), 0.0.0.0/0 and ::/0 every address.
  const deny: GeneralSubtree[] = [];
  if (!kinds.dns) deny.push(subtree({ dNSName: '' }));
  if (!kinds.v4) deny.push(subtree({ iPAddress: '0.0.0.0/0' }));
  if (!kinds.v6) deny.push(subtree({ iPAddress: '::/0' }));
  return new NameConstraints({
    ...(allow.length ? { permittedSubtrees: new GeneralSubtrees(allow) } : {}),
    ...(deny.length ? { excludedSubtrees: new GeneralSubtrees(deny) } : {}),
  });
}

const subtree = (name: Partial<GeneralName>) => new GeneralSubtree({ base: new GeneralName(name) });

interface IssueParams {
  subject: Name;
  issuer: Name;
  spki: SubjectPublicKeyInfo;
  notBefore: Date;
  notAfter: Date;
  extensions: Extension[];
  signer: KeyObject;
}

/** Builds, signs (ECDSA P-256, SHA-256) and PEM-encodes one certificate. */
function issue(p: IssueParams): string {
  const algorithm = new AlgorithmIdentifier({ algorithm: ECDSA_SHA256 }); // RFC 5758: parameters absent
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: serial(),
    signature: algorithm,
    issuer: p.issuer,
    validity: new Validity({ notBefore: p.notBefore, notAfter: p.notAfter }),
    subject: p.subject,
    subjectPublicKeyInfo: p.spki,
    extensions: new Extensions(p.extensions),
  });
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  const signature = sign('sha256', tbsDer, p.signer); // DER-encoded (r, s), as X.509 wants
  const cert = new Certificate({
    tbsCertificate: tbs,
    signatureAlgorithm: algorithm,
    signatureValue: toArrayBuffer(signature),
  });
  const der = Buffer.from(AsnConvert.serialize(cert));
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`;
}

function ext(id: string, critical: boolean, value: object): Extension {
  return new Extension({ extnID: id, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

function nameOf(cn: string): Name {
  const rdn = (type: string, v: string) =>
    new RelativeDistinguishedName([
      new AttributeTypeAndValue({ type, value: new AttributeValue({ utf8String: v }) }),
    ]);
  return new Name([rdn(OID_O, 'Membrane clean room'), rdn(OID_CN, cn)]);
}

function spkiOf(key: KeyObject): SubjectPublicKeyInfo {
  const der = createPublicKey(key).export({ type: 'spki', format: 'der' });
  return AsnConvert.parse(der, SubjectPublicKeyInfo);
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
function keyIdOf(spki: SubjectPublicKeyInfo): KeyIdentifier {
  return new KeyIdentifier(
    toArrayBuffer(createHash('sha1').update(Buffer.from(spki.subjectPublicKey)).digest()),
  );
}

/** 16 random bytes as a positive, minimally encoded INTEGER (first byte 0x01..0x7f). */
function serial(): ArrayBuffer {
  const b = randomBytes(16);
  b[0] = ((b[0] ?? 0) & 0x7f) | 0x01;
  return toArrayBuffer(b);
}

function toArrayBuffer(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer;
}
