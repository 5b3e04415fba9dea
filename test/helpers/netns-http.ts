import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestHost } from './host.js';

export interface HttpRequest {
  method?: string;
  url: string;
  headers?: Record<string, string>;
  /** Request body, sent as is. A JSON body also needs a content-type header. */
  body?: string;
}

export interface HttpResponse {
  status: number;
  /** Response headers with lower-case names. */
  headers: Record<string, string>;
  body: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
  /** Milliseconds since the script started, when the response arrived. */
  atMs: number;
}

/**
 * One step of a request script: a request, requests sent all at once, or a pause. Steps run in
 * order inside one process, so the time between them is not stretched by process starts.
 */
export type HttpStep = { request: HttpRequest } | { parallel: HttpRequest[] } | { sleepMs: number };

// Runs inside the namespace with `node --input-type=module -e`. It reads the steps from the
// file in argv[1] and prints one JSON array with one array of responses per step.
const script = `
import { readFileSync } from 'node:fs';
const steps = JSON.parse(readFileSync(process.argv[1], 'utf8'));
const started = Date.now();
async function send(request) {
  const response = await fetch(request.url, { method: request.method ?? 'GET', headers: request.headers, body: request.body });
  const body = await response.text();
  let json;
  try { json = JSON.parse(body); } catch { json = undefined; }
  return { status: response.status, headers: Object.fromEntries(response.headers), body, json, atMs: Date.now() - started };
}
const results = [];
for (const step of steps) {
  if ('sleepMs' in step) { await new Promise((done) => setTimeout(done, step.sleepMs)); results.push([]); }
  else if ('parallel' in step) results.push(await Promise.all(step.parallel.map(send)));
  else results.push([await send(step.request)]);
}
process.stdout.write(JSON.stringify(results));
`;

/** Runs HTTP steps from inside the host's network namespace and returns the responses of each step. */
export async function runHttpSteps(host: TestHost, steps: HttpStep[]): Promise<HttpResponse[][]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sistemo-http-steps-'));
  try {
    const stepsFile = path.join(dir, 'steps.json');
    await writeFile(stepsFile, JSON.stringify(steps));
    const result = await host.inNetns(['node', '--input-type=module', '-e', script, stepsFile]);
    if (result.code !== 0) throw new Error(`HTTP script in ${host.netns} exited ${result.code}: ${result.stderr}`);
    return JSON.parse(result.stdout) as HttpResponse[][];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Sends requests one after another from inside the namespace and returns their responses. */
export async function fetchInNetns(host: TestHost, requests: HttpRequest[]): Promise<HttpResponse[]> {
  const results = await runHttpSteps(host, requests.map((request) => ({ request })));
  return results.map((responses) => {
    const [response] = responses;
    if (!response) throw new Error('the HTTP script returned no response for a request');
    return response;
  });
}

/** Sends one request from inside the namespace. */
export async function fetchOne(host: TestHost, request: HttpRequest): Promise<HttpResponse> {
  const [response] = await fetchInNetns(host, [request]);
  if (!response) throw new Error(`no response for ${request.method ?? 'GET'} ${request.url}`);
  return response;
}

/** Returns a POST request with a JSON body. */
export function postJson(url: string, value: unknown): HttpRequest {
  return { method: 'POST', url, headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) };
}
