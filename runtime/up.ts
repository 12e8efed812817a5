/**
 * `membrane up`: the clean room's lifecycle.
 *
 *   consent -> evidence -> token -> release KEKs -> unwrap DEKs -> start proxies
 *   -> readiness (markers + GET /ready) -> run the application
 *   -> close proxies in reverse (drain: commit datasinks) -> final audit events -> zero keys
 *
 * Proxies of every kind (blob volumes, then the HTTP egress proxy) start in one loop
 * (runtime/proxy-set.ts).
 * Fail closed: any failure before readiness closes whatever was started, zeroes
 * keys, records the failure in the audit log and exits non-zero with one message.
 * A proxy that fails to close is audited and makes the exit status non-zero.
 */
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { MembraneError } from '../policy/errors.js';
import { type CleanRoomSpec, parseSpec, resolveSpecPaths } from '../policy/spec.js';
import { AuditLog } from './audit.js';
import { GovernanceClient } from './governance.js';
import { type Health, startHealth } from './health.js';
import { acquireKeys, type KeyBundle, tokenSources } from './keys.js';
import { closeOnExecAll } from './process-hardening.js';
import { createRunKey, publishRunKey, type RunKey } from './provenance.js';
import { ProxySet } from './proxy-set.js';
import { READ_CAPS, readCappedText } from './read-capped.js';
import { waitForStopSignal } from './signals.js';
import { startTelemetry } from './telemetry.js';

export interface UpOptions {
  /** Application command from the CLI (after `--`); overrides spec.application.command. */
  command?: string[];
  log?: (line: string) => void;
}

export async function up(specFile: string, opts: UpOptions = {}): Promise<number> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`membrane: ${l}\n`));
  const file = resolve(specFile);
  let text: string;
  try {
    text = await readCappedText(file, { maxBytes: READ_CAPS.document, what: 'clean-room spec' });
  } catch (e) {
    throw new MembraneError('SPEC_UNREADABLE', 'cannot read the clean-room spec', { where: file, cause: e });
  }
  const onWarning = (w: { path: string; message: string }) =>
    log(`WARNING: ${file}: ${w.path}: ${w.message}`);
  const spec = resolveSpecPaths(parseSpec(text, file, { onWarning }), dirname(file));
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
  let keys: KeyBundle | undefined;
  let health: Health | undefined;
  let proxies: ProxySet | undefined;
  // Signs the sealed sinks' manifests; its thumbprint is bound into the attestation.
  const runKey: RunKey = createRunKey();

  /** Returns false when a proxy failed to close (audited as proxy.stop_failed). */
  const teardown = async (reason: string, exitCode: number | undefined): Promise<boolean> => {
    health?.setStopping();
    // Reverse order: datasinks drain (commit) before the sources go, network proxies first.
    const failures = (await proxies?.closeAll(log)) ?? [];
    keys?.destroy();
    runKey.destroy();
    const stopFailed = failures.map((f) => f.name);
    audit.emit({
      type: 'cleanroom.stopped',
      subject: name,
      details: { reason, exitCode, ...(stopFailed.length ? { stopFailed } : {}) },
    });
    try {
      await audit.close();
    } finally {
      await telemetry.shutdown();
      await health?.close();
    }
    return failures.length === 0;
  };

  let appEnv: Record<string, string> = {};
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
    const bundle = await telemetry.span('keys', () =>
      acquireKeys(spec, { log, runtimeClaims: runKey.claims }),
    );
    keys = bundle;
    audit.emit({ type: 'keys.released', subject: name, details: attestationSummary(bundle.claims, spec) });

    await mkdir(spec.runtime.statusDir, { recursive: true, mode: 0o755 });
    publishRunKey(runKey, audit, bundle.attestation !== undefined);
    const healthPort = health.port;
    proxies = new ProxySet({
      sources: {
        keys: bundle,
        identities: tokenSources(spec),
        audit,
        meter: (attributes) => telemetry.meter(attributes),
        log,
        provenance: runKey.provenance(bundle.attestation),
      },
      statusDir: spec.runtime.statusDir,
      otherListeners: () => [{ host: '127.0.0.1', port: healthPort }],
      span: (n, fn, attributes) => telemetry.span(n, fn, attributes),
    });
    await proxies.startAll(spec);
    const running = proxies.running;
    appEnv = proxies.appEnv(spec.application?.env);
    throwIfAuditFailed(auditFailed.signal);
    health.setReady(running);
    const names = running.map((p) => p.name);
    const volumes = running.filter((p) => p.kind === 'blob-volume').map((p) => p.name);
    audit.emit({ type: 'cleanroom.ready', subject: name, details: { proxies: names, volumes } });
    log(
      `ready: ${running.map((p) => `${p.name} at ${p.endpoint.type === 'mount' ? p.endpoint.path : `${p.endpoint.host}:${p.endpoint.port}`}`).join(', ') || 'no proxies'}; GET http://127.0.0.1:${health.port}/ready`,
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
      exitCode = await runApplication(command, appEnv, log, auditFailed.signal);
      audit.emit({ type: 'application.exited', subject: command[0], details: { exitCode } });
      reason = 'application exited';
    } else {
      reason = await waitForStopSignal(auditFailed.signal, 'audit failed');
    }
    throwIfAuditFailed(auditFailed.signal);
  } catch (e) {
    // Every failure after the proxies are up tears down (a throw here once left mounts up
    // and the process hanging); an audit failure is itself the error reported.
    const err = auditFailed.signal.aborted ? (auditFailed.signal.reason as Error) : e;
    await teardown(`failed: ${(err as Error).message}`, undefined).catch(() => {});
    throw err;
  }
  const stopped = await teardown(reason, exitCode);
  // Outputs may not have been committed: never report success then.
  if (!stopped && exitCode === 0) exitCode = 1;
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

/**
 * Runs the application with the proxies in place; `env` (the spec's plus the proxies')
 * extends the runtime's own. Forwards SIGTERM/SIGINT; resolves to its exit code.
 */
function runApplication(
  command: string[],
  env: Record<string, string>,
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
      // The application inherits stdio and nothing else (libfuse's /dev/fuse is not O_CLOEXEC).
      closeOnExecAll();
      child = spawn(command[0]!, command.slice(1), {
        stdio: 'inherit',
        env: { ...process.env, ...env },
      });
    } catch (e) {
      // spawn validates arguments synchronously (e.g. a NUL byte): a typed error, the caller tears down.
      reject(
        new MembraneError(
          'APP_START_FAILED',
          `the application could not be started: ${(e as Error).message}`,
          { where: 'application.command', cause: e },
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
