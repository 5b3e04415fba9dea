import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, test } from 'node:test';
import type { DeployData, DeleteData } from '../../src/domain/vms.js';
import { deleteVm, deployVm } from '../../src/domain/vms.js';
import { recoverOperations } from '../../src/domain/recovery.js';
import { GiB } from '../../src/domain/size.js';
import { deleteVolume } from '../../src/domain/volumes.js';
import { newId } from '../../src/paths.js';
import { SimulatedCrash, seedVm, seedVolume, volumeFiles, withTestBed, type TestBed } from '../fakes/context.js';

const actor = 'test';
const quiet = () => {};

function operation(bed: TestBed, id: number): { state: string; step: string } | undefined {
  return bed.store.getOperation(id);
}

/** Waits until the running operation of a kind reaches a step. Fails after 1000 turns of the event loop. */
async function waitForStep(bed: TestBed, kind: string, step: string): Promise<number> {
  for (let turn = 0; turn < 1000; turn++) {
    const found = bed.store.runningOperations().find((row) => row.kind === kind && row.step === step);
    if (found) return found.id;
    await nextTurn();
  }
  assert.fail(`operation ${kind} never reached step ${step}`);
}

/**
 * Writes what a daemon killed during deploy leaves: the VM row, a busy root volume whose
 * partial file was copied, a data volume claimed for the VM, and the journal row at `copied`.
 */
function seedInterruptedDeploy(bed: TestBed): { data: DeployData; operationId: number; dataVolumeId: string } {
  const vmId = newId('m');
  const volumeId = newId('v');
  const appdata = seedVolume(bed, 'appdata');
  bed.store.insertVm({
    id: vmId, name: 'web', status: 'creating', vcpus: 1, memory_bytes: 512 * 1024 * 1024, image: 'debian',
    ip: '10.200.0.2', mac: '52:54:00:00:00:02', tap: 'sm-crashed', pid: null, ssh: 1,
  });
  bed.store.insertVolume({
    id: volumeId, name: 'web-root', type: 'root', size_bytes: 5 * GiB, state: 'busy',
    vm_id: vmId, role: 'boot', boot_image: 'debian', ssh: 1,
  });
  bed.store.claimVolume(appdata.id);
  bed.store.setVolumeAttachment(appdata.id, vmId, 'data');
  const data: DeployData = { vmId, volumeId, createdVolume: true, attached: [appdata.id] };
  const operationId = bed.store.beginOperation('deploy', { vmId, volumeId }, { ...data });
  bed.store.setOperationStep(operationId, 'copied');
  bed.volumes.addFile(bed.paths.partialVolumeFile(volumeId), GiB);
  return { data, operationId, dataVolumeId: appdata.id };
}

describe('recoverOperations', () => {
  test('recovery removes an interrupted deploy', () => withTestBed(async (bed) => {
    const { data, operationId } = seedInterruptedDeploy(bed);
    await recoverOperations(bed.context);
    assert.equal(bed.store.findVm('web'), undefined);
    assert.equal(bed.store.findVolume('web-root'), undefined);
    assert.equal(bed.volumes.files.has(bed.paths.partialVolumeFile(data.volumeId)), false);
    assert.equal(bed.volumes.files.has(bed.paths.volumeFile(data.volumeId)), false);
    assert.equal(operation(bed, operationId)?.state, 'rolled_back');
  }));

  test('recovery frees volumes of an interrupted deploy', () => withTestBed(async (bed) => {
    const { dataVolumeId } = seedInterruptedDeploy(bed);
    await recoverOperations(bed.context);
    const appdata = bed.store.getVolumeById(dataVolumeId);
    assert.equal(appdata?.vm_id, null);
    assert.equal(appdata?.state, 'ready');
    assert.ok(bed.volumes.files.has(bed.paths.volumeFile(dataVolumeId)));
  }));

  test('recovery removes a deploy killed after the copy', () => withTestBed(async (bed) => {
    bed.volumes.hanging.add('setFileSize');
    void deployVm(bed.context, { image: 'debian', name: 'web', storage: '5G' }, actor, quiet);
    const operationId = await waitForStep(bed, 'deploy', 'copied');
    bed.volumes.hanging.delete('setFileSize');
    await recoverOperations(bed.context);
    assert.equal(bed.store.findVm('web'), undefined);
    assert.equal(bed.store.findVolume('web-root'), undefined);
    assert.deepEqual(volumeFiles(bed), []);
    assert.equal(operation(bed, operationId)?.state, 'rolled_back');
  }));

  test('recovery keeps a deploy whose VM is running', () => withTestBed(async (bed) => {
    const hung = new Promise<void>(() => {});
    bed.context.readiness = { wait: () => hung };
    void deployVm(bed.context, { image: 'debian', name: 'web', storage: '5G' }, actor, quiet);
    const operationId = await waitForStep(bed, 'deploy', 'started');
    await recoverOperations(bed.context);
    assert.equal(bed.store.findVm('web')?.status, 'running');
    assert.equal(bed.store.findVolume('web-root')?.state, 'ready');
    assert.equal(operation(bed, operationId)?.state, 'done');
  }));

  test('recovery completes an interrupted delete', () => withTestBed(async (bed) => {
    const { vm, root } = seedVm(bed, 'web', { status: 'running' });
    const data = seedVolume(bed, 'appdata', { vmId: vm.id });
    bed.crashAt = 'delete:halted';
    await assert.rejects(deleteVm(bed.context, 'web', { preserve: false }, actor), SimulatedCrash);
    assert.equal(bed.store.findVm('web')?.status, 'deleting');
    bed.crashAt = undefined;
    await recoverOperations(bed.context);
    assert.equal(bed.store.findVm('web'), undefined);
    assert.equal(bed.store.findVolume('web-root'), undefined);
    assert.equal(bed.volumes.files.has(bed.paths.volumeFile(root.id)), false);
    assert.equal(bed.store.findVolume('appdata')?.vm_id, null);
    assert.equal(bed.store.findVolume('appdata')?.state, 'ready');
    assert.ok(bed.volumes.files.has(bed.paths.volumeFile(data.id)));
    assert.deepEqual(bed.store.runningOperations(), []);
  }));

  test('recovery completes a delete killed while halting', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web', { status: 'running' });
    bed.engine.hangPowerdown = true;
    void deleteVm(bed.context, 'web', { preserve: true }, actor);
    await waitForStep(bed, 'delete', 'recorded');
    bed.engine.hangPowerdown = false;
    await recoverOperations(bed.context);
    assert.equal(bed.store.findVm('web'), undefined);
    assert.equal(bed.engine.processOf(vm.id), undefined);
    assert.equal(bed.store.findVolume('web-root')?.vm_id, null);
    assert.equal(bed.store.findVolume('web-root')?.type, 'root');
    assert.equal(bed.store.findVolume('web-root')?.state, 'ready');
  }));

  test('recovery completes a preserved delete recorded by hand', () => withTestBed(async (bed) => {
    const { vm, root } = seedVm(bed, 'web');
    bed.store.setVmStatus(vm.id, 'stopped', 'deleting');
    bed.store.setVolumeState(root.id, 'busy');
    const recorded: DeleteData = { vmId: vm.id, preserve: true, rootVolumeId: root.id };
    const operationId = bed.store.beginOperation('delete', { vmId: vm.id, volumeId: root.id }, { ...recorded });
    await recoverOperations(bed.context);
    assert.equal(bed.store.findVm('web'), undefined);
    assert.equal(bed.store.findVolume('web-root')?.state, 'ready');
    assert.equal(operation(bed, operationId)?.state, 'done');
  }));

  test('recovery completes an interrupted volume delete', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'scratch');
    bed.crashAt = 'volume.delete:file_removed';
    await assert.rejects(deleteVolume(bed.context, 'scratch', actor), SimulatedCrash);
    bed.crashAt = undefined;
    await recoverOperations(bed.context);
    assert.equal(bed.store.findVolume('scratch'), undefined);
    assert.equal(bed.volumes.files.has(bed.paths.volumeFile(volume.id)), false);
  }));

  test('recovery with an empty journal changes nothing', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    await recoverOperations(bed.context);
    assert.equal(bed.store.findVm('web')?.status, 'stopped');
    assert.equal(bed.store.findVolume('web-root')?.state, 'ready');
  }));

  test('failed recovery marks the volume error', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'appdata');
    bed.volumes.addFile(bed.paths.volumeFile(volume.id), GiB);
    bed.store.claimVolume(volume.id);
    const operationId = bed.store.beginOperation('volume.resize', { volumeId: volume.id }, { volumeId: volume.id, oldSize: GiB, newSize: 2 * GiB });
    bed.store.setOperationStep(operationId, 'file_grown');
    bed.volumes.failures.set('filesystemInfo', new Error('dumpe2fs failed'));
    bed.volumes.failures.set('fileSize', new Error('stat failed'));

    await recoverOperations(bed.context);

    const after = bed.store.findVolume('appdata');
    assert.equal(after?.state, 'error');
    assert.match(after?.state_message ?? '', /recovery of an interrupted volume.resize failed/);
    assert.equal(operation(bed, operationId)?.state, 'failed');
  }));
});
