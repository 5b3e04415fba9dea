import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RateLimiter } from '../../src/daemon/rate-limit.js';

/** Creates a fake clock, in milliseconds, that the test advances by hand. */
function fakeClock(startMs = 1_000_000) {
  let nowMs = startMs;
  return {
    now: () => nowMs,
    advance(ms: number) {
      nowMs += ms;
    },
  };
}

/** Takes `count` tokens and returns how many of them were allowed. */
function takeMany(limiter: RateLimiter, client: string, count: number): number {
  let allowed = 0;
  for (let index = 0; index < count; index++) if (limiter.take(client) === 0) allowed++;
  return allowed;
}

describe('RateLimiter', () => {
  test('RateLimiter allows rate plus burst at once', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(10, 5, clock.now);
    assert.equal(takeMany(limiter, '10.0.0.1', 15), 15);
  });

  test('RateLimiter rejects the request after the burst', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(10, 5, clock.now);
    takeMany(limiter, '10.0.0.1', 15);
    assert.ok(limiter.take('10.0.0.1') > 0);
  });

  test('RateLimiter gives a retry-after of at least one second', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(100, 0, clock.now);
    takeMany(limiter, '10.0.0.1', 100);
    const retryAfter = limiter.take('10.0.0.1');
    assert.ok(retryAfter >= 1, String(retryAfter));
    assert.ok(Number.isInteger(retryAfter), String(retryAfter));
  });

  test('RateLimiter retry-after covers a slow refill', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(1, 0, clock.now);
    limiter.take('10.0.0.1');
    assert.equal(limiter.take('10.0.0.1'), 1);
  });

  test('RateLimiter refills at the rate', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(10, 0, clock.now);
    takeMany(limiter, '10.0.0.1', 10);
    clock.advance(500);
    assert.equal(takeMany(limiter, '10.0.0.1', 10), 5);
  });

  test('RateLimiter refills no more than its capacity', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(10, 5, clock.now);
    takeMany(limiter, '10.0.0.1', 15);
    clock.advance(60_000);
    assert.equal(takeMany(limiter, '10.0.0.1', 20), 15);
  });

  test('RateLimiter keeps clients apart', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(2, 0, clock.now);
    takeMany(limiter, '10.0.0.1', 5);
    assert.equal(limiter.take('10.0.0.2'), 0);
  });

  test('RateLimiter at rate 0 allows everything', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(0, 0, clock.now);
    assert.equal(limiter.enabled, false);
    assert.equal(takeMany(limiter, '10.0.0.1', 10_000), 10_000);
  });

  test('RateLimiter at rate 0 keeps no buckets', () => {
    const limiter = new RateLimiter(0, 50, fakeClock().now);
    takeMany(limiter, '10.0.0.1', 10);
    assert.equal(limiter.size, 0);
  });

  test('prune drops buckets that are full again', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(10, 0, clock.now);
    for (let index = 0; index < 1000; index++) limiter.take(`10.0.${index >> 8}.${index & 255}`);
    assert.equal(limiter.size, 1000);
    clock.advance(1000);
    limiter.prune();
    assert.equal(limiter.size, 0);
  });

  test('prune keeps a bucket that is still refilling', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(10, 0, clock.now);
    takeMany(limiter, '10.0.0.1', 10);
    clock.advance(100);
    limiter.prune();
    assert.equal(limiter.size, 1);
  });

  test('prune does not reset a limited client', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(10, 0, clock.now);
    takeMany(limiter, '10.0.0.1', 10);
    limiter.prune();
    assert.ok(limiter.take('10.0.0.1') > 0);
  });
});
