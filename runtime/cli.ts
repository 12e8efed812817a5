/**
 * `membrane` command dispatcher. Each top-level command lives in
 * runtime/commands/<name>.ts and exports `summary` and `main(argv)`; the
 * dispatcher loads only the command asked for, so `membrane keys` never pays
 * for loading FUSE or HTTP clients.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMembraneError } from '../policy/errors.js';
import { hardenProcess } from './process-hardening.js';

export interface Command {
  summary: string;
  main(argv: string[]): Promise<number>;
}

/** Commands that hold key bytes: no core dumps, not ptrace-attachable (runtime/process-hardening.ts). */
const KEY_HOLDING = new Set(['up', 'skr', 'keys', 'protect', 'unprotect']);

const commandsDir = join(dirname(fileURLToPath(import.meta.url)), 'commands');

function available(): string[] {
  return readdirSync(commandsDir)
    .filter((f) => f.endsWith('.js') && !f.startsWith('_'))
    .map((f) => f.slice(0, -3))
    .sort();
}

async function load(name: string): Promise<Command | undefined> {
  if (!/^[a-z][a-z-]*$/.test(name) || !available().includes(name)) return undefined;
  return (await import(join(commandsDir, `${name}.js`))) as Command;
}

async function usage(): Promise<string> {
  const lines = ['Usage: membrane <command> [options]', '', 'Commands:'];
  for (const name of available()) {
    const cmd = await load(name);
    if (cmd) lines.push(`  ${name.padEnd(12)} ${cmd.summary}`);
  }
  lines.push('', "Run 'membrane <command> --help' for a command's options.");
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(await usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    console.log('membrane 0.1.0');
    return 0;
  }
  const cmd = await load(name);
  if (!cmd) {
    console.error(`membrane: unknown command '${name}'\n\n${await usage()}`);
    return 2;
  }
  try {
    if (KEY_HOLDING.has(name)) hardenProcess((l) => console.error(`membrane ${name}: ${l}`));
    return await cmd.main(rest);
  } catch (e) {
    // Typed errors already say what and where; anything else is a bug, so show the stack.
    if (isMembraneError(e)) {
      console.error(`membrane ${name}: ${e.message} [${e.code}]`);
      return e.code === 'USAGE' ? 2 : 1;
    }
    console.error(`membrane ${name}: unexpected error`, e);
    return 1;
  }
}
