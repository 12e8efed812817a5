/**
 * E-mail addresses, RFC 5321-ish: a local part of 1-64 characters from [A-Za-z0-9._%+-] (no
 * leading, trailing or doubled dot), '@', and a domain of at least two labels (1-63 letters, digits
 * or inner hyphens each, 253 characters at most) whose last label is alphabetic (2+ letters) or an
 * IDNA `xn--` label. Quoted local parts, address literals (`a@[10.0.0.1]`) and raw UTF-8 domains are
 * not matched. Only the run before '@' (64 bytes at most) and counters are kept.
 */
import { CLASS, type Detector, DIGIT, type Hit, LETTER, LOCAL, LOWER, UPPER, WORD } from './types.js';

const AT = 0x40;
const DOT = 0x2e;
const DASH = 0x2d;
const LOCAL_PART = 0;
const DOMAIN_PART = 1;
const DEAD = 2; // a domain grew past its limits: wait for it to end

export class EmailDetector implements Detector {
  private state = LOCAL_PART;
  private runStart = 0;
  private runLen = 0;
  private lastDot = false;
  private candidate = 0;
  private dLen = 0;
  private labels = 0; // completed labels
  private labelLen = 0;
  private labelAlpha = true;
  private labelXn = 0; // how many of "xn--" the label starts with
  private lastHyphen = false;
  private prevLen = 0;
  private prevAlpha = false;
  private prevXn = 0;

  /** Scans n decoded bytes; raw offset of byte i is offs[i], or base + i when offs is null. */
  scan(buf: Uint8Array, n: number, offs: Float64Array | null, base: number, out: Hit[]): void {
    for (let i = 0; i < n; i++) {
      if (this.state === LOCAL_PART) {
        // Before an '@' only the local-part run changes: track it here (what step() does for
        // these bytes), so step() runs only at an '@' and inside domains.
        let runLen = this.runLen;
        let lastDot = this.lastDot;
        for (; i < n; i++) {
          // Tight loops first: outside a run nothing but a local-part character or '@' matters;
          // inside one, letters and digits only make it longer.
          if (runLen === 0) {
            while (i < n && ((CLASS[buf[i] as number] as number) & LOCAL) === 0 && buf[i] !== AT) i++;
          } else {
            const from = i;
            while (i < n && ((CLASS[buf[i] as number] as number) & WORD) !== 0) i++;
            if (i > from) {
              runLen += i - from;
              lastDot = false;
            }
          }
          if (i === n) break;
          const b = buf[i] as number;
          if (b === AT) break;
          if (((CLASS[b] as number) & LOCAL) === 0 || (b === DOT && (runLen === 0 || lastDot))) {
            runLen = 0; // not a local-part character, or a leading or doubled dot
            lastDot = false;
          } else {
            if (runLen === 0) this.runStart = offs ? (offs[i] as number) : base + i;
            runLen++;
            lastDot = b === DOT;
          }
        }
        this.runLen = runLen;
        this.lastDot = lastDot;
        if (i === n) break;
      }
      const h = this.step(buf[i] as number, offs ? (offs[i] as number) : base + i);
      if (h) out.push(h);
    }
  }

  step(b: number, at: number): Hit | undefined {
    const c = CLASS[b] as number;
    let hit: Hit | undefined;
    if (this.state === DOMAIN_PART) {
      if (c & (LETTER | DIGIT) || (b === DASH && this.labelLen > 0)) {
        this.label(b, c);
        if (this.labelLen > 63 || this.dLen > 253) this.state = DEAD;
        return undefined;
      }
      if (b === DOT && this.labelLen > 0 && !this.lastHyphen) {
        this.prevLen = this.labelLen;
        this.prevAlpha = this.labelAlpha;
        this.prevXn = this.labelXn;
        this.labels++;
        this.dLen++;
        this.labelLen = 0;
        this.labelAlpha = true;
        this.labelXn = 0;
        return undefined;
      }
      hit = this.endDomain();
    } else if (this.state === DEAD) {
      if (c & (LETTER | DIGIT) || b === DASH || b === DOT) return undefined;
      this.state = LOCAL_PART;
    }
    // The local part: the run of local-part characters right before '@'.
    if (b === AT) {
      if (this.runLen > 0 && this.runLen <= 64 && !this.lastDot) {
        this.state = DOMAIN_PART;
        this.candidate = this.runStart;
        this.dLen = 0;
        this.labels = 0;
        this.labelLen = 0;
        this.labelAlpha = true;
        this.labelXn = 0;
        this.lastHyphen = false;
      }
      this.runLen = 0;
      this.lastDot = false;
    } else if (c & LOCAL) {
      if (b === DOT && (this.runLen === 0 || this.lastDot)) {
        this.runLen = 0; // a leading or doubled dot: the local part can only start after it
        this.lastDot = false;
      } else {
        if (this.runLen === 0) this.runStart = at;
        this.runLen++;
        this.lastDot = b === DOT;
      }
    } else {
      this.runLen = 0;
      this.lastDot = false;
    }
    return hit;
  }

  finish(): Hit | undefined {
    const hit = this.state === DOMAIN_PART ? this.endDomain() : undefined;
    this.state = LOCAL_PART;
    this.runLen = 0;
    return hit;
  }

  pending(): number {
    if (this.state === DOMAIN_PART) return this.candidate;
    return this.state === LOCAL_PART && this.runLen > 0 && this.runLen <= 64 ? this.runStart : -1;
  }

  private label(b: number, c: number): void {
    const lower = c & UPPER ? b | 0x20 : b;
    const xn = 'xn--'.charCodeAt(this.labelLen);
    if (this.labelXn === this.labelLen && this.labelLen < 4 && lower === xn) this.labelXn++;
    if (!(c & (LOWER | UPPER))) this.labelAlpha = false;
    this.lastHyphen = b === DASH;
    this.labelLen++;
    this.dLen++;
  }

  private endDomain(): Hit | undefined {
    this.state = LOCAL_PART;
    this.runLen = 0;
    let labels = this.labels;
    let len = this.prevLen;
    let alpha = this.prevAlpha;
    let xn = this.prevXn;
    if (this.labelLen > 0) {
      if (this.lastHyphen) return undefined;
      labels++;
      len = this.labelLen;
      alpha = this.labelAlpha;
      xn = this.labelXn;
    }
    const tld = (alpha && len >= 2) || (xn === 4 && len > 4);
    return labels >= 2 && tld ? { kind: 'email', offset: this.candidate, rule: 'pii.email' } : undefined;
  }
}
