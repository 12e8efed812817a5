/**
 * The proxy's limits and the small accounting that enforces them. Field names match
 * the policy file's `limits` section; anything the policy leaves out gets a default
 * sized for an application talking to a handful of APIs, not for a shared gateway.
 */

export interface EgressLimits {
  /** Request line + headers + body, in bytes. */
  readonly maxRequestBytes: number;
  readonly maxBodyBytes: number;
  /** Request line + headers; larger heads get 431 before any decision is made. */
  readonly maxHeaderBytes: number;
  readonly requestsPerSecond: number;
  readonly maxConcurrentRequests: number;
  readonly maxTunnels: number;
  /** Bytes up + down per destination (host:port) over the proxy's lifetime; 0 = unlimited. */
  readonly bytesPerDestination: number;
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
}

export const DEFAULT_LIMITS: EgressLimits = {
  maxRequestBytes: 64 * 1024 * 1024 + 64 * 1024,
  maxBodyBytes: 64 * 1024 * 1024,
  maxHeaderBytes: 32 * 1024,
  requestsPerSecond: 1000,
  maxConcurrentRequests: 256,
  maxTunnels: 256,
  bytesPerDestination: 0,
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 30_000,
  idleTimeoutMs: 60_000,
};

export function resolveLimits(partial: Partial<EgressLimits> | undefined): EgressLimits {
  const out: Record<string, number> = { ...DEFAULT_LIMITS };
  for (const [k, v] of Object.entries(partial ?? {})) if (typeof v === 'number') out[k] = v;
  return out as unknown as EgressLimits;
}

/**
 * Token bucket: `rate` tokens per second, bursts up to max(1, rate) (so a rate below one
 * per second still lets the first request through). Time is passed in so the bucket is
 * deterministic under test; the server passes performance.now().
 */
export class RateLimiter {
  private tokens: number;
  private last: number;
  private readonly burst: number;
  constructor(
    private readonly rate: number,
    now: number,
  ) {
    this.burst = Math.max(1, rate);
    this.tokens = this.burst;
    this.last = now;
  }
  take(now: number): boolean {
    if (this.rate <= 0) return true;
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** A counting semaphore that refuses instead of queueing: over the limit is an answer, not a wait. */
export class Slots {
  private used = 0;
  constructor(private readonly max: number) {}
  tryAcquire(): (() => void) | undefined {
    if (this.used >= this.max) return undefined;
    this.used++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used--;
    };
  }
  get inUse(): number {
    return this.used;
  }
}

/** Bytes spent per destination; `charge` says whether the destination is still within budget. */
export class ByteBudget {
  private readonly spent = new Map<string, number>();
  constructor(private readonly perDestination: number) {}
  exhausted(dest: string): boolean {
    return this.perDestination > 0 && (this.spent.get(dest) ?? 0) >= this.perDestination;
  }
  charge(dest: string, n: number): boolean {
    const total = (this.spent.get(dest) ?? 0) + n;
    this.spent.set(dest, total);
    return this.perDestination <= 0 || total <= this.perDestination;
  }
}
