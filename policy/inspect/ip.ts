/**
 * IPv4 and IPv6 literals that are valid addresses: a dotted quad with parts 0-255 and no leading
 * zeros (optionally followed by `:port`), or an RFC 4291 IPv6 text form with at least two groups
 * written out (so `a[::2]` and `std::` are not addresses). A candidate is a maximal run of hex digits,
 * ':' and '.' not glued to a word (`v1.2.3.4`, `build_10.0.0.1` are versions and names); one trailing
 * '.' or ':' is punctuation, one leading ':' a separator (`host:10.0.0.1`). At most 48 characters
 * are kept: longer runs (hashes, MAC tables) are not addresses.
 */
import { CLASS, type Detector, HEX, type Hit, IP_RUN, LETTER } from './types.js';
import { ipv6Groups, isIpv4 } from './validators.js';

const COLON = 0x3a;
const DOT = 0x2e;
const UNDERSCORE = 0x5f;
const MAX = 48;

export class IpDetector implements Detector {
  private active = false;
  /** The open run cannot become an address (see step()): scan() skips it without keeping bytes. */
  private dead = false;
  private p1 = 0;
  private lead = 0;
  private len = 0;
  private dots = 0;
  private colons = 0;
  private readonly buf = new Uint8Array(MAX);
  private readonly offs = new Float64Array(2);

  /** Scans n decoded bytes; raw offset of byte i is offs[i], or base + i when offs is null. */
  scan(buf: Uint8Array, n: number, offs: Float64Array | null, base: number, out: Hit[]): void {
    let i = 0;
    while (i < n) {
      const from = i;
      if (!this.active) {
        // Outside a run, only a run character (or the byte before it) matters.
        for (;;) {
          while (i < n && ((CLASS[buf[i] as number] as number) & HEX) === 0 && buf[i] !== COLON) i++;
          if (i === n || buf[i] === COLON) break;
          const lead = i > 0 ? (buf[i - 1] as number) : this.p1;
          if (((CLASS[lead] as number) & LETTER) === 0 && lead !== UNDERSCORE && lead !== DOT) break;
          // A run glued to a word (most hex letters inside words): step() would open a dead run and
          // close it at the next byte without a finding. Skip it and the byte that ends it.
          const start = i;
          while (i < n && ((CLASS[buf[i] as number] as number) & IP_RUN) !== 0) i++;
          if (i === n) {
            this.openDead(offs ? (offs[start] as number) : base + start, n - start);
            break;
          }
          i++;
        }
      } else if (this.dead) {
        // A run glued to a word can never be reported: only its length (for pending()) counts.
        while (i < n && ((CLASS[buf[i] as number] as number) & IP_RUN) !== 0) i++;
        this.len += i - from;
      } else {
        // Inside a run, run characters only lengthen it: no step() per byte.
        let len = this.len;
        for (; i < n; i++) {
          const b = buf[i] as number;
          if (((CLASS[b] as number) & IP_RUN) === 0) break;
          if (len < MAX) {
            this.buf[len] = b;
            if (len < 2) this.offs[len] = offs ? (offs[i] as number) : base + i;
          }
          len++;
          if (b === DOT) this.dots++;
          else if (b === COLON) this.colons++;
        }
        this.len = len;
      }
      if (i > from) this.p1 = buf[i - 1] as number;
      if (i === n) break;
      const h = this.step(buf[i] as number, offs ? (offs[i] as number) : base + i);
      if (h) out.push(h);
      i++;
    }
  }

  step(b: number, at: number): Hit | undefined {
    const c = CLASS[b] as number;
    const runChar = (c & IP_RUN) !== 0;
    let hit: Hit | undefined;
    if (this.active) {
      if (runChar) {
        if (this.dead) {
          this.len++;
          this.p1 = b;
          return undefined;
        }
        if (this.len < MAX) {
          this.buf[this.len] = b;
          // Only the first two offsets are ever read (the start, or after a leading ':').
          if (this.len < 2) this.offs[this.len] = at;
        }
        this.len++;
        if (b === DOT) this.dots++;
        else if (b === COLON) this.colons++;
        this.p1 = b;
        return undefined;
      }
      this.active = false;
      if (!(this.dead || (c & LETTER) !== 0 || b === UNDERSCORE)) hit = this.evaluate();
    } else if (runChar && b !== DOT) {
      this.active = true;
      this.lead = this.p1;
      this.buf[0] = b;
      this.offs[0] = at;
      this.len = 1;
      this.dots = 0;
      this.colons = b === COLON ? 1 : 0;
      // What evaluate() rejects whatever follows: a run after a letter, '_' or '.' that does not
      // start with a separating ':'.
      const lc = CLASS[this.lead] as number;
      this.dead = b !== COLON && ((lc & LETTER) !== 0 || this.lead === UNDERSCORE || this.lead === DOT);
    }
    this.p1 = b;
    return hit;
  }

  /** A dead run (see step()) reaches the end of the chunk: pending() reports it like step() would. */
  private openDead(at: number, len: number): void {
    this.active = true;
    this.dead = true;
    this.offs[0] = at;
    this.len = len;
  }

  finish(): Hit | undefined {
    if (!this.active) return undefined;
    this.active = false;
    return this.dead ? undefined : this.evaluate();
  }

  pending(): number {
    return this.active && this.len <= MAX ? (this.offs[0] as number) : -1;
  }

  private evaluate(): Hit | undefined {
    // Cheap shape tests first: most runs are hex-letter words or plain numbers.
    if (this.len > MAX || (this.dots < 3 && this.colons < 2)) return undefined;
    let from = 0;
    let to = this.len;
    const last = this.buf[to - 1];
    if (last === DOT || (last === COLON && this.buf[to - 2] !== COLON)) to--;
    if (this.buf[0] === COLON && this.buf[1] !== COLON) from = 1;
    else {
      const lc = CLASS[this.lead] as number;
      if ((lc & LETTER) !== 0 || this.lead === UNDERSCORE || this.lead === DOT) return undefined;
    }
    if (to - from < 4) return undefined;
    const s = String.fromCharCode(...this.buf.subarray(from, to));
    const offset = this.offs[from] as number;
    const colon = s.indexOf(':');
    if (colon === -1) return isIpv4(s) ? { kind: 'ip', offset, rule: 'pii.ipv4' } : undefined;
    if (ipv6Groups(s) >= 2) return { kind: 'ip', offset, rule: 'pii.ipv6' };
    // 10.0.0.1:8080
    if (
      s.indexOf(':', colon + 1) === -1 &&
      /^[0-9]{1,5}$/.test(s.slice(colon + 1)) &&
      isIpv4(s.slice(0, colon))
    )
      return { kind: 'ip', offset, rule: 'pii.ipv4' };
    return undefined;
  }
}
