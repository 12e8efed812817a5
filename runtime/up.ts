/**
 * `membrane up`: the clean room's lifecycle.
 *
 *   consent -> evidence -> token -> release KEKs -> unwrap DEKs -> mount volumes
 *   -> readiness (markers + GET /ready) -> run the application
 *   -> drain and commit datasinks -> final audit events -> unmount -> zero keys
 *
 * Fail closed: any failure before readiness unmounts whatever was mounted, zeroes
 * keys, records the failure in the audit log and exits non-zero with one message.
 */
import { spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { MembraneError } from '../policy/errors.js';
import { type CleanRoomSpec, parseSpec, resolveSpecPaths, type StoreSpec } from '../policy/spec.js';
import { type MountedVolume, mountVolume, type VolumeOptions } from '../proxies/blob-volume/index.js';
import { openStore, type StoreConfig } from '../proxies/blob-volume/store/index.js';
import { dekKeyring, rsaKeyring } from '../proxies/core/index.js';
import type { TokenSource } from '../skr-client/akv/index.js';
import { AuditLog } from './audit.js';
import { GovernanceClient } from './governance.js';
import { type Health, startHealth } from './health.js';
import { acquireKeys, type KeyBundle, tokenSources } from './keys.js';
import { READ_CAPS, readCappedText } from './read-capped.js';
import { startTelemetry } from './telemetry.js';

export interface UpOptions {
  /** Application command from the CLI (after `--`); overrides spec.application.command. */
  command?: string[];
  log?: (line: string) => void;
}

const STORAGE_RESOURCE = 'https://storage.azure.com';

export async function up(specFile: string, opts: UpOptions = {}): Promise<number> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`membrane: ${l}\n`));
  const file = resolve(specFile);
  let text: string;
  try {
    text = await readCappedText(file, { maxBytes: READ_CAPS.document, what: 'clean-room spec' });
  } catch (e) {
    throw new MembraneError('SPEC_UNREADABLE', 'cannot read the clean-room spec', { where: file, cause: e });
  }
  const spec = resolveSpecPaths(parseSpec(text, file), dirname(file));
  const name = spec.name ?? 'cleanroom';

  const telemetry = await startTelemetry(spec.telemetry);
  const governance = spec.governance ? await GovernanceClient.fromSpec(spec.governance, name) : undefined;
  await mkdir(dirname(spec.runtime.auditLog), { recursive: true, mode: 0o700 });
  // Fail closed on audit: a run whose record cannot be written stops (application
  // terminated, teardown, non-zero exit) rather than continuing unrecorded.
  const auditFailed = new AbortController();
  const audit = await AuditLog.open(spec.runtime.auditLog, {
    governance,
    onWriteError: (e) => {
      log(`stopping the clean room: ${e.message}`);
      auditFailed.abort(e);
    },
  });
  const volumes: MountedVolume[] = [];
  let keys: KeyBundle | undefined;
  let health: Health | undefined;

  const teardown = async (reason: string, exitCode: number | undefined) => {
    health?.setStopping();
    // Unmount drains pending datasink commits first; do sinks before sources so
    // outputs are committed even if a source unmount hangs.
    for (const v of [...volumes].reverse()) {
      try {
        await v.unmount();
        await rm(join(spec.runtime.statusDir, `${v.name}.volume.ready`), { force: true });
        audit.emit({ type: 'volume.unmounted', subject: v.name });
      } catch (e) {
        audit.emit({
          type: 'volume.unmount_failed',
          subject: v.name,
          details: { error: (e as Error).message },
        });
        log(`unmount of '${v.name}' failed: ${(e as Error).message}`);
      }
    }
    volumes.length = 0;
    keys?.destroy();
    audit.emit({ type: 'cleanroom.stopped', subject: name, details: { reason, exitCode } });
    try {
      await audit.close();
    } finally {
      await telemetry.shutdown();
      await health?.close();
    }
  };

  // ---- start: everything before readiness fails closed
  try {
    health = await startHealth(spec.runtime.healthPort);
    audit.emit({
      type: 'cleanroom.starting',
      subject: name,
      details: { spec: file, healthPort: health.port },
    });
    if (governance?.consentConfigured) {
      await telemetry.span('consent', () => governance.checkConsent());
      audit.emit({ type: 'consent.checked', subject: name, details: { status: 'enabled' } });
    }
    const bundle = await telemetry.span('keys', () => acquireKeys(spec, { log }));
    keys = bundle;
    audit.emit({ type: 'keys.released', subject: name, details: attestationSummary(bundle.claims, spec) });

    const identities = tokenSources(spec);
    await mkdir(spec.runtime.statusDir, { recursive: true, mode: 0o755 });
    for (const ds of spec.datasources) {
      const v = await telemetry.span(`mount ${ds.name}`, async () =>
        mountVolume({
          name: ds.name,
          mountpoint: ds.mount,
          kind: 'datasource',
          store: openStore(await storeConfig(ds.store, identities)),
          protection: { mode: 'secure', keyring: dekKeyring(bundle.deks.get(ds.protection.key!)!) },
          pinnedManifest: ds.protection.pinnedManifestDigest
            ? { digest: ds.protection.pinnedManifestDigest }
            : undefined,
          audit,
          metrics: telemetry.metricsFor(ds.name),
        }),
      );
      volumes.push(v);
      await markReady(spec, v, audit);
    }
    for (const sink of spec.datasinks) {
      const protection = await sinkProtection(sink.protection, bundle);
      const v = await telemetry.span(`mount ${sink.name}`, async () =>
        mountVolume({
          name: sink.name,
          mountpoint: sink.mount,
          kind: 'datasink',
          store: openStore(await storeConfig(sink.store, identities)),
          protection,
          audit,
          metrics: telemetry.metricsFor(sink.name),
        }),
      );
      volumes.push(v);
      await markReady(spec, v, audit);
    }
    throwIfAuditFailed(auditFailed.signal);
    health.setReady(volumes.map((v) => v.name));
    audit.emit({ type: 'cleanroom.ready', subject: name, details: { volumes: volumes.map((v) => v.name) } });
    log(
      `ready: ${volumes.map((v) => `${v.name} at ${v.mountpoint}`).join(', ') || 'no volumes'}; GET http://127.0.0.1:${health.port}/ready`,
    );
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    audit.emit({
      type: 'cleanroom.start_failed',
      subject: name,
      details: { error: message, code: (e as MembraneError).code },
    });
    await teardown('start failed', undefined).catch(() => {});
    throw e;
  }

  // ---- run
  const command = opts.command?.length ? opts.command : spec.application?.command;
  let exitCode = 0;
  let reason: string;
  try {
    if (command?.length) {
      audit.emit({ type: 'application.started', subject: command[0], details: { args: command.length - 1 } });
      exitCode = await runApplication(command, spec, log, auditFailed.signal);
      audit.emit({ type: 'application.exited', subject: command[0], details: { exitCode } });
      reason = 'application exited';
    } else {
      reason = await waitForSignal(auditFailed.signal);
    }
    throwIfAuditFailed(auditFailed.signal);
  } catch (e) {
    // Every failure after the mounts are up tears down (a throw here once left them mounted
    // and the process hanging); the audit failure itself is the error reported.
    const err = auditFailed.signal.aborted ? (auditFailed.signal.reason as Error) : e;
    await teardown(`failed: ${(err as Error).message}`, undefined).catch(() => {});
    throw err;
  }
  await teardown(reason, exitCode);
  return exitCode;
}

function throwIfAuditFailed(signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason as Error;
}

function attestationSummary(
  claims: Record<string, unknown> | undefined,
  spec: CleanRoomSpec,
): Record<string, unknown> {
  return {
    provider: spec.attestation.provider,
    hostData: claims?.['x-ms-sevsnpvm-hostdata'],
    measurement: claims?.['x-ms-sevsnpvm-launchmeasurement'],
    compliance: claims?.['x-ms-compliance-status'],
    keks: spec.keys.keks.map((k) => k.name),
    deks: spec.keys.deks.map((k) => k.name),
  };
}

async function markReady(spec: CleanRoomSpec, v: MountedVolume, audit: AuditLog): Promise<void> {
  await writeFile(join(spec.runtime.statusDir, `${v.name}.volume.ready`), `${v.mountpoint}\n`, {
    mode: 0o644,
  });
  audit.emit({ type: 'volume.mounted', subject: v.name, details: { mountpoint: v.mountpoint } });
}

async function sinkProtection(
  p: CleanRoomSpec['datasinks'][number]['protection'],
  keys: KeyBundle,
): Promise<VolumeOptions['protection']> {
  switch (p.mode) {
    case 'secure':
      return { mode: 'secure', keyring: dekKeyring(keys.deks.get(p.key!)!) };
    case 'trusted':
      return {
        mode: 'trusted',
        recipient: rsaKeyring({
          publicKey: await readCappedText(p.recipientPublicKey!, {
            maxBytes: READ_CAPS.key,
            what: 'recipient public key',
          }),
        }),
      };
    case 'open':
      return { mode: 'open', egress: { allow: p.egress?.allow, maxObjectBytes: p.egress?.maxObjectBytes } };
  }
}

async function storeConfig(s: StoreSpec, identities: Map<string, TokenSource>): Promise<StoreConfig> {
  if (s.type === 'fs') return { type: 'fs', path: s.path };
  const base = { type: 'azure-blob' as const, url: s.url, container: s.container, prefix: s.prefix };
  if (s.identity) {
    const source = identities.get(s.identity)!;
    return { ...base, auth: { kind: 'bearer', token: () => source.getToken(STORAGE_RESOURCE) } };
  }
  if (s.sas) return { ...base, auth: { kind: 'sas', sas: s.sas } };
  if (s.sasFile) {
    const sas = (await readCappedText(s.sasFile, { maxBytes: READ_CAPS.key, what: 'SAS file' })).trim();
    return { ...base, auth: { kind: 'sas', sas } };
  }
  if (s.sharedKey) {
    const key =
      s.sharedKey.key ??
      (
        await readCappedText(s.sharedKey.keyFile!, { maxBytes: READ_CAPS.key, what: 'shared key file' })
      ).trim();
    return { ...base, auth: { kind: 'shared-key', account: s.sharedKey.account, key } };
  }
  return { ...base, auth: { kind: 'anonymous' } };
}

/** Runs the application with the mounts in place; forwards SIGTERM/SIGINT; resolves to its exit code. */
function runApplication(
  command: string[],
  spec: CleanRoomSpec,
  log: (l: string) => void,
  stop: AbortSignal,
): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    if (stop.aborted) {
      reject(stop.reason as Error); // the audit failed before the application could start
      return;
    }
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(command[0]!, command.slice(1), {
        stdio: 'inherit',
        env: { ...process.env, ...(spec.application?.env ?? {}) },
      });
    } catch (e) {
      // spawn validates arguments synchronously (e.g. a NUL byte): a typed error, the caller tears down.
      reject(
        new MembraneError(
          'APP_START_FAILED',
          `the application could not be started: ${(e as Error).message}`,
          {
            where: 'application.command',
            cause: e,
          },
        ),
      );
      return;
    }
    const onStop = () => {
      log('stopping the application (SIGTERM)');
      child.kill('SIGTERM');
    };
    stop.addEventListener('abort', onStop, { once: true });
    const forward = (sig: NodeJS.Signals) => () => {
      log(`${sig}: stopping the application`);
      child.kill(sig);
    };
    const onTerm = forward('SIGTERM');
    const onInt = forward('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    const done = (code: number) => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      stop.removeEventListener('abort', onStop);
      resolvePromise(code);
    };
    child.on('error', (e) => {
      log(`application could not start: ${e.message}`);
      done(127);
    });
    child.on('exit', (code, signal) => done(code ?? (signal ? 128 + signalNumber(signal) : 1)));
  });
}

function signalNumber(sig: NodeJS.Signals): number {
  return ({ SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[sig] ?? 1;
}

function waitForSignal(stop: AbortSignal): Promise<string> {
  return new Promise((resolvePromise) => {
    const finish = (why: string) => {
      process.off('SIGTERM', term);
      process.off('SIGINT', int);
      stop.removeEventListener('abort', onStop);
      resolvePromise(why);
    };
    const on = (sig: NodeJS.Signals) => () => finish(`received ${sig}`);
    const term = on('SIGTERM');
    const int = on('SIGINT');
    const onStop = () => finish('audit failed');
    process.on('SIGTERM', term);
    process.on('SIGINT', int);
    stop.addEventListener('abort', onStop, { once: true });
  });
}
