import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { TestHost, repoRoot } from '../helpers/host.js';
import { fetchInNetns, fetchOne, postJson, runHttpSteps, type HttpRequest, type HttpResponse } from '../helpers/netns-http.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const api = 'http://127.0.0.1:7777/api/v1';
const cliPath = path.join(repoRoot, 'bin', 'sistemo');

/** Asserts the documented error shape: {"error": {"code", "message"}} with a given status. */
function assertError(response: HttpResponse, status: number, code: string | undefined, label: string): string {
  assert.equal(response.status, status, `${label}: status ${response.status}, body ${response.body}`);
  const error = (response.json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  assert.equal(typeof error?.code, 'string', `${label}: no error code in ${response.body}`);
  assert.equal(typeof error?.message, 'string', `${label}: no error message in ${response.body}`);
  if (code !== undefined) assert.equal(error?.code, code, `${label}: ${response.body}`);
  return String(error?.message);
}

function assertSecurityHeaders(response: HttpResponse, label: string): void {
  assert.equal(response.headers['x-content-type-options'], 'nosniff', `${label}: x-content-type-options`);
  assert.ok(response.headers['content-security-policy'], `${label}: content-security-policy is missing`);
  assert.ok(response.headers['x-frame-options'], `${label}: x-frame-options is missing`);
}

async function dumpe2fsHeader(file: string): Promise<{ blockCount: number; blockSize: number }> {
  const { stdout } = await execFileAsync('dumpe2fs', ['-h', file]);
  return {
    blockCount: Number(/^Block count:\s+(\d+)/m.exec(stdout)?.[1]),
    blockSize: Number(/^Block size:\s+(\d+)/m.exec(stdout)?.[1]),
  };
}

/**
 * Sends a signal to the host's daemon and returns its exit code (null when a signal ended it).
 * TestHost.waitDaemonExit runs only once the process is gone, so its timeout timer is short and
 * does not keep this test process alive for two minutes after the last test.
 */
async function stopDaemon(host: TestHost, signal: NodeJS.Signals, timeoutMs = 60_000): Promise<number | null | undefined> {
  const child = host.daemon;
  if (!child?.pid) return undefined;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // `ip netns exec` execs the daemon in place, so the child's pid is the daemon's.
    process.kill(child.pid, signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`daemon pid ${child.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([exited, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }
  return host.waitDaemonExit(1000);
}

/** Kills the daemon if it still runs, then removes the host's namespace and data directory. */
async function disposeHost(host: TestHost | undefined): Promise<void> {
  if (!host) return;
  await stopDaemon(host, 'SIGKILL').catch(() => undefined);
  await host.cleanup();
}

describe('daemon API', () => {
  let host: TestHost;
  const volumesDir = () => path.join(host.dataDir, 'volumes');

  before(async () => {
    host = await TestHost.create();
    await host.startDaemon();
  });

  after(async () => {
    await disposeHost(host);
  });

  describe('CLI against the daemon', () => {
    it('volume list -o json prints []', async () => {
      const result = await host.cli('-o', 'json', 'volume', 'list');
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), []);
    });

    it('volume list --output json prints []', async () => {
      const result = await host.cli('volume', 'list', '--output', 'json');
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), []);
    });

    it('volume create 5 exits 2', async () => {
      const result = await host.cli('volume', 'create', '5');
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /5G/);
    });

    it('volume show nope exits 1', async () => {
      const result = await host.cli('volume', 'show', 'nope');
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /not found/);
    });

    it('volume delete without -y refuses', async () => {
      await host.ok('volume', 'create', '64M', '--name', 'keep-me');
      try {
        const result = await host.cli('volume', 'delete', 'keep-me');
        assert.equal(result.code, 1, result.stderr);
        assert.match(result.stderr, /-y/);
        const listed = JSON.parse(await host.ok('-o', 'json', 'volume', 'list')) as { name: string }[];
        assert.deepEqual(listed.map((volume) => volume.name), ['keep-me']);
      } finally {
        await host.ok('volume', 'delete', '-y', 'keep-me');
      }
    });

    for (const url of ['ftp://x', 'http://h/path', 'http://user:pw@h:7777', 'http://h:7777?x=1']) {
      it(`bad SISTEMO_DAEMON_URL ${url} fails`, async () => {
        const result = await host.inNetns(['env', `SISTEMO_DAEMON_URL=${url}`, 'node', cliPath, '--data-dir', host.dataDir, 'volume', 'list']);
        assert.notEqual(result.code, 0);
        const lines = result.stderr.trim().split('\n');
        assert.equal(lines.length, 1, result.stderr);
        assert.match(result.stderr, /SISTEMO_DAEMON_URL/);
        assert.doesNotMatch(result.stderr, /pw/);
      });
    }
  });

  describe('errors', () => {
    it('unknown VM returns 404', async () => {
      const response = await fetchOne(host, { url: `${api}/vms/nope` });
      assertError(response, 404, 'not_found', 'GET /vms/nope');
      assertSecurityHeaders(response, 'GET /vms/nope');
    });

    it('unknown route returns 404', async () => {
      const response = await fetchOne(host, { url: `${api}/no-such-route` });
      assertError(response, 404, 'not_found', 'GET /no-such-route');
      assertSecurityHeaders(response, 'GET /no-such-route');
    });

    it('bad JSON returns 400', async () => {
      const response = await fetchOne(host, { method: 'POST', url: `${api}/volumes`, headers: { 'content-type': 'application/json' }, body: '{"size": "1G",' });
      assertError(response, 400, 'invalid_argument', 'bad JSON');
      assertSecurityHeaders(response, 'bad JSON');
    });

    it('unknown body field returns 400', async () => {
      const response = await fetchOne(host, postJson(`${api}/volumes`, { size: '1G', colour: 'red' }));
      assertError(response, 400, 'invalid_argument', 'unknown field colour');
    });

    it('wrong field type returns 400', async () => {
      const responses = await fetchInNetns(host, [
        postJson(`${api}/volumes`, { size: 5 }),
        postJson(`${api}/volumes`, { size: ['1G'] }),
        postJson(`${api}/volumes`, { size: '1G', name: 7 }),
        postJson(`${api}/volumes`, ['1G']),
      ]);
      for (const response of responses) assertError(response, 400, 'invalid_argument', `wrong type: ${response.body}`);
    });

    it('oversized body is rejected without 5xx', async () => {
      const body = JSON.stringify({ size: '1G', name: 'x'.repeat(70 * 1024) });
      const response = await fetchOne(host, { method: 'POST', url: `${api}/volumes`, headers: { 'content-type': 'application/json' }, body });
      assert.ok(response.status === 413 || response.status === 400, `status ${response.status}`);
      assertError(response, response.status, undefined, 'body over 64 KiB');
      assertSecurityHeaders(response, 'body over 64 KiB');
    });

    it('bad sizes return 400 with example', async () => {
      const sizes = ['5', '0G', '-1G', '1,5G', '5Q', '99999T', 'G', '1.5.5G', ' ', '5 G B'];
      const responses = await fetchInNetns(host, sizes.map((size) => postJson(`${api}/volumes`, { size })));
      sizes.forEach((size, index) => {
        const response = responses[index];
        assert.ok(response, `no response for size "${size}"`);
        const message = assertError(response, 400, 'invalid_argument', `size "${size}"`);
        assert.match(message, /\b\d+(\.\d+)?[KMGT]\b/, `size "${size}": the message has no example size: ${message}`);
      });
    });

    it('empty size message has example', async () => {
      const response = await fetchOne(host, postJson(`${api}/volumes`, { size: '' }));
      const message = assertError(response, 400, 'invalid_argument', 'size ""');
      assert.match(message, /\b\d+(\.\d+)?[KMGT]\b/, message);
    });

    it('bad names return 400', async () => {
      const names = ['a/b', '..', '../etc', 'with space', 'bell\u0007', 'new\nline', '<script>alert(1)</script>', 'x'.repeat(300), 'x'.repeat(301), 'UPPER', '-dash', ''];
      const responses = await fetchInNetns(host, names.map((name) => postJson(`${api}/volumes`, { size: '64M', name })));
      names.forEach((name, index) => {
        const response = responses[index];
        assert.ok(response, `no response for name ${JSON.stringify(name)}`);
        assertError(response, 400, 'invalid_argument', `name ${JSON.stringify(name.slice(0, 40))}`);
      });
    });

    it('bad names in the path return 400', async () => {
      const segments = ['..%2F..%2Fetc', '%2Fetc%2Fpasswd', 'a%20b', '%3Cscript%3E'];
      const responses = await fetchInNetns(host, segments.map((segment) => ({ url: `${api}/volumes/${segment}` })));
      segments.forEach((segment, index) => {
        const response = responses[index];
        assert.ok(response, `no response for ${segment}`);
        assertError(response, 400, 'invalid_argument', `GET /volumes/${segment}`);
      });
    });

    it('rejected requests create no volume', async () => {
      const response = await fetchOne(host, { url: `${api}/volumes` });
      assert.equal(response.status, 200);
      assert.deepEqual(response.json, []);
      assert.deepEqual(await readdir(volumesDir()), []);
    });
  });

  describe('headers and description', () => {
    it('security headers on every response', async () => {
      const requests: HttpRequest[] = [
        { url: `${api}/health` },
        { url: `${api}/volumes` },
        { url: `${api}/openapi.json` },
        { url: `${api}/volumes/nope` },
        { url: `${api}/no-such-route` },
        postJson(`${api}/volumes`, { size: 'bad' }),
      ];
      const responses = await fetchInNetns(host, requests);
      requests.forEach((request, index) => {
        const response = responses[index];
        assert.ok(response, `no response for ${request.url}`);
        assertSecurityHeaders(response, `${request.method ?? 'GET'} ${request.url} (${response.status})`);
      });
    });

    it('OpenAPI description lists the routes', async () => {
      const response = await fetchOne(host, { url: `${api}/openapi.json` });
      assert.equal(response.status, 200);
      const description = response.json as { paths?: Record<string, unknown> } | undefined;
      assert.ok(description?.paths, `no paths in ${response.body.slice(0, 200)}`);
      for (const route of ['/api/v1/vms', '/api/v1/volumes', '/api/v1/volumes/{name}', '/api/v1/volumes/{name}/resize', '/api/v1/history']) {
        assert.ok(route in description.paths, `${route} is missing from the OpenAPI paths`);
      }
    });

    it('volume list matches OpenAPI schema', async () => {
      const [described, created, listed] = await fetchInNetns(host, [
        { url: `${api}/openapi.json` },
        postJson(`${api}/volumes`, { size: '64M', name: 'a1' }),
        { url: `${api}/volumes` },
      ]);
      try {
        assert.equal(created?.status, 201, created?.body);
        const paths = (described?.json as { paths: Record<string, any> }).paths;
        const schema = paths['/api/v1/volumes']?.get?.responses?.['200']?.content?.['application/json']?.schema;
        assert.equal(schema?.type, 'array');
        const required = schema.items?.required as string[] | undefined;
        const properties = Object.keys(schema.items?.properties ?? {});
        assert.ok(Array.isArray(required), 'the item schema has no required list');
        assert.ok(required.length > 0, 'the item schema has no required properties');

        const items = listed?.json as Record<string, unknown>[];
        assert.equal(items.length, 1);
        const item = items[0] ?? {};
        for (const name of required) assert.ok(name in item, `required property ${name} is missing from ${JSON.stringify(item)}`);
        for (const name of Object.keys(item)) assert.ok(properties.includes(name), `property ${name} is not documented`);
      } finally {
        await fetchOne(host, { method: 'DELETE', url: `${api}/volumes/a1` });
      }
    });
  });

  describe('volume lifecycle', () => {
    let volumeFile: string;

    it('create 64M returns 201', async () => {
      const response = await fetchOne(host, postJson(`${api}/volumes`, { size: '64M', name: 'life' }));
      assert.equal(response.status, 201, response.body);
      const view = response.json as { name: string; id: string; size_bytes: number; status: string; type: string };
      assert.equal(view.name, 'life');
      assert.equal(view.size_bytes, 64 * MiB);
      assert.equal(view.status, 'detached');
      assert.equal(view.type, 'data');
      volumeFile = path.join(volumesDir(), `${view.id}.img`);
      assert.equal((await stat(volumeFile)).size, 64 * MiB);
    });

    it('create same name returns 409', async () => {
      const response = await fetchOne(host, postJson(`${api}/volumes`, { size: '64M', name: 'life' }));
      assertError(response, 409, 'conflict', 'duplicate name');
    });

    it('list and show return the volume', async () => {
      const [listed, shown] = await fetchInNetns(host, [{ url: `${api}/volumes` }, { url: `${api}/volumes/life` }]);
      assert.equal(listed?.status, 200);
      assert.deepEqual((listed?.json as { name: string }[]).map((volume) => volume.name), ['life']);
      assert.equal(shown?.status, 200);
      assert.equal((shown?.json as { name: string }).name, 'life');
    });

    it('resize to 128M grows file and filesystem', async () => {
      const response = await fetchOne(host, postJson(`${api}/volumes/life/resize`, { size: '128M' }));
      assert.equal(response.status, 200, response.body);
      assert.equal((response.json as { size_bytes: number }).size_bytes, 128 * MiB);
      assert.equal((await stat(volumeFile)).size, 128 * MiB);
      const header = await dumpe2fsHeader(volumeFile);
      assert.equal(header.blockCount * header.blockSize, 128 * MiB);
    });

    it('resized volume passes e2fsck', async () => {
      const result = await execFileAsync('e2fsck', ['-fn', volumeFile]).then(() => 0, (error: { code?: number }) => error.code);
      assert.equal(result, 0);
    });

    it('resize to 64M is rejected', async () => {
      const response = await fetchOne(host, postJson(`${api}/volumes/life/resize`, { size: '64M' }));
      const message = assertError(response, 400, 'invalid_argument', 'shrink');
      assert.match(message, /64MB/);
      assert.match(message, /128MB/);
      assert.equal((await stat(volumeFile)).size, 128 * MiB);
    });

    it('second resize to 192M succeeds', async () => {
      const response = await fetchOne(host, postJson(`${api}/volumes/life/resize`, { size: '192M' }));
      assert.equal(response.status, 200, response.body);
    });

    it('delete returns 204 and removes file', async () => {
      const response = await fetchOne(host, { method: 'DELETE', url: `${api}/volumes/life` });
      assert.equal(response.status, 204, response.body);
      assertSecurityHeaders(response, 'DELETE /volumes/life');
      assert.equal(existsSync(volumeFile), false);
      const afterDelete = await fetchOne(host, { url: `${api}/volumes/life` });
      assertError(afterDelete, 404, 'not_found', 'GET deleted volume');
    });

    it('history records ok and failed actions', async () => {
      const response = await fetchOne(host, { url: `${api}/history?target=life&limit=100` });
      assert.equal(response.status, 200, response.body);
      const entries = response.json as { action: string; result: string; target: string; details: Record<string, unknown>; error: string | null }[];
      const find = (action: string, result: string) => entries.filter((entry) => entry.action === action && entry.result === result);

      assert.equal(find('volume.create', 'ok').length, 1);
      assert.equal(find('volume.create', 'failed').length, 1);
      assert.equal(find('volume.delete', 'ok').length, 1);
      const grown = find('volume.resize', 'ok').find((entry) => entry.details.before_bytes === 64 * MiB);
      assert.ok(grown, 'no successful volume.resize entry');
      assert.equal(grown.details.before_bytes, 64 * MiB);
      assert.equal(grown.details.after_bytes, 128 * MiB);
      const rejectedShrink = find('volume.resize', 'failed').find((entry) => entry.details.after_bytes === 64 * MiB);
      assert.ok(rejectedShrink, 'no failed volume.resize entry for the shrink');
      assert.equal(rejectedShrink.details.before_bytes, 128 * MiB);
      assert.match(rejectedShrink.error ?? '', /not larger/);
    });
  });

  describe('shutdown', () => {
    it('SIGTERM exits daemon with 0', async () => {
      assert.equal(await stopDaemon(host, 'SIGTERM'), 0);
    });
  });
});

describe('rate limit', () => {
  let host: TestHost;

  before(async () => {
    host = await TestHost.create({ config: { rate_limit_rps: 20, rate_limit_burst: 5 } });
    await host.startDaemon();
  });

  after(async () => {
    await disposeHost(host);
  });

  const health: HttpRequest = { url: `${api}/health` };
  // 20 per second plus 5 of burst is a bucket of 25, and the refill while 100 requests run adds a few.
  const minAllowed = 25;
  const maxAllowed = 40;

  it('burst beyond limit returns 429', async () => {
    const [, burst = []] = await runHttpSteps(host, [
      { sleepMs: 1300 },
      { parallel: Array.from({ length: 100 }, () => health) },
    ]);

    const succeeded = burst.filter((response) => response.status === 200);
    const limited = burst.filter((response) => response.status === 429);
    assert.ok(succeeded.length >= minAllowed, `${succeeded.length} of 100 succeeded`);
    assert.ok(succeeded.length <= maxAllowed, `${succeeded.length} of 100 succeeded`);
    assert.equal(succeeded.length + limited.length, 100);
    for (const response of limited) {
      assertError(response, 429, 'rate_limited', 'limited request');
      assert.match(response.headers['retry-after'] ?? '', /^[1-9]\d*$/);
      assertSecurityHeaders(response, '429');
    }
  });

  it('forged X-Forwarded-For gets no quota', async () => {
    // If the limiter keyed on the header, each of these 100 forged addresses would get its own bucket.
    const forged = Array.from({ length: 100 }, (_, index) => ({
      url: `${api}/health`,
      headers: { 'x-forwarded-for': `10.9.${Math.floor(index / 250)}.${(index % 250) + 1}`, 'x-real-ip': `10.8.0.${index + 1}` },
    }));
    const [, burst = []] = await runHttpSteps(host, [{ sleepMs: 1300 }, { parallel: forged }]);

    const succeeded = burst.filter((response) => response.status === 200).length;
    assert.ok(succeeded >= minAllowed, `${succeeded} of 100 succeeded`);
    assert.ok(succeeded <= maxAllowed, `${succeeded} of 100 with forged addresses succeeded`);
  });

  it('requests succeed again after 1 s', async () => {
    const [, burst = [], , later = []] = await runHttpSteps(host, [
      { sleepMs: 1300 },
      { parallel: Array.from({ length: 100 }, () => health) },
      { sleepMs: 1100 },
      { parallel: Array.from({ length: 5 }, () => health) },
    ]);

    assert.ok(burst.some((response) => response.status === 429), 'the burst was not limited');
    assert.deepEqual(later.map((response) => response.status), [200, 200, 200, 200, 200]);
  });
});

describe('remote clients', () => {
  let host: TestHost;
  const remoteAddress = '10.123.0.1';
  const remote = `http://${remoteAddress}:7777/api/v1/vms`;

  before(async () => {
    host = await TestHost.create({ config: { listen_address: '0.0.0.0', api_key: 'test-key-123' } });
    await execFileAsync('ip', ['-n', host.netns, 'addr', 'add', `${remoteAddress}/32`, 'dev', 'lo']);
    await host.startDaemon();
  });

  after(async () => {
    await disposeHost(host);
  });

  it('remote request without key returns 401', async () => {
    const response = await fetchOne(host, { url: remote });
    assertError(response, 401, undefined, 'no key');
    assertSecurityHeaders(response, '401');
  });

  it('remote request with X-API-Key succeeds', async () => {
    const response = await fetchOne(host, { url: remote, headers: { 'x-api-key': 'test-key-123' } });
    assert.equal(response.status, 200, response.body);
  });

  it('remote request with Bearer succeeds', async () => {
    const response = await fetchOne(host, { url: remote, headers: { authorization: 'Bearer test-key-123' } });
    assert.equal(response.status, 200, response.body);
  });

  it('remote request with wrong key returns 401', async () => {
    const responses = await fetchInNetns(host, [
      { url: remote, headers: { 'x-api-key': 'test-key-124' } },
      { url: remote, headers: { authorization: 'Bearer wrong' } },
      { url: remote, headers: { 'x-api-key': '' } },
      { url: remote, headers: { authorization: 'test-key-123' } },
    ]);
    for (const response of responses) assertError(response, 401, undefined, 'wrong key');
  });

  it('loopback request without key succeeds', async () => {
    const response = await fetchOne(host, { url: `${api}/vms` });
    assert.equal(response.status, 200, response.body);
  });
});

describe('no space', () => {
  let host: TestHost | undefined;
  let mounted = false;
  const volumesDir = () => path.join(host?.dataDir ?? '', 'volumes');

  before(async () => {
    host = await TestHost.create();
    await mkdir(volumesDir(), { recursive: true });
    await execFileAsync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', volumesDir()]);
    mounted = true;
    await host.startDaemon();
  });

  after(async () => {
    try {
      // The daemon stops first, so no process keeps the mount busy.
      if (host) await stopDaemon(host, 'SIGTERM').catch(() => undefined);
    } finally {
      if (mounted) await execFileAsync('umount', [volumesDir()]);
      await disposeHost(host);
    }
  });

  it('create larger than free returns 507', async () => {
    assert.ok(host);
    const response = await fetchOne(host, postJson(`${api}/volumes`, { size: '1G' }));
    assertError(response, 507, 'no_space', 'create 1G on 64 MiB');
    assert.deepEqual(await readdir(volumesDir()), []);
    const listed = await fetchOne(host, { url: `${api}/volumes` });
    assert.deepEqual(listed.json, []);
  });
});
