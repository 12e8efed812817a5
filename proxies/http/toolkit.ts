/**
 * Wiring of the real neighbours behind the ports (ports.ts): the TLS and sealing modules
 * of this folder (tls-ca.ts, upstream-tls.ts, seal.ts), the PII inspector
 * (policy/inspect) and the egress policy evaluator (policy/egress).
 *
 * The evaluator is developed on a parallel branch; until it is merged, it is loaded by
 * name at run time, and its absence is a typed error (no proxy at all, never a pass).
 * TODO(merge egress-policy): import policy/egress statically (or use its
 * runtime/egress-policy.ts loader in the CLI) and drop tryImport/fn.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { MembraneError } from '../../policy/errors.js';
import { createInspector } from '../../policy/inspect/index.js';
import { HttpErrorCode } from './errors.js';
import type { EgressEngine, InspectorFactory, TlsToolkit } from './ports.js';
import { bindingContext, openBody, sealBody } from './seal.js';
import { createRunCa } from './tls-ca.js';
import { connectUpstreamTls } from './upstream-tls.js';

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

/** The TLS and sealing modules of this folder behind the TlsToolkit port. */
export async function loadTlsToolkit(): Promise<TlsToolkit> {
  return { createRunCa, connectUpstreamTls, sealBody, openBody, bindingContext };
}

/** policy/inspect's streaming scanner behind the InspectorFactory port. */
export async function loadInspector(): Promise<InspectorFactory> {
  return createInspector;
}

/** The parts of policy/egress's compiled policy the proxy reads. */
interface CompiledShape {
  readonly digest: string;
  readonly limits: EgressEngine['limits'];
  readonly allow: readonly { readonly mode: string; readonly inspect?: unknown }[];
}

/**
 * An engine over an egress policy — the text of a policy file, or the already validated
 * `network.http.outbound` section of a spec — through policy/egress's evaluator
 * (parseEgressPolicy, compileEgressPolicy, decideRequest, decideAddress). Files the
 * policy references (tls.ca, inspect.schema) are read here, relative to `baseDir` (the
 * policy file's directory); one that cannot be read is reported by the compiler by field.
 */
export async function loadEgressEngine(
  source: { text: string; file: string } | { parsed: unknown; baseDir: string },
): Promise<EgressEngine> {
  const mod = await tryImport(here('../../policy/egress/index.js'));
  const parse = fn<(text: string, file: string) => unknown>(mod, 'parseEgressPolicy');
  const compile = fn<(p: unknown, files: Record<string, string>) => CompiledShape>(
    mod,
    'compileEgressPolicy',
  );
  const filesOf = fn<(p: unknown) => string[]>(mod, 'egressPolicyFiles');
  const decideRequest = fn<(c: CompiledShape, r: unknown) => ReturnType<EgressEngine['decideRequest']>>(
    mod,
    'decideRequest',
  );
  const decideAddress = fn<
    (c: CompiledShape, ip: string, port: number, self: unknown) => ReturnType<EgressEngine['decideAddress']>
  >(mod, 'decideAddress');
  if (!parse || !compile || !filesOf || !decideRequest || !decideAddress)
    throw new MembraneError(
      HttpErrorCode.PROXY_UNAVAILABLE,
      'the egress policy evaluator (policy/egress) is not part of this build',
    );
  const policy = 'text' in source ? parse(source.text, source.file) : source.parsed;
  const baseDir = 'text' in source ? dirname(source.file) : source.baseDir;
  const files: Record<string, string> = {};
  for (const f of filesOf(policy)) {
    try {
      files[f] = await readFile(isAbsolute(f) ? f : resolve(baseDir, f), 'utf8');
    } catch {
      /* compileEgressPolicy names the field whose file is missing */
    }
  }
  const compiled = compile(policy, files);
  return {
    digest: compiled.digest,
    limits: compiled.limits,
    interceptsTls: compiled.allow.some((r) => r.mode !== 'open' || r.inspect !== undefined),
    decideRequest: (req) => decideRequest(compiled, req),
    decideAddress: (ip, port, self) => decideAddress(compiled, ip, port, self),
  };
}
