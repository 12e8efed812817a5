/**
 * Starts the local attestation (MAA) and Key Vault emulators on loopback, sharing
 * one CA and one state directory — NOT FOR PRODUCTION. Used by
 * `membrane emulators start`, the integration tests and the demo.
 */
import { resolve } from 'node:path';
import { loadOrCreateCa } from './ca.js';
import { loadOrCreateAccessToken, startKeyVaultEmulator } from './keyvault.js';
import { EMULATOR_BANNER, startMaaEmulator } from './maa.js';

export { EMULATOR_BANNER } from './maa.js';

export interface StartEmulatorsOptions {
  /** State directory (CA, keys, secrets, access token). Created 0700. */
  dir: string;
  /** 0 (default) picks a free port. */
  maaPort?: number;
  kvPort?: number;
  /** Loopback address to bind; default 127.0.0.1. */
  host?: string;
  /** Where status lines go (default stderr). */
  log?: (line: string) => void;
}

export interface RunningEmulators {
  /** Attestation endpoint and token issuer, e.g. https://127.0.0.1:40123 */
  maaUrl: string;
  /** Vault base URL, e.g. https://127.0.0.1:40124 (kids are {kvUrl}/keys/{name}/{version}). */
  kvUrl: string;
  /** PEM of the emulators' root CA (trust anchor for TLS and the release JWS). */
  caPem: string;
  caFile: string;
  /** Bearer token the Key Vault emulator accepts. */
  accessToken: string;
  dir: string;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export async function startEmulators(opts: StartEmulatorsOptions): Promise<RunningEmulators> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const host = opts.host ?? '127.0.0.1';
  // The emulators hand out keys to anyone with the token: never expose them beyond this machine.
  if (!LOOPBACK.has(host)) throw new Error(`emulators bind loopback only (127.0.0.1, ::1), not ${host}`);
  const dir = resolve(opts.dir);
  log(
    `membrane ${EMULATOR_BANNER.toUpperCase()} — local attestation and key vault for development and tests`,
  );
  const ca = await loadOrCreateCa(dir);
  const accessToken = loadOrCreateAccessToken(dir);
  const maa = await startMaaEmulator({ ca, host, port: opts.maaPort ?? 0, log });
  let kv: Awaited<ReturnType<typeof startKeyVaultEmulator>>;
  try {
    kv = await startKeyVaultEmulator({
      dir,
      ca,
      trusted: [{ issuer: maa.issuer, jwks: maa.jwks }],
      host,
      port: opts.kvPort ?? 0,
      accessToken,
      log,
    });
  } catch (e) {
    await maa.close();
    throw e;
  }
  return {
    maaUrl: maa.url,
    kvUrl: kv.url,
    caPem: ca.caPem,
    caFile: ca.caFile,
    accessToken,
    dir,
    close: async () => {
      await Promise.all([maa.close(), kv.close()]);
    },
  };
}
