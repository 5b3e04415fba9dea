import { Agent, request as undiciRequest } from 'undici';
import { SistemoError, isErrorCode, type ErrorCode } from '../errors.js';

/** Where the CLI finds the daemon: the Unix socket in the data directory, or SISTEMO_DAEMON_URL. */
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
    throw new SistemoError('invalid_argument', `Invalid SISTEMO_DAEMON_URL "${text}": use http://HOST:PORT, such as http://127.0.0.1:7777`);
  }
  // The URL is shown without credentials, so a password never reaches a terminal or log.
  const shown = url.username || url.password ? `${url.protocol}//***@${url.host}` : text;
  const afterAuthority = text.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '');
  const problem =
    url.protocol !== 'http:' && url.protocol !== 'https:' ? 'the scheme must be http or https'
      : url.username || url.password ? 'credentials are not allowed, use HOST_API_KEY'
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

export interface ApiResponse<T> {
  status: number;
  body: T;
}

/** Talks to the daemon's /api/v1. Errors come back as SistemoError with the daemon's code and message. */
export class ApiClient {
  private readonly dispatcher: Agent;
  private readonly origin: string;

  constructor(private readonly address: DaemonAddress, private readonly apiKey?: string) {
    this.dispatcher = address.kind === 'socket'
      ? new Agent({ connect: { socketPath: address.path }, headersTimeout: 0, bodyTimeout: 0 })
      : new Agent({ headersTimeout: 0, bodyTimeout: 0 });
    this.origin = address.kind === 'socket' ? 'http://localhost' : address.origin;
  }

  private describe(): string {
    return this.address.kind === 'socket' ? this.address.path : this.address.origin;
  }

  private async send(method: string, path: string, options: { body?: unknown; accept?: string } = {}) {
    const headers: Record<string, string> = { accept: options.accept ?? 'application/json' };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (this.apiKey) headers['x-api-key'] = this.apiKey;
    try {
      return await undiciRequest(`${this.origin}${path}`, {
        method: method as 'GET',
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        dispatcher: this.dispatcher,
      });
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES' || code === 'UND_ERR_SOCKET') {
        const hint = code === 'EACCES' ? 'permission denied, run the CLI as root' : 'start it with sudo sistemo up';
        throw new SistemoError('unavailable', `Cannot reach the Sistemo daemon at ${this.describe()}: ${hint}`);
      }
      throw new SistemoError('unavailable', `Cannot reach the Sistemo daemon at ${this.describe()}: ${(error as Error).message}`);
    }
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.send(method, path, { body });
    const text = await response.body.text();
    if (response.statusCode >= 400) throw errorFrom(response.statusCode, text);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Calls a long operation and reports its progress lines as they arrive. */
  async callWithProgress<T>(method: string, path: string, body: unknown, onProgress: (message: string) => void): Promise<T> {
    const response = await this.send(method, path, { body, accept: 'application/x-ndjson' });
    if (response.statusCode >= 400) throw errorFrom(response.statusCode, await response.body.text());
    let buffer = '';
    let outcome: { type: string; result?: T; status?: number; error?: { code: string; message: string } } | undefined;
    for await (const chunk of response.body) {
      buffer += chunk.toString();
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
    if (!outcome) throw new SistemoError('unavailable', 'The daemon closed the connection before the operation finished: see sistemo history and the daemon log');
    if (outcome.type === 'error') {
      const code: ErrorCode = isErrorCode(outcome.error?.code) ? outcome.error.code : 'internal';
      throw new SistemoError(code, outcome.error?.message ?? 'The operation failed');
    }
    return outcome.result as T;
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

function errorFrom(status: number, text: string): SistemoError {
  let code: ErrorCode = status === 404 ? 'not_found' : status === 409 ? 'conflict' : status === 400 ? 'invalid_argument' : 'internal';
  let message = `The daemon answered with HTTP ${status}`;
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
    if (isErrorCode(parsed.error?.code)) code = parsed.error.code;
    if (parsed.error?.message) message = parsed.error.message;
  } catch {
    // Not our error shape: keep the status-based message.
  }
  return new SistemoError(code, message);
}
