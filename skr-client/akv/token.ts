/**
 * Bearer-token sources for Azure Key Vault / Managed HSM: a static token, the
 * IMDS managed identity, and AKS workload identity (federated token file,
 * client-assertion flow). Tokens are cached in memory until five minutes
 * before expiry; they are never logged and never put in error messages.
 * Every endpoint is overridable so tests can point them at loopback servers.
 */
import { readFile } from 'node:fs/promises';
import { MembraneError } from '../../policy/errors.js';
import { http } from '../http.js';

/** The two Azure resource ids a key release can need a token for. */
export const VAULT_RESOURCE = 'https://vault.azure.net';
export const MANAGED_HSM_RESOURCE = 'https://managedhsm.azure.net';

/** Managed HSM hosts (`*.managedhsm.azure.net`, sovereign variants too) need the managedhsm audience. */
export function resourceForVault(vaultOrKid: string): string {
  let host: string;
  try {
    host = new URL(vaultOrKid).hostname;
  } catch {
    throw new MembraneError('AKV_URL_INVALID', `not a Key Vault URL: ${vaultOrKid}`);
  }
  return host.includes('.managedhsm.') ? MANAGED_HSM_RESOURCE : VAULT_RESOURCE;
}

export interface TokenSource {
  /** For messages and audit: "static", "managed-identity", "workload-identity". */
  readonly kind: 'static' | 'managed-identity' | 'workload-identity';
  /** An access token for `resource` (e.g. https://vault.azure.net), without the "Bearer " prefix. */
  getToken(resource: string): Promise<string>;
}

/** A token handed in by the operator (or the emulators' access token). */
export function staticToken(token: string): TokenSource {
  const t = token.trim().replace(/^Bearer\s+/i, '');
  if (!t) throw new MembraneError('AKV_TOKEN_MISSING', 'the static access token is empty');
  return { kind: 'static', getToken: async () => t };
}

interface Cached {
  token: string;
  expiresAtMs: number;
}
const REFRESH_MARGIN_MS = 5 * 60_000;

function cache(fetchToken: (resource: string) => Promise<Cached>) {
  const tokens = new Map<string, Cached>();
  return async (resource: string): Promise<string> => {
    const hit = tokens.get(resource);
    if (hit && hit.expiresAtMs - REFRESH_MARGIN_MS > Date.now()) return hit.token;
    const fresh = await fetchToken(resource);
    tokens.set(resource, fresh);
    return fresh.token;
  };
}

function expiry(expiresOn: unknown, expiresIn: unknown): number {
  const on = Number(expiresOn);
  if (Number.isFinite(on) && on > 0) return on * 1000;
  const inS = Number(expiresIn);
  if (Number.isFinite(inS) && inS > 0) return Date.now() + inS * 1000;
  return Date.now() + 10 * 60_000; // unknown: assume short-lived so we refetch soon
}

export interface ManagedIdentityOptions {
  /** User-assigned identity's client id; omit for the system-assigned identity. */
  clientId?: string;
  /** Default http://169.254.169.254/metadata/identity/oauth2/token (tests override it). */
  endpoint?: string;
  timeoutMs?: number;
  retries?: number;
}

/** Azure Instance Metadata Service managed identity (VMs, confidential ACI, AKS node identity). */
export function managedIdentity(opts: ManagedIdentityOptions = {}): TokenSource {
  const endpoint = opts.endpoint ?? 'http://169.254.169.254/metadata/identity/oauth2/token';
  return {
    kind: 'managed-identity',
    getToken: cache(async (resource) => {
      const url = new URL(endpoint);
      url.searchParams.set('api-version', '2018-02-01');
      url.searchParams.set('resource', resource);
      if (opts.clientId) url.searchParams.set('client_id', opts.clientId);
      const res = await http('Azure IMDS managed identity', url.toString(), {
        headers: { Metadata: 'true' },
        // IMDS is plain http on the link-local address by design (never routed off the host).
        allowInsecureHttp: true,
        timeoutMs: opts.timeoutMs ?? 5_000,
        retries: opts.retries,
        accept: [400, 401, 403, 404],
        hint: 'check that a managed identity is assigned to this VM/container group and that IMDS is reachable',
      });
      if (res.status !== 200) {
        const detail = oauthError(res.body);
        throw new MembraneError(
          'AKV_TOKEN_FAILED',
          `managed identity token request failed (HTTP ${res.status}${detail ? `: ${detail}` : ''}) — ${
            opts.clientId
              ? `check that the user-assigned identity with client id ${opts.clientId} is assigned to this resource`
              : 'check that a system-assigned identity is enabled, or pass the client id of a user-assigned one'
          }`,
          { where: `${url.origin}${url.pathname}` },
        );
      }
      const j = res.json<{ access_token?: string; expires_on?: unknown; expires_in?: unknown }>();
      if (typeof j.access_token !== 'string' || !j.access_token)
        throw new MembraneError('AKV_TOKEN_FAILED', 'IMDS answered without an access_token', {
          where: `${url.origin}${url.pathname}`,
        });
      return { token: j.access_token, expiresAtMs: expiry(j.expires_on, j.expires_in) };
    }),
  };
}

export interface WorkloadIdentityOptions {
  /** Defaults come from AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST. */
  clientId?: string;
  tenantId?: string;
  tokenFile?: string;
  authorityHost?: string;
  env?: NodeJS.ProcessEnv;
  ca?: string | string[];
  timeoutMs?: number;
  retries?: number;
}

/**
 * AKS workload identity: exchange the projected service-account token (re-read on
 * every fetch because kubelet rotates it) for an Entra ID token with the
 * client-assertion flow: POST {authority}/{tenant}/oauth2/v2.0/token.
 */
export function workloadIdentity(opts: WorkloadIdentityOptions = {}): TokenSource {
  const env = opts.env ?? process.env;
  const clientId = opts.clientId ?? env.AZURE_CLIENT_ID;
  const tenantId = opts.tenantId ?? env.AZURE_TENANT_ID;
  const tokenFile = opts.tokenFile ?? env.AZURE_FEDERATED_TOKEN_FILE;
  const authority = (
    opts.authorityHost ??
    env.AZURE_AUTHORITY_HOST ??
    'https://login.microsoftonline.com/'
  ).replace(/\/*$/, '/');
  const missing = [
    !clientId && 'AZURE_CLIENT_ID',
    !tenantId && 'AZURE_TENANT_ID',
    !tokenFile && 'AZURE_FEDERATED_TOKEN_FILE',
  ].filter(Boolean);
  if (missing.length)
    throw new MembraneError(
      'AKV_TOKEN_CONFIG',
      `workload identity needs ${missing.join(', ')} — is the pod labelled azure.workload.identity/use: "true" with a federated service account?`,
    );
  const url = `${authority}${encodeURIComponent(tenantId!)}/oauth2/v2.0/token`;
  return {
    kind: 'workload-identity',
    getToken: cache(async (resource) => {
      let assertion: string;
      try {
        assertion = (await readFile(tokenFile!, 'utf8')).trim();
      } catch (e) {
        throw new MembraneError(
          'AKV_TOKEN_CONFIG',
          'cannot read the federated token file — check the projected service-account token volume',
          { where: tokenFile, cause: e },
        );
      }
      const body = new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: clientId!,
        scope: `${resource.replace(/\/+$/, '')}/.default`,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
      }).toString();
      const res = await http('Microsoft Entra ID token endpoint (workload identity)', url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
        ca: opts.ca,
        timeoutMs: opts.timeoutMs,
        retries: opts.retries,
        accept: [400, 401, 403],
        hint: 'check AZURE_AUTHORITY_HOST and network egress to Entra ID',
      });
      if (res.status !== 200) {
        const detail = oauthError(res.body);
        throw new MembraneError(
          'AKV_TOKEN_FAILED',
          `workload identity token exchange failed (HTTP ${res.status}${detail ? `: ${detail}` : ''}) — check the federated credential on app ${clientId} (issuer, subject system:serviceaccount:<ns>:<sa>, audience api://AzureADTokenExchange)`,
          { where: url },
        );
      }
      const j = res.json<{ access_token?: string; expires_on?: unknown; expires_in?: unknown }>();
      if (typeof j.access_token !== 'string' || !j.access_token)
        throw new MembraneError('AKV_TOKEN_FAILED', 'Entra ID answered without an access_token', {
          where: url,
        });
      return { token: j.access_token, expiresAtMs: expiry(j.expires_on, j.expires_in) };
    }),
  };
}

/** First line of an OAuth error ({error, error_description}) — AADSTS codes are actionable, and secret-free. */
function oauthError(body: Buffer): string {
  try {
    const j = JSON.parse(body.toString('utf8')) as { error?: unknown; error_description?: unknown };
    const desc = typeof j.error_description === 'string' ? j.error_description.split(/\r?\n/)[0] : '';
    const code = typeof j.error === 'string' ? j.error : '';
    return [code, desc].filter(Boolean).join(': ').slice(0, 300);
  } catch {
    return '';
  }
}
