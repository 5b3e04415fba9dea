import { randomBytes } from 'node:crypto';
import type { VolumeRow } from '../db/store.js';
import { CommandError, SistemoError, conflict, invalid, wrongState } from '../errors.js';
import { newId } from '../paths.js';
import { FilesystemCheckError } from '../storage/volume-tool.js';
import type { Actor, Context } from './context.js';
import { Operation, audited, messageOf } from './journal.js';
import { ensureFreeSpace, requireVm, requireVolume } from './lookup.js';
import { validateName } from './names.js';
import { formatSize, parseSize } from './size.js';
import { listVolumeViews, volumeView, type VolumeView } from './views.js';
import { maxDataVolumesPerVm } from './vms.js';

function viewOf(context: Context, volumeId: string): VolumeView {
  const volume = context.store.getVolumeById(volumeId);
  if (!volume) throw new Error(`Volume ${volumeId} vanished`);
  const vm = volume.vm_id ? context.store.getVmById(volume.vm_id) : undefined;
  return volumeView(volume, vm?.name ?? null);
}

export function listVolumes(context: Context): VolumeView[] {
  return listVolumeViews(context.store);
}

export function showVolume(context: Context, name: string): VolumeView {
  return viewOf(context, requireVolume(context, name).id);
}

function defaultVolumeName(context: Context): string {
  for (;;) {
    const candidate = `vol-${randomBytes(2).toString('hex')}`;
    if (!context.store.findVolume(candidate)) return candidate;
  }
}

/** Creates an empty ext4 data volume. */
export async function createVolume(context: Context, request: { size: string; name?: string }, actor: Actor): Promise<VolumeView> {
  const name = request.name ?? defaultVolumeName(context);
  return audited(context, { actor, action: 'volume.create', target: name, details: { size: request.size } }, async (details) => {
    validateName(name, 'volume');
    const size = parseSize(request.size, { max: context.config.max_volume_size });
    if (size < 16 * 1024 * 1024) throw invalid(`Invalid size "${request.size}": a volume needs at least 16M, such as 1G`);
    if (context.store.findVolume(name)) throw conflict(`Cannot create volume "${name}": a volume with that name exists`);
    await ensureFreeSpace(context, size, `create volume "${name}" of ${formatSize(size)}`);
    const volumeId = newId('v');
    const operation = context.store.transaction(() => {
      if (context.store.findVolume(name)) throw conflict(`Cannot create volume "${name}": a volume with that name exists`);
      context.store.insertVolume({ id: volumeId, name, type: 'data', size_bytes: size, state: 'busy', vm_id: null, role: null, boot_image: null, ssh: 0 });
      return Operation.begin(context, 'volume.create', { volumeId }, { volumeId });
    });
    operation.step('recorded');
    details.size_bytes = size;
    try {
      const partial = context.paths.partialVolumeFile(volumeId);
      await context.volumes.createFilesystem(partial, size, name);
      operation.step('formatted');
      await context.volumes.rename(partial, context.paths.volumeFile(volumeId));
    } catch (error) {
      await rollbackCreate(context, operation.id, volumeId, error);
      throw error;
    }
    return context.store.transaction(() => {
      context.store.setVolumeState(volumeId, 'ready');
      operation.done();
      return viewOf(context, volumeId);
    });
  });
}

/** Removes what an unfinished `volume create` wrote. Idempotent. */
export async function rollbackCreate(context: Context, operationId: number, volumeId: string, cause: unknown): Promise<void> {
  await context.volumes.remove(context.paths.partialVolumeFile(volumeId));
  await context.volumes.remove(context.paths.volumeFile(volumeId));
  context.store.transaction(() => {
    context.store.deleteVolume(volumeId);
    context.store.finishOperation(operationId, 'rolled_back', messageOf(cause));
  });
}

/**
 * Claims a volume for a change that needs the VM using it to be stopped. The check and the
 * claim happen in one transaction, so a concurrent start or second change cannot slip in.
 */
function claimStopped(context: Context, name: string, action: string): VolumeRow {
  return context.store.transaction(() => {
    const volume = requireVolume(context, name);
    if (volume.vm_id) {
      const vm = context.store.getVmById(volume.vm_id);
      if (vm && vm.status !== 'stopped') {
        throw wrongState(`Cannot ${action} volume "${name}": VM "${vm.name}" is ${vm.status}, stop it first with sistemo vm stop ${vm.name}`);
      }
    }
    // A volume in the error state may be claimed again once a person has repaired it.
    if (!context.store.claimVolume(volume.id, { fromError: action === 'resize' })) {
      throw conflict(`Cannot ${action} volume "${name}": it is ${volume.state === 'busy' ? 'busy with another operation' : 'in an error state, see sistemo volume show ' + name}`);
    }
    return volume;
  });
}

export interface ResizeData {
  volumeId: string;
  oldSize: number;
  newSize: number;
}

/** Grows a volume's file and filesystem. The filesystem is checked first and never resized when the check fails. */
export async function resizeVolume(context: Context, name: string, sizeText: string, actor: Actor): Promise<VolumeView> {
  return audited(context, { actor, action: 'volume.resize', target: name, details: { size: sizeText } }, async (details) => {
    const newSize = parseSize(sizeText, { max: context.config.max_volume_size });
    const volume = claimStopped(context, name, 'resize');
    const file = context.paths.volumeFile(volume.id);
    let operation: Operation | undefined;
    try {
      if (!(await context.volumes.exists(file))) {
        throw wrongState(`Cannot resize volume "${name}": its file ${file} is missing, see sistemo doctor`);
      }
      // The real file size decides, not the recorded one: the file is what the guest will see.
      const oldSize = await context.volumes.fileSize(file);
      details.before_bytes = oldSize;
      details.after_bytes = newSize;
      if (newSize <= oldSize) {
        throw invalid(`Cannot resize volume "${name}": ${formatSize(newSize)} is not larger than its current ${formatSize(oldSize)}, shrinking is not supported`);
      }
      await ensureFreeSpace(context, newSize - oldSize, `resize volume "${name}" from ${formatSize(oldSize)} to ${formatSize(newSize)}`);
      const data: ResizeData = { volumeId: volume.id, oldSize, newSize };
      operation = Operation.begin(context, 'volume.resize', { volumeId: volume.id }, { ...data });
      operation.step('recorded');
      await growVolume(context, operation, data);
    } catch (error) {
      if (error instanceof FilesystemCheckError || !operation) {
        // Neither the file size nor the filesystem size changed: the check runs first.
        context.store.setVolumeState(volume.id, 'ready');
        operation?.failed(error);
      } else {
        await rollbackResize(context, operation.id, { volumeId: volume.id, oldSize: Number(details.before_bytes), newSize }, error);
      }
      if (error instanceof FilesystemCheckError) {
        context.log.error({ volume: name, argv: error.cause instanceof CommandError ? error.cause.argv : undefined, output: error.cause instanceof CommandError ? error.cause.stderrTail : undefined }, 'filesystem check failed before resize');
        throw new SistemoError('wrong_state', `Cannot resize volume "${name}": its filesystem has errors that need a manual check, so it was not resized: run e2fsck -f ${file} while no VM uses it`, { cause: error });
      }
      throw error;
    }
    return viewOf(context, volume.id);
  });
}

async function growVolume(context: Context, operation: Operation, data: ResizeData): Promise<void> {
  const file = context.paths.volumeFile(data.volumeId);
  await context.volumes.check(file, (pid) => operation.child(pid));
  operation.child(null);
  operation.step('checked');
  await context.volumes.setFileSize(file, data.newSize);
  operation.step('file_grown');
  await context.volumes.growFilesystem(file, { undoFile: context.paths.resizeUndoFile(operation.id), onSpawn: (pid) => operation.child(pid) });
  operation.child(null);
  operation.step('filesystem_grown');
  completeResize(context, operation.id, data);
}

export function completeResize(context: Context, operationId: number, data: ResizeData): void {
  context.store.transaction(() => {
    context.store.setVolumeSize(data.volumeId, data.newSize);
    context.store.setVolumeState(data.volumeId, 'ready');
    context.store.finishOperation(operationId, 'done');
  });
  void context.volumes.remove(context.paths.resizeUndoFile(operationId));
  context.log.info({ volume: data.volumeId, before: data.oldSize, after: data.newSize }, 'volume resized');
}

/**
 * Returns a volume to its size before a failed or interrupted resize. When the filesystem may
 * have been partly grown, the undo file written by resize2fs restores its blocks first. A
 * filesystem that is still not clean afterwards marks the volume `error` with what to run.
 */
export async function rollbackResize(context: Context, operationId: number, data: ResizeData, cause: unknown): Promise<void> {
  const file = context.paths.volumeFile(data.volumeId);
  const undoFile = context.paths.resizeUndoFile(operationId);
  const info = await context.volumes.filesystemInfo(file).catch(() => undefined);
  if (info === undefined || info.bytes > data.oldSize) {
    if (await context.volumes.exists(undoFile)) {
      context.log.warn({ volume: data.volumeId, undoFile }, 'restoring the filesystem from the resize undo file');
      await context.volumes.undo(undoFile, file);
    }
  }
  if ((await context.volumes.fileSize(file)) > data.oldSize) await context.volumes.setFileSize(file, data.oldSize);
  const clean = await context.volumes.isClean(file);
  context.store.transaction(() => {
    if (clean) {
      context.store.setVolumeState(data.volumeId, 'ready');
    } else {
      context.store.setVolumeState(data.volumeId, 'error', `the filesystem needs a manual check: run e2fsck -f ${file}`);
    }
    context.store.finishOperation(operationId, clean ? 'rolled_back' : 'failed', messageOf(cause));
  });
  await context.volumes.remove(undoFile);
}

/** Deletes a detached volume and its file. */
export async function deleteVolume(context: Context, name: string, actor: Actor): Promise<void> {
  await audited(context, { actor, action: 'volume.delete', target: name }, async (details) => {
    const { operation, volumeId } = context.store.transaction(() => {
      const volume = requireVolume(context, name);
      if (volume.vm_id) {
        const vm = context.store.getVmById(volume.vm_id);
        const how = volume.role === 'boot'
          ? `it is the root volume of VM "${vm?.name}", delete the VM with sistemo vm delete ${vm?.name}`
          : `it is attached to VM "${vm?.name}", detach it with sistemo vm volume detach ${vm?.name} ${name}`;
        throw conflict(`Cannot delete volume "${name}": ${how}`);
      }
      if (!context.store.claimVolume(volume.id)) throw conflict(`Cannot delete volume "${name}": it is busy with another operation`);
      details.size_bytes = volume.size_bytes;
      details.type = volume.type;
      return { operation: Operation.begin(context, 'volume.delete', { volumeId: volume.id }, { volumeId: volume.id }), volumeId: volume.id };
    });
    operation.step('recorded');
    await finishVolumeDelete(context, operation.id, volumeId);
  });
}

/** Carries a recorded volume delete to its end; safe to repeat. */
export async function finishVolumeDelete(context: Context, operationId: number, volumeId: string): Promise<void> {
  await context.volumes.remove(context.paths.volumeFile(volumeId));
  context.store.setOperationStep(operationId, 'file_removed');
  context.checkpoint('volume.delete', 'file_removed');
  context.store.transaction(() => {
    context.store.deleteVolume(volumeId);
    context.store.finishOperation(operationId, 'done');
  });
}

/**
 * Commits a recorded attach or detach. The VM and volume are checked again inside the commit
 * transaction, because either may have changed since the operation was recorded.
 */
function commitAttachment(
  context: Context,
  operation: Operation,
  change: { verb: 'attach' | 'detach'; vmName: string; volumeName: string; volumeId: string },
): VolumeView {
  const applied = context.store.transaction(() => {
    const vm = requireVm(context, change.vmName);
    if (vm.status !== 'stopped' || !context.store.claimVolume(change.volumeId)) return false;
    if (change.verb === 'attach') context.store.setVolumeAttachment(change.volumeId, vm.id, 'data');
    else context.store.setVolumeAttachment(change.volumeId, null, null);
    context.store.setVolumeState(change.volumeId, 'ready');
    operation.done();
    return true;
  });
  if (!applied) {
    operation.rolledBack('the VM or volume changed meanwhile');
    throw conflict(`Cannot ${change.verb} volume "${change.volumeName}": VM "${change.vmName}" or the volume changed meanwhile, try again`);
  }
  return viewOf(context, change.volumeId);
}

/** Attaches a detached volume to a stopped VM as a data disk. */
export async function attachVolume(context: Context, vmName: string, volumeName: string, actor: Actor): Promise<VolumeView> {
  return audited(context, { actor, action: 'vm.volume.attach', target: volumeName, details: { vm: vmName } }, () => {
    const { operation, volume } = context.store.transaction(() => {
      const vm = requireVm(context, vmName);
      const row = requireVolume(context, volumeName);
      if (row.vm_id === vm.id) throw conflict(`Cannot attach volume "${volumeName}": it is already attached to VM "${vmName}"`);
      if (row.vm_id) {
        const owner = context.store.getVmById(row.vm_id);
        throw conflict(`Cannot attach volume "${volumeName}" to VM "${vmName}": it is attached to VM "${owner?.name}", detach it first with sistemo vm volume detach ${owner?.name} ${volumeName}`);
      }
      if (row.state !== 'ready') throw conflict(`Cannot attach volume "${volumeName}": it is ${row.state}`);
      if (vm.status !== 'stopped') {
        throw wrongState(`Cannot attach volume "${volumeName}": VM "${vmName}" is ${vm.status}, stop it first with sistemo vm stop ${vmName}`);
      }
      const dataCount = context.store.volumesOfVm(vm.id).filter((volume) => volume.role === 'data').length;
      if (dataCount >= maxDataVolumesPerVm) throw conflict(`Cannot attach volume "${volumeName}": VM "${vmName}" has the maximum of ${maxDataVolumesPerVm} data volumes`);
      return { operation: Operation.begin(context, 'attach', { vmId: vm.id, volumeId: row.id }, {}), volume: row };
    });
    operation.step('recorded');
    return commitAttachment(context, operation, { verb: 'attach', vmName, volumeName, volumeId: volume.id });
  });
}

/** Detaches a data volume from a stopped VM. A root volume stays with its VM. */
export async function detachVolume(context: Context, vmName: string, volumeName: string, actor: Actor): Promise<VolumeView> {
  return audited(context, { actor, action: 'vm.volume.detach', target: volumeName, details: { vm: vmName } }, () => {
    const { operation, volume } = context.store.transaction(() => {
      const vm = requireVm(context, vmName);
      const row = requireVolume(context, volumeName);
      if (row.vm_id !== vm.id) {
        const owner = row.vm_id ? context.store.getVmById(row.vm_id)?.name : undefined;
        throw conflict(`Cannot detach volume "${volumeName}" from VM "${vmName}": it is ${owner ? `attached to VM "${owner}"` : 'not attached'}`);
      }
      if (row.role === 'boot') {
        throw conflict(`Cannot detach volume "${volumeName}": it is the root volume of VM "${vmName}", delete the VM with --preserve-storage to keep it`);
      }
      if (vm.status !== 'stopped') {
        throw wrongState(`Cannot detach volume "${volumeName}": VM "${vmName}" is ${vm.status}, stop it first with sistemo vm stop ${vmName}`);
      }
      if (row.state !== 'ready') throw conflict(`Cannot detach volume "${volumeName}": it is ${row.state}`);
      return { operation: Operation.begin(context, 'detach', { vmId: vm.id, volumeId: row.id }, {}), volume: row };
    });
    operation.step('recorded');
    return commitAttachment(context, operation, { verb: 'detach', vmName, volumeName, volumeId: volume.id });
  });
}
