/**
 * Sends hostile-input corpus requests byte for byte and prints one JSON array of results. Run
 * as its own process inside a test namespace:
 *
 *   node corpus-http.js BASE_URL ENTRIES_FILE
 *
 * `http.request` keeps the request target as given, so `..` segments and %-escapes reach the
 * daemon unchanged, which `fetch` would normalize.
 */
import http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';

/** A body of `prefix`, then `fill` repeated `count` times, then `suffix`. */
export interface RepeatedBody {
  prefix: string;
  fill: string;
  count: number;
  suffix: string;
}

export interface CorpusRequest {
  id: string;
  method: string;
  /** The request target, sent as is. */
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** A value sent as JSON with content-type application/json. */
  json?: unknown;
  repeat?: RepeatedBody;
  /** An exact status, a list of accepted statuses, or a class such as "4xx". */
  expect: number | number[] | string;
  /** A closed connection without a response also counts as rejected. */
  closeAllowed?: boolean;
  /** A known bug that makes this entry fail today. */
  todo?: string;
}

export interface CorpusResult {
  id: string;
  /** 0 when no response arrived. */
  status: number;
  /** Response headers with lower-case names. */
  headers: Record<string, string>;
  /** The response body, cut at `bodyLimit` characters. */
  body: string;
  /** Error code of the connection when no response arrived. */
  error?: string;
}

const bodyLimit = 256 * 1024;
/** The error of a socket request that the daemon closed before a response arrived. */
export const closedWithoutResponse = 'closed without a response';
/** Bodies larger than this go over a plain socket, see sendOverSocket. */
const socketBodyBytes = 256 * 1024;
const timeoutMs = 15_000;

/** Returns the request body bytes and the headers it needs. */
export function requestBody(entry: CorpusRequest): { body: Buffer | undefined; headers: Record<string, string> } {
  const headers = { ...entry.headers };
  if (entry.json !== undefined) {
    headers['content-type'] ??= 'application/json';
    return { body: Buffer.from(JSON.stringify(entry.json)), headers };
  }
  if (entry.repeat) {
    const { prefix, fill, count, suffix } = entry.repeat;
    return { body: Buffer.from(prefix + fill.repeat(count) + suffix), headers };
  }
  return { body: entry.body === undefined ? undefined : Buffer.from(entry.body), headers };
}

/**
 * Sends one request on a new connection. A daemon that rejects a large body may close the
 * connection before the upload ends, so a response that arrived counts even when the upload
 * then fails.
 */
function send(base: URL, entry: CorpusRequest): Promise<CorpusResult> {
  const { body, headers } = requestBody(entry);
  if (body !== undefined) headers['content-length'] = String(body.length);
  if (body !== undefined && body.length > socketBodyBytes) return sendOverSocket(base, entry, body, headers);
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: CorpusResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const request = http.request({
      host: base.hostname, port: base.port, method: entry.method, path: entry.path, headers, agent: false,
      // The corpus sends header values with control characters on purpose.
      insecureHTTPParser: true,
    }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        if (text.length < bodyLimit) text += chunk;
      });
      const done = () => finish({
        id: entry.id,
        status: response.statusCode ?? 0,
        headers: Object.fromEntries(Object.entries(response.headers).map(([name, value]) => [name, Array.isArray(value) ? value.join(', ') : value ?? ''])),
        body: text.slice(0, bodyLimit),
      });
      response.on('end', done);
      response.on('error', done);
      response.on('aborted', done);
    });
    const timer = setTimeout(() => {
      request.destroy();
      finish({ id: entry.id, status: 0, headers: {}, body: '', error: 'timeout' });
    }, timeoutMs);
    request.on('error', (error: NodeJS.ErrnoException) => {
      // A response may still be on its way after the server stopped reading the upload.
      setTimeout(() => finish({ id: entry.id, status: 0, headers: {}, body: '', error: error.code ?? error.message }), 1_000);
    });
    request.end(body);
  });
}

/**
 * Sends a large body over a plain TCP socket and reads until the daemon closes it. When the
 * daemon rejects the body early and closes, `http.request` fails with EPIPE and drops the
 * response that already arrived. Here write errors are ignored and the response is parsed
 * from what was read.
 */
function sendOverSocket(base: URL, entry: CorpusRequest, body: Buffer, headers: Record<string, string>): Promise<CorpusResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: base.hostname, port: Number(base.port) });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => { /* EPIPE or ECONNRESET after the daemon closed: read what arrived */ });
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      const headerEnd = text.indexOf('\r\n\r\n');
      const statusMatch = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (!statusMatch?.[1] || headerEnd < 0) {
        resolve({ id: entry.id, status: 0, headers: {}, body: '', error: closedWithoutResponse });
        return;
      }
      const responseHeaders: Record<string, string> = {};
      for (const line of text.slice(0, headerEnd).split('\r\n').slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) responseHeaders[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const length = Number(responseHeaders['content-length'] ?? Number.NaN);
      const rest = text.slice(headerEnd + 4);
      resolve({ id: entry.id, status: Number(statusMatch[1]), headers: responseHeaders, body: Number.isNaN(length) ? rest : rest.slice(0, length) });
    });
    const head = [`${entry.method} ${entry.path} HTTP/1.1`, `host: ${base.host}`, 'connection: close',
      ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`), '', ''].join('\r\n');
    socket.write(head);
    socket.end(body);
  });
}

const [baseUrl, entriesFile] = process.argv.slice(2);
if (baseUrl !== undefined && entriesFile !== undefined) {
  const entries = JSON.parse(readFileSync(entriesFile, 'utf8')) as CorpusRequest[];
  const base = new URL(baseUrl);
  const results: CorpusResult[] = [];
  for (const entry of entries) {
    try {
      results.push(await send(base, entry));
    } catch (error) {
      // http.request throws at once on targets or headers that Node itself rejects.
      results.push({ id: entry.id, status: 0, headers: {}, body: '', error: `client rejected the request: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` });
    }
  }
  process.stdout.write(`${JSON.stringify(results)}\n`);
}
