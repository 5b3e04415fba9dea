/**
 * Per-client token buckets: each client may send `ratePerSec` requests a second on average and
 * `burst` more at once. Written here because the common plugin counts fixed windows, which
 * lets a client send twice the rate across a window edge.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; updatedMs: number }>();
  private readonly capacity: number;

  constructor(private readonly ratePerSec: number, burst: number, private readonly now: () => number = Date.now) {
    this.capacity = Math.max(1, ratePerSec + burst);
  }

  get enabled(): boolean {
    return this.ratePerSec > 0;
  }

  /** Takes one token for a client; returns 0 when allowed, else the seconds until one is free. */
  take(client: string): number {
    if (!this.enabled) return 0;
    const now = this.now();
    const bucket = this.buckets.get(client) ?? { tokens: this.capacity, updatedMs: now };
    bucket.tokens = Math.min(this.capacity, bucket.tokens + ((now - bucket.updatedMs) / 1000) * this.ratePerSec);
    bucket.updatedMs = now;
    this.buckets.set(client, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.ratePerSec));
  }

  /** Drops buckets that are full again, so memory stays bounded by the clients of the last moments. */
  prune(): void {
    const now = this.now();
    for (const [client, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.updatedMs) / 1000) * this.ratePerSec >= this.capacity) this.buckets.delete(client);
    }
  }

  get size(): number {
    return this.buckets.size;
  }
}
