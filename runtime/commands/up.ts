import { up } from '../up.js';
import { parse, required } from './_args.js';

export const summary =
  'run a clean room: attest, release keys, start proxies (mount volumes), run the application';

const HELP = `Usage: membrane up -f cleanroom.yaml [-- command args...]

Starts the clean room described by the spec: checks consent, gets attestation
evidence and a token, releases KEKs, unwraps DEKs, starts every proxy (mounts every
datasource and datasink), signals readiness (<statusDir>/<name>.<kind>.ready markers,
<name>.volume.ready too for volumes, and GET http://127.0.0.1:<healthPort>/ready),
then runs the application (the command after '--', else spec.application.command)
with spec.application.env plus the proxies' variables, and exits with its exit code.
Without a command it serves until SIGTERM/SIGINT. On exit: proxies are closed in
reverse order (datasinks drained and committed), final audit events written, keys
zeroed. A proxy that fails to close makes the exit status non-zero.

Any failure before readiness aborts with one message and nothing mounted.

Options:
  -f, --file FILE   the clean-room spec (YAML or JSON)
  -h, --help        this help`;

export async function main(argv: string[]): Promise<number> {
  const sep = argv.indexOf('--');
  const own = sep === -1 ? argv : argv.slice(0, sep);
  const command = sep === -1 ? undefined : argv.slice(sep + 1);
  const { values, help } = parse(own, { file: { type: 'string', short: 'f' } }, HELP);
  if (help) return 0;
  return up(required(values.file, '--file', HELP), { command });
}
