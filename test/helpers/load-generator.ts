/**
 * A bounded HTTP load generator, run as its own process inside a test namespace:
 *
 *   node load-generator.js '{"mode":"flood",...}'   sends requests at a fixed rate
 *   node load-generator.js '{"mode":"poll",...}'    sends one request per interval and times it
 *
 * It prints one JSON document (FloodReport or PollReport) on stdout and exits. Both modes stop
 * after `durationMs`, then wait at most `drainMs` for responses still in flight.
 */
import http from 'node:http';

export interface FloodOptions {
  mode: 'flood';
  url: string;
  /** Source address of every connection, so the daemon rate-limits them as one client. */
  localAddress: string;
  requestsPerSecond: number;
  durationMs: number;
  drainMs: number;
  /** Keep-alive connections in the pool. */
  connections: number;
}

export interface PollOptions {
  mode: 'poll';
  url: string;
  localAddress: string;
  intervalMs: number;
  durationMs: number;
  drainMs: number;
  headers?: Record<string, string>;
}

export interface FloodReport {
  sent: number;
  /** Responses per status code. */
  statuses: Record<string, number>;
  /** 429 responses without a Retry-After header. */
  rateLimitedWithoutRetryAfter: number;
  /** Distinct Retry-After values seen on 429 responses. */
  retryAfterValues: string[];
  /** Network errors by code, such as ECONNRESET. */
  errors: Record<string, number>;
  /** Requests still without a response when the drain time ran out. */
  unanswered: number;
  /** Time from the first request to the last one sent. */
  sendingMs: number;
}

export interface PollReport {
  /** Latency of each request that got a response, in milliseconds and in sending order. */
  latenciesMs: number[];
  /**
   * How late each of the poller's own timers fired, in milliseconds. High values mean the
   * machine gave the test processes no CPU, which delays the daemon as well.
   */
  timerLatenessMs: number[];
  statuses: Record<string, number>;
  errors: Record<string, number>;
  unanswered: number;
}

function increment(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

/** Sends one GET and resolves with its status and Retry-After header. The body is read and dropped. */
function get(url: string, agent: http.Agent, headers: Record<string, string>): Promise<{ status: number; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: 'GET', agent, headers }, (response) => {
      response.resume();
      response.on('end', () => {
        const retryAfter = response.headers['retry-after'];
        resolve({ status: response.statusCode ?? 0, retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined });
      });
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}

function errorCode(error: unknown): string {
  return (error as { code?: string }).code ?? (error as Error).message ?? String(error);
}

/** Waits until `pending` reaches zero or `drainMs` passes, and returns how many are still pending. */
async function drain(pending: () => number, drainMs: number): Promise<number> {
  const deadline = Date.now() + drainMs;
  while (pending() > 0 && Date.now() < deadline) await new Promise((done) => setTimeout(done, 20));
  return pending();
}

async function flood(options: FloodOptions): Promise<FloodReport> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections, localAddress: options.localAddress });
  const report: FloodReport = { sent: 0, statuses: {}, rateLimitedWithoutRetryAfter: 0, retryAfterValues: [], errors: {}, unanswered: 0, sendingMs: 0 };
  const retryAfterValues = new Set<string>();
  const total = Math.round((options.requestsPerSecond * options.durationMs) / 1000);
  let pending = 0;
  const started = Date.now();

  const sendOne = () => {
    report.sent++;
    pending++;
    get(options.url, agent, {})
      .then(({ status, retryAfter }) => {
        increment(report.statuses, String(status));
        if (status === 429) {
          if (retryAfter === undefined) report.rateLimitedWithoutRetryAfter++;
          else retryAfterValues.add(retryAfter);
        }
      })
      .catch((error: unknown) => increment(report.errors, errorCode(error)))
      .finally(() => { pending--; });
  };

  // Each tick sends the requests that the schedule owes by now, so a late timer catches up
  // instead of lowering the rate.
  await new Promise<void>((done) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((Date.now() - started) * options.requestsPerSecond) / 1000));
      while (report.sent < due) sendOne();
      if (report.sent >= total) {
        clearInterval(timer);
        done();
      }
    }, 5);
  });
  report.sendingMs = Date.now() - started;
  report.unanswered = await drain(() => pending, options.drainMs);
  report.retryAfterValues = [...retryAfterValues];
  agent.destroy();
  return report;
}

async function poll(options: PollOptions): Promise<PollReport> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4, localAddress: options.localAddress });
  const report: PollReport = { latenciesMs: [], timerLatenessMs: [], statuses: {}, errors: {}, unanswered: 0 };
  const latencies: (number | undefined)[] = [];
  let pending = 0;
  const started = Date.now();

  await new Promise<void>((done) => {
    let expectedAt = Date.now();
    const tick = () => {
      report.timerLatenessMs.push(Date.now() - expectedAt);
      expectedAt = Date.now() + options.intervalMs;
      if (Date.now() - started >= options.durationMs) {
        done();
        return;
      }
      const index = latencies.push(undefined) - 1;
      const sentAt = process.hrtime.bigint();
      pending++;
      get(options.url, agent, options.headers ?? {})
        .then(({ status }) => {
          latencies[index] = Number(process.hrtime.bigint() - sentAt) / 1e6;
          increment(report.statuses, String(status));
        })
        .catch((error: unknown) => increment(report.errors, errorCode(error)))
        .finally(() => { pending--; });
      setTimeout(tick, options.intervalMs);
    };
    tick();
  });
  report.unanswered = await drain(() => pending, options.drainMs);
  report.latenciesMs = latencies.filter((value): value is number => value !== undefined);
  agent.destroy();
  return report;
}

const [argument] = process.argv.slice(2);
if (argument !== undefined) {
  const options = JSON.parse(argument) as FloodOptions | PollOptions;
  const report = options.mode === 'flood' ? await flood(options) : await poll(options);
  process.stdout.write(`${JSON.stringify(report)}\n`);
}
