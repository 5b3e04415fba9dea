import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { TestHost } from '../helpers/host.js';

interface VolumeJson { name: string; id: string; size_bytes: number; status: string; attached_to: string | null; type: string }
interface VmJson { name: string; id: string; status: string; ip: string; root_volume: string }

const GiB = 1024 ** 3;

/** Returns the size in bytes that `df -B1 PATH` reports inside a VM. */
async function guestFilesystemBytes(host: TestHost, vm: string, mount: string): Promise<number> {
  const output = await host.ok('vm', 'exec', vm, '--', 'df', '-B1', '--output=size', mount);
  return Number(output.trim().split('\n').pop());
}

async function guestSha256(host: TestHost, vm: string, file: string): Promise<string> {
  const output = await host.ok('vm', 'exec', vm, '--', 'sha256sum', file);
  return output.trim().split(/\s+/)[0] ?? '';
}

async function volumes(host: TestHost): Promise<Map<string, VolumeJson>> {
  const list = JSON.parse(await host.ok('volume', 'list', '-o', 'json')) as VolumeJson[];
  return new Map(list.map((volume) => [volume.name, volume]));
}

test('the release storage workflow on real Debian VMs', { timeout: 30 * 60_000 }, async (t) => {
  const host = await TestHost.create({ withImage: true });
  try {
    await host.startDaemon();

    await t.test('deploy creates web with a 5 GiB root volume', async () => {
      const output = await host.ok('vm', 'deploy', 'debian', '--name', 'web', '--storage', '5GB');
      assert.match(output, /VM web is running/);
      const bytes = await guestFilesystemBytes(host, 'web', '/');
      assert.ok(bytes > 4.7 * GiB, `root filesystem is only ${bytes} bytes`);
      assert.ok(bytes <= 5 * GiB, `root filesystem is ${bytes} bytes, over the volume size`);
      const listed = await volumes(host);
      assert.equal(listed.get('web-root')?.type, 'root');
      assert.equal(listed.get('web-root')?.attached_to, 'web');
    });

    await t.test('start of a running VM is refused', async () => {
      const refused = await host.cli('vm', 'start', 'web');
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /already running/);
    });

    let dataSum = '';
    let rootSum = '';
    await t.test('a data volume attached to a stopped VM is mounted at /mnt/NAME', async () => {
      await host.ok('volume', 'create', '2G', '--name', 'appdata');
      await host.ok('vm', 'stop', 'web');
      const stoppedExec = await host.cli('vm', 'exec', 'web', '--', 'true');
      assert.equal(stoppedExec.code, 1);
      assert.match(stoppedExec.stderr, /is stopped, start it with sistemo vm start web/);
      await host.ok('vm', 'volume', 'attach', 'web', 'appdata');
      await host.ok('vm', 'start', 'web');
      await host.ok('vm', 'exec', 'web', '--', 'sh', '-c', 'head -c 4194304 /dev/urandom > /mnt/appdata/data.bin && head -c 1048576 /dev/urandom > /root/root.bin && sync');
      dataSum = await guestSha256(host, 'web', '/mnt/appdata/data.bin');
      rootSum = await guestSha256(host, 'web', '/root/root.bin');
      const serial = await host.ok('vm', 'exec', 'web', '--', 'readlink', '-f', '/dev/disk/by-id/virtio-appdata');
      assert.match(serial.trim(), /^\/dev\/vd[b-z]$/);
      const bytes = await guestFilesystemBytes(host, 'web', '/mnt/appdata');
      assert.ok(bytes > 1.8 * GiB, `appdata filesystem is only ${bytes} bytes`);
      assert.ok(bytes <= 2 * GiB, `appdata filesystem is ${bytes} bytes, over the volume size`);
    });

    await t.test('vm exec passes the exit code and arguments through', async () => {
      const failed = await host.cli('vm', 'exec', 'web', '--', 'sh', '-c', 'exit 7');
      assert.equal(failed.code, 7);
      const echoed = await host.ok('vm', 'exec', 'web', '--', 'printf', '%s|', 'two words', "it's", '$HOME');
      assert.equal(echoed, "two words|it's|$HOME|");
    });

    await t.test('the VM keeps running across a daemon SIGKILL and is adopted', async () => {
      const pidsBefore = await host.qemuPids();
      await host.killDaemon();
      assert.deepEqual(await host.qemuPids(), pidsBefore);
      await host.startDaemon();
      const vm = JSON.parse(await host.ok('vm', 'status', 'web', '-o', 'json')) as VmJson;
      assert.equal(vm.status, 'running');
      assert.equal(await guestSha256(host, 'web', '/root/root.bin'), rootSum);
    });

    await t.test('resize of a running VM root volume is refused', async () => {
      const refused = await host.cli('volume', 'resize', 'web-root', '10GB');
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /stop it first with sistemo vm stop web/);
    });

    await t.test('resize grows the root filesystem and keeps both files', async () => {
      await host.ok('vm', 'stop', 'web');
      await host.ok('volume', 'resize', 'web-root', '10GB');
      await host.ok('vm', 'start', 'web');
      const bytes = await guestFilesystemBytes(host, 'web', '/');
      assert.ok(bytes > 9.5 * GiB, `root filesystem is only ${bytes} bytes`);
      assert.ok(bytes <= 10 * GiB, `root filesystem is ${bytes} bytes, over the volume size`);
      assert.equal(await guestSha256(host, 'web', '/root/root.bin'), rootSum);
      assert.equal(await guestSha256(host, 'web', '/mnt/appdata/data.bin'), dataSum);
    });

    await t.test('delete with --preserve-storage keeps both volumes detached', async () => {
      await host.ok('vm', 'delete', 'web', '--preserve-storage', '-y');
      const table = await host.ok('volume', 'list');
      const lines = table.trim().split('\n');
      assert.match(lines[0] ?? '', /^NAME\s+SIZE\s+STATUS\s+ATTACHED TO\s+TYPE$/);
      assert.ok(lines.some((line) => /^appdata\s+2\.0GB\s+detached\s+-\s+data$/.test(line)), table);
      assert.ok(lines.some((line) => /^web-root\s+10\.0GB\s+detached\s+-\s+root$/.test(line)), table);
    });

    await t.test('deploying web again while web-root is kept is refused', async () => {
      const refused = await host.cli('vm', 'deploy', 'debian', '--name', 'web');
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /--volume web-root/);
      assert.match(refused.stderr, /volume delete web-root/);
      assert.equal(JSON.parse(await host.ok('vm', 'list', '-o', 'json')).length, 0);
    });

    await t.test('the kept root volume boots web2 and a second VM reads appdata', async () => {
      await host.ok('vm', 'deploy', '--volume', 'web-root', '--name', 'web2');
      assert.equal(await guestSha256(host, 'web2', '/root/root.bin'), rootSum);
      await host.ok('vm', 'deploy', 'debian', '--name', 'api', '--attach', 'appdata');
      assert.equal(await guestSha256(host, 'api', '/mnt/appdata/data.bin'), dataSum);
      const listed = await volumes(host);
      assert.equal(listed.get('web-root')?.attached_to, 'web2');
      assert.equal(listed.get('appdata')?.attached_to, 'api');
    });

    await t.test('delete removes the VM, its root volume file and its tap', async () => {
      const web2 = JSON.parse(await host.ok('vm', 'status', 'web2', '-o', 'json')) as VmJson;
      const rootId = (await volumes(host)).get('web-root')?.id ?? '';
      await host.ok('vm', 'delete', 'web2', '-y');
      assert.equal(existsSync(path.join(host.dataDir, 'volumes', `${rootId}.img`)), false);
      assert.equal((await volumes(host)).has('web-root'), false);
      const links = await host.inNetns(['ip', '-o', 'link', 'show']);
      assert.doesNotMatch(links.stdout, new RegExp(`sm${web2.id.slice(1)}`));
      await host.ok('vm', 'delete', 'api', '-y');
      assert.equal((await volumes(host)).get('appdata')?.status, 'detached');
    });
  } finally {
    await host.cleanup();
  }
});
