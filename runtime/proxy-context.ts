/**
 * The ProxyContext the runtime hands each proxy entry (proxies/proxy.ts): capabilities
 * over the released keys — a keyring, never the DEK's bytes —, tokens from the spec's
 * identities, the audit log, a Meter tagged with the proxy's name, a log, a private state
 * directory, and Membrane's own listeners (so a network proxy can refuse to dial them).
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MembraneError } from '../policy/errors.js';
import {
  dekKeyring,
  type Keyring,
  KeyringErrorCode,
  rsaKeyring,
  type ZeroableAesKeyring,
} from '../proxies/core/index.js';
import type {
  AuditSink,
  Meter,
  OutputProvenance,
  OwnListener,
  ProxyContext,
  ProxyKind,
} from '../proxies/proxy.js';
import type { TokenSource } from '../skr-client/akv/index.js';
import { READ_CAPS, readCappedText } from './read-capped.js';

export const ProxyContextErrorCode = {
  /** A proxy asked for a DEK the spec's keys section does not declare (or that was not released). */
  UNKNOWN_DEK: 'PROXY_UNKNOWN_DEK',
  /** A proxy asked for a token from an identity the spec does not declare. */
  UNKNOWN_IDENTITY: 'PROXY_UNKNOWN_IDENTITY',
  /** A recipient public key file could not be read or is not an RSA public key. */
  RECIPIENT_INVALID: 'PROXY_RECIPIENT_INVALID',
} as const;

/** What the contexts are built from; the KeyBundle satisfies `keys`. */
export interface ProxyContextSources {
  /**
   * Released DEKs by name, read here only to build keyrings; zeroed by the runtime at stop.
   * With `dataKeyring` (the KeyBundle has it) keyrings come from there, so the bundle's
   * destroy() wipes them as well; either way the context destroys its own at dispose().
   */
  readonly keys: {
    readonly deks: ReadonlyMap<string, Buffer>;
    dataKeyring?(name: string): ZeroableAesKeyring | undefined;
  };
  readonly identities: ReadonlyMap<string, TokenSource>;
  readonly audit: AuditSink;
  /** A Meter whose points carry the given attributes (Telemetry.meter). */
  readonly meter: (attributes: Readonly<Record<string, string>>) => Meter;
  readonly log: (line: string) => void;
  /** Parent of every proxy's state directory (created 0700). */
  readonly stateRoot: string;
  /** Membrane's listeners at the moment a proxy starts (health + proxies already listening). */
  readonly ownListeners: () => readonly OwnListener[];
  /** The run's signing capability for outputs, when the runtime made a run key. */
  readonly provenance?: OutputProvenance;
}

/** A context plus what the runtime needs to clean up after its proxy. */
export interface OwnedProxyContext extends ProxyContext {
  /** Destroys the keyrings it handed out (their key copies zeroed) and removes the state directory; idempotent. */
  dispose(): Promise<void>;
}

/** Builds the context for one entry (`name` is unique across kinds: the spec says so). */
export async function createProxyContext(
  sources: ProxyContextSources,
  name: string,
  kind: ProxyKind,
): Promise<OwnedProxyContext> {
  await mkdir(sources.stateRoot, { recursive: true, mode: 0o700 });
  const stateDir = join(sources.stateRoot, name);
  // A leftover from a crashed run belongs to nobody now: start empty.
  await rm(stateDir, { recursive: true, force: true });
  await mkdir(stateDir, { mode: 0o700 });
  const where = `proxy '${name}' (${kind})`;
  // One keyring per DEK for this proxy (a proxy may ask per request): one key copy each.
  const keyrings = new Map<string, ZeroableAesKeyring>();
  let disposed = false;
  const audit: AuditSink = {
    emit(e) {
      try {
        sources.audit.emit(e);
      } catch {
        // The contract says emit() never throws; if one does, the proxy's I/O still must not fail.
      }
    },
  };
  return {
    name,
    audit,
    meter: sources.meter({ 'membrane.proxy': name }),
    log: sources.log,
    stateDir,
    dataKey(dekName: string): Keyring {
      if (disposed)
        throw new MembraneError(KeyringErrorCode.DESTROYED, `no keys after the proxy stopped`, { where });
      const made = keyrings.get(dekName);
      if (made) return made;
      const dek = sources.keys.deks.get(dekName);
      if (!dek) {
        const known = [...sources.keys.deks.keys()];
        throw new MembraneError(
          ProxyContextErrorCode.UNKNOWN_DEK,
          `no DEK named '${dekName}' (declared: ${known.length ? known.join(', ') : 'none'})`,
          { where },
        );
      }
      const keyring = sources.keys.dataKeyring?.(dekName) ?? dekKeyring(dek);
      keyrings.set(dekName, keyring);
      return keyring;
    },
    async recipient(publicKeyFile: string): Promise<Keyring> {
      try {
        // Only the public half: the keyring can seal to the recipient, never open.
        return rsaKeyring({
          publicKey: await readCappedText(publicKeyFile, {
            maxBytes: READ_CAPS.key,
            what: 'recipient public key',
          }),
        });
      } catch (e) {
        throw new MembraneError(
          ProxyContextErrorCode.RECIPIENT_INVALID,
          `recipient public key is unusable: ${(e as Error).message}`,
          { where: publicKeyFile, cause: e },
        );
      }
    },
    async token(identity: string, resource: string): Promise<string> {
      const source = sources.identities.get(identity);
      if (!source)
        throw new MembraneError(
          ProxyContextErrorCode.UNKNOWN_IDENTITY,
          `no identity named '${identity}' in the spec`,
          { where },
        );
      return source.getToken(resource);
    },
    ownListeners: sources.ownListeners,
    provenance: sources.provenance,
    dispose: async () => {
      // The proxy is closed (or never started): nothing may seal or open with these again.
      disposed = true;
      for (const k of keyrings.values()) k.destroy();
      keyrings.clear();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}
