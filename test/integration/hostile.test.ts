import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { closedWithoutResponse, type CorpusRequest, type CorpusResult } from '../helpers/corpus-http.js';
import { killDaemonAndWait } from '../helpers/daemon-stop.js';
import { TestHost, repoRoot, type CliResult } from '../helpers/host.js';

interface CliEntry {
  id: string;
  args: string[];
  env?: Record<string, string>;
  expectExit: number;
  /** A known bug that makes this entry fail today. */
  todo?: string;
}

const corpusDir = path.join(repoRoot, 'test', 'corpus');
const httpCorpus = JSON.parse(readFileSync(path.join(corpusDir, 'http.json'), 'utf8')) as CorpusRequest[];
const cliCorpus = JSON.parse(readFileSync(path.join(corpusDir, 'cli.json'), 'utf8')) as CliEntry[];
const sender = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'helpers', 'corpus-http.js');
const cliPath = path.join(repoRoot, 'bin', 'sistemo');

const baseUrl = 'http://127.0.0.1:7777';
const batchSize = 100;
const cliConcurrency = 3;
// Traversal payloads in the corpus carry this marker in their names.
const marker = 'hostile-marker';

/** Lists every path under a directory, relative to it. */
async function listTree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true });
  return entries.map(String).sort();
}

/** Lists the names in a directory and one level below it; unreadable entries are skipped. */
async function listTwoLevels(root: string): Promise<Set<string>> {
  const names = new Set<string>();
  for (const entry of await readdir(root, { withFileTypes: true })) {
    names.add(entry.name);
    if (!entry.isDirectory()) continue;
    const children = await readdir(path.join(root, entry.name)).catch(() => [] as string[]);
    for (const child of children) names.add(path.join(entry.name, child));
  }
  return names;
}

/** Returns whether a path that appeared during the run looks like a corpus payload turned into a file. */
function looksLikePayload(relative: string): boolean {
  const base = path.basename(relative);
  return relative.includes(marker) || base === 'etc' || base === 'passwd' || base.includes('..') || base.includes('<');
}

function statusMatches(status: number, expect: CorpusRequest['expect']): boolean {
  if (typeof expect === 'number') return status === expect;
  if (Array.isArray(expect)) return expect.includes(status);
  const statusClass = /^([1-5])xx$/.exec(expect)?.[1];
  if (!statusClass) throw new Error(`invalid expect value ${JSON.stringify(expect)}`);
  return Math.floor(status / 100) === Number(statusClass);
}

/** Parses a JSON body, or returns undefined when it is not JSON. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Returns the error object of an error body, or a reason why the body does not have that shape. */
function errorOf(value: unknown): { code: unknown; message: unknown } | string {
  if (typeof value !== 'object' || value === null) return 'the body is not a JSON object';
  const keys = Object.keys(value);
  if (keys.length !== 1 || keys[0] !== 'error') return `the body has keys ${JSON.stringify(keys)}, expected only "error"`;
  const error = (value as { error: unknown }).error;
  if (typeof error !== 'object' || error === null) return '"error" is not an object';
  return error as { code: unknown; message: unknown };
}

// Text that shows a message leaked a stack trace or a tool's raw output.
const leakPatterns = [/\n/, /\bat .+:\d+:\d+/, /node:internal/, /\/dist\//, /mkfs|e2fsck|debugfs|resize2fs|qemu-/i, /Command failed/, /SQLITE_/];

describe('hostile-input corpus', { timeout: 115_000 }, () => {
  let host: TestHost;
  let daemonPid: number;
  const results = new Map<string, CorpusResult>();
  const healthAfterBatch: { batch: number; status: number; alive: boolean }[] = [];
  const cliResults = new Map<string, CliResult>();
  let dataBefore: string[];
  let dataAfter: string[];
  const outsideBefore = new Map<string, Set<string>>();
  const outsideAfter = new Map<string, Set<string>>();
  const outsideRoots = ['/tmp', '/var/tmp'];

  function daemonAlive(): boolean {
    try {
      process.kill(daemonPid, 0);
      return true;
    } catch {
      return false;
    }
  }

  async function runCli(entry: CliEntry): Promise<CliResult> {
    // `env -u` keeps a SISTEMO_DAEMON_URL or key from the calling shell out of the run.
    const env = Object.entries(entry.env ?? {}).map(([name, value]) => `${name}=${value}`);
    return host.inNetns(['env', '-u', 'SISTEMO_DAEMON_URL', '-u', 'HOST_API_KEY', ...env, 'node', cliPath, '--data-dir', host.dataDir, ...entry.args]);
  }

  before(async () => {
    // Rate limiting is off, so no corpus request gets 429 in place of its real status.
    host = await TestHost.create({ config: { rate_limit_rps: 0 } });
    await host.startDaemon();
    const pid = host.daemon?.pid;
    if (pid === undefined) throw new Error('the daemon has no pid');
    daemonPid = pid;
    dataBefore = await listTree(host.dataDir);
    for (const root of outsideRoots) outsideBefore.set(root, await listTwoLevels(root));

    const scratch = await mkdtemp(path.join(tmpdir(), 'sistemo-hostile-'));
    try {
      for (let start = 0; start < httpCorpus.length; start += batchSize) {
        const batch = httpCorpus.slice(start, start + batchSize);
        const batchFile = path.join(scratch, `batch-${start}.json`);
        const health: CorpusRequest = { id: `health-${start}`, method: 'GET', path: '/api/v1/health', expect: 200 };
        await writeFile(batchFile, JSON.stringify([...batch, health]));
        const run = await host.inNetns(['node', sender, baseUrl, batchFile]);
        if (run.code !== 0) throw new Error(`corpus sender exited ${run.code}: ${run.stderr}`);
        const batchResults = JSON.parse(run.stdout) as CorpusResult[];
        const healthResult = batchResults.pop();
        for (const result of batchResults) results.set(result.id, result);
        healthAfterBatch.push({ batch: start / batchSize, status: healthResult?.status ?? 0, alive: daemonAlive() });
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }

    let next = 0;
    const worker = async () => {
      while (next < cliCorpus.length) {
        const entry = cliCorpus[next++];
        if (entry) cliResults.set(entry.id, await runCli(entry));
      }
    };
    await Promise.all(Array.from({ length: cliConcurrency }, worker));

    dataAfter = await listTree(host.dataDir);
    for (const root of outsideRoots) outsideAfter.set(root, await listTwoLevels(root));
  });

  after(async () => {
    if (!host) return;
    await killDaemonAndWait(host);
    await host.cleanup();
  });

  it('corpus is large enough', () => {
    assert.ok(httpCorpus.length >= 300, `only ${httpCorpus.length} HTTP requests`);
    assert.ok(cliCorpus.length >= 40, `only ${cliCorpus.length} CLI invocations`);
    assert.equal(new Set([...httpCorpus, ...cliCorpus].map((entry) => entry.id)).size, httpCorpus.length + cliCorpus.length, 'duplicate ids');
  });

  function checkAnswered(entry: CorpusRequest): void {
    const result = results.get(entry.id);
    assert.ok(result, `${entry.id}: no result`);
    if (entry.closeAllowed && result.error === closedWithoutResponse) return;
    assert.equal(result.error, undefined, `${entry.id}: ${result.error}`);
  }

  function checkNoServerError(entry: CorpusRequest): void {
    const result = results.get(entry.id);
    assert.ok((result?.status ?? 0) < 500, `${entry.id}: status ${result?.status}, body ${result?.body.slice(0, 300)}`);
  }

  function checkStatus(entry: CorpusRequest): void {
    const result = results.get(entry.id);
    if (entry.closeAllowed && result?.error === closedWithoutResponse) return;
    assert.ok(statusMatches(result?.status ?? 0, entry.expect),
      `${entry.id}: status ${result?.status}, expected ${JSON.stringify(entry.expect)}, body ${result?.body.slice(0, 300)}`);
  }

  function checkJsonResponse(entry: CorpusRequest): void {
    const result = results.get(entry.id);
    if (!result || result.status === 0) return;
    const contentType = result.headers['content-type'] ?? '';
    assert.doesNotMatch(contentType, /html/i, `${entry.id}: content-type ${contentType}`);
    assert.match(contentType, /^application\/(json|x-ndjson)\b/, `${entry.id}: content-type "${contentType}"`);
    assert.equal(result.headers['x-content-type-options'], 'nosniff', `${entry.id}: no nosniff header`);
  }

  function checkErrorShape(entry: CorpusRequest): void {
    const result = results.get(entry.id);
    if (!result || result.status < 400) return;
    const error = errorOf(parseJson(result.body));
    assert.notEqual(typeof error, 'string', `${entry.id}: ${String(error)}: ${result.body.slice(0, 300)}`);
    if (typeof error === 'string') return;
    assert.equal(typeof error.code, 'string', `${entry.id}: error.code is not a string`);
    assert.equal(typeof error.message, 'string', `${entry.id}: error.message is not a string`);
    assert.ok(String(error.message).length > 0, `${entry.id}: empty message`);
  }

  function checkMessages(entry: CorpusRequest): void {
    const result = results.get(entry.id);
    if (!result) return;
    const messages: string[] = [];
    const error = errorOf(parseJson(result.body));
    if (result.status >= 400 && typeof error !== 'string') messages.push(String(error.message));
    if (result.headers['content-type']?.startsWith('application/x-ndjson')) {
      for (const line of result.body.trim().split('\n')) {
        const streamed = errorOf({ error: (parseJson(line) as { error?: unknown } | undefined)?.error });
        if (typeof streamed !== 'string' && streamed.message !== undefined) messages.push(String(streamed.message));
      }
    }
    for (const message of messages) {
      for (const pattern of leakPatterns) {
        assert.doesNotMatch(message, pattern, `${entry.id}: message ${JSON.stringify(message.slice(0, 300))}`);
      }
    }
  }

  const httpChecks = [checkAnswered, checkNoServerError, checkStatus, checkJsonResponse, checkErrorShape, checkMessages];
  const passingHttp = httpCorpus.filter((entry) => entry.todo === undefined);

  it('every request gets a response', () => passingHttp.forEach(checkAnswered));
  it('no request gets a 5xx', () => passingHttp.forEach(checkNoServerError));
  it('statuses match the corpus', () => passingHttp.forEach(checkStatus));
  it('every response is JSON', () => passingHttp.forEach(checkJsonResponse));
  it('rejections have the error shape', () => passingHttp.forEach(checkErrorShape));
  it('error messages are one clean line', () => passingHttp.forEach(checkMessages));

  it('streamed rejections end with an error line', () => {
    const streamed = httpCorpus.filter((entry) => entry.headers?.accept === 'application/x-ndjson');
    assert.ok(streamed.length > 0, 'the corpus has no streaming requests');
    for (const entry of streamed) {
      const result = results.get(entry.id);
      const lines = (result?.body ?? '').trim().split('\n');
      const last = parseJson(lines.at(-1) ?? '') as { type?: string; status?: number; error?: unknown } | undefined;
      assert.equal(last?.type, 'error', `${entry.id}: last line ${lines.at(-1)}`);
      assert.ok((last?.status ?? 500) < 500, `${entry.id}: streamed status ${last?.status}`);
      assert.notEqual(typeof errorOf({ error: last?.error }), 'string', `${entry.id}: streamed error shape ${lines.at(-1)}`);
    }
  });

  // Entries with a known bug run every check in a todo test per bug, so they still report.
  for (const reason of new Set(httpCorpus.map((entry) => entry.todo).filter((todo) => todo !== undefined))) {
    const entries = httpCorpus.filter((entry) => entry.todo === reason);
    it(`known bug: ${entries.length} requests`, { todo: reason }, () => {
      for (const entry of entries) httpChecks.forEach((check) => check(entry));
    });
  }

  it('daemon answers health after each batch', () => {
    assert.equal(healthAfterBatch.length, Math.ceil(httpCorpus.length / batchSize));
    for (const check of healthAfterBatch) {
      assert.equal(check.status, 200, `health after batch ${check.batch}`);
      assert.ok(check.alive, `daemon process gone after batch ${check.batch}`);
    }
  });

  function checkExitCode(entry: CliEntry): void {
    const result = cliResults.get(entry.id);
    assert.equal(result?.code, entry.expectExit, `${entry.id}: exit ${result?.code}, stderr ${JSON.stringify(result?.stderr.slice(0, 400))}`);
  }

  function checkStderrLine(entry: CliEntry): void {
    const stderr = cliResults.get(entry.id)?.stderr ?? '';
    assert.ok(stderr.endsWith('\n'), `${entry.id}: stderr ${JSON.stringify(stderr.slice(0, 400))} does not end with a newline`);
    assert.equal(stderr.trimEnd().split('\n').length, 1, `${entry.id}: stderr ${JSON.stringify(stderr.slice(0, 400))}`);
    for (const pattern of leakPatterns.slice(1)) {
      assert.doesNotMatch(stderr, pattern, `${entry.id}: stderr ${JSON.stringify(stderr.slice(0, 400))}`);
    }
  }

  const passingCli = cliCorpus.filter((entry) => entry.todo === undefined);
  it('CLI exits with the expected code', () => passingCli.forEach(checkExitCode));
  it('CLI prints one stderr line', () => passingCli.forEach(checkStderrLine));

  for (const reason of new Set(cliCorpus.map((entry) => entry.todo).filter((todo) => todo !== undefined))) {
    const entries = cliCorpus.filter((entry) => entry.todo === reason);
    it(`known CLI bug: ${entries.length} invocations`, { todo: reason }, () => {
      for (const entry of entries) {
        checkExitCode(entry);
        checkStderrLine(entry);
      }
    });
  }

  it('daemon still runs and created nothing', async () => {
    assert.ok(daemonAlive(), 'the daemon process is gone');
    for (const list of [['vm', 'list'], ['volume', 'list']]) {
      const listed = await host.cli('-o', 'json', ...list);
      assert.equal(listed.code, 0, `${list.join(' ')}: ${listed.stderr}`);
      assert.deepEqual(JSON.parse(listed.stdout), [], `${list.join(' ')} is not empty`);
    }
  });

  it('data directory gains no files', () => {
    // SQLite may add its write-ahead log and shared-memory files once the audit log is written.
    const sqliteCompanion = /\.db-(wal|shm|journal)$/;
    const added = dataAfter.filter((entry) => !dataBefore.includes(entry) && !sqliteCompanion.test(entry));
    assert.deepEqual(added, []);
  });

  it('no payload file outside the data directory', () => {
    for (const root of outsideRoots) {
      const before = outsideBefore.get(root) ?? new Set<string>();
      const added = [...(outsideAfter.get(root) ?? [])].filter((name) => !before.has(name));
      assert.deepEqual(added.filter(looksLikePayload), [], `new entries under ${root}`);
    }
  });
});
