import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { signalDaemon, waitForDaemonExit } from '../helpers/daemon-control.js';
import { TestHost, type CliResult } from '../helpers/host.js';
import {
  ensureBusyboxImage,
  fileSha256,
  filesystemBytes,
  isProcessAlive,
  lastOperation,
  vmQemuPid,
  volumeFile,
  writeRandomFile,
} from '../helpers/storage-checks.js';

const GiB = 1024 ** 3;

interface VolumeJson { name: string; id: string; size_bytes: number; status: string }
interface VmJson { name: string; id: string; status: string }

/** Waits until the journal shows a running resize, polling often so that the signal lands early in it. */
async function waitForRunningResize(dataDir: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (lastOperation(dataDir, 'volume.resize')?.state === 'running') return;
    await sleep(10);
  }
  throw new Error(`no running volume.resize operation appeared within ${timeoutMs} ms`);
}

/** Returns the `inFlight` count of the daemon's "daemon stopping" log line, or undefined without one. */
async function inFlightAtShutdown(dataDir: string): Promise<number | undefined> {
  const log = await fs.readFile(path.join(dataDir, 'daemon.log'), 'utf8');
  for (const line of log.split('\n').reverse()) {
    if (!line.includes('"daemon stopping')) continue;
    return (JSON.parse(line) as { inFlight?: number }).inFlight;
  }
  return undefined;
}

test('SIGTERM during a volume resize', { timeout: 5 * 60_000 }, async (t) => {
  const image = await ensureBusyboxImage();
  const host = await TestHost.create({ withImage: true, config: { default_vcpus: 1, default_memory: '256M' } });
  try {
    await host.startDaemon();
    await host.ok('vm', 'deploy', image, '--name', 'b1', '--storage', '128M');
    const vmId = (JSON.parse(await host.ok('vm', 'status', 'b1', '-o', 'json')) as VmJson).id;
    const qemuPid = await vmQemuPid(host.dataDir, vmId);
    assert.ok(qemuPid, 'VM b1 runs before the shutdown');
    await host.ok('volume', 'create', '64M', '--name', 'grow');
    const volumeId = (JSON.parse(await host.ok('volume', 'show', 'grow', '-o', 'json')) as VolumeJson).id;
    const file = volumeFile(host.dataDir, volumeId);
    const dataSum = await writeRandomFile(file, 'data.bin');

    const resizing: Promise<CliResult> = host.cli('volume', 'resize', 'grow', '30G');
    await waitForRunningResize(host.dataDir);
    // The resize takes well under a second, so the daemon is paused while SIGTERM is sent. The
    // signal then arrives with the resize still in flight, however fast the machine is.
    const daemonPid = await host.daemonPid();
    assert.ok(daemonPid, 'the daemon runs');
    process.kill(daemonPid, 'SIGSTOP');
    process.kill(daemonPid, 'SIGTERM');
    process.kill(daemonPid, 'SIGCONT');
    const exit = await waitForDaemonExit(host);
    const resize = await resizing;

    await t.test('in-flight resize finishes before exit', async () => {
      assert.ok((await inFlightAtShutdown(host.dataDir) ?? 0) >= 1, 'the daemon had no operation in flight when SIGTERM arrived');
      assert.equal(resize.code, 0, `volume resize failed: ${resize.stderr}`);
      assert.equal(lastOperation(host.dataDir, 'volume.resize')?.state, 'done');
      assert.equal((await fs.stat(file)).size, 30 * GiB);
      assert.equal(await filesystemBytes(file), 30 * GiB);
      assert.equal(await fileSha256(file, 'data.bin'), dataSum);
    });

    await t.test('daemon exits 0, VM keeps running', async () => {
      assert.equal(exit.signal, null);
      assert.equal(exit.code, 0);
      assert.equal(isProcessAlive(qemuPid), true);
    });

    await t.test('restarted daemon adopts running VM', async () => {
      await host.startDaemon();
      const vm = JSON.parse(await host.ok('vm', 'status', 'b1', '-o', 'json')) as VmJson;
      assert.equal(vm.status, 'running');
      assert.deepEqual(await host.qemuPids(), [qemuPid]);
      const volume = JSON.parse(await host.ok('volume', 'show', 'grow', '-o', 'json')) as VolumeJson;
      assert.equal(volume.size_bytes, 30 * GiB);
      assert.equal(volume.status, 'detached');
    });
  } finally {
    await signalDaemon(host, 'SIGKILL').catch(() => undefined);
    await host.cleanup();
  }
});
