/**
 * `membrane proxy http`: the HTTP egress proxy alone, on a policy file, until
 * SIGINT/SIGTERM. For trying a policy and for outside checks; `membrane up` runs the
 * same proxy from the spec's `network.http.outbound` section.
 *
 * Proxy authentication is off by default here (callers use `curl -x
 * http://127.0.0.1:PORT`); `--auth` turns on the per-run password `membrane up` always
 * uses, and the printed HTTP_PROXY value then carries it. Without auth the proxy
 * refuses to listen anywhere but loopback: an open proxy must not be reachable from
 * another machine.
 */
import { readFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { resolve } from 'node:path';
import { MembraneError } from '../../policy/errors.js';
import { dekKeyring } from '../../proxies/core/index.js';
import { HttpErrorCode } from '../../proxies/http/errors.js';
import { appEnvFor } from '../../proxies/http/kind.js';
import { dnsResolver } from '../../proxies/http/resolvers.js';
import { startHttpEgress } from '../../proxies/http/server.js';
import { loadEgressEngine, loadInspector, loadTlsToolkit } from '../../proxies/http/toolkit.js';
import { waitForStopSignal } from '../signals.js';
import { parse, required } from './_args.js';
import { readDek } from './_keyfiles.js';

export const summary = 'Run the HTTP egress proxy alone on a policy file (membrane proxy http)';

const HELP = `Usage: membrane proxy http --policy egress.yaml --listen 127.0.0.1:PORT [--dek dek.key]
                          [--decisions FILE] [--state-dir D] [--auth] [--dns HOST:PORT]

Runs the HTTP egress proxy (forward proxy and CONNECT) with the given egress policy
until Ctrl-C / SIGTERM, then finishes in-flight requests and stops.

Options:
  --policy F      the egress policy file (YAML or JSON; docs/http-egress.md)
  --listen A      loopback address and port, e.g. 127.0.0.1:3128 (port 0 = any free port)
  --dek F         32-byte DEK file: secure-mode rules seal request bodies with it
  --decisions F   append one JSON line per decision to F (0600)
  --state-dir D   where the run CA certificate is written (default: a temp directory)
  --auth          require the per-run proxy password (printed in the HTTP_PROXY value)
  --dns A         ask this DNS server (HOST:PORT) instead of the system resolver

Prints the listening address and the HTTP_PROXY value (and the CA file when a rule
intercepts HTTPS), one per line.`;

function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(v);
  const host = m ? ((m[1] ?? m[2]) as string) : '';
  const port = m ? Number(m[3]) : -1;
  if (!m || port > 65535) throw new MembraneError('USAGE', `--listen must be HOST:PORT, got ${v}\n\n${HELP}`);
  const loopback = (isIPv4(host) && host.startsWith('127.')) || (isIPv6(host) && host === '::1');
  if (!loopback)
    throw new MembraneError(
      'USAGE',
      `--listen must be a loopback address (127.0.0.0/8 or [::1]), got ${host}`,
    );
  return { host, port };
}

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'http') throw new MembraneError('USAGE', `unknown proxy kind '${sub}' (only: http)\n\n${HELP}`);
  const { values, help } = parse(
    rest,
    {
      policy: { type: 'string' },
      listen: { type: 'string' },
      dek: { type: 'string' },
      decisions: { type: 'string' },
      'state-dir': { type: 'string' },
      auth: { type: 'boolean' },
      dns: { type: 'string' },
    },
    HELP,
  );
  if (help) return 0;
  const policyFile = resolve(required(values.policy, '--policy', HELP));
  const listen = parseListen(required(values.listen, '--listen', HELP));
  let text: string;
  try {
    text = await readFile(policyFile, 'utf8');
  } catch (e) {
    throw new MembraneError(
      'FILE_UNREADABLE',
      `cannot read the policy file (${(e as NodeJS.ErrnoException).code})`,
      {
        where: policyFile,
      },
    );
  }
  const engine = await loadEgressEngine({ text, file: policyFile });
  const dek = values.dek ? await readDek(resolve(values.dek)) : undefined;
  const keyring = dek ? dekKeyring(dek) : undefined;
  dek?.fill(0);
  const [toolkit, inspector] = await Promise.all([loadTlsToolkit(), loadInspector()]);
  let stateDir = values['state-dir'] ? resolve(values['state-dir']) : undefined;
  if (!stateDir && engine.interceptsTls) {
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    stateDir = await mkdtemp(`${tmpdir()}/membrane-proxy-`);
  }
  const log = (l: string) => process.stderr.write(`${l}\n`);
  const server = await startHttpEgress({
    name: 'http-egress',
    engine,
    host: listen.host,
    port: listen.port,
    auth: values.auth === true,
    keyringFor: (name) => {
      if (!keyring)
        throw new MembraneError(
          HttpErrorCode.RULE_ERROR,
          `rule needs DEK ${name ?? '(unnamed)'}: start the proxy with --dek`,
        );
      return keyring;
    },
    toolkit,
    inspector,
    resolver: values.dns ? dnsResolver([values.dns]) : undefined,
    log,
    decisionLog: values.decisions ? resolve(values.decisions) : undefined,
    stateDir,
  });
  const env = appEnvFor(server);
  const authority = server.host.includes(':') ? `[${server.host}]` : server.host;
  console.log(`listening ${authority}:${server.port}`);
  console.log(`HTTP_PROXY=${env.HTTP_PROXY}`);
  if (server.caFile) console.log(`SSL_CERT_FILE=${server.caFile}`);
  await waitForStopSignal();
  await server.close();
  keyring?.destroy(); // its DEK copy zeroed before exit, as `membrane up` does at teardown
  return 0;
}
