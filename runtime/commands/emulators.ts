/**
 * `membrane emulators start`: the local attestation (MAA) and Key Vault
 * emulators on loopback, until SIGINT/SIGTERM. Development and tests only.
 */
import { resolve } from 'node:path';
import { MembraneError } from '../../policy/errors.js';
import { EMULATOR_BANNER, startEmulators } from '../../skr-client/emulators/index.js';
import { waitForStopSignal } from '../signals.js';
import { parse } from './_args.js';
import { prepareOutputDir } from './_files.js';

export const summary = 'Run local attestation + Key Vault emulators (not for production)';

const HELP = `Usage: membrane emulators start [--dir D] [--maa-port N] [--kv-port N] [--json]

Runs an Azure Attestation (MAA) emulator and an Azure Key Vault emulator on
127.0.0.1 — ${EMULATOR_BANNER}. The attestation emulator accepts only virtual
evidence (membrane skr release --provider virtual); the vault releases keys
under Key Vault release policies exactly as Key Vault does.

Options:
  --dir D        state directory: CA, keys, secrets, access token (default
                 $MEMBRANE_EMULATOR_DIR or ./.membrane/emulators); kept 0700/0600
  --maa-port N   attestation emulator port (default: a free port)
  --kv-port N    Key Vault emulator port (default: a free port)
  --json         print {maaUrl, kvUrl, caFile, accessToken, dir} as one JSON line

Prints the URLs, the CA certificate path (pass it as --ca) and the access token
(pass it as --access-token), then runs until Ctrl-C / SIGTERM.`;

function port(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new MembraneError('USAGE', `${flag} must be a port number 0-65535, got ${v}\n\n${HELP}`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'start') throw new MembraneError('USAGE', `unknown subcommand '${sub}'\n\n${HELP}`);
  const { values, help } = parse(
    rest,
    {
      dir: { type: 'string' },
      'maa-port': { type: 'string' },
      'kv-port': { type: 'string' },
      json: { type: 'boolean' },
    },
    HELP,
  );
  if (help) return 0;
  const dir = resolve(values.dir ?? process.env.MEMBRANE_EMULATOR_DIR ?? '.membrane/emulators');
  // The state directory must be a directory (created if missing): a file there is a typed error.
  await prepareOutputDir(dir, '--dir');
  const emu = await startEmulators({
    dir,
    maaPort: port(values['maa-port'], '--maa-port'),
    kvPort: port(values['kv-port'], '--kv-port'),
    log: (l) => process.stderr.write(`${l}\n`),
  });
  if (values.json) {
    console.log(
      JSON.stringify({
        maaUrl: emu.maaUrl,
        kvUrl: emu.kvUrl,
        caFile: emu.caFile,
        accessToken: emu.accessToken,
        dir,
      }),
    );
  } else {
    console.log(
      [
        `membrane emulators — ${EMULATOR_BANNER}`,
        `  attestation (MAA): ${emu.maaUrl}`,
        `  key vault:         ${emu.kvUrl}`,
        `  CA certificate:    ${emu.caFile}   (--ca)`,
        `  access token:      ${emu.accessToken}   (--access-token)`,
        `  state directory:   ${dir}`,
        'Press Ctrl-C to stop.',
      ].join('\n'),
    );
  }
  await waitForStopSignal();
  await emu.close();
  process.stderr.write('membrane emulators: stopped\n');
  return 0;
}
