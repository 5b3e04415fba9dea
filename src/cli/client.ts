import http from 'node:http';
import https from 'node:https';
import { SistemoError, isErrorCode, type ErrorCode } from '../errors.js';

/** The daemon address the CLI connects to: the Unix socket in the data directory, or SISTEMO_DAEMON_URL. */
export type DaemonAddress = { kind: 'socket'; path: string } | { kind: 'url'; origin: string };

/**
 * Validates SISTEMO_DAEMON_URL: http or https, a host and an optional port, nothing else. A bad
 * value is an error, never a silent fallback to the local socket.
 */
export function parseDaemonUrl(text: string): DaemonAddress {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    const masked = text.replace(/\/\/[^/@]*@/, '//***@');
    throw new SistemoError('invalid_argument', `Invalid SISTEMO_DAEMON_URL "${masked}": use http://HOST:PORT, such as http://127.0.0.1:7777`);
  }
  // The URL is shown without credentials, so a password never reaches a terminal or log.
  const shown = url.username || url.password ? `${url.protocol}//***@${url.host}` : text;
  const afterAuthority = text.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '');
  const problem =
    url.protocol !== 'http:' && url.protocol !== 'https:' ? 'the scheme must be http or https'
      : url.username || url.password ? 'credentials are not allowed (set HOST_API_KEY for the key)'
        : !url.hostname ? 'the host is missing'
          : afterAuthority.includes('?') ? `a query is not allowed`
            : afterAuthority.includes('#') ? 'a fragment is not allowed'
              : afterAuthority !== '' && afterAuthority !== '/' ? `a path is not allowed ("${afterAuthority}")`
                : undefined;
  if (problem) {
    throw new SistemoError('invalid_argument', `Invalid SISTEMO_DAEMON_URL "${shown}": ${problem}, use http://HOST:PORT such as http://127.0.0.1:7777`);
  }
  return { kind: 'url', origin: url.origin };
}

interface RawResponse {
  statusCode: number;
  body: http.IncomingMessage;
}

/** The daemon went away mid-request; the operation may have finished or will be recovered. */
function lostConnection(): SistemoError {
  return new SistemoError('unavailable', 'Lost the connection to the daemon: the operation may have finished, or the daemon finishes or undoes it when it starts again, see sistemo history');
}

async function readAll(body: http.IncomingMessage): Promise<string> {
  let text = '';
  body.setEncoding('utf8');
  try {
    for await (const chunk of body) text += chunk as string;
  } catch {
    throw lostConnection();
  }
  return text;
}

/**
 * Talks to the daemon's /api/v1 with Node's own http client, which speaks over a Unix socket
 * too. Errors come back as SistemoError with the daemon's code and message.
 */
export class ApiClient {
  constructor(private readonly address: DaemonAddress, private readonly apiKey?: string) {}

  private describe(): string {
    return this.address.kind === 'socket' ? this.address.path : this.address.origin;
  }

  private send(method: string, path: string, options: { body?: unknown; accept?: string } = {}): Promise<RawResponse> {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const headers: Record<string, string> = { accept: options.accept ?? 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    if (this.apiKey) headers['x-api-key'] = this.apiKey;
    return new Promise((resolve, reject) => {
      const onResponse = (response: http.IncomingMessage) => resolve({ statusCode: response.statusCode ?? 0, body: response });
      const request = this.address.kind === 'socket'
        ? http.request({ socketPath: this.address.path, path, method, headers }, onResponse)
        : (this.address.origin.startsWith('https:') ? https : http).request(new URL(path, this.address.origin), { method, headers }, onResponse);
      request.on('error', (error: NodeJS.ErrnoException) => {
        const code = error.code;
        if (code === 'ECONNRESET' || error.message === 'socket hang up') {
          reject(lostConnection());
          return;
        }
        const hint = code === 'EACCES' ? 'permission denied, run the CLI as root'
          : code === 'ENOENT' || code === 'ECONNREFUSED' ? 'start it with sudo sistemo up'
            : error.message;
        reject(new SistemoError('unavailable', `Cannot reach the Sistemo daemon at ${this.describe()}: ${hint}`));
      });
      request.end(payload);
    });
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.send(method, path, { body });
    const text = await readAll(response.body);
    if (response.statusCode >= 400) throw errorFrom(response.statusCode, text);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Calls a long operation and reports its progress lines as they arrive. */
  async callWithProgress<T>(method: string, path: string, body: unknown, onProgress: (message: string) => void): Promise<T> {
    const response = await this.send(method, path, { body, accept: 'application/x-ndjson' });
    if (response.statusCode >= 400) throw errorFrom(response.statusCode, await readAll(response.body));
    let buffer = '';
    let outcome: { type: string; result?: T; status?: number; error?: { code: string; message: string } } | undefined;
    response.body.setEncoding('utf8');
    const chunks = (async function* () {
      try {
        for await (const chunk of response.body) yield chunk as string;
      } catch {
        throw lostConnection();
      }
    })();
    for await (const chunk of chunks) {
      buffer += chunk as string;
      let newline = buffer.indexOf('\n');
      while (newline >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        newline = buffer.indexOf('\n');
        if (!line.trim()) continue;
        const message = JSON.parse(line) as NonNullable<typeof outcome> & { message?: string };
        if (message.type === 'progress' && message.message) onProgress(message.message);
        else outcome = message;
      }
    }
    if (!outcome) throw lostConnection();
    if (outcome.type === 'error') {
      const code: ErrorCode = isErrorCode(outcome.error?.code) ? outcome.error.code : 'internal';
      throw new SistemoError(code, outcome.error?.message ?? 'The operation failed');
    }
    return outcome.result as T;
  }

  async close(): Promise<void> {
    // Requests use no keep-alive agent, so there is nothing to release.
  }
}

function errorFrom(status: number, text: string): SistemoError {
  let code: ErrorCode = status === 404 ? 'not_found' : status === 409 ? 'conflict' : status === 400 ? 'invalid_argument' : 'internal';
  let message = `The daemon returned HTTP ${status}`;
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
    if (isErrorCode(parsed.error?.code)) code = parsed.error.code;
    if (parsed.error?.message) message = parsed.error.message;
  } catch {
    // Not our error shape: keep the status-based message.
  }
  return new SistemoError(code, message);
}
