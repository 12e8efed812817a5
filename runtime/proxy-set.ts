/**
 * The proxies of one `membrane up`, of every kind, in one list: started in registry and
 * spec order, each announced by a readiness marker and a `proxy.started` audit event,
 * closed in reverse (a datasink commits before the sources it was computed from are
 * gone; a network proxy stops before the volumes). Kind-neutral: what a kind does lives
 * behind ProxyKindModule (proxies/proxy.ts).
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MembraneError } from '../policy/errors.js';
import type { CleanRoomSpec } from '../policy/spec.js';
import type { Endpoint, OwnListener, ProxyKindModule, RunningProxy } from '../proxies/proxy.js';
import { createProxyContext, type OwnedProxyContext, type ProxyContextSources } from './proxy-context.js';
import { PROXY_KINDS, type ProxyKindRow } from './proxy-kinds.js';

export const ProxySetErrorCode = {
  /** Two proxies want different values for the same application environment variable. */
  ENV_CONFLICT: 'PROXY_ENV_CONFLICT',
} as const;

/** Audit event types of the proxy lifecycle (docs/audit.md). */
export const ProxyEvent = {
  STARTED: 'proxy.started',
  STOPPED: 'proxy.stopped',
  STOP_FAILED: 'proxy.stop_failed',
} as const;

export interface ProxySetOptions {
  /** Everything a context needs except the listener list, which the set keeps. */
  readonly sources: Omit<ProxyContextSources, 'ownListeners' | 'stateRoot'>;
  /** Readiness markers go here; proxies' state directories under `<statusDir>/proxy-state/`. */
  readonly statusDir: string;
  /** Listeners that are not proxies (the health endpoint). */
  readonly otherListeners?: () => readonly OwnListener[];
  /** Wraps each start (telemetry spans); default: just runs it. */
  readonly span?: <T>(name: string, fn: () => Promise<T>, attributes: Record<string, string>) => Promise<T>;
}

export interface StopFailure {
  readonly name: string;
  readonly error: Error;
}

export class ProxySet {
  private readonly started: Array<{ proxy: RunningProxy; ctx: OwnedProxyContext }> = [];
  private readonly stateRoot: string;

  constructor(private readonly o: ProxySetOptions) {
    this.stateRoot = join(o.statusDir, 'proxy-state');
  }

  get running(): readonly RunningProxy[] {
    return this.started.map((s) => s.proxy);
  }

  /** Starts every entry of every kind the spec uses; the first failure rejects (the caller closes what started). */
  async startAll(spec: CleanRoomSpec, rows: readonly ProxyKindRow[] = PROXY_KINDS): Promise<void> {
    for (const row of rows) {
      if (!row.inSpec(spec)) continue;
      const kind = await row.load();
      for (const entry of kind.entries(spec)) await this.start(kind, entry);
    }
  }

  /** Starts one entry. A failed start leaves no state directory behind and nothing in the set. */
  async start<E>(kind: ProxyKindModule<E>, entry: E): Promise<RunningProxy> {
    const name = kind.entryName(entry);
    const ctx = await createProxyContext(
      { ...this.o.sources, stateRoot: this.stateRoot, ownListeners: () => this.listeners() },
      name,
      kind.kind,
    );
    const span = this.o.span ?? ((_n, fn) => fn());
    let proxy: RunningProxy;
    try {
      proxy = await span(`start ${name}`, () => kind.start(entry, ctx), {
        'membrane.proxy': name,
        'membrane.proxy.kind': kind.kind,
      });
    } catch (e) {
      await ctx.dispose();
      throw e;
    }
    this.started.push({ proxy, ctx });
    for (const marker of markersOf(proxy))
      await writeFile(join(this.o.statusDir, marker), `${endpointText(proxy.endpoint)}\n`, { mode: 0o644 });
    this.o.sources.audit.emit({
      type: ProxyEvent.STARTED,
      subject: proxy.name,
      details: { kind: proxy.kind, mode: proxy.mode, endpoint: proxy.endpoint },
    });
    return proxy;
  }

  /** Membrane's own listeners: the health endpoint and every proxy listening so far. */
  listeners(): OwnListener[] {
    const own = [...(this.o.otherListeners?.() ?? [])];
    for (const { proxy } of this.started)
      if (proxy.endpoint.type === 'listen')
        own.push({ host: proxy.endpoint.host, port: proxy.endpoint.port });
    return own;
  }

  /**
   * The application's environment: `base` (the spec's) plus every proxy's appEnv. A proxy's
   * value wins over the spec's (it is what the clean room enforces, e.g. HTTP_PROXY); two
   * proxies disagreeing is a configuration error, refused before the application starts.
   */
  appEnv(base: Readonly<Record<string, string>> = {}): Record<string, string> {
    const env: Record<string, string> = { ...base };
    const setBy = new Map<string, string>();
    for (const { proxy } of this.started) {
      for (const [k, v] of Object.entries(proxy.appEnv)) {
        const other = setBy.get(k);
        if (other !== undefined && env[k] !== v)
          throw new MembraneError(
            ProxySetErrorCode.ENV_CONFLICT,
            `proxies '${other}' and '${proxy.name}' set ${k} to different values`,
            { where: 'application environment' },
          );
        env[k] = v;
        setBy.set(k, proxy.name);
      }
    }
    return env;
  }

  /**
   * Closes every proxy in reverse start order; never stops at a failure (a later proxy may
   * still hold outputs to commit). Each outcome is audited; the failures are returned.
   */
  async closeAll(log: (line: string) => void): Promise<StopFailure[]> {
    const failures: StopFailure[] = [];
    for (const { proxy, ctx } of this.started.splice(0).reverse()) {
      const details = { kind: proxy.kind, mode: proxy.mode, endpoint: proxy.endpoint };
      try {
        await proxy.close();
        this.o.sources.audit.emit({ type: ProxyEvent.STOPPED, subject: proxy.name, details });
      } catch (e) {
        const error = e instanceof Error ? e : new Error(String(e));
        failures.push({ name: proxy.name, error });
        this.o.sources.audit.emit({
          type: ProxyEvent.STOP_FAILED,
          subject: proxy.name,
          details: { ...details, error: error.message, code: (e as { code?: unknown }).code },
        });
        log(`stopping '${proxy.name}' (${proxy.kind}) failed: ${error.message}`);
      }
      for (const marker of markersOf(proxy)) await rm(join(this.o.statusDir, marker), { force: true });
      await ctx.dispose();
    }
    await rm(this.stateRoot, { recursive: true, force: true });
    return failures;
  }
}

/**
 * `<name>.<kind>.ready`; a volume also keeps the `<name>.volume.ready` of earlier releases
 * (launch scripts wait for it). Drop that one in the release after next.
 */
function markersOf(p: RunningProxy): string[] {
  const markers = [`${p.name}.${p.kind}.ready`];
  if (p.kind === 'blob-volume') markers.push(`${p.name}.volume.ready`);
  return markers;
}

function endpointText(e: Endpoint): string {
  return e.type === 'mount' ? e.path : `${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
}
