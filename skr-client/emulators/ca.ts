/**
 * The emulators' one local CA, persisted in the state directory:
 *
 *   ca.pem / ca-key.pem                     self-signed root ("not for production")
 *   issuing-ca.pem / issuing-ca-key.pem     intermediate, signs every leaf
 *   tls.pem / tls-key.pem                   HTTPS server certificate (127.0.0.1, localhost)
 *   release-signing.pem / -key.pem          signs Key Vault release JWS; x5c = [leaf, issuing];
 *                                           its names match the vault host, as Azure's do
 *   maa-signing.pem / -key.pem              signs attestation tokens; published in /certs
 *
 * Leaf .pem files hold the leaf followed by the issuing CA (a ready TLS chain).
 * Private keys are 0600; certificates 0644. Leaves are re-issued when missing,
 * about to expire, or not issued by the current CA; a missing root re-creates all.
 */
import { createPrivateKey, type KeyObject, webcrypto, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { MembraneError } from '../../policy/errors.js';
import { ensureStateDir, readIfExists, writeFileAtomic } from './files.js';

// @peculiar/x509 signs with WebCrypto; Node's implementation is complete for RSA.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
export const EMULATOR_HOSTS = ['127.0.0.1', 'localhost'];

export interface LeafMaterial {
  /** PEM: leaf then issuing CA. */
  certChainPem: string;
  keyPem: string;
  privateKey: KeyObject;
  /** RFC 7515 x5c: base64 DER of leaf then issuing CA. */
  x5c: string[];
  leaf: X509Certificate;
}

export interface EmulatorCa {
  dir: string;
  /** Path of the root certificate — what clients pass as --ca. */
  caFile: string;
  caPem: string;
  tls: LeafMaterial;
  releaseSigning: LeafMaterial;
  maaSigning: LeafMaterial;
}

type CryptoKeyT = webcrypto.CryptoKey;
/** @peculiar/x509 is typed against the DOM WebCrypto types; Node's are the same objects. */
type PxKeyPair = Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys'];
type PxKey = Parameters<typeof x509.X509CertificateGenerator.create>[0]['publicKey'] &
  PxKeyPair['privateKey'];
const px = (k: CryptoKeyT) => k as unknown as PxKey;
interface Issuer {
  cert: x509.X509Certificate;
  key: CryptoKeyT;
}

const subtle = webcrypto.subtle;

async function newKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await subtle.generateKey(
    { ...ALG, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ['sign', 'verify'],
  )) as webcrypto.CryptoKeyPair;
}

async function keyPem(key: CryptoKeyT): Promise<string> {
  const der = Buffer.from(await subtle.exportKey('pkcs8', key));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({
    format: 'pem',
    type: 'pkcs8',
  }) as string;
}

async function importSigningKey(pem: string): Promise<CryptoKeyT> {
  const der = createPrivateKey(pem).export({ format: 'der', type: 'pkcs8' });
  return subtle.importKey('pkcs8', der, ALG, true, ['sign']);
}

function serial(): string {
  // Positive 128-bit serial (leading nibble < 8).
  return `${Math.floor(Math.random() * 8)}${Buffer.from(webcrypto.getRandomValues(new Uint8Array(15))).toString('hex')}`;
}

/** Validity that starts slightly in the past so clock skew between processes never bites. */
function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - 5 * 60_000), notAfter: new Date(now + days * DAY) };
}

async function loadOrCreateRoot(dir: string): Promise<{ issuer: Issuer; pem: string; created: boolean }> {
  const certPem = readIfExists(dir, 'ca.pem');
  const kPem = readIfExists(dir, 'ca-key.pem');
  if (certPem && kPem) {
    const cert = new x509.X509Certificate(certPem);
    if (cert.notAfter.getTime() > Date.now() + DAY)
      return { issuer: { cert, key: await importSigningKey(kPem) }, pem: certPem, created: false };
  }
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=Membrane Emulator Root CA - not for production, O=Membrane',
    ...validity(3650),
    signingAlgorithm: ALG,
    keys: keys as unknown as PxKeyPair,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(px(keys.publicKey)),
    ],
  });
  const pem = cert.toString('pem');
  writeFileAtomic(join(dir, 'ca-key.pem'), await keyPem(keys.privateKey), 0o600);
  writeFileAtomic(join(dir, 'ca.pem'), `${pem}\n`, 0o644);
  return { issuer: { cert, key: keys.privateKey }, pem: `${pem}\n`, created: true };
}

/** True when `pem`'s first certificate is current and issued (and signed) by `issuer`. */
function stillGood(pem: string | undefined, issuer: x509.X509Certificate, hosts?: string[]): boolean {
  if (!pem) return false;
  try {
    const c = new X509Certificate(pem);
    const parent = new X509Certificate(issuer.toString('pem'));
    if (Date.parse(c.validTo) < Date.now() + DAY) return false;
    if (!c.checkIssued(parent) || !c.verify(parent.publicKey)) return false;
    return (hosts ?? []).every((h) => (/^[\d.]+$/.test(h) ? c.checkIP(h) : c.checkHost(h)) !== undefined);
  } catch {
    return false;
  }
}

async function loadOrCreateIssuing(dir: string, root: Issuer, force: boolean): Promise<Issuer> {
  const certPem = readIfExists(dir, 'issuing-ca.pem');
  const kPem = readIfExists(dir, 'issuing-ca-key.pem');
  if (!force && kPem && stillGood(certPem, root.cert))
    return { cert: new x509.X509Certificate(certPem!), key: await importSigningKey(kPem) };
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=Membrane Emulator Issuing CA - not for production, O=Membrane',
    issuer: root.cert.subject,
    ...validity(1825),
    signingAlgorithm: ALG,
    publicKey: px(keys.publicKey),
    signingKey: px(root.key),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(px(keys.publicKey)),
      await x509.AuthorityKeyIdentifierExtension.create(root.cert.publicKey),
    ],
  });
  writeFileAtomic(join(dir, 'issuing-ca-key.pem'), await keyPem(keys.privateKey), 0o600);
  writeFileAtomic(join(dir, 'issuing-ca.pem'), `${cert.toString('pem')}\n`, 0o644);
  return { cert, key: keys.privateKey };
}

async function loadOrCreateLeaf(
  dir: string,
  name: string,
  issuing: Issuer,
  force: boolean,
  spec: { cn: string; hosts: string[]; serverAuth: boolean },
): Promise<LeafMaterial> {
  let chainPem = readIfExists(dir, `${name}.pem`);
  let kPem = readIfExists(dir, `${name}-key.pem`);
  if (force || !kPem || !stillGood(chainPem, issuing.cert, spec.hosts)) {
    const keys = await newKeyPair();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${spec.cn}, O=Membrane emulator - not for production`,
      issuer: issuing.cert.subject,
      ...validity(365),
      signingAlgorithm: ALG,
      publicKey: px(keys.publicKey),
      signingKey: px(issuing.key),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | (spec.serverAuth ? x509.KeyUsageFlags.keyEncipherment : 0),
          true,
        ),
        ...(spec.serverAuth ? [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth])] : []),
        ...(spec.hosts.length
          ? [
              new x509.SubjectAlternativeNameExtension(
                spec.hosts.map((h) =>
                  /^[\d.]+$/.test(h) ? { type: 'ip', value: h } : { type: 'dns', value: h },
                ),
              ),
            ]
          : []),
        await x509.SubjectKeyIdentifierExtension.create(px(keys.publicKey)),
        await x509.AuthorityKeyIdentifierExtension.create(issuing.cert.publicKey),
      ],
    });
    kPem = await keyPem(keys.privateKey);
    chainPem = `${cert.toString('pem')}\n${issuing.cert.toString('pem')}\n`;
    writeFileAtomic(join(dir, `${name}-key.pem`), kPem, 0o600);
    writeFileAtomic(join(dir, `${name}.pem`), chainPem, 0o644);
  }
  const blocks = chainPem!.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length < 2)
    throw new MembraneError('EMULATOR_STATE', `${name}.pem must hold the leaf and the issuing CA`, {
      where: join(dir, `${name}.pem`),
    });
  const x5c = blocks.map((b) => new X509Certificate(b).raw.toString('base64'));
  return {
    certChainPem: chainPem!,
    keyPem: kPem!,
    privateKey: createPrivateKey(kPem!),
    x5c,
    leaf: new X509Certificate(blocks[0]!),
  };
}

/** Loads the CA and leaves from `dir`, creating or renewing what is missing or stale. */
export async function loadOrCreateCa(dir: string, hosts: string[] = EMULATOR_HOSTS): Promise<EmulatorCa> {
  ensureStateDir(dir);
  const root = await loadOrCreateRoot(dir);
  const issuing = await loadOrCreateIssuing(dir, root.issuer, root.created);
  const force = root.created;
  // Leaves are issued in sequence: RSA key generation is CPU-bound and the box is shared.
  const tls = await loadOrCreateLeaf(dir, 'tls', issuing, force, {
    cn: hosts[1] ?? hosts[0]!,
    hosts,
    serverAuth: true,
  });
  const releaseSigning = await loadOrCreateLeaf(dir, 'release-signing', issuing, force, {
    cn: hosts[1] ?? hosts[0]!,
    hosts,
    serverAuth: false,
  });
  const maaSigning = await loadOrCreateLeaf(dir, 'maa-signing', issuing, force, {
    cn: 'Membrane emulator attestation signing',
    hosts: [],
    serverAuth: false,
  });
  return { dir, caFile: join(dir, 'ca.pem'), caPem: root.pem, tls, releaseSigning, maaSigning };
}
