import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { tapNameFor } from '../../src/network/network.js';
import { signalDaemon, waitForDaemonExit } from '../helpers/daemon-control.js';
import { TestHost } from '../helpers/host.js';
import {
  ensureBusyboxImage,
  fileSha256,
  filesystemBytes,
  isCleanFilesystem,
  isProcessAlive,
  lastOperation,
  operationById,
  runningOperationCount,
  storageDrift,
  vmQemuPid,
  volumeFile,
  writeRandomFile,
  type JournalEntry,
} from '../helpers/storage-checks.js';

// Each case kills the daemon at one journal step (SISTEMO_TEST_CRASH_AT, read by src/daemon/server.ts),
// restarts it so that recovery runs, and checks that the operation was completed or rolled back
// without losing or orphaning a volume. All cases share one host, and each restarts its daemon.

const MiB = 1024 * 1024;

interface VolumeJson { name: string; id: string; size_bytes: number; status: string; attached_to: string | null; type: string }
interface VmJson { name: string; id: string; status: string; root_volume: string | null }

/** Turns a journal step into a part of a VM or volume name, which cannot contain underscores. */
function slug(step: string): string {
  return step.replaceAll('_', '-');
}

async function volumeMap(host: TestHost): Promise<Map<string, VolumeJson>> {
  const list = JSON.parse(await host.ok('volume', 'list', '-o', 'json')) as VolumeJson[];
  return new Map(list.map((volume) => [volume.name, volume]));
}

async function vmMap(host: TestHost): Promise<Map<string, VmJson>> {
  const list = JSON.parse(await host.ok('vm', 'list', '-o', 'json')) as VmJson[];
  return new Map(list.map((vm) => [vm.name, vm]));
}

async function requireVolume(host: TestHost, name: string): Promise<VolumeJson> {
  const volume = (await volumeMap(host)).get(name);
  assert.ok(volume, `volume ${name} is not listed`);
  return volume;
}

async function requireVm(host: TestHost, name: string): Promise<VmJson> {
  const vm = (await vmMap(host)).get(name);
  assert.ok(vm, `VM ${name} is not listed`);
  return vm;
}

async function tapExists(host: TestHost, vmId: string): Promise<boolean> {
  return (await host.inNetns(['ip', 'link', 'show', tapNameFor(vmId)])).code === 0;
}

/**
 * Runs a CLI command on a daemon started with SISTEMO_TEST_CRASH_AT=KIND:STEP, checks that the
 * daemon died at that step, then starts it again without the variable so recovery runs.
 * Returns the journal entry of the interrupted operation as it was at the crash.
 */
async function crashAt(host: TestHost, kind: string, step: string, args: string[]): Promise<JournalEntry> {
  await signalDaemon(host, 'SIGTERM');
  await host.startDaemon({ SISTEMO_TEST_CRASH_AT: `${kind}:${step}` });
  const result = await host.cli(...args);
  assert.notEqual(result.code, 0, `sistemo ${args.join(' ')} succeeded although the daemon was to crash at ${kind}:${step}`);
  const exit = await waitForDaemonExit(host);
  assert.equal(exit.signal, 'SIGKILL', `daemon exited with code ${exit.code}: ${await host.daemonStderr()}`);
  const journal = lastOperation(host.dataDir, kind);
  assert.ok(journal, `the journal has no ${kind} operation`);
  assert.equal(journal.step, step);
  assert.equal(journal.state, 'running');
  await host.startDaemon();
  return journal;
}

/** Checks what must hold after every recovery: no running operation, no lost, orphaned or busy volume. */
async function assertConsistent(host: TestHost): Promise<void> {
  assert.equal(runningOperationCount(host.dataDir), 0);
  const drift = await storageDrift(host.dataDir);
  assert.deepEqual(drift.rowsWithoutFiles, [], 'volume rows without files');
  assert.deepEqual(drift.filesWithoutRows, [], 'volume files without rows');
  assert.deepEqual(drift.partialFiles, [], 'partial volume files');
  const busy = [...(await volumeMap(host)).values()].filter((volume) => volume.status === 'busy').map((volume) => volume.name);
  assert.deepEqual(busy, [], 'busy volumes');
}

function finalState(host: TestHost, journal: JournalEntry): string | undefined {
  return operationById(host.dataDir, journal.id)?.state;
}

async function fileSize(file: string): Promise<number> {
  return (await fs.stat(file)).size;
}

test('crash recovery of journaled operations', { timeout: 10 * 60_000 }, async (t) => {
  const image = await ensureBusyboxImage();
  const imageInittab = await fileSha256(image, 'etc/inittab');
  const host = await TestHost.create({
    withImage: true,
    // A busybox guest that has not booted yet ignores the ACPI power button, so a short stop timeout keeps such stops quick.
    config: { default_vcpus: 1, default_memory: '256M', stop_timeout_sec: 2 },
  });
  // sha256 of data.bin on each data volume, written before the crash that concerns it.
  const dataSums = new Map<string, string>();
  const writeData = async (volumeName: string) => {
    const volume = await requireVolume(host, volumeName);
    dataSums.set(volumeName, await writeRandomFile(volumeFile(host.dataDir, volume.id), 'data.bin'));
  };
  const assertDataIntact = async (volumeName: string) => {
    const volume = await requireVolume(host, volumeName);
    assert.equal(await fileSha256(volumeFile(host.dataDir, volume.id), 'data.bin'), dataSums.get(volumeName), `data.bin on ${volumeName}`);
  };

  try {
    await host.startDaemon();

    for (const step of ['recorded', 'formatted']) {
      await t.test(`volume.create crash at ${step} rolls back`, async () => {
        const name = `c-${slug(step)}`;
        const journal = await crashAt(host, 'volume.create', step, ['volume', 'create', '64M', '--name', name]);
        assert.equal(finalState(host, journal), 'rolled_back');
        assert.equal((await volumeMap(host)).has(name), false);
        assert.equal(existsSync(volumeFile(host.dataDir, journal.volume_id ?? '')), false);
        await assertConsistent(host);

        await host.ok('volume', 'create', '64M', '--name', name);
        assert.equal((await requireVolume(host, name)).status, 'detached');
      });
    }

    await t.test('interrupted operation appears in history', async () => {
      await crashAt(host, 'volume.create', 'recorded', ['volume', 'create', '64M', '--name', 'h-1']);
      const entries = JSON.parse(await host.ok('history', '--target', 'h-1', '-o', 'json')) as unknown[];
      assert.notEqual(entries.length, 0, 'history has no entry for the interrupted volume create');
    });

    const resizeCases = [
      { step: 'recorded', completes: false },
      { step: 'checked', completes: false },
      { step: 'file_grown', completes: false },
      { step: 'filesystem_grown', completes: true },
    ];
    for (const { step, completes } of resizeCases) {
      await t.test(`volume.resize crash at ${step} ${completes ? 'completes' : 'rolls back'}`, async () => {
        const name = `r-${slug(step)}`;
        await host.ok('volume', 'create', '64M', '--name', name);
        await writeData(name);
        const file = volumeFile(host.dataDir, (await requireVolume(host, name)).id);
        const journal = await crashAt(host, 'volume.resize', step, ['volume', 'resize', name, '256M']);

        const expected = completes ? 256 * MiB : 64 * MiB;
        assert.equal(finalState(host, journal), completes ? 'done' : 'rolled_back');
        assert.equal(await fileSize(file), expected, 'file size');
        assert.equal(await filesystemBytes(file), expected, 'filesystem size');
        const volume = await requireVolume(host, name);
        assert.equal(volume.size_bytes, expected, 'listed size');
        assert.equal(volume.status, 'detached');
        assert.equal(await isCleanFilesystem(file), true, `e2fsck -fn ${file} found errors`);
        await assertDataIntact(name);
        assert.deepEqual(await fs.readdir(path.join(host.dataDir, 'undo')), [], 'resize undo files left');
        await assertConsistent(host);

        const target = completes ? 512 * MiB : 256 * MiB;
        await host.ok('volume', 'resize', name, `${target / MiB}M`);
        assert.equal(await fileSize(file), target, 'file size after the second resize');
        assert.equal(await filesystemBytes(file), target, 'filesystem size after the second resize');
        assert.equal((await requireVolume(host, name)).size_bytes, target, 'listed size after the second resize');
        assert.equal(await isCleanFilesystem(file), true, `e2fsck -fn ${file} found errors after the second resize`);
        await assertDataIntact(name);
      });
    }

    for (const step of ['recorded', 'file_removed']) {
      await t.test(`volume.delete crash at ${step} completes`, async () => {
        const name = `x-${slug(step)}`;
        await host.ok('volume', 'create', '64M', '--name', name);
        const file = volumeFile(host.dataDir, (await requireVolume(host, name)).id);
        const journal = await crashAt(host, 'volume.delete', step, ['volume', 'delete', name, '-y']);
        assert.equal(finalState(host, journal), 'done');
        assert.equal((await volumeMap(host)).has(name), false);
        assert.equal(existsSync(file), false);
        await assertConsistent(host);

        await host.ok('volume', 'create', '64M', '--name', name);
        await host.ok('volume', 'delete', name, '-y');
        assert.equal((await volumeMap(host)).has(name), false);
      });
    }

    // One stopped VM, s, with data volume sd, serves the attach, detach, start and stop cases.
    await t.test('busybox VM deploys with a data volume', async () => {
      await host.ok('volume', 'create', '64M', '--name', 'sd');
      await writeData('sd');
      await host.ok('vm', 'deploy', image, '--name', 's', '--storage', '128M', '--attach', 'sd');
      await host.ok('vm', 'stop', 's');
      assert.equal((await requireVm(host, 's')).status, 'stopped');
      assert.equal((await requireVolume(host, 'sd')).attached_to, 's');
    });

    await t.test('detach crash at recorded rolls back', async () => {
      const journal = await crashAt(host, 'detach', 'recorded', ['vm', 'volume', 'detach', 's', 'sd']);
      assert.notEqual(finalState(host, journal), 'running');
      const volume = await requireVolume(host, 'sd');
      assert.equal(volume.status, 'attached');
      assert.equal(volume.attached_to, 's');
      await assertDataIntact('sd');
      await assertConsistent(host);

      await host.ok('vm', 'volume', 'detach', 's', 'sd');
      assert.equal((await requireVolume(host, 'sd')).status, 'detached');
    });

    await t.test('attach crash at recorded rolls back', async () => {
      const journal = await crashAt(host, 'attach', 'recorded', ['vm', 'volume', 'attach', 's', 'sd']);
      assert.notEqual(finalState(host, journal), 'running');
      const volume = await requireVolume(host, 'sd');
      assert.equal(volume.status, 'detached');
      assert.equal(volume.attached_to, null);
      await assertDataIntact('sd');
      await assertConsistent(host);

      await host.ok('vm', 'volume', 'attach', 's', 'sd');
      assert.equal((await requireVolume(host, 'sd')).attached_to, 's');
    });

    for (const step of ['recorded', 'network_ready', 'started']) {
      const runs = step === 'started';
      await t.test(`start crash at ${step} leaves VM ${runs ? 'running' : 'stopped'}`, async () => {
        const vmId = (await requireVm(host, 's')).id;
        const journal = await crashAt(host, 'start', step, ['vm', 'start', 's']);
        assert.notEqual(finalState(host, journal), 'running');
        assert.equal((await requireVm(host, 's')).status, runs ? 'running' : 'stopped');
        assert.equal((await vmQemuPid(host.dataDir, vmId)) !== undefined, runs);
        assert.equal(await tapExists(host, vmId), runs);
        assert.equal((await requireVolume(host, 'sd')).attached_to, 's');
        await assertDataIntact('sd');
        await assertConsistent(host);

        if (runs) await host.ok('vm', 'stop', 's');
        await host.ok('vm', 'start', 's');
        assert.equal((await requireVm(host, 's')).status, 'running');
        assert.notEqual(await vmQemuPid(host.dataDir, vmId), undefined);
        // The stop cases below start from a running VM, but the other start cases need a stopped one.
        if (!runs) await host.ok('vm', 'stop', 's');
      });
    }

    for (const step of ['recorded', 'halted']) {
      const halts = step === 'halted';
      await t.test(`stop crash at ${step} leaves VM ${halts ? 'stopped' : 'running'}`, async () => {
        const vmId = (await requireVm(host, 's')).id;
        const pidBefore = await vmQemuPid(host.dataDir, vmId);
        assert.ok(pidBefore, 'VM s runs before the stop');
        const journal = await crashAt(host, 'stop', step, ['vm', 'stop', 's']);
        assert.notEqual(finalState(host, journal), 'running');
        assert.equal((await requireVm(host, 's')).status, halts ? 'stopped' : 'running');
        assert.equal(isProcessAlive(pidBefore), !halts);
        assert.equal(await tapExists(host, vmId), !halts);
        await assertConsistent(host);

        if (halts) {
          await assertDataIntact('sd');
          await host.ok('vm', 'start', 's');
        }
        await host.ok('vm', 'stop', 's');
        assert.equal((await requireVm(host, 's')).status, 'stopped');
        await assertDataIntact('sd');
        if (!halts) await host.ok('vm', 'start', 's');
      });
    }

    // The busybox image has 1 KiB blocks, and deploy grew it into s-root with resize2fs -z.
    await t.test('root volume from busybox image resizes', async () => {
      const file = volumeFile(host.dataDir, (await requireVolume(host, 's-root')).id);
      assert.equal(await isCleanFilesystem(file), true, `e2fsck -fn ${file} found errors after deploy grew it`);
      await host.ok('volume', 'resize', 's-root', '256M');
      assert.equal(await filesystemBytes(file), 256 * MiB);
    });

    // Each deploy attaches a fresh data volume. The VMs it leaves running serve the delete cases.
    const deploySteps = ['recorded', 'copied', 'volume_ready', 'network_ready', 'started'];
    const deployArgs = (name: string) => ['vm', 'deploy', image, '--name', name, '--storage', '128M', '--attach', `${name}-d`];
    for (const step of deploySteps) {
      const completes = step === 'started';
      await t.test(`deploy crash at ${step} ${completes ? 'completes' : 'rolls back'}`, async () => {
        const name = `d-${slug(step)}`;
        await host.ok('volume', 'create', '64M', '--name', `${name}-d`);
        await writeData(`${name}-d`);
        const journal = await crashAt(host, 'deploy', step, deployArgs(name));
        const vmId = journal.vm_id ?? '';
        const rootFile = volumeFile(host.dataDir, journal.volume_id ?? '');
        const data = await requireVolume(host, `${name}-d`);
        await assertDataIntact(`${name}-d`);

        if (completes) {
          assert.equal(finalState(host, journal), 'done');
          assert.equal((await requireVm(host, name)).status, 'running');
          assert.notEqual(await vmQemuPid(host.dataDir, vmId), undefined);
          assert.equal((await requireVolume(host, `${name}-root`)).attached_to, name);
          assert.equal(existsSync(rootFile), true);
          assert.equal(data.attached_to, name);
        } else {
          assert.equal(finalState(host, journal), 'rolled_back');
          assert.equal((await vmMap(host)).has(name), false);
          assert.equal((await volumeMap(host)).has(`${name}-root`), false);
          assert.equal(existsSync(rootFile), false);
          assert.equal(existsSync(path.join(host.dataDir, 'vms', vmId)), false);
          assert.equal(await tapExists(host, vmId), false);
          assert.equal(data.status, 'detached');
        }
        await assertConsistent(host);

        if (completes) {
          await host.ok('volume', 'create', '64M', '--name', `${name}-2-d`);
          await host.ok(...deployArgs(`${name}-2`));
          assert.equal((await requireVm(host, `${name}-2`)).status, 'running');
          await host.ok('vm', 'delete', `${name}-2`, '-y');
        } else {
          await host.ok(...deployArgs(name));
          assert.equal((await requireVm(host, name)).status, 'running');
          assert.equal((await requireVolume(host, `${name}-d`)).attached_to, name);
        }
      });
    }

    const deleteCases = [
      { vm: 'd-recorded', step: 'recorded', preserve: false },
      { vm: 'd-copied', step: 'halted', preserve: false },
      { vm: 'd-volume-ready', step: 'files_removed', preserve: false },
      { vm: 'd-network-ready', step: 'recorded', preserve: true },
      { vm: 'd-started', step: 'halted', preserve: true },
    ];
    for (const { vm, step, preserve } of deleteCases) {
      await t.test(`delete${preserve ? ' --preserve-storage' : ''} crash at ${step} completes`, async () => {
        const vmId = (await requireVm(host, vm)).id;
        const root = await requireVolume(host, `${vm}-root`);
        const pid = await vmQemuPid(host.dataDir, vmId);
        assert.ok(pid, `VM ${vm} runs before the delete`);
        const deleteArgs = ['vm', 'delete', vm, '-y', ...(preserve ? ['--preserve-storage'] : [])];
        const journal = await crashAt(host, 'delete', step, deleteArgs);

        assert.equal(finalState(host, journal), 'done');
        assert.equal((await vmMap(host)).has(vm), false);
        assert.equal(isProcessAlive(pid), false);
        assert.equal(await tapExists(host, vmId), false);
        assert.equal(existsSync(path.join(host.dataDir, 'vms', vmId)), false);
        const rootFile = volumeFile(host.dataDir, root.id);
        if (preserve) {
          const kept = await requireVolume(host, `${vm}-root`);
          assert.equal(kept.status, 'detached');
          assert.equal(kept.type, 'root');
          assert.equal(await fileSha256(rootFile, 'etc/inittab'), imageInittab);
        } else {
          assert.equal((await volumeMap(host)).has(`${vm}-root`), false);
          assert.equal(existsSync(rootFile), false);
        }
        assert.equal((await requireVolume(host, `${vm}-d`)).status, 'detached');
        await assertDataIntact(`${vm}-d`);
        await assertConsistent(host);

        // The same delete again, on a VM of the same name.
        if (preserve) await host.ok('vm', 'deploy', '--volume', `${vm}-root`, '--name', vm);
        else await host.ok('vm', 'deploy', image, '--name', vm, '--storage', '128M');
        await host.ok(...deleteArgs);
        assert.equal((await vmMap(host)).has(vm), false);
        assert.equal((await volumeMap(host)).has(`${vm}-root`), preserve);
      });
    }

    // The root volume kept by the preserving delete above boots the VMs of these cases.
    const preservedRoot = 'd-network-ready-root';
    for (const step of ['recorded', 'volume_ready', 'network_ready', 'started']) {
      const completes = step === 'started';
      await t.test(`deploy --volume crash at ${step} ${completes ? 'completes' : 'rolls back'}`, async () => {
        const name = `k-${slug(step)}`;
        if (!dataSums.has(preservedRoot)) await writeData(preservedRoot);
        const rootFile = volumeFile(host.dataDir, (await requireVolume(host, preservedRoot)).id);
        const journal = await crashAt(host, 'deploy', step, ['vm', 'deploy', '--volume', preservedRoot, '--name', name]);
        const vmId = journal.vm_id ?? '';
        const root = await requireVolume(host, preservedRoot);
        assert.equal(root.type, 'root');
        assert.equal(existsSync(rootFile), true);
        await assertDataIntact(preservedRoot);

        if (completes) {
          assert.equal(finalState(host, journal), 'done');
          assert.equal((await requireVm(host, name)).status, 'running');
          assert.notEqual(await vmQemuPid(host.dataDir, vmId), undefined);
          assert.equal(root.attached_to, name);
          await assertConsistent(host);
          await host.ok('vm', 'delete', name, '--preserve-storage', '-y');
        } else {
          assert.equal(finalState(host, journal), 'rolled_back');
          assert.equal((await vmMap(host)).has(name), false);
          assert.equal(root.status, 'detached');
          assert.equal(await tapExists(host, vmId), false);
          await assertConsistent(host);
        }

        await host.ok('vm', 'deploy', '--volume', preservedRoot, '--name', name);
        assert.equal((await requireVm(host, name)).status, 'running');
        assert.equal((await requireVolume(host, preservedRoot)).attached_to, name);
        await host.ok('vm', 'delete', name, '--preserve-storage', '-y');
        assert.equal((await requireVolume(host, preservedRoot)).status, 'detached');
      });
    }
  } finally {
    await signalDaemon(host, 'SIGKILL').catch(() => undefined);
    await host.cleanup();
  }
});
