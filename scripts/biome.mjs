// Runs Biome (the project's one linter/formatter) from its platform package.
// Why not @biomejs/biome: that wrapper lists optional binaries for every OS, and the
// registry this project installs from carries only the Linux ones, so its lockfile
// entries cannot be complete and `npm ci` refuses it. package.json depends on the
// Linux x64/arm64 CLIs directly (npm installs the one matching the CPU).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'node_modules', '@biomejs', `cli-${process.platform}-${process.arch}`, 'biome');
if (!existsSync(bin)) {
  console.error(`biome: no Biome CLI for ${process.platform}-${process.arch} in node_modules (run npm ci)`);
  process.exit(2);
}
const r = spawnSync(bin, process.argv.slice(2), { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
