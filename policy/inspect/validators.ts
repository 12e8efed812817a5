/**
 * The checks that turn a shape into a finding. A regex-shaped candidate is only reported when its
 * own check digits (Luhn, mod-97) or registry rules (IIN ranges, IBAN lengths, SSN ranges) say it
 * is a real identifier: invoices, phone numbers and dates that merely look like one pass.
 */

/** Luhn over digit values d[from..from+n). */
export function luhn(d: ArrayLike<number>, from: number, n: number): boolean {
  let sum = 0;
  let dbl = false;
  for (let i = from + n - 1; i >= from; i--) {
    let v = d[i] as number;
    if (dbl) {
      v *= 2;
      if (v > 9) v -= 9;
    }
    sum += v;
    dbl = !dbl;
  }
  return sum % 10 === 0;
}

// Issuer identification number ranges of the networks that issue 13-19 digit cards
// (ISO/IEC 7812 registrations as the networks publish them): [prefix digits, low, high, lengths].
const IIN: ReadonlyArray<readonly [number, number, number, readonly number[]]> = [
  [1, 4, 4, [13, 16, 19]], // Visa
  [2, 51, 55, [16]], // Mastercard
  [4, 2221, 2720, [16]], // Mastercard 2-series
  [2, 34, 34, [15]], // American Express
  [2, 37, 37, [15]],
  [3, 300, 305, [14, 15, 16, 17, 18, 19]], // Diners Club
  [2, 36, 36, [14, 15, 16, 17, 18, 19]],
  [2, 38, 39, [14, 15, 16, 17, 18, 19]],
  [4, 3528, 3589, [16, 17, 18, 19]], // JCB
  [4, 6011, 6011, [16, 17, 18, 19]], // Discover
  [3, 644, 649, [16, 17, 18, 19]],
  [2, 65, 65, [16, 17, 18, 19]],
  [2, 62, 62, [16, 17, 18, 19]], // UnionPay (and Discover's 622126-622925)
  [2, 50, 50, [13, 14, 15, 16, 17, 18, 19]], // Maestro, Verve, RuPay 508
  [2, 56, 58, [13, 14, 15, 16, 17, 18, 19]], // Maestro
  [2, 60, 60, [16, 17, 18, 19]], // RuPay
  [2, 63, 63, [13, 14, 15, 16, 17, 18, 19]], // Maestro 6304, 639
  [2, 67, 67, [13, 14, 15, 16, 17, 18, 19]], // Maestro 67xx
  [4, 2200, 2204, [16, 17, 18, 19]], // Mir
  [2, 81, 82, [16]], // RuPay
  [4, 9792, 9792, [16]], // Troy
];
const POW10 = [1, 10, 100, 1000, 10000, 100000, 1000000];

/** True when the first digits and the length match a card network's published range. */
export function plausibleIin(d: ArrayLike<number>, from: number, n: number): boolean {
  let p6 = 0;
  for (let i = 0; i < 6; i++) p6 = p6 * 10 + (d[from + i] as number);
  for (const [k, lo, hi, lens] of IIN) {
    const p = Math.floor(p6 / (POW10[6 - k] as number));
    if (p >= lo && p <= hi && lens.includes(n)) return true;
  }
  return false;
}

/** 13-19 digits, a plausible issuer range for that length, and a valid Luhn check digit. */
export function isCardNumber(d: ArrayLike<number>, from: number, n: number): boolean {
  return n >= 13 && n <= 19 && plausibleIin(d, from, n) && luhn(d, from, n);
}

/**
 * IBAN lengths per country (SWIFT IBAN registry, release 98, 2024). A country code not listed here
 * is not an IBAN country, so its strings are never candidates.
 */
export const IBAN_LENGTH: Readonly<Record<string, number>> = {
  AD: 24,
  AE: 23,
  AL: 28,
  AT: 20,
  AZ: 28,
  BA: 20,
  BE: 16,
  BG: 22,
  BH: 22,
  BI: 27,
  BR: 29,
  BY: 28,
  CH: 21,
  CR: 22,
  CY: 28,
  CZ: 24,
  DE: 22,
  DJ: 27,
  DK: 18,
  DO: 28,
  EE: 20,
  EG: 29,
  ES: 24,
  FI: 18,
  FK: 18,
  FO: 18,
  FR: 27,
  GB: 22,
  GE: 22,
  GI: 23,
  GL: 18,
  GR: 27,
  GT: 28,
  HN: 28,
  HR: 21,
  HU: 28,
  IE: 22,
  IL: 23,
  IQ: 23,
  IS: 26,
  IT: 27,
  JO: 30,
  KW: 30,
  KZ: 20,
  LB: 28,
  LC: 32,
  LI: 21,
  LT: 20,
  LU: 20,
  LV: 21,
  LY: 25,
  MC: 27,
  MD: 24,
  ME: 22,
  MK: 19,
  MN: 20,
  MR: 27,
  MT: 31,
  MU: 30,
  NI: 28,
  NL: 18,
  NO: 15,
  OM: 23,
  PK: 24,
  PL: 28,
  PS: 29,
  QA: 29,
  RO: 24,
  RS: 22,
  RU: 33,
  SA: 24,
  SC: 31,
  SD: 18,
  SE: 24,
  SI: 19,
  SK: 24,
  SM: 27,
  SO: 23,
  ST: 25,
  SV: 28,
  TL: 23,
  TN: 24,
  TR: 26,
  UA: 29,
  VA: 22,
  VG: 24,
  XK: 20,
  YE: 30,
};

/**
 * ISO 13616 check: upper-case ASCII letters and digits, check digits 02-98, and the number formed
 * by moving the first four characters to the end (letters as 10-35) is 1 modulo 97.
 */
export function ibanMod97(chars: ArrayLike<number>, n: number): boolean {
  const ck = ((chars[2] as number) - 48) * 10 + ((chars[3] as number) - 48);
  if (ck < 2 || ck > 98) return false;
  let r = 0;
  for (let k = 0; k < n; k++) {
    const c = chars[(k + 4) % n] as number;
    if (c >= 48 && c <= 57) r = (r * 10 + (c - 48)) % 97;
    else if (c >= 65 && c <= 90) r = (r * 100 + (c - 55)) % 97;
    else return false;
  }
  return r === 1;
}

/**
 * US SSN ranges (SSA, since the 2011 randomisation): area 001-899 except 666, group 01-99,
 * serial 0001-9999; plus the numbers the SSA itself lists as never valid (advertising samples).
 */
export function isSsn(area: number, group: number, serial: number): boolean {
  if (area === 0 || area === 666 || area >= 900) return false;
  if (group === 0 || serial === 0) return false;
  if (area === 78 && group === 5 && serial === 1120) return false; // the Woolworth wallet card
  if (area === 219 && group === 9 && serial === 9999) return false; // the 1940 SSA pamphlet
  return true;
}

/** Strict dotted-quad IPv4: four decimal parts 0-255 without leading zeros (no octal, hex or short forms). */
export function isIpv4(s: string): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  for (const p of parts) {
    if (p.length === 0 || p.length > 3) return false;
    if (p.length > 1 && p.charCodeAt(0) === 48) return false;
    for (let i = 0; i < p.length; i++) {
      const c = p.charCodeAt(i);
      if (c < 48 || c > 57) return false;
    }
    if (Number(p) > 255) return false;
  }
  return true;
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * RFC 4291 text form: eight groups of 1-4 hex digits, or fewer with exactly one '::', optionally
 * ending in a dotted quad that counts as two groups. `nonEmpty` returns how many groups were written
 * out, so the caller can ignore '::'-only forms that collide with code (`a[::2]`, `std::`).
 */
export function ipv6Groups(s: string): number {
  const dbl = s.indexOf('::');
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return -1;
  const halves = dbl === -1 ? [s] : [s.slice(0, dbl), s.slice(dbl + 2)];
  let groups = 0;
  let written = 0;
  for (let h = 0; h < halves.length; h++) {
    const half = halves[h] as string;
    if (half === '') continue;
    const parts = half.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i] as string;
      const last = h === halves.length - 1 && i === parts.length - 1;
      if (last && p.includes('.')) {
        if (!isIpv4(p)) return -1;
        groups += 2;
        written += 1;
      } else if (HEX_GROUP.test(p)) {
        groups += 1;
        written += 1;
      } else return -1;
    }
  }
  if (dbl === -1 ? groups !== 8 : groups > 7) return -1;
  return written;
}
