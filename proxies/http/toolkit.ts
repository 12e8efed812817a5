/**
 * Wiring of the real neighbours behind the ports (ports.ts): the TLS and sealing modules
 * of this folder (tls-ca.ts, upstream-tls.ts, seal.ts), the PII inspector
 * (policy/inspect) and the egress policy evaluator (policy/egress).
 *
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import {
  compileEgressPolicy,
  decideAddress,
  decideRequest,
  type EgressPolicy,
  egressPolicyFiles,
  parseEgressPolicy,
} from '../../policy/egress/index.js';
import { createInspector } from '../../policy/inspect/index.js';
import type { EgressEngine, InspectorFactory, TlsToolkit } from './ports.js';
import { bindingContext, openBody, sealBody } from './seal.js';
import { createRunCa } from './tls-ca.js';
import { connectUpstreamTls } from './upstream-tls.js';

/** The TLS and sealing modules of this folder behind the TlsToolkit port. */
export async function loadTlsToolkit(): Promise<TlsToolkit> {
  return { createRunCa, connectUpstreamTls, sealBody, openBody, bindingContext };
}

/** policy/inspect's streaming scanner behind the InspectorFactory port. */
export async function loadInspector(): Promise<InspectorFactory> {
  return createInspector;
}

/**
 * An engine over an egress policy — the text of a policy file, or the already validated
 * `network.http.outbound` section of a spec — through policy/egress's evaluator
 * (parseEgressPolicy, compileEgressPolicy, decideRequest, decideAddress). Files the
 * policy references (tls.ca, inspect.schema) are read here, relative to `baseDir` (the
 * policy file's directory); one that cannot be read is reported by the compiler by field.
 */
export async function loadEgressEngine(
  source: { text: string; file: string } | { parsed: EgressPolicy; baseDir: string },
): Promise<EgressEngine> {
  const policy = 'text' in source ? parseEgressPolicy(source.text, source.file) : source.parsed;
  const baseDir = 'text' in source ? dirname(source.file) : source.baseDir;
  const files: Record<string, string> = {};
  for (const f of egressPolicyFiles(policy)) {
    try {
      files[f] = await readFile(isAbsolute(f) ? f : resolve(baseDir, f), 'utf8');
    } catch {
      /* compileEgressPolicy names the field whose file is missing */
    }
  }
  const compiled = compileEgressPolicy(policy, files);
  return {
    digest: compiled.digest,
    limits: compiled.limits,
    interceptsTls: compiled.allow.some((r) => r.mode !== 'open' || r.inspect !== undefined),
    decideRequest: (req) => decideRequest(compiled, req),
    decideAddress: (ip, port, self) => decideAddress(compiled, ip, port, self),
  };
}
