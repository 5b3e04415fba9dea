import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { killDaemonAndWait } from '../helpers/daemon-stop.js';
import { TestHost } from '../helpers/host.js';
import type { FloodOptions, FloodReport, PollOptions, PollReport } from '../helpers/load-generator.js';

const generator = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'helpers', 'load-generator.js');

const ratePerSecond = 100;
const burst = 50;
const floodRate = 1000;
const floodMs = 10_000;
// NOTE: the daemon treats 127.0.0.2 as a remote client although it is a loopback address, so
// the health poller sends the API key.
const apiKey = 'load-test-key';

/** Reads VmRSS of a process from /proc in KiB. */
async function residentKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!match?.[1]) throw new Error(`no VmRSS line in /proc/${pid}/status`);
  return Number(match[1]);
}

function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? Number.NaN;
}

async function runGenerator<T>(host: TestHost, options: FloodOptions | PollOptions, prefix: string[] = []): Promise<T> {
  const result = await host.inNetns([...prefix, 'node', generator, JSON.stringify(options)]);
  if (result.code !== 0) throw new Error(`load generator (${options.mode}) exited ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

describe('daemon under a 1,000 requests/s flood', { timeout: 110_000 }, () => {
  let host: TestHost;
  let daemonPid: number;
  let rssBeforeKiB: number;
  let rssAfterKiB: number;
  let flood: FloodReport;
  let health: PollReport;

  before(async () => {
    host = await TestHost.create({ config: { rate_limit_rps: ratePerSecond, rate_limit_burst: burst, api_key: apiKey } });
    await host.startDaemon();
    const pid = host.daemon?.pid;
    if (pid === undefined) throw new Error('the daemon has no pid');
    daemonPid = pid;
    rssBeforeKiB = await residentKiB(daemonPid);

    const floodOptions: FloodOptions = {
      mode: 'flood', url: 'http://127.0.0.1:7777/api/v1/vms', localAddress: '127.0.0.1',
      requestsPerSecond: floodRate, durationMs: floodMs, drainMs: 10_000, connections: 32,
    };
    const pollOptions: PollOptions = {
      mode: 'poll', url: 'http://127.0.0.1:7777/api/v1/health', localAddress: '127.0.0.2',
      intervalMs: 50, durationMs: floodMs, drainMs: 5_000, headers: { 'x-api-key': apiKey },
    };
    // The flood runs at a lower CPU priority, so that on a small machine the sender does not
    // take the CPU time that the daemon needs to respond.
    [flood, health] = await Promise.all([
      runGenerator<FloodReport>(host, floodOptions, ['nice', '-n', '10']),
      runGenerator<PollReport>(host, pollOptions),
    ]);
    rssAfterKiB = await residentKiB(daemonPid);
    process.stderr.write(`# flood: ${JSON.stringify({ ...flood, retryAfterValues: flood.retryAfterValues.slice(0, 5) })}\n`);
    process.stderr.write(`# health: ${health.latenciesMs.length} answers, p50 ${percentile(health.latenciesMs, 0.5).toFixed(1)} ms, `
      + `p99 ${percentile(health.latenciesMs, 0.99).toFixed(1)} ms, max ${Math.max(...health.latenciesMs).toFixed(1)} ms, `
      + `poller timer lateness p99 ${percentile(health.timerLatenessMs, 0.99)} ms\n`);
    process.stderr.write(`# daemon RSS: ${rssBeforeKiB} KiB before, ${rssAfterKiB} KiB after\n`);
  });

  after(async () => {
    if (!host) return;
    await killDaemonAndWait(host);
    await host.cleanup();
  });

  it('sends every request of the schedule', () => {
    assert.equal(flood.sent, (floodRate * floodMs) / 1000);
    assert.equal(flood.unanswered, 0, 'some requests had no response after the drain time');
    assert.deepEqual(flood.errors, {}, 'network errors on the flood connections');
    // A slower sender would make the rate limit look stricter than it is.
    assert.ok(flood.sendingMs < floodMs + 1_000, `sending took ${flood.sendingMs} ms`);
  });

  it('lets about the rate plus the burst through', () => {
    const successes = flood.statuses['200'] ?? 0;
    // Expected: the full bucket (rate + burst = 150) plus 100/s for the ~10 s of sending.
    assert.ok(successes >= 900, `only ${successes} requests got 200`);
    assert.ok(successes <= 1300, `${successes} requests got 200, the limit lets about 1,150 through`);
  });

  it('answers all other requests with 429', () => {
    const others = Object.entries(flood.statuses).filter(([status]) => status !== '200' && status !== '429');
    assert.deepEqual(others, [], 'statuses other than 200 and 429');
    const limited = flood.statuses['429'] ?? 0;
    assert.equal(limited + (flood.statuses['200'] ?? 0), flood.sent);
    assert.ok(limited >= 8_000, `only ${limited} requests got 429`);
  });

  it('sends Retry-After with every 429', () => {
    assert.equal(flood.rateLimitedWithoutRetryAfter, 0);
    for (const value of flood.retryAfterValues) {
      assert.match(value, /^[1-9]\d*$/, `Retry-After "${value}" is not a positive number of seconds`);
    }
  });

  it('keeps health under 50 ms at p99', () => {
    assert.deepEqual(health.errors, {}, 'network errors on the health connections');
    assert.equal(health.unanswered, 0);
    assert.deepEqual(Object.keys(health.statuses), ['200'], `health statuses ${JSON.stringify(health.statuses)}`);
    // 10 s at one request per 50 ms is 200 requests, and a busy poller sends a few fewer.
    assert.ok(health.latenciesMs.length >= 150, `only ${health.latenciesMs.length} health answers`);
    const p99 = percentile(health.latenciesMs, 0.99);
    // The lateness of the poller's own timers distinguishes a busy machine from a slow daemon.
    const lateness = percentile(health.timerLatenessMs, 0.99);
    assert.ok(p99 < 50, `health p99 is ${p99.toFixed(1)} ms, the poller's own timers were up to ${lateness} ms late at p99`);
  });

  it('keeps memory bounded and responds', async () => {
    const grownMiB = (rssAfterKiB - rssBeforeKiB) / 1024;
    assert.ok(grownMiB < 64, `daemon RSS grew by ${grownMiB.toFixed(1)} MiB`);
    process.kill(daemonPid, 0);
    const listed = await host.cli('vm', 'list', '-o', 'json');
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(JSON.parse(listed.stdout), []);
  });
});
