/**
 * Test certificates made independently of the code under test (@peculiar/x509 over
 * WebCrypto), and loopback TLS servers that present them.
 */
import { createHash, webcrypto, X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;

export interface TestCa {
  cert: x509.X509Certificate;
  pem: string;
  key: webcrypto.CryptoKey;
}

export interface TestLeaf {
  certPem: string;
  keyPem: string;
  /** base64 SHA-256 of the leaf's SubjectPublicKeyInfo (the pin form). */
  pin: string;
}

let serialCounter = 1;
const serial = () => (serialCounter++).toString(16).padStart(4, '0');

async function keyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

async function pemOf(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END PRIVATE KEY-----\n`;
}

export async function makeCa(name = 'Test CA'): Promise<TestCa> {
  const keys = await keyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}`,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 30 * DAY),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, pem: cert.toString('pem'), key: keys.privateKey };
}

export interface LeafOptions {
  dns?: string[];
  ip?: string[];
  /** Days from now; negative = in the past. */
  fromDays?: number;
  toDays?: number;
}

/** A server leaf issued by `ca`, or self-signed when `ca` is undefined. */
export async function makeLeaf(ca: TestCa | undefined, o: LeafOptions): Promise<TestLeaf> {
  const keys = await keyPair();
  const now = Date.now();
  const names = [
    ...(o.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(o.ip ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const common = {
    serialNumber: serial(),
    notBefore: new Date(now + (o.fromDays ?? -1) * DAY),
    notAfter: new Date(now + (o.toDays ?? 30) * DAY),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
    ],
  };
  const subject = `CN=${o.dns?.[0] ?? o.ip?.[0] ?? 'leaf'}`;
  const cert = ca
    ? await x509.X509CertificateGenerator.create({
        ...common,
        subject,
        issuer: ca.cert.subject,
        publicKey: keys.publicKey,
        signingKey: ca.key,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({ ...common, name: subject, keys });
  const certPem = cert.toString('pem');
  return { certPem, keyPem: await pemOf(keys.privateKey), pin: spkiPin(certPem) };
}

export function spkiPin(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

export interface Listening {
  port: number;
  close(): Promise<void>;
}

/** A TLS server on 127.0.0.1 that completes handshakes (ALPN http/1.1) and writes 'hello'. */
export async function tlsServer(leaf: TestLeaf): Promise<Listening> {
  const server = tls.createServer(
    { cert: leaf.certPem, key: leaf.keyPem, ALPNProtocols: ['http/1.1'] },
    (s) => {
      s.on('error', () => {});
      s.end('hello');
    },
  );
  server.on('tlsClientError', () => {}); // refused handshakes are what most tests expect
  return listen(server);
}

/** Accepts TCP and never answers: a handshake against it can only time out. */
export async function silentServer(): Promise<Listening> {
  const held: net.Socket[] = [];
  const server = net.createServer((s) => {
    s.on('error', () => {});
    held.push(s);
  });
  const l = await listen(server);
  return {
    port: l.port,
    close: async () => {
      for (const s of held) s.destroy();
      await l.close();
    },
  };
}

export async function listen(server: net.Server): Promise<Listening> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  return {
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}

/** A connected TCP socket to 127.0.0.1:port. */
export function dial(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}
