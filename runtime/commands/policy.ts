/**
 * `membrane policy explain --policy P.json --token T.jwt [--json]`: shows how a Key
 * Vault secure-key-release policy evaluates the claims of an attestation token,
 * condition by condition. The token's signature is deliberately NOT verified: this is
 * a diagnostic for "why was my release refused?", not a gate (Key Vault, or the
 * emulator, verifies the token before it evaluates the policy).
 */
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { checkEgress, parseEgressUrl } from '../../policy/egress/index.js';
import { MembraneError } from '../../policy/errors.js';
import {
  claimsLookup,
  decodeReleasePolicy,
  evaluateReleasePolicy,
  formatVerdict,
} from '../../policy/release-policy.js';
import { loadEgressPolicyFile } from '../egress-policy.js';
import { parse, required } from './_args.js';

export const summary = 'explain a Key Vault release policy; check a URL against an egress policy';

const usage = `Usage: membrane policy <subcommand> [options]

Subcommands:
  explain       explain a Key Vault release policy against an attestation token
  check-egress  would an egress policy let this URL and method leave? (offline)

Run 'membrane policy <subcommand> --help' for its options.`;

const checkEgressHelp = `Usage: membrane policy check-egress --policy egress.yaml --url URL [--method M] [--json] [--resolve]

Decides, offline, whether the HTTP egress policy lets a request leave: the rules (deny
first, then allow, first match wins, default deny) on method, host, port and path, then
the address class of the destination (only public addresses unless allowAddresses names
them). For a host name the address is checked only with --resolve, which looks the name up
(every answer is checked, as the proxy does). Nothing is sent to the destination.

Options:
  --policy F   the egress policy file (YAML or JSON; see docs/http-egress.md); files it
               references (tls.ca, inspect.schema) are read relative to it
  --url URL    the http:// or https:// URL the application would call
  --method M   the HTTP method (default GET)
  --resolve    resolve a host name and check every address it resolves to
  --json       print {allowed, reason, rule, address: {ip, class} | null}
  -h, --help   this help

Exit status: 0 when the check ran (allowed or not), 1 when the policy file is unreadable
or invalid, 2 on a usage error.`;

const help = `Usage: membrane policy explain --policy P.json --token T.jwt [--json]

Evaluates a secure-key-release policy (Key Vault grammar 1.0.0) against the claims of
an attestation token (e.g. an MAA token) and prints every condition with PASS/FAIL,
expected vs actual value, and the final verdict.

The token's signature is NOT verified: this explains a policy, it does not authorise
anything. A policy authority matches the token when it names the token's issuer (iss).

Options:
  --policy P.json  the release policy: the policy JSON itself, or Key Vault's encoded
                   form {"contentType": ..., "data": "<base64url>"} / {"encodedPolicy": ...}
  --token T.jwt    the token: a compact JWT, or JSON {"token": "<jwt>"} as MAA returns it
  --json           machine-readable output
  -h, --help       this help

Exit status: 0 when the policy allows release, 1 when it denies or on an error,
2 on a usage error.`;

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new MembraneError('USAGE', `cannot read the ${what} file: ${(e as Error).message}`, {
      where: path,
      cause: e,
    });
  }
}

function readToken(path: string): {
  jwt: string;
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
} {
  let jwt = readText(path, 'token').trim();
  if (jwt.startsWith('{')) {
    try {
      const body = JSON.parse(jwt) as { token?: unknown };
      if (typeof body.token !== 'string') throw new Error('no "token" string member');
      jwt = body.token.trim();
    } catch (e) {
      throw new MembraneError('TOKEN_INVALID', `token file is JSON but not {"token": "<jwt>"}`, {
        where: path,
        cause: e,
      });
    }
  }
  try {
    return {
      jwt,
      header: decodeProtectedHeader(jwt) as Record<string, unknown>,
      claims: decodeJwt(jwt) as Record<string, unknown>,
    };
  } catch (e) {
    throw new MembraneError('TOKEN_INVALID', `not a compact JWT (${(e as Error).message})`, {
      where: path,
      cause: e,
    });
  }
}

async function explain(argv: string[]): Promise<number> {
  const { values, help: shown } = parse(
    argv,
    { policy: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' } },
    help,
  );
  if (shown) return 0;
  const policyPath = required(values.policy, '--policy', help);
  const tokenPath = required(values.token, '--token', help);

  const policyText = readText(policyPath, 'policy');
  let policyJson: unknown;
  try {
    policyJson = JSON.parse(policyText);
  } catch (e) {
    throw new MembraneError('POLICY_INVALID', `policy file is not JSON (${(e as Error).message})`, {
      where: policyPath,
      cause: e,
    });
  }
  const policy = decodeReleasePolicy(policyJson);
  const { header, claims } = readToken(tokenPath);
  const verdict = evaluateReleasePolicy(policy, claimsLookup([claims]));

  const iss = typeof claims.iss === 'string' ? claims.iss : undefined;
  const exp = typeof claims.exp === 'number' ? claims.exp : undefined;
  const expired = exp !== undefined && exp * 1000 < Date.now();

  if (values.json) {
    console.log(
      JSON.stringify(
        {
          signatureVerified: false,
          issuer: iss ?? null,
          tokenAlg: header.alg ?? null,
          expiresAt: exp !== undefined ? new Date(exp * 1000).toISOString() : null,
          expired,
          allowed: verdict.allowed,
          failedClaims: verdict.failedClaims,
          results: verdict.results,
        },
        null,
        2,
      ),
    );
  } else {
    console.log('NOTE: the token signature is NOT verified here; this only explains how the policy');
    console.log('      evaluates the token claims (Key Vault verifies the token before evaluating).');
    console.log(`token issuer: ${iss ?? '(no iss claim: no authority can match)'}`);
    if (exp !== undefined)
      console.log(
        `token expires: ${new Date(exp * 1000).toISOString()}${expired ? '  (EXPIRED: Key Vault would refuse it)' : ''}`,
      );
    console.log('');
    console.log(formatVerdict(verdict));
  }
  return verdict.allowed ? 0 : 1;
}

async function checkEgressCommand(argv: string[]): Promise<number> {
  const { values, help: shown } = parse(
    argv,
    {
      policy: { type: 'string' },
      url: { type: 'string' },
      method: { type: 'string' },
      json: { type: 'boolean' },
      resolve: { type: 'boolean' },
    },
    checkEgressHelp,
  );
  if (shown) return 0;
  const policyPath = required(values.policy, '--policy', checkEgressHelp);
  const url = required(values.url, '--url', checkEgressHelp);
  const method = values.method ?? 'GET';
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$/.test(method))
    throw new MembraneError(
      'USAGE',
      `--method must be an HTTP method such as GET or POST\n\n${checkEgressHelp}`,
    );
  try {
    new URL(url);
  } catch {
    throw new MembraneError('USAGE', `--url is not a URL: ${JSON.stringify(url)}\n\n${checkEgressHelp}`);
  }

  const compiled = loadEgressPolicyFile(policyPath);

  let answers: string[] | undefined;
  let lookupFailure: string | undefined;
  const target = parseEgressUrl(url);
  if (values.resolve && target.ok && !/^\[|^[\d.]+$/.test(target.host)) {
    try {
      answers = (await lookup(target.host, { all: true, verbatim: true })).map((a) => a.address);
    } catch (e) {
      lookupFailure = `${target.host} does not resolve (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
    }
  }
  const result = lookupFailure
    ? { allowed: false, reason: lookupFailure, rule: 'no-address', address: null }
    : checkEgress(compiled, { url, method, ...(answers ? { answers } : {}) });
  // A name refused by the rules does not need its addresses: the result says so already.

  if (values.json) console.log(JSON.stringify(result));
  else {
    console.log(`${result.allowed ? 'ALLOWED' : 'DENIED'}  ${method.toUpperCase()} ${url}`);
    console.log(`rule:    ${result.rule}`);
    console.log(`reason:  ${result.reason}`);
    console.log(
      `address: ${result.address ? `${result.address.ip} (${result.address.class})` : 'not checked (a host name: use --resolve to check its addresses)'}`,
    );
    console.log(`policy:  sha256:${compiled.digest}`);
  }
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'explain') return explain(rest);
  if (sub === 'check-egress') return checkEgressCommand(rest);
  if (sub === undefined || sub === '--help' || sub === '-h') {
    console.log(usage);
    return sub === undefined ? 2 : 0;
  }
  throw new MembraneError('USAGE', `unknown subcommand '${sub}'\n\n${usage}`);
}
