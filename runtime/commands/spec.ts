/**
 * `membrane spec validate -f F [--json]`: checks a clean-room spec without starting
 * anything — schema, cross-references and mode rules (policy/spec.ts). Exit 0 with a
 * short summary when valid; exit 1 listing every issue when not. Nothing is contacted and
 * no referenced file is read: this is safe to run anywhere, e.g. in CI on a proposed spec.
 */
import { readFile } from 'node:fs/promises';
import { MembraneError } from '../../policy/errors.js';
import { type CleanRoomSpec, formatSpecIssues, validateSpec } from '../../policy/spec.js';
import { parse, required } from './_args.js';

export const summary = 'validate a clean-room spec (YAML or JSON) and summarise it';

const help = `Usage: membrane spec validate -f cleanroom.yaml [--json]

Validates a clean-room spec: every field, type and cross-reference (declared keys,
identities and KEKs; unique names and mount points; the rules of each protection mode).
Nothing is started or contacted and referenced files are not read.
The format is described in docs/spec-reference.md; examples are in docs/examples/.

Options:
  -f, --file F   the spec (YAML 1.2 or JSON)
  --json         machine-readable: {"ok":true,"file","spec","warnings"} with defaults filled
                 in, or {"ok":false,"file","issues":[{"path","message","line"}],"warnings"}
                 (warnings: deprecated field names that were accepted)
  -h, --help     this help

Exit status: 0 when the spec is valid, 1 when it is not (every issue is listed as
"path: expected ..., got ..."), 2 on a usage error.`;

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(help);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'validate') throw new MembraneError('USAGE', `unknown subcommand '${sub}'\n\n${help}`);
  const { values, help: shown } = parse(
    rest,
    { file: { type: 'string', short: 'f' }, json: { type: 'boolean' } },
    help,
  );
  if (shown) return 0;
  const file = required(values.file, '--file', help);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new MembraneError('SPEC_UNREADABLE', `cannot read the spec: ${(e as Error).message}`, {
      where: file,
      cause: e,
    });
  }
  const v = validateSpec(text, file);
  if (values.json) {
    const { warnings } = v;
    console.log(
      JSON.stringify(
        v.ok ? { ok: true, file, spec: v.spec, warnings } : { ok: false, file, issues: v.issues, warnings },
      ),
    );
    return v.ok ? 0 : 1;
  }
  // Deprecated spellings still work; say so on stderr so that stdout stays the summary.
  for (const w of v.warnings)
    console.error(
      `${file}: warning: ${w.path}: ${w.message}${w.line !== undefined ? ` [line ${w.line}]` : ''}`,
    );
  if (!v.ok) {
    const n = v.issues.length;
    console.error(
      `${file}: invalid clean-room spec (${n} issue${n === 1 ? '' : 's'}):\n${formatSpecIssues(v.issues)}`,
    );
    return 1;
  }
  console.log(describeSpec(file, v.spec));
  return 0;
}

/** A few lines an operator can eyeball: what will be attested, released, mounted and run. */
export function describeSpec(file: string, s: CleanRoomSpec): string {
  const a = s.attestation;
  const verifier = [a.maa && `MAA ${a.maa.endpoint}`, a.kbs && `KBS ${a.kbs.url}`].filter(Boolean).join(', ');
  const brokers = new Map<string, number>();
  for (const k of s.keys.keks) brokers.set(k.broker, (brokers.get(k.broker) ?? 0) + 1);
  const vol = (v: CleanRoomSpec['datasources'][number]) =>
    `    ${v.name}: ${v.protection.mode}${v.protection.key ? ` (DEK ${v.protection.key})` : ''}, ${
      v.store.type === 'fs' ? `fs ${v.store.path}` : `azure-blob ${v.store.url} ${v.store.container}`
    } -> ${v.mount}`;
  const lines = [
    `${file}: valid clean-room spec${s.name ? ` "${s.name}"` : ''} (version ${s.version})`,
    `  attestation: ${a.provider}${a.provider === 'virtual' ? ' (INSECURE: unsigned evidence, development only)' : ''}${verifier ? `; ${verifier}` : ''}`,
    `  identities: ${s.identities.length ? s.identities.map((i) => `${i.name} (${i.kind})`).join(', ') : 'none'}`,
    `  keys: ${s.keys.keks.length} KEK${s.keys.keks.length === 1 ? '' : 's'}${
      brokers.size ? ` (${[...brokers].map(([b, n]) => `${b}: ${n}`).join(', ')})` : ''
    }, ${s.keys.deks.length} DEK${s.keys.deks.length === 1 ? '' : 's'}`,
    `  datasources: ${s.datasources.length}`,
    ...s.datasources.map(vol),
    `  datasinks: ${s.datasinks.length}`,
    ...s.datasinks.map(vol),
    `  governance: consent ${s.governance?.consent ? s.governance.consent.url : 'off'}, audit ${
      s.governance?.audit ? s.governance.audit.url : 'off'
    }; local audit log ${s.runtime.auditLog}`,
    `  telemetry: ${
      s.telemetry?.enabled
        ? `${s.telemetry.exporter} ${s.telemetry.exporter === 'otlp' ? s.telemetry.endpoint : s.telemetry.file}`
        : 'off'
    }`,
    `  application: ${s.application?.command ? s.application.command.join(' ') : 'none (given after -- on membrane up)'}`,
    `  runtime: status ${s.runtime.statusDir}, health port ${s.runtime.healthPort === 0 ? 'any free port' : s.runtime.healthPort}`,
  ];
  return lines.join('\n');
}
