/**
 * IBANs, compact (`DE89370400440532013000`) or in the printed groups of four
 * (`DE89 3704 0044 0532 0130 00`), any letter case. A candidate starts at a word boundary with a
 * country code that has an IBAN, two check digits, and has exactly that country's length before the
 * next word boundary; it is reported only when ISO 13616's mod-97 check holds. At most 34 characters
 * are kept.
 */

import { CLASS, type Detector, DIGIT, type Hit, LETTER, WORD } from './types.js';
import { IBAN_LENGTH, ibanMod97 } from './validators.js';

const IDLE = 0;
const SKIP = 1; // inside a word that did not start a candidate
const C1 = 2;
const C2 = 3;
const K1 = 4;
const BODY = 5;
const SPACE = 6;
const SP = 0x20;

// Country length by the two upper-case letters' codes, for a lookup without building strings.
const LENGTH = (() => {
  const t = new Uint8Array(26 * 26);
  for (const [cc, n] of Object.entries(IBAN_LENGTH))
    t[(cc.charCodeAt(0) - 65) * 26 + cc.charCodeAt(1) - 65] = n;
  return t;
})();

export class IbanDetector implements Detector {
  private state = IDLE;
  private start = 0;
  private n = 0;
  private want = 0;
  /** -1 undecided (before the fifth character), 0 compact, 1 grouped by four. */
  private grouped = -1;
  private readonly buf = new Uint8Array(34);

  /** Scans n decoded bytes; raw offset of byte i is offs[i], or base + i when offs is null. */
  scan(buf: Uint8Array, n: number, offs: Float64Array | null, base: number, out: Hit[]): void {
    for (let i = 0; i < n; i++) {
      // Between candidates only word boundaries matter, and a word can start one only with a
      // letter: follow IDLE and SKIP here (what step() does for them), step() from a letter on.
      let s = this.state;
      if (s === IDLE || s === SKIP) {
        for (; i < n; i++) {
          const c = CLASS[buf[i] as number] as number;
          if (s === SKIP) {
            if ((c & WORD) === 0) s = IDLE;
          } else if (c & DIGIT) s = SKIP;
          else if (c & LETTER) {
            // A word's first two characters decide whether it can start a candidate; most cannot
            // (no IBAN country code, or not two letters): settle those here, without step().
            if (i + 1 === n) break;
            const b1 = buf[i + 1] as number;
            const c1 = CLASS[b1] as number;
            if (c1 & LETTER) {
              if (LENGTH[(((buf[i] as number) & 0xdf) - 65) * 26 + (b1 & 0xdf) - 65]) break;
              s = SKIP;
            } else s = c1 & WORD ? SKIP : IDLE;
            i++;
          }
        }
        this.state = s;
        if (i === n) break;
      }
      const h = this.step(buf[i] as number, offs ? (offs[i] as number) : base + i);
      if (h) out.push(h);
    }
  }

  step(b: number, at: number): Hit | undefined {
    const c = CLASS[b] as number;
    const up = c & LETTER ? b & 0xdf : b;
    switch (this.state) {
      case IDLE:
        if (c & LETTER) {
          this.buf[0] = up;
          this.start = at;
          this.state = C1;
        } else if (c & DIGIT) this.state = SKIP;
        return undefined;
      case SKIP:
        if (!(c & WORD)) this.state = IDLE;
        return undefined;
      case C1:
        if (c & LETTER) {
          this.buf[1] = up;
          this.want = LENGTH[((this.buf[0] as number) - 65) * 26 + up - 65] as number;
          this.state = this.want ? C2 : SKIP;
        } else this.abort(c);
        return undefined;
      case C2:
      case K1:
        if (c & DIGIT) {
          this.buf[this.state === C2 ? 2 : 3] = b;
          if (this.state === K1) {
            this.n = 4;
            this.grouped = -1;
            this.state = BODY;
          } else this.state = K1;
        } else this.abort(c);
        return undefined;
      case BODY:
        if (c & WORD) {
          if (this.n === this.want || (this.grouped === 1 && this.n % 4 === 0)) {
            this.state = SKIP; // too long, or a group of more than four: not an IBAN layout
            return undefined;
          }
          if (this.grouped === -1) this.grouped = 0;
          this.buf[this.n++] = up;
          return undefined;
        }
        if (this.n === this.want) {
          this.state = IDLE;
          return this.verdict();
        }
        if (b === SP && this.n % 4 === 0 && this.grouped !== 0) {
          this.grouped = 1;
          this.state = SPACE;
        } else this.state = IDLE;
        return undefined;
      default: // SPACE: a group must follow the single space
        if (c & WORD) {
          this.buf[this.n++] = up;
          this.state = BODY;
        } else this.state = IDLE;
        return undefined;
    }
  }

  finish(): Hit | undefined {
    const done = this.state === BODY && this.n === this.want;
    this.state = IDLE;
    return done ? this.verdict() : undefined;
  }

  pending(): number {
    return this.state >= C1 ? this.start : -1;
  }

  private abort(c: number): void {
    this.state = c & WORD ? SKIP : IDLE;
  }

  private verdict(): Hit | undefined {
    return ibanMod97(this.buf, this.want)
      ? { kind: 'iban', offset: this.start, rule: 'pii.iban' }
      : undefined;
  }
}
