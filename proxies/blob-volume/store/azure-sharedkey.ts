/**
 * Azure Storage "Shared Key" request signing (Blob service, version 2009-09-19
 * and later), implemented from the REST doc "Authorize with Shared Key":
 *
 *   StringToSign = VERB \n Content-Encoding \n Content-Language \n Content-Length \n
 *                  Content-MD5 \n Content-Type \n Date \n If-Modified-Since \n If-Match \n
 *                  If-None-Match \n If-Unmodified-Since \n Range \n
 *                  CanonicalizedHeaders CanonicalizedResource
 *
 * Content-Length is the empty string when it is 0 (versions 2015-02-21+). The key
 * is held as bytes only inside this module's closure and never leaves it.
 */
import { createHmac } from 'node:crypto';
import { MembraneError } from '../../../policy/errors.js';
import { StoreErrorCode } from './types.js';

/** Headers (lower-case names) whose values sit at fixed positions of the string to sign. */
const STANDARD = [
  'content-encoding',
  'content-language',
  'content-length',
  'content-md5',
  'content-type',
  'date',
  'if-modified-since',
  'if-match',
  'if-none-match',
  'if-unmodified-since',
  'range',
] as const;

export interface SignableRequest {
  method: string;
  /** The URL path exactly as sent (percent-encoded), starting with '/'. */
  encodedPath: string;
  /** Query parameters, decoded (name -> value). SAS parameters never appear here. */
  query: Record<string, string>;
  /** Header names in lower case. */
  headers: Record<string, string>;
}

/** x-ms-* headers: lower-case names, sorted by code point, values with whitespace runs folded. */
export function canonicalizedHeaders(headers: Record<string, string>): string {
  return Object.keys(headers)
    .map((n) => n.toLowerCase())
    .filter((n) => n.startsWith('x-ms-'))
    .sort()
    .map((n) => `${n}:${foldWhitespace(headerValue(headers, n))}\n`)
    .join('');
}

/**
 * "/" + account + encoded URI path, then one "\nname:value" line per query
 * parameter (names lower-cased and sorted, values decoded). With the emulator's
 * path-style URLs the account therefore appears twice, as the doc says it must.
 */
export function canonicalizedResource(
  account: string,
  encodedPath: string,
  query: Record<string, string>,
): string {
  const byName = new Map<string, string[]>();
  for (const [k, v] of Object.entries(query)) {
    const name = k.toLowerCase();
    byName.set(name, [...(byName.get(name) ?? []), v]);
  }
  let out = `/${account}${encodedPath || '/'}`;
  for (const name of [...byName.keys()].sort()) {
    out += `\n${name}:${byName.get(name)!.sort().join(',')}`;
  }
  return out;
}

export function stringToSign(req: SignableRequest, account: string): string {
  const fixed = STANDARD.map((h) => {
    const v = headerValue(req.headers, h);
    return h === 'content-length' && v === '0' ? '' : v;
  });
  return (
    [req.method.toUpperCase(), ...fixed].join('\n') +
    '\n' +
    canonicalizedHeaders(req.headers) +
    canonicalizedResource(account, req.encodedPath, req.query)
  );
}

export interface SharedKeySigner {
  readonly account: string;
  /** The Authorization header value for `req` (which must already carry x-ms-date). */
  authorization(req: SignableRequest): string;
}

/** `key` is the base64 account key. Throws (without echoing it) when it is not base64. */
export function sharedKeySigner(account: string, key: string): SharedKeySigner {
  const keyBytes = decodeAccountKey(key);
  return {
    account,
    authorization(req) {
      const sig = createHmac('sha256', keyBytes).update(stringToSign(req, account), 'utf8').digest('base64');
      return `SharedKey ${account}:${sig}`;
    },
  };
}

/** HMAC-SHA256 over `text` with a base64 account key (also used for SAS signatures). */
export function hmacBase64(key: string, text: string): string {
  return createHmac('sha256', decodeAccountKey(key)).update(text, 'utf8').digest('base64');
}

export function decodeAccountKey(key: string): Buffer {
  const trimmed = key.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) || trimmed.length % 4 !== 0) {
    throw new MembraneError(
      StoreErrorCode.AUTH,
      'the storage account key is not valid base64 (copy "key1" or "key2" from the storage account\'s Access keys)',
    );
  }
  return Buffer.from(trimmed, 'base64');
}

function headerValue(headers: Record<string, string>, lowerName: string): string {
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === lowerName) return v;
  return '';
}

function foldWhitespace(v: string): string {
  return v.replace(/\s+/g, ' ').trim();
}
