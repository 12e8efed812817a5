/**
 * The streaming PII inspector: decode → detectors, one byte at a time, no whole-body buffer.
 *
 * What is scanned is the *decoded* body, so the same number is found however the app encoded it:
 *  - `%XX` percent escapes are decoded in every body (URL-encoded values also appear inside JSON
 *    and text); `+` is a space only in `application/x-www-form-urlencoded` bodies;
 *  - JSON string escapes (`\n`, `\/`, `\"`, `\u0034`, …) are decoded in every body; a `\u` escape
 *    above U+007F becomes one non-word byte (every detector is ASCII);
 *  - one level only: `%2534` is `%34`, not `4`. Compressed, base64 and UTF-16 bodies are not
 *    decoded (the proxy refuses content encodings it cannot inspect).
 * Offsets in findings are raw body offsets (the first byte of the escape that encodes the match).
 *
 * Hold-back: `releasable` is how many raw bytes can be forwarded now — everything before the first
 * byte an open candidate (or an unfinished escape) may still need. Candidates are bounded (an
 * e-mail 318 decoded bytes, a card 19 digits), so the proxy holds back at most a few KiB.
 */
import type { InspectSettings, PiiKind } from '../egress/types.js';
import { DigitRunDetector } from './digits.js';
import { EmailDetector } from './email.js';
import { IbanDetector } from './iban.js';
import { IpDetector } from './ip.js';
import { type Detector, type Finding, type Hit, InspectErrorCode, inspectError } from './types.js';

export interface Inspector {
  /** Scans one chunk; returns the first finding it completed (with `block`, the one that stops the body). */
  push(chunk: Uint8Array): Finding | undefined;
  /** The body ended: settles open candidates. */
  end(): Finding | undefined;
  /** Raw bytes [0, releasable) may be forwarded: no open candidate starts before this offset. */
  readonly releasable: number;
  /** Raw bytes pushed so far. */
  readonly consumed: number;
  /** Every finding so far, in order (the first 64; `count` has the total). */
  readonly findings: readonly Finding[];
  readonly count: number;
}

const PII_KINDS: readonly PiiKind[] = ['card', 'iban', 'us-ssn', 'email', 'ip'];
const MAX_KEPT = 64;
const PCT = 0x25;
const BACKSLASH = 0x5c;
const PLUS = 0x2b;
const NON_ASCII = 0x80;
// Decoder states.
const PLAIN = 0;
const PCT1 = 1;
const PCT2 = 2;
const ESC = 3;
const U0 = 4; // \u + 0..3 hex digits seen: U0 + n

const JSON_SIMPLE: Readonly<Record<number, number>> = {
  34: 0x22,
  92: 0x5c,
  47: 0x2f,
  98: 0x08,
  102: 0x0c,
  110: 0x0a,
  114: 0x0d,
  116: 0x09,
};

function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  const l = b | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x57 : -1;
}

/** `application/x-www-form-urlencoded` (parameters and case ignored). */
function isForm(contentType: string | undefined): boolean {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() === 'application/x-www-form-urlencoded';
}

export function validateInspectSettings(settings: InspectSettings): void {
  for (const k of settings.pii)
    if (!PII_KINDS.includes(k))
      throw inspectError(
        InspectErrorCode.SETTINGS,
        `unknown PII kind "${String(k)}" (one of ${PII_KINDS.join(', ')})`,
        'inspect.pii',
      );
  if (settings.action !== 'block' && settings.action !== 'report')
    throw inspectError(InspectErrorCode.SETTINGS, 'inspect.action must be block or report', 'inspect.action');
}

export function createInspector(settings: InspectSettings, contentType?: string): Inspector {
  validateInspectSettings(settings);
  return new StreamInspector(settings, isForm(contentType));
}

class StreamInspector implements Inspector {
  // One field per detector kind keeps every call site monomorphic (the hot loop stays fast).
  private readonly digits: DigitRunDetector | undefined;
  private readonly iban: IbanDetector | undefined;
  private readonly email: EmailDetector | undefined;
  private readonly ip: IpDetector | undefined;
  private readonly action: 'block' | 'report';
  private readonly kept: Finding[] = [];
  private total = 0;
  private blocked: Finding | undefined;
  private ended = false;
  consumed = 0;
  private dstate = PLAIN;
  private escStart = 0;
  private escValue = 0;
  /** The raw bytes of the escape being read (at most `\uXXX`), scanned as they are if it is not one. */
  private readonly held = new Uint8Array(6);
  private heldLen = 0;
  private dec = new Uint8Array(0);
  private offs = new Float64Array(0);
  private n = 0;
  private readonly hits: Hit[] = [];

  constructor(
    settings: InspectSettings,
    private readonly form: boolean,
  ) {
    const on = new Set(settings.pii);
    this.digits =
      on.has('card') || on.has('us-ssn') ? new DigitRunDetector(on.has('card'), on.has('us-ssn')) : undefined;
    this.iban = on.has('iban') ? new IbanDetector() : undefined;
    this.email = on.has('email') ? new EmailDetector() : undefined;
    this.ip = on.has('ip') ? new IpDetector() : undefined;
    this.action = settings.action;
  }

  get findings(): readonly Finding[] {
    return this.kept;
  }

  get count(): number {
    return this.total;
  }

  get releasable(): number {
    if (this.blocked) return 0; // fail closed: nothing more leaves once a blocking finding exists
    let r = this.consumed;
    if (this.dstate !== PLAIN) r = Math.min(r, this.escStart);
    for (const d of this.detectors()) {
      const p = d.pending();
      if (p >= 0 && p < r) r = p;
    }
    return r;
  }

  push(chunk: Uint8Array): Finding | undefined {
    if (this.ended) throw inspectError(InspectErrorCode.USAGE, 'push() after end()');
    if (this.blocked) return this.blocked;
    const base = this.consumed;
    this.consumed += chunk.length;
    // Most bodies carry no escapes: then the detectors read the chunk itself, with no copy.
    if (
      this.dstate === PLAIN &&
      chunk.indexOf(PCT) === -1 &&
      chunk.indexOf(BACKSLASH) === -1 &&
      !(this.form && chunk.indexOf(PLUS) !== -1)
    )
      // A plain Uint8Array view: the detectors' loops then index one kind of array (a Buffer's
      // element loads would make them polymorphic with `dec`, and slower).
      return this.scan(
        chunk.constructor === Uint8Array
          ? chunk
          : new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length),
        chunk.length,
        null,
        base,
      );
    const n = this.decodeChunk(chunk, base);
    return this.scan(this.dec, n, this.offs, base);
  }

  end(): Finding | undefined {
    if (this.ended) return this.blocked;
    if (this.blocked) {
      this.ended = true;
      return this.blocked;
    }
    this.ensure(8);
    this.n = 0;
    this.flushEscape();
    let first = this.scan(this.dec, this.n, this.offs, 0);
    this.ended = true;
    if (this.blocked) return this.blocked;
    const hits: Hit[] = [];
    for (const d of this.detectors()) {
      const h = d.finish();
      if (h) hits.push(h);
    }
    const f = this.settle(hits);
    first ??= f;
    return first;
  }

  private *detectors(): Generator<Detector> {
    if (this.digits) yield this.digits;
    if (this.iban) yield this.iban;
    if (this.email) yield this.email;
    if (this.ip) yield this.ip;
  }

  /** Every detector reads the decoded bytes in its own tight loop; findings are merged in body order. */
  private scan(buf: Uint8Array, n: number, offs: Float64Array | null, base: number): Finding | undefined {
    if (n === 0) return undefined;
    const hits = this.hits;
    hits.length = 0;
    this.digits?.scan(buf, n, offs, base, hits);
    this.iban?.scan(buf, n, offs, base, hits);
    this.email?.scan(buf, n, offs, base, hits);
    this.ip?.scan(buf, n, offs, base, hits);
    return hits.length === 0 ? undefined : this.settle(hits);
  }

  private settle(hits: Hit[]): Finding | undefined {
    if (hits.length === 0) return undefined;
    hits.sort((a, b) => a.offset - b.offset);
    let first: Finding | undefined;
    for (const h of hits) {
      const f = this.record(h);
      first ??= f;
      if (this.blocked) break;
    }
    hits.length = 0;
    return this.blocked ?? first;
  }

  private record(h: Hit): Finding {
    const f: Finding = { kind: h.kind, offset: h.offset, rule: h.rule, action: this.action };
    this.total++;
    if (this.kept.length < MAX_KEPT) this.kept.push(f);
    if (this.action === 'block') this.blocked ??= f;
    return f;
  }

  private ensure(n: number): void {
    if (this.dec.length >= n) return;
    this.dec = new Uint8Array(n);
    this.offs = new Float64Array(n);
  }

  private put(b: number, at: number): void {
    this.dec[this.n] = b;
    this.offs[this.n++] = at;
  }

  /** Decodes a chunk into `dec`/`offs` (raw offset of each decoded byte); returns the decoded length. */
  private decodeChunk(chunk: Uint8Array, base: number): number {
    // A chunk decodes to at most its length plus the 5 bytes an escape held from the previous one.
    this.ensure(chunk.length + 8);
    this.n = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i] as number;
      if (this.dstate === PLAIN) {
        if (b === PCT || b === BACKSLASH) this.open(b, base + i);
        else this.put(this.form && b === PLUS ? 0x20 : b, base + i);
      } else this.decode(b, base + i);
    }
    return this.n;
  }

  private open(b: number, at: number): void {
    this.dstate = b === PCT ? PCT1 : ESC;
    this.escStart = at;
    this.escValue = 0;
    this.held[0] = b;
    this.heldLen = 1;
  }

  /** Escape states: `%` + 2 hex digits, or `\` + a JSON escape (`\uXXXX` included). */
  private decode(b: number, at: number): void {
    const s = this.dstate;
    if (s === ESC) {
      const simple = JSON_SIMPLE[b];
      if (simple !== undefined) this.decoded(simple);
      else if (b !== 0x75) this.abandon(b, at);
      else {
        this.held[this.heldLen++] = b;
        this.dstate = U0;
      }
      return;
    }
    const v = hexValue(b);
    if (v < 0) {
      this.abandon(b, at);
      return;
    }
    this.escValue = this.escValue * 16 + v;
    if (s === PCT2) this.decoded(this.escValue);
    else if (s === U0 + 3) this.decoded(this.escValue < 0x80 ? this.escValue : NON_ASCII);
    else {
      this.held[this.heldLen++] = b;
      this.dstate = s === PCT1 ? PCT2 : s + 1;
    }
  }

  private decoded(b: number): void {
    this.dstate = PLAIN;
    this.put(b, this.escStart);
  }

  /**
   * Not an escape after all: the bytes held so far are scanned as they are (at their own offsets),
   * then the current byte starts over in the plain state.
   */
  private abandon(b: number, at: number): void {
    this.flushEscape();
    if (b === PCT || b === BACKSLASH) this.open(b, at);
    else this.put(this.form && b === PLUS ? 0x20 : b, at);
  }

  /** The raw bytes of an unfinished escape (at the end of the body, or when it proved not to be one). */
  private flushEscape(): void {
    if (this.dstate === PLAIN) return;
    this.dstate = PLAIN;
    for (let k = 0; k < this.heldLen; k++) this.put(this.held[k] as number, this.escStart + k);
  }
}
