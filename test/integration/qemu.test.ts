import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chooseAccelerator, type AcceleratorChoice } from '../../src/engine/accelerator.js';
import { QemuEngine, isAlive } from '../../src/engine/engine.js';
import { QmpError, qmpCommand } from '../../src/engine/qmp.js';
import { ProcessRunner, type CommandRunner, type RunOptions, type RunResult } from '../../src/system/runner.js';
import { ensureTestImage, testImageCache } from '../helpers/host.js';

const runner = new ProcessRunner();
const netns = `smt-qemu-${process.pid.toString(36)}`;
// The debian image's kernel, from the test image that ensureTestImage builds once per machine.
const devKernel = path.join(testImageCache, 'vmlinuz');

/** Runs every command inside the test's network namespace, so QEMU has no access to the host network. */
class NetnsRunner implements CommandRunner {
  constructor(private readonly namespace: string, private readonly inner: CommandRunner) {}

  run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    return this.inner.run(['ip', 'netns', 'exec', this.namespace, ...argv], options);
  }
}

const nsRunner = new NetnsRunner(netns, runner);

/** Starts a paused QEMU with no guest and no devices, daemonized, and returns its pid. */
async function startBareQemu(qmpSocket: string, pidFile: string): Promise<number> {
  await nsRunner.run([
    'qemu-system-x86_64', '-M', 'q35', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-S',
    '-qmp', `unix:${qmpSocket},server=on,wait=off`, '-pidfile', pidFile, '-daemonize',
  ], { timeoutMs: 30_000 });
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  assert.ok(Number.isInteger(pid), `QEMU wrote no pid into ${pidFile}`);
  assert.ok(pid > 1, `QEMU wrote pid ${pid} into ${pidFile}`);
  return pid;
}

function killIfAlive(pid: number | undefined): void {
  if (pid === undefined || !isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // It exited between the check and the kill.
  }
}

before(async () => {
  await runner.run(['ip', 'netns', 'add', netns]);
});

after(async () => {
  await runner.run(['ip', 'netns', 'del', netns]).catch(() => undefined);
});

describe('QEMU engine and QMP', () => {
  const vmId = 'm0123456789ab';
  const engine = new QemuEngine(runner);
  let dir: string;
  let vmDir: string;
  let pidFile: string;
  let qmpSocket: string;
  let pid: number | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sistemo-qemu-test-'));
    // The VM id is a path segment, as in the data directory, so the QEMU command line contains it.
    vmDir = path.join(dir, vmId);
    await mkdir(vmDir);
    pidFile = path.join(vmDir, 'qemu.pid');
    qmpSocket = path.join(vmDir, 'qmp.sock');
    pid = await startBareQemu(qmpSocket, pidFile);
  });

  after(async () => {
    killIfAlive(pid);
    await rm(dir, { recursive: true, force: true });
  });

  it('qmpCommand returns query-status result', async () => {
    const result = (await qmpCommand(qmpSocket, 'query-status')) as { status?: unknown; running?: unknown };
    assert.equal(result.status, 'prelaunch');
    assert.equal(result.running, false);
  });

  it('engine status reads paused QEMU', async () => {
    assert.equal(await engine.status(qmpSocket), 'prelaunch');
  });

  it('qmpCommand rejects unknown command', async () => {
    await assert.rejects(qmpCommand(qmpSocket, 'no-such-command'), QmpError);
  });

  it('findProcess returns pid of QEMU', async () => {
    assert.equal(await engine.findProcess(vmId, pidFile), pid);
  });

  it('findProcess rejects other VM id', async () => {
    assert.equal(await engine.findProcess('m999999999999', pidFile), undefined);
  });

  it('findProcess rejects stale pid file', async () => {
    const staleDir = path.join(dir, 'm00000000stale');
    await mkdir(staleDir);
    const stalePidFile = path.join(staleDir, 'qemu.pid');
    // This test runner's own pid: alive, but not a QEMU started with this pid file.
    await writeFile(stalePidFile, `${process.pid}\n`);

    assert.equal(await engine.findProcess('m00000000stale', stalePidFile), undefined);
  });

  it('findProcess rejects garbage pid file', async () => {
    const garbage = path.join(dir, 'garbage.pid');
    await writeFile(garbage, 'not a pid\n');

    assert.equal(await engine.findProcess(vmId, garbage), undefined);
  });

  it('findProcess returns undefined without file', async () => {
    assert.equal(await engine.findProcess(vmId, path.join(dir, 'missing.pid')), undefined);
  });

  it('qmpCommand on missing socket rejects', async () => {
    const timeoutMs = 2000;
    const started = Date.now();

    await assert.rejects(qmpCommand(path.join(dir, 'missing.sock'), 'query-status', undefined, timeoutMs), QmpError);
    assert.ok(Date.now() - started < timeoutMs + 500, `rejected after ${Date.now() - started} ms`);
  });

  it('kill ends the QEMU process', async () => {
    assert.ok(pid !== undefined);
    assert.equal(isAlive(pid), true);

    await engine.kill(pid);

    assert.equal(isAlive(pid), false);
    assert.equal(await engine.findProcess(vmId, pidFile), undefined);
  });
});

describe('chooseAccelerator', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sistemo-accel-test-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('chooseAccelerator returns tcg when set', async () => {
    const choice = await chooseAccelerator({ setting: 'tcg', kernel: devKernel, cacheFile: path.join(dir, 'unused.json'), runner: nsRunner });
    assert.equal(choice.accelerator, 'tcg');
    assert.equal(existsSync(path.join(dir, 'unused.json')), false);
  });

  it('chooseAccelerator returns kvm when set', async () => {
    const choice = await chooseAccelerator({ setting: 'kvm', kernel: devKernel, cacheFile: path.join(dir, 'unused.json'), runner: nsRunner });
    assert.equal(choice.accelerator, 'kvm');
    assert.equal(existsSync(path.join(dir, 'unused.json')), false);
  });

  describe('auto setting', () => {
    const cacheFile = () => path.join(dir, 'accelerator.json');
    let first: AcceleratorChoice;
    let probeMs: number;

    before(async () => {
      await ensureTestImage();
      const started = Date.now();
      first = await chooseAccelerator({ setting: 'auto', kernel: devKernel, cacheFile: cacheFile(), runner: nsRunner });
      probeMs = Date.now() - started;
    });

    it('auto pick boots kernel to panic', { timeout: 60_000 }, async () => {
      // Without a root disk the kernel panics once it has booted, and panic=-1 with -no-reboot
      // then ends QEMU. A KVM pick on a host that hangs stock guests times out here instead.
      const boot = await nsRunner.run([
        'qemu-system-x86_64', '-M', 'q35', '-accel', first.accelerator, '-m', '256M', '-nodefaults',
        '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot',
        '-kernel', devKernel, '-append', 'console=ttyS0 panic=-1',
      ], { timeoutMs: 30_000, okExitCodes: [0, 128] });
      assert.match(boot.stdout, /Kernel panic/, `no panic line within 30 s under ${first.accelerator} (${first.reason})`);
    });

    it('auto second call uses cache', async () => {
      const started = Date.now();
      const second = await chooseAccelerator({ setting: 'auto', kernel: devKernel, cacheFile: cacheFile(), runner: nsRunner });
      const cachedMs = Date.now() - started;

      assert.deepEqual(second, first);
      assert.ok(cachedMs <= probeMs, `the cached call took ${cachedMs} ms, the probe ${probeMs} ms`);
      // A changed reason in the cache file comes back unchanged, so no second probe ran.
      const cached = JSON.parse(await readFile(cacheFile(), 'utf8')) as Record<string, unknown>;
      await writeFile(cacheFile(), JSON.stringify({ ...cached, reason: 'reason from the cache file' }));
      const third = await chooseAccelerator({ setting: 'auto', kernel: devKernel, cacheFile: cacheFile(), runner: nsRunner });
      assert.equal(third.reason, 'reason from the cache file');
      assert.equal(third.accelerator, first.accelerator);
    });

    it('auto reason matches probe outcome', () => {
      if (probeMs < 15_000) assert.doesNotMatch(first.reason, /timed out/, `the probe took ${probeMs} ms`);
    });
  });
});
