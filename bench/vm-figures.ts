import { execFile } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { loadConfig } from '../src/config.js';
import { buildQemuArgs, macFor, type VmSpec } from '../src/engine/qemu-args.js';
import { isAlive } from '../src/engine/engine.js';
import { newId } from '../src/paths.js';
import { Ext4VolumeTool } from '../src/storage/volume-tool.js';
import { ProcessRunner } from '../src/system/runner.js';
import type { TestHost } from '../test/helpers/host.js';
import { timeApiRequest, timeProcess } from './measure.js';
import { makeRow, type Row } from './report.js';
import { allocatedBytes, cliArgv, seedVms, withCleanup, withHost, withScratchDir } from './setup.js';

const execFileAsync = promisify(execFile);

/** The compiled helper that boots the raw QEMU command inside the namespace. */
const rawBootScript = path.join(path.dirname(new URL(import.meta.url).pathname), 'raw-boot.js');

/** The raw VM's own bridge, tap and subnet in the bench namespace, apart from the daemon's sistemo0. */
const rawBridge = 'smbbr0';
const rawTap = 'smbtap0';
const rawGateway = '10.201.0.1';
const rawAddress = '10.201.0.2';
const rawPrefix = 24;

function socketOf(host: TestHost): string {
  return path.join(host.dataDir, 'sistemo.sock');
}

/** Reads a file once so that the first timed round does not pay for cold page cache. */
async function warmPageCache(file: string): Promise<void> {
  const handle = await fs.open(file, 'r');
  try {
    const buffer = Buffer.alloc(1 << 20);
    let position = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

/** Kills a raw QEMU by the pid in its pid file, after checking that the process is that QEMU. */
async function killRawQemu(pidFile: string): Promise<void> {
  const pid = Number((await fs.readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 1) return;
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes(pidFile)) return;
  process.kill(pid, 'SIGKILL');
  for (let waited = 0; waited < 10_000 && isAlive(pid); waited += 100) await sleep(100);
}

async function inNamespace(host: TestHost, argv: string[]): Promise<void> {
  await execFileAsync('ip', ['-n', host.netns, ...argv]);
}

/** Creates the raw VM's bridge and tap inside the host's namespace and removes them afterwards. */
async function withRawNetwork<T>(host: TestHost, work: () => Promise<T>): Promise<T> {
  await inNamespace(host, ['link', 'add', 'name', rawBridge, 'type', 'bridge']);
  const removeLinks = async () => {
    await inNamespace(host, ['link', 'delete', 'dev', rawTap]).catch(() => undefined);
    await inNamespace(host, ['link', 'delete', 'dev', rawBridge]).catch(() => undefined);
  };
  return withCleanup(removeLinks, async () => {
    await inNamespace(host, ['addr', 'add', `${rawGateway}/${rawPrefix}`, 'dev', rawBridge]);
    await inNamespace(host, ['link', 'set', 'dev', rawBridge, 'up']);
    await inNamespace(host, ['tuntap', 'add', 'dev', rawTap, 'mode', 'tap']);
    await inNamespace(host, ['link', 'set', 'dev', rawTap, 'master', rawBridge]);
    await inNamespace(host, ['link', 'set', 'dev', rawTap, 'up']);
    return work();
  });
}

/**
 * Builds the spec of the raw VM: the daemon's defaults for vCPUs and memory, the same kernel,
 * initrd and key, and a copy of the image as its only disk.
 */
function rawSpec(host: TestHost, scratch: string, disk: string): VmSpec {
  const { config } = loadConfig(path.join(host.dataDir, 'config.yml'));
  const imageDir = path.join(host.dataDir, 'images', 'debian');
  const vmId = newId('m');
  return {
    vmId,
    name: 'raw-boot',
    vcpus: config.default_vcpus,
    memoryBytes: config.default_memory,
    accelerator: config.accelerator === 'kvm' ? 'kvm' : 'tcg',
    kernel: path.join(imageDir, 'vmlinuz'),
    initrd: path.join(imageDir, 'initrd.img'),
    disks: [{ file: disk, serial: 'raw-boot-root', name: 'raw-boot-root' }],
    network: { tap: rawTap, mac: macFor(vmId), ip: rawAddress, prefix: rawPrefix, gateway: rawGateway },
    sshPublicKey: readFileSync(path.join(host.dataDir, 'ssh', 'id_ed25519.pub'), 'utf8'),
    qmpSocket: path.join(scratch, 'qmp.sock'),
    pidFile: path.join(scratch, 'qemu.pid'),
    consoleLog: path.join(scratch, 'console.log'),
  };
}

/** Boots the raw QEMU command once and returns the milliseconds from spawn to the SSH banner. */
async function bootRawOnce(host: TestHost, scratch: string, copier: Ext4VolumeTool): Promise<number> {
  const disk = path.join(scratch, 'root.img');
  await fs.rm(disk, { force: true });
  await copier.copySparse(path.join(host.dataDir, 'images', 'debian', 'rootfs.ext4'), disk);
  const spec = rawSpec(host, scratch, disk);
  await fs.rm(spec.pidFile, { force: true });
  await fs.rm(spec.qmpSocket, { force: true });
  const specFile = path.join(scratch, 'boot.json');
  await fs.writeFile(specFile, JSON.stringify({ argv: buildQemuArgs(spec), ip: rawAddress, timeoutMs: 300_000, consoleLog: spec.consoleLog }));
  try {
    const result = await timeProcess(['ip', 'netns', 'exec', host.netns, 'node', rawBootScript, specFile]);
    return (JSON.parse(result.stdout) as { ms: number }).ms;
  } finally {
    await killRawQemu(spec.pidFile);
  }
}

/**
 * deploy-to-ssh: `vm deploy debian` from CLI spawn to its exit (it exits once sshd sends its
 * banner), against the same QEMU argv started by hand and timed from spawn to the banner.
 * Rounds alternate which side goes first, so drift in host load falls on both.
 */
export async function deployToSsh(rounds: number, log: (line: string) => void): Promise<Row[]> {
  return withHost({ withImage: true }, async (host) => {
    await host.startDaemon();
    const imageDir = path.join(host.dataDir, 'images', 'debian');
    for (const file of ['rootfs.ext4', 'vmlinuz', 'initrd.img']) await warmPageCache(path.join(imageDir, file));
    const copier = new Ext4VolumeTool(new ProcessRunner());
    return withScratchDir((scratch) => withRawNetwork(host, async () => {
      const sistemoSamples: number[] = [];
      const rawSamples: number[] = [];
      for (let round = 0; round < rounds; round++) {
        const runSistemo = async () => {
          const name = `b${round}`;
          const result = await timeProcess(['ip', 'netns', 'exec', host.netns, ...cliArgv(host.dataDir, 'vm', 'deploy', 'debian', '--name', name)]);
          sistemoSamples.push(result.ms);
          log(`deploy-to-ssh round ${round + 1}: sistemo ${(result.ms / 1000).toFixed(2)} s`);
          await host.ok('vm', 'delete', '-y', name);
        };
        const runRaw = async () => {
          const ms = await bootRawOnce(host, scratch, copier);
          rawSamples.push(ms);
          log(`deploy-to-ssh round ${round + 1}: raw ${(ms / 1000).toFixed(2)} s`);
        };
        if (round % 2 === 0) {
          await runSistemo();
          await runRaw();
        } else {
          await runRaw();
          await runSistemo();
        }
      }
      return [makeRow({
        name: 'deploy-to-ssh', unit: 'ms', sistemoLabel: 'CLI', rawLabel: 'QEMU by hand',
        sistemoSamples, rawSamples, target: { kind: 'ratio', max: 1.15 },
      })];
    }));
  });
}

/**
 * root-volume-allocation: allocated bytes of the root volume right after `vm deploy --storage 5G`,
 * when the guest has booted and written to it. The second row is the same copy and grow done
 * with the daemon's own tool calls and never booted. Both compare with the image's allocated bytes.
 */
export async function rootVolumeAllocation(log: (line: string) => void): Promise<Row[]> {
  return withHost({ withImage: true }, async (host) => {
    await host.startDaemon();
    const image = path.join(host.dataDir, 'images', 'debian', 'rootfs.ext4');
    const imageBytes = await allocatedBytes(image);

    await host.ok('vm', 'deploy', 'debian', '--name', 'alloc', '--storage', '5G');
    const volume = JSON.parse((await timeApiRequest(socketOf(host), 'GET', '/api/v1/volumes/alloc-root')).body) as { id: string };
    const bootedBytes = await allocatedBytes(path.join(host.dataDir, 'volumes', `${volume.id}.img`));
    await host.ok('vm', 'delete', '-y', 'alloc');

    const { unbootedBytes, copiedBytes } = await withScratchDir(async (scratch) => {
      const tool = new Ext4VolumeTool(new ProcessRunner());
      const file = path.join(scratch, 'root.img');
      await tool.copySparse(image, file);
      const copied = await allocatedBytes(file);
      await tool.setFileSize(file, 5 * 1024 ** 3);
      const undoFile = path.join(scratch, 'resize.e2undo');
      await tool.growFilesystem(file, { undoFile });
      await tool.remove(undoFile);
      return { unbootedBytes: await allocatedBytes(file), copiedBytes: copied };
    });
    log(`root-volume-allocation: image ${imageBytes}, copy ${copiedBytes}, copy+grow ${unbootedBytes}, after deploy ${bootedBytes} bytes`);
    const note = `a plain copy before the grow allocates ${copiedBytes} bytes`;
    return [
      makeRow({
        name: 'root-volume-allocation', unit: 'bytes', sistemoLabel: 'after deploy, booted', rawLabel: 'image',
        sistemoSamples: [bootedBytes], rawSamples: [imageBytes], target: { kind: 'ratio', max: 1.05 }, note,
      }),
      makeRow({
        name: 'root-volume-allocation', unit: 'bytes', sistemoLabel: 'copy+grow, not booted', rawLabel: 'image',
        sistemoSamples: [unbootedBytes], rawSamples: [imageBytes], target: { kind: 'ratio', max: 1.05 }, note,
      }),
    ];
  });
}

/**
 * vm-list-50: `vm list` (CLI process end to end) and `GET /api/v1/vms` with 50 stopped VMs
 * recorded. The floors are `node -e ''` for the CLI and `GET /api/v1/health` for the API.
 */
export async function vmList50(rounds: number, log: (line: string) => void): Promise<Row[]> {
  return withHost({}, async (host) => {
    await host.startDaemon();
    await host.terminateDaemon();
    seedVms(host.dataDir, 50);
    await host.startDaemon();
    const socket = socketOf(host);
    const listed = JSON.parse((await timeApiRequest(socket, 'GET', '/api/v1/vms')).body) as unknown[];
    if (listed.length !== 50) throw new Error(`vm-list-50: the daemon lists ${listed.length} VMs, expected 50`);
    // One untimed run of each, so that no sample pays for a cold page cache.
    await timeProcess(cliArgv(host.dataDir, 'vm', 'list'));
    await timeProcess(['node', '-e', '']);

    const cli: number[] = [];
    const node: number[] = [];
    const api: number[] = [];
    const health: number[] = [];
    for (let round = 0; round < rounds; round++) {
      cli.push((await timeProcess(cliArgv(host.dataDir, 'vm', 'list'))).ms);
      node.push((await timeProcess(['node', '-e', ''])).ms);
      api.push((await timeApiRequest(socket, 'GET', '/api/v1/vms')).ms);
      health.push((await timeApiRequest(socket, 'GET', '/api/v1/health')).ms);
    }
    log(`vm-list-50: CLI ${cli.map((ms) => ms.toFixed(0)).join(' ')} ms; node -e '' ${node.map((ms) => ms.toFixed(0)).join(' ')} ms`);
    return [
      makeRow({ name: 'vm-list-50', unit: 'ms', sistemoLabel: 'CLI', rawLabel: "node -e ''", sistemoSamples: cli, rawSamples: node, target: { kind: 'below', max: 150 } }),
      makeRow({ name: 'vm-list-50', unit: 'ms', sistemoLabel: 'API', rawLabel: 'GET /health', sistemoSamples: api, rawSamples: health, target: { kind: 'below', max: 150 } }),
    ];
  });
}
