/**
 * `http-egress` as a proxy kind: the spec's `network.http.outbound` section becomes one
 * running proxy on loopback. The application reaches the network only through it:
 * its environment gains HTTP_PROXY/HTTPS_PROXY (with the per-run proxy password, so no
 * other local process can use the proxy), an empty NO_PROXY, and — when a rule
 * intercepts HTTPS — the run CA certificate through the variables OpenSSL, Node,
 * Python requests and curl read.
 */
import { dirname, join } from 'node:path';
import type { EgressPolicy } from '../../policy/egress/index.js';
import type { CleanRoomSpec } from '../../policy/spec.js';
import type { ProxyContext, ProxyKindModule, RunningProxy } from '../proxy.js';
import type { EgressEngine, Resolver } from './ports.js';
import { type HttpEgressServer, startHttpEgress } from './server.js';
import { loadEgressEngine, loadInspector, loadTlsToolkit } from './toolkit.js';

export interface HttpEgressEntry {
  readonly name: string;
  /** The validated `network.http.outbound` section (the egress policy document). */
  readonly policy: EgressPolicy;
  /** `http-egress.decisions.jsonl` beside the audit log. */
  readonly decisionLog: string;
  /** Relative file paths in the policy (tls.ca, inspect.schema) are read against this (the spec's directory). */
  readonly baseDir: string;
}

export const DECISION_LOG_FILE = 'http-egress.decisions.jsonl';

/** The variables that carry the proxy and the run CA to the application. */
export function appEnvFor(server: Pick<HttpEgressServer, 'proxyUrl' | 'caFile'>): Record<string, string> {
  const env: Record<string, string> = {
    HTTP_PROXY: server.proxyUrl,
    HTTPS_PROXY: server.proxyUrl,
    http_proxy: server.proxyUrl,
    https_proxy: server.proxyUrl,
    NO_PROXY: '',
    no_proxy: '',
  };
  if (server.caFile)
    for (const v of ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'])
      env[v] = server.caFile;
  return env;
}

/** Test seams: an engine instead of the policy evaluator, a stub resolver. */
export interface HttpEgressOverrides {
  readonly engine?: EgressEngine;
  readonly resolver?: Resolver;
}

export async function runHttpEgress(
  entry: HttpEgressEntry,
  ctx: ProxyContext,
  overrides: HttpEgressOverrides = {},
): Promise<RunningProxy> {
  // Every DEK a secure rule names must be released before the proxy listens: a missing key
  // is a failed start (PROXY_UNKNOWN_DEK), never a rule that fails at its first request.
  for (const rule of entry.policy.allow) if (rule.dek !== undefined) ctx.dataKey(rule.dek);
  const [eng, toolkit, inspector] = await Promise.all([
    overrides.engine ?? loadEgressEngine({ parsed: entry.policy, baseDir: entry.baseDir }),
    loadTlsToolkit(),
    loadInspector(),
  ]);
  const server = await startHttpEgress({
    name: entry.name,
    engine: eng,
    keyringFor: (dek) => ctx.dataKey(dek ?? ''),
    resolver: overrides.resolver,
    toolkit,
    inspector,
    audit: ctx.audit,
    meter: ctx.meter,
    log: ctx.log,
    decisionLog: entry.decisionLog,
    stateDir: ctx.stateDir,
    ownListeners: () => ctx.ownListeners(),
  });
  const mode = entry.policy.mode;
  return {
    name: entry.name,
    kind: 'http-egress',
    mode: mode === 'secure' || mode === 'trusted' ? mode : 'open',
    endpoint: { type: 'listen', host: server.host, port: server.port, protocol: 'http-proxy' },
    appEnv: appEnvFor(server),
    drain: server.drain,
    close: server.close,
  };
}

export const httpEgressKind: ProxyKindModule<HttpEgressEntry> = {
  kind: 'http-egress',
  entries(spec: CleanRoomSpec): HttpEgressEntry[] {
    const outbound = spec.network?.http?.outbound;
    if (outbound === undefined) return [];
    return [
      {
        name: 'http-egress',
        policy: outbound,
        decisionLog: join(dirname(spec.runtime.auditLog), DECISION_LOG_FILE),
        // the spec loader already made referenced paths absolute (resolveSpecPaths)
        baseDir: '.',
      },
    ];
  },
  entryName: (e) => e.name,
  start: (entry, ctx) => runHttpEgress(entry, ctx),
};
