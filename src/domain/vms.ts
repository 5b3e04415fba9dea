import { promises as fs } from 'node:fs';
import type { VmRow, VolumeRow } from '../db/store.js';
import { SistemoError, conflict, invalid, wrongState } from '../errors.js';
import type { VmSpec } from '../engine/qemu-args.js';
import { macFor } from '../engine/qemu-args.js';
import { cidrText, firstFreeAddress, gatewayOf } from '../network/cidr.js';
import { tapNameFor } from '../network/network.js';
import { parsePortMapping, type PortMapping } from '../network/ports.js';
import { newId } from '../paths.js';
import type { Actor, Context, Progress } from './context.js';
import { Operation, audited, messageOf } from './journal.js';
import { requireVm, requireVolume, ensureFreeSpace } from './lookup.js';
import { rootVolumeName, validateName, validateVmName, volumeSerial } from './names.js';
import {
  checkPortUnclaimed, checkPortsFree, networkOfVm, resolveNetwork, syncFirewallAfter, vmDetails,
  type VmDetails, type VmNetwork,
} from './networks.js';
import { GiB, formatSize, parseSize } from './size.js';
import { assertTransition } from './vm-state.js';

/** A data volume limit per VM, which keeps the kernel command line well under its 2048 bytes. */
export const maxDataVolumesPerVm = 16;

export interface DeployRequest {
  image?: string;
  name?: string;
  vcpus?: number;
  memory?: string;
  storage?: string;
  attach?: string[];
  volume?: string;
  /** A named network, or `default` (the same as none) for the default bridge. */
  network?: string;
  /** Host ports to forward, as `[HOST:]PORT` over TCP. */
  expose?: string[];
}

export interface DeployData {
  vmId: string;
  volumeId: string;
  /** True when deploy created the root volume; false when it boots an existing one. */
  createdVolume: boolean;
  attached: string[];
}

function defaultVmName(context: Context, base: string): string {
  if (!context.store.findVm(base) && !context.store.findVolume(rootVolumeName(base))) return base;
  for (let index = 2; ; index++) {
    const candidate = `${base}-${index}`;
    if (!context.store.findVm(candidate) && !context.store.findVolume(rootVolumeName(candidate))) return candidate;
  }
}

/** Validates a deploy request without touching anything; returns the settled values. */
function settleDeploy(context: Context, request: DeployRequest) {
  const { config } = context;
  if (request.name !== undefined) validateVmName(request.name);
  const vcpus = request.vcpus ?? config.default_vcpus;
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > config.max_vcpus) {
    throw invalid(`Invalid vCPU count ${vcpus}: use 1 to ${config.max_vcpus} (max_vcpus)`);
  }
  const memory = request.memory === undefined
    ? config.default_memory
    : parseSize(request.memory, { what: 'memory', max: config.max_memory });
  if (memory < 128 * 1024 * 1024) throw invalid(`Invalid memory "${request.memory}": a VM needs at least 128M, such as 512M`);
  const storage = request.storage === undefined ? undefined : parseSize(request.storage, { what: 'storage', max: config.max_volume_size });
  const attach = (request.attach ?? []).map((name) => validateName(name, 'volume'));
  if (new Set(attach).size !== attach.length) throw invalid('Invalid --attach: a volume is listed twice');
  if (attach.length > maxDataVolumesPerVm) throw invalid(`Invalid --attach: a VM can have at most ${maxDataVolumesPerVm} data volumes`);
  if (request.volume !== undefined) {
    validateName(request.volume, 'volume');
    if (attach.includes(request.volume)) throw invalid(`Invalid deploy: volume "${request.volume}" cannot be both the root volume and attached with --attach`);
    if (request.storage !== undefined) throw invalid('Invalid deploy: --storage applies to new root volumes, resize the volume with sistemo volume resize instead');
  }
  const expose = (request.expose ?? []).map((text) => parsePortMapping(text));
  const network = resolveNetwork(context, request.network);
  return { vcpus, memory, storage, attach, expose, network };
}

/** Records the VM's exposures inside the deploy transaction; a port claimed meanwhile aborts it. */
function insertExposures(context: Context, vmId: string, vmName: string, mappings: readonly PortMapping[]): void {
  for (const mapping of mappings) {
    checkPortUnclaimed(context, mapping, vmName);
    context.store.insertExposure({ protocol: mapping.protocol, host_port: mapping.hostPort, vm_id: vmId, vm_port: mapping.vmPort });
  }
}

/** Checks that a volume can be attached as a data disk of a new or stopped VM. */
function checkAttachable(context: Context, name: string, vmName: string): VolumeRow {
  const volume = requireVolume(context, name);
  if (volume.vm_id) {
    const owner = context.store.getVmById(volume.vm_id);
    const ownerName = owner?.name ?? volume.vm_id;
    if (volume.role === 'boot') {
      throw conflict(`Cannot use volume "${name}" for VM "${vmName}": it is the root volume of VM "${ownerName}", delete that VM with --preserve-storage first`);
    }
    throw conflict(`Cannot use volume "${name}" for VM "${vmName}": it is attached to VM "${ownerName}", detach it first with sistemo vm volume detach ${ownerName} ${name}`);
  }
  if (volume.state !== 'ready') throw wrongState(`Cannot attach volume "${name}": it is ${volume.state}`);
  return volume;
}

/** Creates a VM from an image (or an existing root volume) and boots it. */
export async function deployVm(context: Context, request: DeployRequest, actor: Actor, progress: Progress): Promise<VmDetails> {
  const target = request.name ?? request.volume ?? request.image ?? 'debian';
  return audited(context, { actor, action: 'vm.deploy', target, details: { request } }, async (details) => {
    const settled = settleDeploy(context, request);
    if (request.volume !== undefined) return deployFromVolume(context, request.volume, { ...settled, name: request.name }, progress, details);

    const imageReference = request.image ?? 'debian';
    const name = request.name ?? defaultVmName(context, imageReference === 'debian' ? 'debian' : 'vm');
    const volumeName = rootVolumeName(name);
    checkNamesFree(context, name);
    settled.attach.forEach((volume) => checkAttachable(context, volume, name));
    await checkPortsFree(context, settled.expose, name);

    const image = await context.images.resolve(imageReference, progress);
    const imageBytes = await context.volumes.fileSize(image.rootfs);
    const storage = settled.storage ?? Math.max(2 * GiB, imageBytes);
    if (storage < imageBytes) {
      throw invalid(`Invalid storage "${request.storage}": the ${imageReference} image needs at least ${formatSize(imageBytes)}, such as --storage ${Math.ceil(imageBytes / GiB)}G`);
    }
    await ensureFreeSpace(context, storage, `deploy VM "${name}" with ${formatSize(storage)} of storage`);

    const vmId = newId('m');
    const volumeId = newId('v');
    const operation = context.store.transaction(() => {
      checkNamesFree(context, name);
      const attachRows = settled.attach.map((volume) => checkAttachable(context, volume, name));
      const network = resolveNetwork(context, request.network);
      insertVmRow(context, { vmId, name, vcpus: settled.vcpus, memory: settled.memory, image: image.name, ssh: image.ssh, network });
      insertExposures(context, vmId, name, settled.expose);
      context.store.insertVolume({
        id: volumeId, name: volumeName, type: 'root', size_bytes: storage, state: 'busy',
        vm_id: vmId, role: 'boot', boot_image: image.bootImage, ssh: image.ssh ? 1 : 0,
      });
      for (const volume of attachRows) {
        if (!context.store.claimVolume(volume.id)) throw conflict(`Cannot attach volume "${volume.name}": it is busy with another operation`);
        context.store.setVolumeAttachment(volume.id, vmId, 'data');
      }
      const data: DeployData = { vmId, volumeId, createdVolume: true, attached: attachRows.map((volume) => volume.id) };
      return Operation.begin(context, 'deploy', { vmId, volumeId }, { ...data });
    });
    operation.step('recorded');
    details.vm_id = vmId;
    details.root_volume = volumeName;
    details.storage_bytes = storage;

    try {
      progress(`Creating root volume ${volumeName} (${formatSize(storage)})`);
      const partial = context.paths.partialVolumeFile(volumeId);
      await context.volumes.copySparse(image.rootfs, partial);
      operation.step('copied');
      if (image.name === 'file') await context.volumes.check(partial);
      if (storage > imageBytes) {
        await context.volumes.setFileSize(partial, storage);
        // No undo file: the copy is new, and a failed or interrupted deploy deletes it.
        await context.volumes.growFilesystem(partial, {});
      }
      await context.volumes.rename(partial, context.paths.volumeFile(volumeId));
      operation.step('volume_ready');
      return await bootNewVm(context, vmId, operation, progress);
    } catch (error) {
      await rollbackDeploy(context, operation.id, { vmId, volumeId, createdVolume: true, attached: settled.attach }, error);
      throw error;
    }
  });
}

function checkNamesFree(context: Context, name: string): void {
  if (context.store.findVm(name)) throw conflict(`Cannot deploy VM "${name}": a VM with that name exists`);
  const volumeName = rootVolumeName(name);
  const existing = context.store.findVolume(volumeName);
  if (existing) {
    const how = existing.vm_id
      ? `it is attached to another VM, choose another name`
      : existing.type === 'root'
        ? `boot it with sistemo vm deploy --volume ${volumeName} --name ${name}, or delete it with sistemo volume delete ${volumeName}`
        : `it is a data volume, choose another VM name or delete it with sistemo volume delete ${volumeName}`;
    throw conflict(`Cannot deploy VM "${name}": volume "${volumeName}" already exists: ${how}`);
  }
}

function insertVmRow(
  context: Context,
  vm: { vmId: string; name: string; vcpus: number; memory: number; image: string; ssh: boolean; network: VmNetwork },
): void {
  const ip = firstFreeAddress(vm.network.subnet, context.store.usedAddresses());
  if (!ip) {
    throw new SistemoError('conflict', `Cannot deploy VM "${vm.name}": no free address left in ${cidrText(vm.network.subnet)} of network "${vm.network.name}"`);
  }
  context.store.insertVm({
    id: vm.vmId, name: vm.name, status: 'creating', vcpus: vm.vcpus, memory_bytes: vm.memory,
    image: vm.image, ip, mac: macFor(vm.vmId), tap: tapNameFor(vm.vmId), pid: null, ssh: vm.ssh ? 1 : 0,
    network_id: vm.network.id,
  });
}

async function deployFromVolume(
  context: Context,
  volumeName: string,
  settled: { vcpus: number; memory: number; attach: string[]; expose: PortMapping[]; name: string | undefined; network: VmNetwork },
  progress: Progress,
  details: Record<string, unknown>,
): Promise<VmDetails> {
  const volume = requireVolume(context, volumeName);
  if (volume.type !== 'root') {
    throw invalid(`Cannot boot from volume "${volumeName}": it is a data volume, only root volumes hold an operating system`);
  }
  const base = volumeName.endsWith('-root') ? volumeName.slice(0, -'-root'.length) : volumeName;
  const name = settled.name ?? defaultBootName(context, base);
  if (context.store.findVm(name)) throw conflict(`Cannot deploy VM "${name}": a VM with that name exists`);
  checkAttachable(context, volumeName, name);
  settled.attach.forEach((other) => checkAttachable(context, other, name));
  await checkPortsFree(context, settled.expose, name);
  await context.images.bootFiles(volume.boot_image ?? 'debian', progress);

  const vmId = newId('m');
  const operation = context.store.transaction(() => {
    if (context.store.findVm(name)) throw conflict(`Cannot deploy VM "${name}": a VM with that name exists`);
    const root = checkAttachable(context, volumeName, name);
    const attachRows = settled.attach.map((other) => checkAttachable(context, other, name));
    const network = resolveNetwork(context, settled.network.name);
    insertVmRow(context, { vmId, name, vcpus: settled.vcpus, memory: settled.memory, image: `volume:${volumeName}`, ssh: root.ssh === 1, network });
    insertExposures(context, vmId, name, settled.expose);
    if (!context.store.claimVolume(root.id)) throw conflict(`Cannot boot from volume "${volumeName}": it is busy with another operation`);
    context.store.setVolumeAttachment(root.id, vmId, 'boot');
    for (const other of attachRows) {
      if (!context.store.claimVolume(other.id)) throw conflict(`Cannot attach volume "${other.name}": it is busy with another operation`);
      context.store.setVolumeAttachment(other.id, vmId, 'data');
    }
    const data: DeployData = { vmId, volumeId: root.id, createdVolume: false, attached: attachRows.map((row) => row.id) };
    return Operation.begin(context, 'deploy', { vmId, volumeId: root.id }, { ...data });
  });
  operation.step('recorded');
  details.vm_id = vmId;
  details.root_volume = volumeName;
  try {
    operation.step('volume_ready');
    return await bootNewVm(context, vmId, operation, progress);
  } catch (error) {
    await rollbackDeploy(context, operation.id, { vmId, volumeId: volume.id, createdVolume: false, attached: [] }, error);
    throw error;
  }
}

function defaultBootName(context: Context, base: string): string {
  if (!context.store.findVm(base)) return base;
  for (let index = 2; ; index++) if (!context.store.findVm(`${base}-${index}`)) return `${base}-${index}`;
}

/** Boots a VM whose rows and volumes are in place, then marks everything ready. */
async function bootNewVm(context: Context, vmId: string, operation: Operation, progress: Progress): Promise<VmDetails> {
  await launch(context, vmId, operation, progress);
  const view = context.store.transaction(() => {
    context.store.setVmStatus(vmId, 'creating', 'running');
    for (const volume of context.store.volumesOfVm(vmId)) context.store.setVolumeState(volume.id, 'ready');
    operation.done();
    return vmDetails(context, vmId);
  });
  if (view.ports.length > 0) await syncFirewallAfter(context, view.name);
  return view;
}

/** Builds the QEMU spec for a VM from what the database records. */
async function specFor(context: Context, vm: VmRow, progress: Progress): Promise<VmSpec> {
  const volumes = context.store.volumesOfVm(vm.id);
  const boot = volumes.find((volume) => volume.role === 'boot');
  if (!boot) throw wrongState(`Cannot start VM "${vm.name}": it has no root volume`);
  for (const volume of volumes) {
    if (!(await context.volumes.exists(context.paths.volumeFile(volume.id)))) {
      throw wrongState(`Cannot start VM "${vm.name}": the file of volume "${volume.name}" is missing, see sistemo doctor`);
    }
  }
  const { kernel, initrd } = await context.images.bootFiles(boot.boot_image ?? 'debian', progress);
  const accelerator = await context.accelerator(kernel);
  if (accelerator.accelerator === 'tcg') progress(`Warning: using software emulation (TCG), VMs run slowly: ${accelerator.reason}`);
  if (!vm.ip) throw wrongState(`Cannot start VM "${vm.name}": it has no address`);
  const network = networkOfVm(context, vm);
  return {
    vmId: vm.id,
    name: vm.name,
    vcpus: vm.vcpus,
    memoryBytes: vm.memory_bytes,
    accelerator: accelerator.accelerator,
    kernel,
    initrd,
    disks: volumes.map((volume) => ({ file: context.paths.volumeFile(volume.id), serial: volumeSerial(volume), name: volume.name })),
    network: { tap: vm.tap, mac: vm.mac, ip: vm.ip, prefix: network.subnet.prefix, gateway: gatewayOf(network.subnet) },
    sshPublicKey: context.sshPublicKey,
    qmpSocket: context.paths.qmpSocket(vm.id),
    pidFile: context.paths.pidFile(vm.id),
    consoleLog: context.paths.consoleLog(vm.id),
  };
}

/** Creates the tap, starts QEMU and waits for sshd. On failure it kills what it started. */
async function launch(context: Context, vmId: string, operation: Operation, progress: Progress): Promise<void> {
  const vm = context.store.getVmById(vmId);
  if (!vm) throw new Error(`VM ${vmId} vanished`);
  const spec = await specFor(context, vm, progress);
  await fs.mkdir(context.paths.vmDir(vm.id), { recursive: true, mode: 0o700 });
  const network = networkOfVm(context, vm);
  // The daemon creates every named bridge at start; this brings back one removed since then.
  if (network.id !== null) await context.network.ensureBridge(network.bridge, network.subnet);
  await context.network.createTap(vm.tap, network.bridge);
  operation.step('network_ready');
  progress(`Booting VM ${vm.name} (${vm.vcpus} vCPUs, ${formatSize(vm.memory_bytes)}, ${spec.accelerator.toUpperCase()})`);
  const pid = await context.engine.start(spec);
  context.store.setVmPid(vm.id, pid);
  operation.step('started');
  context.log.info({ vm: vm.name, pid, accelerator: spec.accelerator }, 'VM process started');
  if (vm.ssh !== 1) {
    progress(`VM ${vm.name} has no sshd; not waiting for it`);
    return;
  }
  progress(`Waiting for sshd on ${vm.ip}`);
  try {
    await context.readiness.wait(vm.ip ?? '', {
      timeoutMs: context.config.ssh_timeout_sec * 1000,
      stillRunning: async () => (await context.engine.findProcess(vm.id, spec.pidFile)) !== undefined,
    });
  } catch (error) {
    context.log.error({ vm: vm.name, console: spec.consoleLog, err: error }, 'VM did not become ready');
    await killVmProcess(context, vm);
    throw new SistemoError('internal', `VM "${vm.name}" did not become ready: ${messageOf(error)} (console log: ${spec.consoleLog})`, { cause: error });
  }
}

async function killVmProcess(context: Context, vm: VmRow): Promise<void> {
  const pid = await context.engine.findProcess(vm.id, context.paths.pidFile(vm.id));
  if (pid !== undefined) await context.engine.kill(pid);
  context.store.setVmPid(vm.id, null);
}

/**
 * Undoes a deploy that failed or was interrupted: kills the VM process, removes the tap, deletes
 * the root volume only if the deploy created it, and detaches every other volume. Idempotent.
 */
export async function rollbackDeploy(context: Context, operationId: number, data: DeployData, cause: unknown): Promise<void> {
  const vm = context.store.getVmById(data.vmId);
  if (vm) {
    await killVmProcess(context, vm);
    await context.network.deleteTap(vm.tap);
    await fs.rm(context.paths.vmDir(vm.id), { recursive: true, force: true });
  }
  if (data.createdVolume) {
    await context.volumes.remove(context.paths.partialVolumeFile(data.volumeId));
    await context.volumes.remove(context.paths.volumeFile(data.volumeId));
    await context.volumes.remove(context.paths.resizeUndoFile(operationId));
  }
  context.store.transaction(() => {
    for (const volume of vm ? context.store.volumesOfVm(vm.id) : []) {
      if (data.createdVolume && volume.id === data.volumeId) {
        context.store.deleteVolume(volume.id);
      } else {
        context.store.setVolumeAttachment(volume.id, null, null);
        context.store.setVolumeState(volume.id, 'ready');
      }
    }
    if (data.createdVolume) context.store.deleteVolume(data.volumeId);
    if (vm) context.store.deleteVm(vm.id);
    context.store.finishOperation(operationId, 'rolled_back', messageOf(cause));
  });
}

/** Starts a stopped VM with exactly the volumes the database records. */
export async function startVm(context: Context, name: string, actor: Actor, progress: Progress): Promise<VmDetails> {
  return audited(context, { actor, action: 'vm.start', target: name }, async () => {
    const vm = requireVm(context, name);
    const operation = context.store.transaction(() => {
      const current = requireVm(context, name);
      assertTransition(name, current.status, 'starting');
      const busy = context.store.volumesOfVm(vm.id).find((volume) => volume.state !== 'ready');
      if (busy) throw wrongState(`Cannot start VM "${name}": volume "${busy.name}" is ${busy.state}`);
      context.store.setVmStatus(vm.id, 'stopped', 'starting');
      return Operation.begin(context, 'start', { vmId: vm.id }, {});
    });
    operation.step('recorded');
    try {
      await launch(context, vm.id, operation, progress);
    } catch (error) {
      await context.network.deleteTap(vm.tap).catch(() => {});
      context.store.transaction(() => {
        context.store.setVmStatus(vm.id, 'starting', 'stopped');
        operation.rolledBack(error);
      });
      throw error;
    }
    const view = context.store.transaction(() => {
      context.store.setVmStatus(vm.id, 'starting', 'running');
      operation.done();
      return vmDetails(context, vm.id);
    });
    if (view.ports.length > 0) await syncFirewallAfter(context, name);
    return view;
  });
}

/**
 * Stops a VM in bounded steps: ACPI powerdown, a wait of stop_timeout_sec, then SIGKILL.
 * Returns whether the guest powered off by itself.
 */
export async function haltVm(context: Context, vm: VmRow): Promise<boolean> {
  const pid = await context.engine.findProcess(vm.id, context.paths.pidFile(vm.id));
  if (pid === undefined) return true;
  try {
    await context.engine.powerdown(context.paths.qmpSocket(vm.id));
  } catch (error) {
    context.log.warn({ vm: vm.name, err: error }, 'QMP powerdown failed; killing the VM process');
  }
  const exited = await context.engine.waitForExit(pid, context.config.stop_timeout_sec * 1000);
  if (!exited) {
    context.log.warn({ vm: vm.name, pid, timeoutSec: context.config.stop_timeout_sec }, 'VM did not power off in time; killing it');
    await context.engine.kill(pid);
  }
  context.store.setVmPid(vm.id, null);
  return exited;
}

export async function stopVm(context: Context, name: string, actor: Actor): Promise<VmDetails> {
  return audited(context, { actor, action: 'vm.stop', target: name }, async (details) => {
    const vm = requireVm(context, name);
    const operation = context.store.transaction(() => {
      assertTransition(name, requireVm(context, name).status, 'stopping');
      context.store.setVmStatus(vm.id, 'running', 'stopping');
      return Operation.begin(context, 'stop', { vmId: vm.id }, {});
    });
    operation.step('recorded');
    try {
      details.clean_powerdown = await haltVm(context, vm);
      operation.step('halted');
      await context.network.deleteTap(vm.tap);
    } catch (error) {
      context.store.transaction(() => {
        context.store.setVmStatus(vm.id, 'stopping', 'running');
        operation.failed(error);
      });
      throw error;
    }
    const view = context.store.transaction(() => {
      context.store.setVmStatus(vm.id, 'stopping', 'stopped');
      operation.done();
      return vmDetails(context, vm.id);
    });
    if (view.ports.length > 0) await syncFirewallAfter(context, name);
    return view;
  });
}

export async function restartVm(context: Context, name: string, actor: Actor, progress: Progress): Promise<VmDetails> {
  const vm = requireVm(context, name);
  if (vm.status === 'running') await stopVm(context, name, actor);
  return startVm(context, name, actor, progress);
}

export interface DeleteData {
  vmId: string;
  preserve: boolean;
  rootVolumeId: string | null;
}

/**
 * Deletes a VM. Its root volume goes with it unless `preserve`; data volumes are always kept,
 * detached. The journal makes an interrupted delete finish on the next start.
 */
export async function deleteVm(context: Context, name: string, options: { preserve: boolean }, actor: Actor): Promise<void> {
  await audited(context, { actor, action: 'vm.delete', target: name, details: { preserve_storage: options.preserve } }, async (details) => {
    const vm = requireVm(context, name);
    const { operation, data } = context.store.transaction(() => {
      const current = requireVm(context, name);
      assertTransition(name, current.status, 'deleting');
      const volumes = context.store.volumesOfVm(vm.id);
      const busy = volumes.find((volume) => volume.state === 'busy');
      if (busy) throw wrongState(`Cannot delete VM "${name}": volume "${busy.name}" is busy with another operation`);
      context.store.setVmStatus(vm.id, current.status, 'deleting');
      const root = volumes.find((volume) => volume.role === 'boot');
      // Only the root volume changes; data volumes keep their state (an error state included).
      if (root) context.store.setVolumeState(root.id, 'busy');
      details.volumes = volumes.map((volume) => volume.name);
      const recorded: DeleteData = { vmId: vm.id, preserve: options.preserve, rootVolumeId: root?.id ?? null };
      return { operation: Operation.begin(context, 'delete', { vmId: vm.id, volumeId: root?.id }, { ...recorded }), data: recorded };
    });
    operation.step('recorded');
    await finishDelete(context, operation.id, data);
  });
}

/** Carries a recorded delete to its end; safe to run again after a crash at any step. */
export async function finishDelete(context: Context, operationId: number, data: DeleteData): Promise<void> {
  const vm = context.store.getVmById(data.vmId);
  const hadPorts = vm !== undefined && context.store.exposuresOfVm(vm.id).length > 0;
  if (vm) {
    await haltVm(context, vm);
    context.store.setOperationStep(operationId, 'halted');
    context.checkpoint('delete', 'halted');
    await context.network.deleteTap(vm.tap);
    await fs.rm(context.paths.vmDir(vm.id), { recursive: true, force: true });
  }
  if (!data.preserve && data.rootVolumeId) {
    await context.volumes.remove(context.paths.volumeFile(data.rootVolumeId));
    context.store.setOperationStep(operationId, 'files_removed');
    context.checkpoint('delete', 'files_removed');
  }
  context.store.transaction(() => {
    if (vm) {
      for (const volume of context.store.volumesOfVm(vm.id)) {
        if (!data.preserve && volume.id === data.rootVolumeId) {
          context.store.deleteVolume(volume.id);
          continue;
        }
        context.store.setVolumeAttachment(volume.id, null, null);
        if (volume.state === 'busy') context.store.setVolumeState(volume.id, 'ready');
      }
      context.store.deleteVm(vm.id);
    } else if (!data.preserve && data.rootVolumeId) {
      context.store.deleteVolume(data.rootVolumeId);
    }
    context.store.finishOperation(operationId, 'done');
  });
  // The delete removed the VM's exposures with its row; the rebuilt table drops their rules.
  if (hadPorts) await syncFirewallAfter(context, vm?.name ?? data.vmId);
  context.log.info({ vm: vm?.name ?? data.vmId, preserve: data.preserve }, 'VM deleted');
}

export function getVm(context: Context, name: string): VmDetails {
  const vm = requireVm(context, name);
  return vmDetails(context, vm.id);
}

/** Returns how the CLI reaches a running VM over SSH. */
export function sshTarget(context: Context, name: string): { host: string; user: string; identity_file: string; connect_timeout_sec: number } {
  const vm = requireVm(context, name);
  if (vm.status !== 'running') {
    throw wrongState(`Cannot reach VM "${name}": it is ${vm.status}, start it with sistemo vm start ${name}`);
  }
  if (vm.ssh !== 1) throw wrongState(`Cannot reach VM "${name}": its image has no sshd`);
  return { host: vm.ip ?? '', user: 'root', identity_file: context.paths.sshKey, connect_timeout_sec: Math.min(context.config.ssh_timeout_sec, 30) };
}
