/**
 * Shared access signatures signed with an account key: a container-scoped
 * service SAS (hand a datasource/datasink exactly one container) and an account
 * SAS. String-to-sign layouts follow "Create a service SAS" and "Create an
 * account SAS" for signed versions 2020-12-06 and later. Returns the query string
 * (no leading '?') to put in a store config's `auth: { kind: 'sas', sas }`.
 */
import { hmacBase64 } from './azure-sharedkey.js';

export const SAS_VERSION = '2021-08-06';

export interface ContainerSasOptions {
  account: string;
  /** Base64 account key. */
  key: string;
  container: string;
  /** Subset of 'racwdl' in this order (read, add, create, write, delete, list). */
  permissions: string;
  expiresOn: Date;
  startsOn?: Date;
  /** 'https' (default) or 'https,http' (needed for http endpoints such as Azurite). */
  protocol?: 'https' | 'https,http';
}

export function containerSas(o: ContainerSasOptions): string {
  const se = sasTime(o.expiresOn);
  const st = o.startsOn ? sasTime(o.startsOn) : '';
  const spr = o.protocol ?? 'https';
  const toSign = [
    o.permissions,
    st,
    se,
    `/blob/${o.account}/${o.container}`,
    '', // signed identifier (stored access policy)
    '', // signed IP
    spr,
    SAS_VERSION,
    'c', // signed resource: container
    '', // snapshot time
    '', // encryption scope
    '', // rscc
    '', // rscd
    '', // rsce
    '', // rscl
    '', // rsct
  ].join('\n');
  return query({
    sv: SAS_VERSION,
    sr: 'c',
    sp: o.permissions,
    ...(st ? { st } : {}),
    se,
    spr,
    sig: hmacBase64(o.key, toSign),
  });
}

export interface AccountSasOptions {
  account: string;
  key: string;
  /** Subset of 'rwdlacup'. */
  permissions: string;
  /** Default 'b' (blob). */
  services?: string;
  /** Default 'co' (container and object). */
  resourceTypes?: string;
  expiresOn: Date;
  startsOn?: Date;
  protocol?: 'https' | 'https,http';
}

export function accountSas(o: AccountSasOptions): string {
  const se = sasTime(o.expiresOn);
  const st = o.startsOn ? sasTime(o.startsOn) : '';
  const spr = o.protocol ?? 'https';
  const ss = o.services ?? 'b';
  const srt = o.resourceTypes ?? 'co';
  const toSign = [o.account, o.permissions, ss, srt, st, se, '', spr, SAS_VERSION, '', ''].join('\n');
  return query({
    sv: SAS_VERSION,
    ss,
    srt,
    sp: o.permissions,
    ...(st ? { st } : {}),
    se,
    spr,
    sig: hmacBase64(o.key, toSign),
  });
}

/** ISO 8601 UTC without fractional seconds, as SAS fields require. */
function sasTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function query(params: Record<string, string>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join('&');
}
