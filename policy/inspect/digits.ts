/**
 * Payment cards and US SSNs: both are digit runs, so one state machine serves both.
 *
 * A run is digits with single separators (space or '-') between them; its groups are what the
 * separators delimit. Candidates are whole groups, never a slice of one, so a 20-digit order id
 * never yields a 16-digit "card". Card candidates: one group of 13-19 digits, or groups of four with a
 * last group of 1-4 (4-4-4-4, 4-4-4-4-3, …) or the 4-6-5 / 4-6-4 Amex/Diners layout, with one
 * separator kind throughout. SSN candidates: 3-2-4 groups joined by '-' (or by spaces next to an SSN
 * keyword), or a lone 9-digit group next to one. A run glued to a word (a letter or digit right
 * before or after it, a decimal point before a digit, `ORD-`) is an identifier or a decimal, not PII.
 *
 * Memory is a ring of the last six groups (19 digits each at most) and the last 128 decoded bytes
 * (for the SSN keyword look-back): nothing else is kept, whatever the run's length.
 */

import { CLASS, type Detector, DIGIT, type Hit, LETTER, LOWER, UPPER, WORD } from './types.js';
import { isCardNumber, isSsn } from './validators.js';

const SP = 0x20;
const DASH = 0x2d;
const DOT = 0x2e;
const IDLE = 0;
const GROUP = 1;
const SEP = 2;
const AFTER_DOT = 3;
const RING = 6;
const MAXD = 20;
/** How far (decoded bytes) after an SSN keyword a space-separated or bare 9-digit SSN is looked for. */
export const SSN_KEYWORD_WINDOW = 32;
/** Decoded bytes kept from earlier chunks: the window, the longest keyword context (`social security`) and a group. */
const TAIL = 128;
const EMPTY = new Uint8Array(0);

export class DigitRunDetector implements Detector {
  private mode = IDLE;
  private sep = 0;
  private p1 = 0;
  private p2 = 0;
  private pos = 0;
  private leadAttached = false;
  private count = 0; // groups in the current run
  private readonly start = new Float64Array(RING); // raw offset of each group's first digit
  private readonly at = new Float64Array(RING); // decoded position of each group's first digit
  private readonly len = new Uint32Array(RING);
  private readonly sepBefore = new Uint8Array(RING);
  private readonly digits = new Uint8Array(RING * MAXD);
  private readonly scratch = new Uint8Array(MAXD);
  // SSN keyword context is not tracked byte by byte: only when an SSN candidate needs a keyword
  // does keywordNear() look back over the decoded bytes before it — the current chunk, or `tail`,
  // the last TAIL decoded bytes of earlier chunks (a ring indexed by decoded position).
  private readonly tail = new Uint8Array(TAIL);
  private cur: Uint8Array = EMPTY;
  private curStart = 0; // decoded position of cur[0]
  private curN = 0;
  constructor(
    private readonly cards: boolean,
    private readonly ssn: boolean,
  ) {}

  /** Scans n decoded bytes; raw offset of byte i is offs[i], or base + i when offs is null. */
  scan(buf: Uint8Array, n: number, offs: Float64Array | null, base: number, out: Hit[]): void {
    this.cur = buf;
    this.curStart = this.pos;
    this.curN = n;
    let i = 0;
    while (i < n) {
      // Between runs only a digit changes anything but the two-byte look-behind; inside a group,
      // digits only lengthen it. Both are tight loops; step() sees the bytes that change state.
      const from = i;
      if (this.mode === IDLE) {
        for (;;) {
          while (i < n && ((CLASS[buf[i] as number] as number) & DIGIT) === 0) i++;
          // Digits glued to a letter after them (hex digests, ids) end the run as an identifier:
          // step() would open a group and drop it at the letter. Skip them and the letter.
          let j = i;
          while (j < n && ((CLASS[buf[j] as number] as number) & DIGIT) !== 0) j++;
          if (j === n || ((CLASS[buf[j] as number] as number) & LETTER) === 0) break;
          i = j + 1;
        }
      } else if (this.mode === GROUP) {
        const k = (this.count - 1) % RING;
        let len = this.len[k] as number;
        for (; i < n; i++) {
          const b = buf[i] as number;
          if (((CLASS[b] as number) & DIGIT) === 0) break;
          if (len < MAXD) this.digits[k * MAXD + len] = b - 48;
          len++;
        }
        this.len[k] = len;
      }
      if (i > from) {
        this.p2 = i - from >= 2 ? (buf[i - 2] as number) : this.p1;
        this.p1 = buf[i - 1] as number;
        this.pos += i - from;
        if (i === n) break;
      }
      const h = this.step(buf[i] as number, offs ? (offs[i] as number) : base + i);
      if (h) out.push(h);
      i++;
    }
    // Keep the last TAIL decoded bytes for keyword look-backs from later chunks.
    for (let p = Math.max(this.curStart, this.pos - TAIL); p < this.pos; p++)
      this.tail[p % TAIL] = buf[p - this.curStart] as number;
    this.cur = EMPTY;
    this.curN = 0;
  }

  step(b: number, at: number): Hit | undefined {
    const c = CLASS[b] as number;
    let hit: Hit | undefined;
    switch (this.mode) {
      case GROUP:
        if (c & DIGIT) {
          const k = (this.count - 1) % RING;
          const n = this.len[k] as number;
          if (n < MAXD) this.digits[k * MAXD + n] = b - 48;
          this.len[k] = n + 1;
        } else if (b === SP || b === DASH) {
          this.mode = SEP;
          this.sep = b;
        } else if (b === DOT) this.mode = AFTER_DOT;
        else hit = this.endRun((c & WORD) !== 0);
        break;
      case SEP:
        if (c & DIGIT) {
          hit = this.evaluate(false, false, this.sep);
          this.group(b, at, this.sep);
          this.mode = GROUP;
        } else hit = this.endRun(this.sep === DASH && (c & LETTER) !== 0);
        break;
      case AFTER_DOT:
        hit = this.endRun((c & DIGIT) !== 0);
        break;
    }
    if (this.mode === IDLE && c & DIGIT) {
      const q1 = CLASS[this.p1] as number;
      const q2 = CLASS[this.p2] as number;
      this.leadAttached =
        (q1 & WORD) !== 0 ||
        (this.p1 === DOT && (q2 & DIGIT) !== 0) ||
        (this.p1 === DASH && (q2 & WORD) !== 0);
      this.count = 0;
      this.group(b, at, 0);
      this.mode = GROUP;
    }
    this.p2 = this.p1;
    this.p1 = b;
    this.pos++;
    return hit;
  }

  finish(): Hit | undefined {
    return this.mode === IDLE ? undefined : this.endRun(false);
  }

  pending(): number {
    if (this.mode === IDLE) return -1;
    let earliest = -1;
    let total = 0;
    for (let g = this.count - 1; g >= 0 && g >= this.count - 5; g--) {
      const k = g % RING;
      total += this.len[k] as number;
      if (total > 19) break;
      earliest = this.start[k] as number;
    }
    return earliest;
  }

  private group(b: number, at: number, sep: number): void {
    const k = this.count % RING;
    this.start[k] = at;
    this.at[k] = this.pos;
    this.len[k] = 1;
    this.sepBefore[k] = sep;
    this.digits[k * MAXD] = b - 48;
    this.count++;
  }

  private endRun(trailAttached: boolean): Hit | undefined {
    const hit = this.evaluate(true, trailAttached, 0);
    this.mode = IDLE;
    this.count = 0;
    return hit;
  }

  /** Candidates that end with the current group; `next` is the separator after it (0 at run end). */
  private evaluate(last: boolean, trailAttached: boolean, next: number): Hit | undefined {
    if (last && trailAttached) return undefined;
    const j = this.count - 1;
    return (this.ssn && this.ssnEndingAt(j, last, next)) || (this.cards ? this.cardEndingAt(j) : undefined);
  }

  private lenOf(g: number): number {
    return this.len[g % RING] as number;
  }

  /** Whether an SSN keyword ends within SSN_KEYWORD_WINDOW decoded bytes before group g's first digit. */
  private nearKeyword(g: number): boolean {
    const at = this.at[g % RING] as number;
    for (let e = at; e >= at - SSN_KEYWORD_WINDOW && e > 0; e--) if (this.keywordEndsAt(e)) return true;
    return false;
  }

  /** The decoded byte at position p (0 before the body): from the chunk being scanned, else the tail. */
  private byteAt(p: number): number {
    if (p < 0) return 0;
    const q = p - this.curStart;
    if (q >= 0 && q < this.curN) return this.cur[q] as number;
    return this.tail[p % TAIL] as number;
  }

  /**
   * Words are runs of letters, also split where an upper-case letter follows a lower-case one
   * (camelCase). Returns the length of the word that ends right before position e (0 when the
   * byte before e is no letter or e does not end a word; 9 stands for "longer than 8").
   */
  private wordEndingAt(e: number): number {
    const last = CLASS[this.byteAt(e - 1)] as number;
    if ((last & LETTER) === 0) return 0;
    const term = CLASS[this.byteAt(e)] as number;
    if ((term & LETTER) !== 0 && !((term & UPPER) !== 0 && (last & LOWER) !== 0)) return 0;
    let n = 1;
    let next = last;
    for (; n < 9; n++) {
      const c = CLASS[this.byteAt(e - 1 - n)] as number;
      if ((c & LETTER) === 0 || ((next & UPPER) !== 0 && (c & LOWER) !== 0)) break;
      next = c;
    }
    return n;
  }

  /** Keywords: `ssn`, `ssns`, and `social` followed by `security` (any case, camelCase or snake_case). */
  private keywordEndsAt(e: number): boolean {
    const z = this.byteAt(e - 1) | 0x20;
    if (z !== 0x6e && z !== 0x73 && z !== 0x79) return false; // ssn, ssns, security
    const n = this.wordEndingAt(e);
    if (n === 3 || n === 4) return this.wordIs(e - n, n === 3 ? 'ssn' : 'ssns');
    if (n !== 8 || !this.wordIs(e - 8, 'security')) return false;
    // `social` must end where `security` starts (camelCase) or one byte before it.
    const s = e - 8;
    return (
      (this.wordEndingAt(s) === 6 && this.wordIs(s - 6, 'social')) ||
      (this.wordEndingAt(s - 1) === 6 && this.wordIs(s - 7, 'social'))
    );
  }

  private wordIs(from: number, w: string): boolean {
    for (let i = 0; i < w.length; i++) if ((this.byteAt(from + i) | 0x20) !== w.charCodeAt(i)) return false;
    return true;
  }

  private ssnEndingAt(j: number, last: boolean, next: number): Hit | undefined {
    if (j === 0 && last && this.lenOf(0) === 9 && !this.leadAttached && this.nearKeyword(0)) {
      if (isSsn(this.num(0, 0, 3), this.num(0, 3, 2), this.num(0, 5, 4)))
        return { kind: 'us-ssn', offset: this.start[0] as number, rule: 'pii.us-ssn.keyword' };
    }
    if (j < 2 || j - 2 < this.count - RING) return undefined;
    const a = (j - 2) % RING;
    const g = (j - 1) % RING;
    const s = j % RING;
    if (this.len[a] !== 3 || this.len[g] !== 2 || this.len[s] !== 4) return undefined;
    const sep = this.sepBefore[g] as number;
    if (this.sepBefore[s] !== sep || this.sepBefore[a] === sep || next === sep) return undefined;
    if (j - 2 === 0 && this.leadAttached) return undefined;
    if (sep === SP && !this.nearKeyword(j - 2)) return undefined;
    if (!isSsn(this.num(a, 0, 3), this.num(g, 0, 2), this.num(s, 0, 4))) return undefined;
    return { kind: 'us-ssn', offset: this.start[a] as number, rule: 'pii.us-ssn' };
  }

  private cardEndingAt(j: number): Hit | undefined {
    const lastLen = this.lenOf(j);
    if (lastLen >= 13 && lastLen <= 19 && !(j === 0 && this.leadAttached) && this.check(j, j, lastLen))
      return this.card(j);
    if (j === 0) return undefined;
    const sep = this.sepBefore[j % RING] as number;
    // 4-6-5 (Amex) and 4-6-4 (Diners).
    if (
      j >= 2 &&
      (lastLen === 5 || lastLen === 4) &&
      this.lenOf(j - 1) === 6 &&
      this.lenOf(j - 2) === 4 &&
      this.sepBefore[(j - 1) % RING] === sep &&
      !(j === 2 && this.leadAttached) &&
      this.check(j - 2, j, 10 + lastLen)
    )
      return this.card(j - 2);
    // Groups of four and a last group of 1-4.
    if (lastLen > 4) return undefined;
    let total = lastLen;
    for (let m = 1; m <= 4 && j - m >= 0; m++) {
      const i = j - m;
      if (this.lenOf(i) !== 4 || this.sepBefore[(i + 1) % RING] !== sep) break;
      total += 4;
      if (total > 19) break;
      if (total >= 13 && !(i === 0 && this.leadAttached) && this.check(i, j, total)) return this.card(i);
    }
    return undefined;
  }

  private card(i: number): Hit {
    return { kind: 'card', offset: this.start[i % RING] as number, rule: 'pii.card' };
  }

  /** The decimal value of n digits of ring slot k from digit x. */
  private num(k: number, x: number, n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 10 + (this.digits[k * MAXD + x + i] as number);
    return v;
  }

  /** Gathers groups i..j into one digit string and runs the card checks on it. */
  private check(i: number, j: number, total: number): boolean {
    let w = 0;
    for (let g = i; g <= j; g++) {
      const k = g % RING;
      const n = this.len[k] as number;
      for (let x = 0; x < n; x++) this.scratch[w++] = this.digits[k * MAXD + x] as number;
    }
    return isCardNumber(this.scratch, 0, total);
  }
}
