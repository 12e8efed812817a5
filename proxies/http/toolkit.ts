/**
 * Wiring of the real neighbours behind the ports (ports.ts): the TLS and sealing modules
 * of this folder (tls-ca.ts, upstream-tls.ts, seal.ts), the egress policy evaluator
 * (policy/egress) and the PII inspector (policy/inspect).
 *
 * They are developed on parallel branches; until they are merged, this module loads
 * them by name at run time and reports what is missing instead of failing the build.
 * A missing piece is never a pass: without the TLS toolkit, trusted, secure and
 * inspected HTTPS traffic is refused; without the inspector, inspected rules are
 * refused; without the evaluator there is no proxy at all (a typed error).
 * TODO(merge): once all three are on main, replace the loaders by static imports.
 */
import { MembraneError } from '../../policy/errors.js';
import type { EgressEngine, InspectorFactory, TlsToolkit } from './ports.js';

type Loaded = Record<string, unknown>;

async function tryImport(specifier: string): Promise<Loaded | undefined> {
  try {
    return (await import(specifier)) as Loaded;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') return undefined;
    throw e;
  }
}

function fn<T>(mod: Loaded | undefined, ...names: string[]): T | undefined {
  for (const n of names) if (typeof mod?.[n] === 'function') return mod[n] as T;
  return undefined;
}

// Specifiers in variables: the modules may not exist on this branch yet (see above).
const here = (m: string) => new URL(m, import.meta.url).href;

export async function loadTlsToolkit(): Promise<TlsToolkit | undefined> {
  const [ca, up, seal] = await Promise.all([
    tryImport(here('./tls-ca.js')),
    tryImport(here('./upstream-tls.js')),
    tryImport(here('./seal.js')),
  ]);
  const createRunCa = fn<TlsToolkit['createRunCa']>(ca, 'createRunCa');
  const connectUpstreamTls = fn<TlsToolkit['connectUpstreamTls']>(up, 'connectUpstreamTls');
  const sealBody = fn<TlsToolkit['sealBody']>(seal, 'sealBody');
  const openBody = fn<TlsToolkit['openBody']>(seal, 'openBody');
  const bindingContext = fn<TlsToolkit['bindingContext']>(seal, 'bindingContext');
  if (!createRunCa || !connectUpstreamTls || !sealBody || !openBody || !bindingContext) return undefined;
  return { createRunCa, connectUpstreamTls, sealBody, openBody, bindingContext };
}

export async function loadInspector(): Promise<InspectorFactory | undefined> {
  for (const m of ['../../policy/inspect/index.js', '../../policy/inspect/scanner.js']) {
    const f = fn<InspectorFactory>(await tryImport(here(m)), 'createInspector');
    if (f) return f;
  }
  return undefined;
}

interface PolicyShape {
  mode?: string;
  allow?: { mode?: string; inspect?: unknown }[];
  limits?: Record<string, unknown>;
}

/**
 * An engine over a policy document (the parsed `network.http.outbound` section, or the
 * text of a policy file when `file` is given), using policy/egress's evaluator.
 */
export async function loadEgressEngine(
  source: { text: string; file: string } | { parsed: unknown },
): Promise<EgressEngine> {
  const mods = await Promise.all(
    ['index.js', 'schema.js', 'rules.js', 'digest.js'].map((m) =>
      tryImport(here(`../../policy/egress/${m}`)),
    ),
  );
  const pick = <T>(...names: string[]) => {
    for (const m of mods) {
      const f = fn<T>(m, ...names);
      if (f) return f;
    }
    return undefined;
  };
  const parse = pick<(text: string, file: string) => unknown>('parseEgressPolicy');
  const compile = pick<(p: unknown) => unknown>('compileEgressPolicy');
  const decideRequest =
    pick<(c: unknown, r: unknown) => ReturnType<EgressEngine['decideRequest']>>('decideRequest');
  const decideAddress =
    pick<(c: unknown, ip: string, port: number, self: unknown) => ReturnType<EgressEngine['decideAddress']>>(
      'decideAddress',
    );
  const digestOf = pick<(p: unknown) => string>('policyDigest', 'egressPolicyDigest');
  if (!compile || !decideRequest || !decideAddress || ('text' in source && !parse))
    throw new MembraneError(
      'HTTP_PROXY_UNAVAILABLE',
      'the egress policy evaluator (policy/egress) is not part of this build',
    );
  const policy =
    'text' in source ? (parse as NonNullable<typeof parse>)(source.text, source.file) : source.parsed;
  const compiled = compile(policy) as { digest?: string };
  const shape = policy as PolicyShape;
  const interceptsTls = (shape.allow ?? []).some(
    (r) => (r.mode ?? shape.mode ?? 'open') !== 'open' || r.inspect !== undefined,
  );
  return {
    digest: compiled.digest ?? digestOf?.(policy) ?? 'unknown',
    limits: (shape.limits ?? {}) as EgressEngine['limits'],
    interceptsTls,
    decideRequest: (req) => decideRequest(compiled, req),
    decideAddress: (ip, port, self) => decideAddress(compiled, ip, port, self),
  };
}
