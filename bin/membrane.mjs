#!/usr/bin/env node
// Entry point: the TypeScript sources are compiled to dist/ by `npm run build`.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'runtime', 'cli.js');
if (!existsSync(cli)) {
  console.error(
    "membrane: not built yet; run 'npm run build' (or 'npm test' / 'npm run demo', which set everything up)",
  );
  process.exit(2);
}
const { run } = await import(cli);
process.exitCode = await run(process.argv.slice(2));
