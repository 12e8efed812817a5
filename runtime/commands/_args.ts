/**
 * Small shared helpers for command modules: strict option parsing with a
 * typed usage error, and --help handling. Unknown flags are errors.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { MembraneError } from '../../policy/errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse<T extends Options>(
  argv: string[],
  options: T,
  help: string,
  allowPositionals = false,
): {
  values: {
    [K in keyof T]?: T[K] extends { type: 'boolean' }
      ? boolean
      : T[K] extends { multiple: true }
        ? string[]
        : string;
  };
  positionals: string[];
  help: boolean;
} {
  let parsed: {
    values: Record<string, unknown>;
    positionals: string[];
    tokens?: Array<{ kind: string; name?: string }>;
  };
  const all: Options = { ...options, help: { type: 'boolean', short: 'h' } };
  try {
    parsed = parseArgs({ args: argv, options: all, allowPositionals, strict: true, tokens: true });
  } catch (e) {
    throw new MembraneError('USAGE', `${(e as Error).message}\n\n${help}`);
  }
  // parseArgs silently keeps the last of two identical flags: `--out a --out b` is a mistake to report.
  const seen = new Set<string>();
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option' || t.name === undefined || all[t.name]?.multiple) continue;
    if (seen.has(t.name))
      throw new MembraneError('USAGE', `option --${t.name} is given more than once\n\n${help}`);
    seen.add(t.name);
  }
  if (parsed.values.help) {
    console.log(help);
    return { values: {}, positionals: [], help: true };
  }
  // biome-ignore lint/suspicious/noExplicitAny: parseArgs' result type is narrowed by the signature above
  return { values: parsed.values as any, positionals: parsed.positionals, help: false };
}

export function required<T>(value: T | undefined, flag: string, help: string): T {
  if (value === undefined) throw new MembraneError('USAGE', `missing required option ${flag}\n\n${help}`);
  return value;
}
