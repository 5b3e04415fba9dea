import { spawn } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';

/** One process run: wall time from spawn to the close of its output streams. */
export interface TimedProcess {
  ms: number;
  code: number;
  stdout: string;
  stderr: string;
}

/** Returns the environment for child processes, without variables that point the CLI at another daemon. */
export function childEnvironment(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.SISTEMO_DAEMON_URL;
  delete env.HOST_API_KEY;
  return env;
}

/**
 * Runs argv and times it from just before spawn until its stdout and stderr close.
 * Throws with the command's stderr when it exits non-zero.
 */
export function timeProcess(argv: readonly string[], options: { allowFailure?: boolean } = {}): Promise<TimedProcess> {
  const [command, ...args] = argv;
  if (!command) throw new Error('Missing command: timeProcess got an empty argv');
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnvironment() });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const result = { ms, code: code ?? -1, stdout, stderr };
      if (result.code !== 0 && !options.allowFailure) {
        reject(new Error(`${argv.join(' ')} exited ${result.code}: ${stderr.trim().slice(-2000)}`));
        return;
      }
      resolve(result);
    });
  });
}

/** One HTTP exchange with the daemon, timed from the request until the whole body is read. */
export interface TimedResponse {
  ms: number;
  status: number;
  body: string;
}

/**
 * Sends one HTTP request over the daemon's Unix socket on a new connection (no keep-alive),
 * as a fresh CLI process would. Throws on a status of 400 or more.
 */
export function timeApiRequest(socketPath: string, method: string, urlPath: string, body?: unknown): Promise<TimedResponse> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    const request = http.request({ socketPath, method, path: urlPath, headers, agent: false }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => { text += chunk; });
      response.on('end', () => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        const status = response.statusCode ?? 0;
        if (status >= 400) {
          reject(new Error(`${method} ${urlPath} returned HTTP ${status}: ${text.slice(0, 2000)}`));
          return;
        }
        resolve({ ms, status, body: text });
      });
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(payload);
  });
}

/** Returns the median of a non-empty list: the mean of the two middle values for an even count. */
export function median(samples: readonly number[]): number {
  if (samples.length === 0) throw new Error('Cannot take the median of an empty list of samples');
  const sorted = [...samples].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Returns the 1-minute load average of the host (from /proc/loadavg on Linux). */
export function loadAverage(): number {
  return Number(os.loadavg()[0]?.toFixed(2));
}
