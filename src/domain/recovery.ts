import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { OperationRow } from '../db/store.js';
import { isAlive } from '../engine/engine.js';
import type { Context } from './context.js';
import { operationData } from './journal.js';
import { syncFirewall } from './networks.js';
import { completeResize, finishVolumeDelete, rollbackCreate, rollbackResize, type ResizeData } from './volumes.js';
import { finishDelete, rollbackDeploy, type DeleteData, type DeployData } from './vms.js';

/**
 * Finishes or undoes every operation the journal shows as running, which after a start means
 * the previous daemon died in the middle of it. Runs before the API accepts requests.
 * What each kind does:
 * - deploy: kept if its VM process is alive, else rolled back (a root volume it created goes).
 * - start, stop: the VM status is set from whether its process is alive.
 * - delete, volume delete: completed, since the user confirmed them.
 * - volume create: rolled back unless the file was complete.
 * - volume resize: completed if the filesystem was fully grown and is clean, else undone with
 *   the resize2fs undo file and the file truncated back to its old size.
 * - attach, detach: a single transaction, so a recorded one that did not commit is dropped.
 */
export async function recoverOperations(context: Context): Promise<void> {
  for (const operation of context.store.runningOperations()) {
    context.log.warn({ operation: operation.id, kind: operation.kind, step: operation.step }, 'recovering an interrupted operation');
    // The names are read first: a completed delete or a rolled-back deploy removes the rows.
    const target = targetName(context, operation);
    try {
      await recoverOne(context, operation);
      const outcome = context.store.getOperation(operation.id)?.state ?? 'unknown';
      context.store.addAudit({
        actor: 'recovery', action: `recover.${operation.kind}`, target, result: outcome === 'failed' ? 'failed' : 'ok',
        details: { operation: operation.id, interrupted_at: operation.step, outcome }, error: null,
      });
    } catch (error) {
      context.store.addAudit({
        actor: 'recovery', action: `recover.${operation.kind}`, target, result: 'failed',
        details: { operation: operation.id, interrupted_at: operation.step }, error: (error as Error).message,
      });
      context.log.error({ operation: operation.id, kind: operation.kind, err: error }, 'recovery of an interrupted operation failed');
      context.store.transaction(() => {
        // A volume left busy could never be used again: mark it error, with where to look.
        if (operation.volume_id && context.store.getVolumeById(operation.volume_id)?.state === 'busy') {
          context.store.setVolumeState(operation.volume_id, 'error', `recovery of an interrupted ${operation.kind} failed: see operation ${operation.id} in ${context.paths.log}`);
        }
        context.store.finishOperation(operation.id, 'failed', `recovery failed: ${(error as Error).message}`);
      });
    }
  }
}

function targetName(context: Context, operation: OperationRow): string {
  const vm = operation.vm_id ? context.store.getVmById(operation.vm_id) : undefined;
  const volume = operation.volume_id ? context.store.getVolumeById(operation.volume_id) : undefined;
  return vm?.name ?? volume?.name ?? operation.vm_id ?? operation.volume_id ?? `operation ${operation.id}`;
}

async function waitForChild(context: Context, operation: OperationRow): Promise<void> {
  const pid = operation.child_pid;
  if (!pid || !isAlive(pid)) return;
  // The tool outlived the daemon; interrupting it could corrupt the filesystem, so wait for it.
  context.log.warn({ operation: operation.id, pid }, 'waiting for a tool the previous daemon started');
  while (isAlive(pid)) await sleep(200);
}

async function recoverOne(context: Context, operation: OperationRow): Promise<void> {
  const interrupted = new Error(`interrupted at step ${operation.step} by a daemon restart`);
  switch (operation.kind) {
    case 'deploy': {
      const data = operationData<DeployData>(operation);
      const vm = context.store.getVmById(data.vmId);
      const alive = vm ? await context.engine.findProcess(vm.id, context.paths.pidFile(vm.id)) : undefined;
      if (vm && alive !== undefined && operation.step === 'started') {
        context.store.transaction(() => {
          context.store.setVmPid(vm.id, alive);
          context.store.setVmStatus(vm.id, 'creating', 'running');
          for (const volume of context.store.volumesOfVm(vm.id)) context.store.setVolumeState(volume.id, 'ready');
          context.store.finishOperation(operation.id, 'done');
        });
      } else {
        await rollbackDeploy(context, operation.id, data, interrupted);
      }
      return;
    }
    case 'start':
    case 'stop': {
      const vm = operation.vm_id ? context.store.getVmById(operation.vm_id) : undefined;
      if (vm) {
        const pid = await context.engine.findProcess(vm.id, context.paths.pidFile(vm.id));
        context.store.transaction(() => {
          context.store.setVmPid(vm.id, pid ?? null);
          context.store.setVmStatus(vm.id, ['starting', 'stopping'], pid === undefined ? 'stopped' : 'running');
        });
        if (pid === undefined) await context.network.deleteTap(vm.tap);
        // The operation counts as done when the VM ended where it was asked to go.
        const reached = (operation.kind === 'start') === (pid !== undefined);
        context.store.finishOperation(operation.id, reached ? 'done' : 'rolled_back', reached ? null : interrupted.message);
        return;
      }
      context.store.finishOperation(operation.id, 'rolled_back', interrupted.message);
      return;
    }
    case 'delete':
      await finishDelete(context, operation.id, operationData<DeleteData>(operation));
      return;
    case 'volume.delete':
      await finishVolumeDelete(context, operation.id, operationData<{ volumeId: string }>(operation).volumeId);
      return;
    case 'volume.create': {
      const { volumeId } = operationData<{ volumeId: string }>(operation);
      await rollbackCreate(context, operation.id, volumeId, interrupted);
      return;
    }
    case 'volume.resize': {
      await waitForChild(context, operation);
      const data = operationData<ResizeData>(operation);
      const file = context.paths.volumeFile(data.volumeId);
      if (operation.step === 'filesystem_grown') {
        completeResize(context, operation.id, data);
        return;
      }
      if (operation.step === 'file_grown') {
        const info = await context.volumes.filesystemInfo(file).catch(() => undefined);
        const fileSize = await context.volumes.fileSize(file);
        if (info && info.bytes === data.newSize && fileSize === data.newSize && (await context.volumes.isClean(file))) {
          completeResize(context, operation.id, data);
          return;
        }
      }
      await rollbackResize(context, operation.id, data, interrupted);
      return;
    }
    case 'attach':
    case 'detach':
      if (operation.volume_id) context.store.setVolumeState(operation.volume_id, 'ready');
      context.store.finishOperation(operation.id, 'rolled_back', interrupted.message);
      return;
    default:
      context.store.finishOperation(operation.id, 'failed', `unknown operation kind ${operation.kind}`);
  }
}

export interface ReconcileReport {
  checked_at: string;
  vms_marked_stopped: string[];
  vms_adopted: string[];
  files_without_records: string[];
  records_without_files: string[];
}

/**
 * Makes VM statuses match reality and lists storage drift. A VM whose process died becomes
 * `stopped` (its address is kept); a deleted VM is never brought back. Files without records
 * and records without files are reported, never deleted.
 */
export async function reconcile(context: Context): Promise<ReconcileReport> {
  const report: ReconcileReport = {
    checked_at: new Date().toISOString(),
    vms_marked_stopped: [],
    vms_adopted: [],
    files_without_records: [],
    records_without_files: [],
  };
  for (const vm of context.store.listVms()) {
    if (vm.status !== 'running' && vm.status !== 'stopped') continue;
    const pid = await context.engine.findProcess(vm.id, context.paths.pidFile(vm.id));
    if (vm.status === 'running' && pid === undefined) {
      if (context.store.setVmStatus(vm.id, 'running', 'stopped')) {
        context.store.setVmPid(vm.id, null);
        await context.network.deleteTap(vm.tap).catch(() => {});
        report.vms_marked_stopped.push(vm.name);
        context.store.addAudit({ actor: 'reconciler', action: 'vm.stopped', target: vm.name, result: 'ok', details: { reason: 'QEMU process exited' }, error: null });
        context.log.warn({ vm: vm.name }, 'VM process is gone; marked stopped');
      }
    } else if (pid !== undefined && vm.pid !== pid) {
      if (vm.status === 'stopped') context.store.setVmStatus(vm.id, 'stopped', 'running');
      context.store.setVmPid(vm.id, pid);
      report.vms_adopted.push(vm.name);
      context.log.info({ vm: vm.name, pid }, 'adopted running VM process');
    }
  }
  if (report.vms_marked_stopped.length > 0 || report.vms_adopted.length > 0) {
    // Exposed ports follow the running state, so the rules change with it.
    await syncFirewall(context).catch((error: unknown) => context.log.error({ err: error }, 'firewall rules were not updated after the reconciler run'));
  }
  const busyIds = new Set(context.store.runningOperations().map((operation) => operation.volume_id));
  const volumes = context.store.listVolumes();
  const known = new Set(volumes.map((volume) => path.basename(context.paths.volumeFile(volume.id))));
  let entries: string[] = [];
  try {
    entries = await fs.readdir(context.paths.volumesDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  for (const entry of entries) {
    const volumeId = entry.split('.')[0] ?? '';
    if (!known.has(entry) && !busyIds.has(volumeId)) report.files_without_records.push(path.join(context.paths.volumesDir, entry));
  }
  for (const volume of volumes) {
    if (volume.state === 'busy') continue;
    if (!(await context.volumes.exists(context.paths.volumeFile(volume.id)))) report.records_without_files.push(volume.name);
  }
  if (report.files_without_records.length > 0) context.log.warn({ files: report.files_without_records }, 'volume files without records');
  if (report.records_without_files.length > 0) context.log.warn({ volumes: report.records_without_files }, 'volume records without files');
  return report;
}
