import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GiB } from '../../src/domain/size.js';
import { deleteVm, deployVm, startVm, stopVm } from '../../src/domain/vms.js';
import { maxInterfaceNameBytes, tapNameFor } from '../../src/network/network.js';
import { newId } from '../../src/paths.js';
import { seedVm, seedVolume, snapshotState, volumeFiles, withTestBed, type TestBed } from '../fakes/context.js';
import { rejection } from '../fakes/errors.js';

const quiet = () => {};
const actor = 'test';


function operationsOf(bed: TestBed, kind: string): { state: string; step: string }[] {
  return bed.store.db.prepare('SELECT state, step FROM operations WHERE kind = ? ORDER BY id').all(kind) as { state: string; step: string }[];
}

function rowCount(bed: TestBed, table: 'vms' | 'volumes'): number {
  return (bed.store.db.prepare(`SELECT COUNT(*) AS count FROM ${table}`).get() as { count: number }).count;
}

describe('deployVm', () => {
  test('tapNameFor fits a new VM id', () => {
    const tap = tapNameFor(newId('m'));
    assert.ok(Buffer.byteLength(tap) <= maxInterfaceNameBytes, tap);
  });

  test('tapNameFor gives two VMs two taps', () => {
    assert.notEqual(tapNameFor(newId('m')), tapNameFor(newId('m')));
  });

  test('deploy creates VM and root volume', () => withTestBed(async (bed) => {
    const view = await deployVm(bed.context, { image: 'debian', name: 'web', storage: '5GB' }, actor, quiet);
    const vm = bed.store.findVm('web');
    const root = bed.store.findVolume('web-root');
    assert.equal(view.name, 'web');
    assert.equal(view.root_volume, 'web-root');
    assert.equal(vm?.status, 'running');
    assert.equal(root?.type, 'root');
    assert.equal(root?.vm_id, vm?.id);
    assert.equal(root?.role, 'boot');
    assert.equal(root?.state, 'ready');
    assert.equal(root?.size_bytes, 5 * GiB);
  }));

  test('deploy grows file and filesystem to the storage size', () => withTestBed(async (bed) => {
    await deployVm(bed.context, { image: 'debian', name: 'web', storage: '5G' }, actor, quiet);
    const root = bed.store.findVolume('web-root');
    assert.ok(root);
    const file = bed.volumes.files.get(bed.paths.volumeFile(root.id));
    assert.equal(file?.size, 5 * GiB);
    assert.equal(file?.filesystemBytes, 5 * GiB);
    assert.deepEqual(volumeFiles(bed), [bed.paths.volumeFile(root.id)]);
  }));

  test('deploy boots the root volume with the VM address', () => withTestBed(async (bed) => {
    await deployVm(bed.context, { image: 'debian', name: 'web', storage: '5G' }, actor, quiet);
    const vm = bed.store.findVm('web');
    const [spec] = bed.engine.started;
    assert.equal(spec?.disks[0]?.name, 'web-root');
    assert.equal(spec?.network.ip, vm?.ip);
    assert.ok(bed.network.taps.has(vm?.tap ?? ''));
    assert.deepEqual(bed.readiness.waitedFor, [vm?.ip]);
    assert.deepEqual(operationsOf(bed, 'deploy').map((operation) => operation.state), ['done']);
  }));

  test('deploy attaches the requested data volumes', () => withTestBed(async (bed) => {
    seedVolume(bed, 'appdata');
    await deployVm(bed.context, { image: 'debian', name: 'web', storage: '5G', attach: ['appdata'] }, actor, quiet);
    assert.equal(bed.store.findVolume('appdata')?.vm_id, bed.store.findVm('web')?.id);
    assert.deepEqual(bed.engine.started[0]?.disks.map((disk) => disk.serial), ['web-root', 'appdata']);
  }));

  test('deploy rejects storage below the image size', () => withTestBed(async (bed) => {
    const error = await rejection(deployVm(bed.context, { image: 'debian', name: 'web', storage: '2G' }, actor, quiet));
    assert.equal(error.code, 'invalid_argument');
    assert.match(error.message, /3\.0GB/);
    assert.equal(rowCount(bed, 'vms'), 0);
    assert.equal(rowCount(bed, 'volumes'), 0);
    assert.deepEqual(volumeFiles(bed), []);
    assert.ok(!bed.volumes.calledMethods().includes('copySparse'));
  }, { imageBytes: 3 * GiB }));

  test('deploy rejects storage over the free space', () => withTestBed(async (bed) => {
    bed.volumes.free = GiB;
    const error = await rejection(deployVm(bed.context, { image: 'debian', name: 'web', storage: '5G' }, actor, quiet));
    assert.equal(error.code, 'no_space');
    assert.equal(rowCount(bed, 'vms'), 0);
    assert.deepEqual(volumeFiles(bed), []);
  }));

  test('deploy rolls back a boot failure', () => withTestBed(async (bed) => {
    bed.engine.startFailure = new Error('qemu-system-x86_64 failed with exit code 1');
    await assert.rejects(deployVm(bed.context, { image: 'debian', name: 'web', storage: '5G' }, actor, quiet));
    assert.equal(bed.store.findVm('web'), undefined);
    assert.equal(bed.store.findVolume('web-root'), undefined);
    assert.deepEqual(volumeFiles(bed), []);
    assert.deepEqual(bed.network.taps.size, 0);
    assert.deepEqual(operationsOf(bed, 'deploy').map((operation) => operation.state), ['rolled_back']);
  }));

  test('deploy rolls back when sshd never answers', () => withTestBed(async (bed) => {
    bed.readiness.failure = new Error('sshd did not answer within 180 s');
    seedVolume(bed, 'appdata');
    await assert.rejects(deployVm(bed.context, { image: 'debian', name: 'web', storage: '5G', attach: ['appdata'] }, actor, quiet));
    assert.equal(bed.engine.processes.size, 0);
    assert.equal(bed.store.findVm('web'), undefined);
    assert.equal(bed.store.findVolume('appdata')?.vm_id, null);
    assert.equal(bed.store.findVolume('appdata')?.state, 'ready');
    assert.deepEqual(operationsOf(bed, 'deploy').map((operation) => operation.state), ['rolled_back']);
  }));

  test('deploy rejects a name whose root volume is kept', () => withTestBed(async (bed) => {
    seedVolume(bed, 'web-root', { type: 'root', sizeBytes: 5 * GiB });
    const before = snapshotState(bed.store);
    const error = await rejection(deployVm(bed.context, { image: 'debian', name: 'web', storage: '5G' }, actor, quiet));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /--volume web-root/);
    assert.match(error.message, /volume delete web-root/);
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('deploy rejects a taken VM name', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    const error = await rejection(deployVm(bed.context, { image: 'debian', name: 'web', storage: '5G' }, actor, quiet));
    assert.equal(error.code, 'conflict');
  }));

  test('deploy rejects a volume attached elsewhere', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'db');
    seedVolume(bed, 'appdata', { vmId: vm.id });
    const before = snapshotState(bed.store);
    const error = await rejection(deployVm(bed.context, { image: 'debian', name: 'web', attach: ['appdata'] }, actor, quiet));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /"db"/);
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('deploy rejects a boot volume also listed in attach', () => withTestBed(async (bed) => {
    seedVolume(bed, 'web-root', { type: 'root' });
    const error = await rejection(deployVm(bed.context, { volume: 'web-root', name: 'web2', attach: ['web-root'] }, actor, quiet));
    assert.equal(error.code, 'invalid_argument');
    assert.equal(bed.store.listVms().length, 0);
  }));

  test('deploy rejects an invalid VM name', () => withTestBed(async (bed) => {
    const error = await rejection(deployVm(bed.context, { image: 'debian', name: '../etc' }, actor, quiet));
    assert.equal(error.code, 'invalid_argument');
    assert.equal(bed.volumes.calls.length, 0);
  }));

  test('deploy records failures in the audit log', () => withTestBed(async (bed) => {
    await assert.rejects(deployVm(bed.context, { image: 'debian', name: 'web', storage: '1G' }, actor, quiet));
    const [entry] = bed.store.listAudit({ limit: 10, action: 'vm.deploy' });
    assert.equal(entry?.result, 'failed');
    assert.equal(entry?.target, 'web');
    assert.equal(entry?.actor, actor);
  }, { imageBytes: 2 * GiB }));
});

describe('startVm and stopVm', () => {
  test('start boots the recorded volumes in stable order', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web');
    seedVolume(bed, 'zeta', { vmId: vm.id });
    seedVolume(bed, 'alpha', { vmId: vm.id });
    seedVolume(bed, 'other');
    await startVm(bed.context, 'web', actor, quiet);
    assert.deepEqual(bed.engine.started[0]?.disks.map((disk) => disk.serial), ['web-root', 'alpha', 'zeta']);
    assert.equal(bed.store.findVm('web')?.status, 'running');
  }));

  test('start rejects a running VM', () => withTestBed(async (bed) => {
    seedVm(bed, 'web', { status: 'running' });
    const error = await rejection(startVm(bed.context, 'web', actor, quiet));
    assert.equal(error.code, 'wrong_state');
    assert.match(error.message, /already running/);
  }));

  test('start rejects a VM whose volume file is missing', () => withTestBed(async (bed) => {
    const { root } = seedVm(bed, 'web');
    bed.volumes.files.delete(bed.paths.volumeFile(root.id));
    const error = await rejection(startVm(bed.context, 'web', actor, quiet));
    assert.equal(error.code, 'wrong_state');
    assert.equal(bed.store.findVm('web')?.status, 'stopped');
    assert.equal(bed.engine.started.length, 0);
  }));

  test('start failure leaves the VM stopped', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    bed.engine.startFailure = new Error('qemu-system-x86_64 failed with exit code 1');
    await assert.rejects(startVm(bed.context, 'web', actor, quiet));
    assert.equal(bed.store.findVm('web')?.status, 'stopped');
    assert.equal(bed.network.taps.size, 0);
    assert.deepEqual(operationsOf(bed, 'start').map((operation) => operation.state), ['rolled_back']);
  }));

  test('stop powers off and removes the tap', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web', { status: 'running' });
    await stopVm(bed.context, 'web', actor);
    assert.equal(bed.store.findVm('web')?.status, 'stopped');
    assert.equal(bed.engine.processOf(vm.id), undefined);
    assert.equal(bed.network.taps.has(vm.tap), false);
  }));

  test('stop kills a guest that ignores powerdown', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web', { status: 'running' });
    bed.engine.ignorePowerdown = true;
    await stopVm(bed.context, 'web', actor);
    assert.equal(bed.engine.processOf(vm.id), undefined);
    assert.ok(bed.engine.calls.some((call) => call.method === 'kill'));
  }));

  test('stop rejects a stopped VM', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    const error = await rejection(stopVm(bed.context, 'web', actor));
    assert.equal(error.code, 'wrong_state');
    assert.match(error.message, /already stopped/);
  }));
});

describe('deleteVm', () => {
  test('delete removes the root volume and its file', () => withTestBed(async (bed) => {
    const { root } = seedVm(bed, 'web');
    await deleteVm(bed.context, 'web', { preserve: false }, actor);
    assert.equal(bed.store.findVm('web'), undefined);
    assert.equal(bed.store.findVolume('web-root'), undefined);
    assert.equal(bed.volumes.files.has(bed.paths.volumeFile(root.id)), false);
  }));

  test('delete keeps data volumes, detached', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web');
    const data = seedVolume(bed, 'appdata', { vmId: vm.id });
    await deleteVm(bed.context, 'web', { preserve: false }, actor);
    const after = bed.store.findVolume('appdata');
    assert.equal(after?.vm_id, null);
    assert.equal(after?.role, null);
    assert.equal(after?.state, 'ready');
    assert.equal(after?.type, 'data');
    assert.ok(bed.volumes.files.has(bed.paths.volumeFile(data.id)));
  }));

  test('delete powers off a running VM', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web', { status: 'running' });
    await deleteVm(bed.context, 'web', { preserve: false }, actor);
    assert.equal(bed.engine.processOf(vm.id), undefined);
    assert.equal(bed.network.taps.size, 0);
  }));

  test('delete with preserve keeps the root volume detached', () => withTestBed(async (bed) => {
    const { root } = seedVm(bed, 'web');
    await deleteVm(bed.context, 'web', { preserve: true }, actor);
    const after = bed.store.findVolume('web-root');
    assert.equal(bed.store.findVm('web'), undefined);
    assert.equal(after?.vm_id, null);
    assert.equal(after?.type, 'root');
    assert.equal(after?.state, 'ready');
    assert.ok(bed.volumes.files.has(bed.paths.volumeFile(root.id)));
  }));

  test('delete keeps the error state of a data volume', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web');
    const data = seedVolume(bed, 'appdata', { vmId: vm.id });
    bed.store.setVolumeState(data.id, 'error', 'the filesystem needs a manual check');
    await deleteVm(bed.context, 'web', { preserve: false }, actor);
    assert.equal(bed.store.findVolume('appdata')?.state, 'error');
    assert.equal(bed.store.findVolume('appdata')?.state_message, 'the filesystem needs a manual check');
  }));

  test('delete of an unknown VM is not_found', () => withTestBed(async (bed) => {
    const error = await rejection(deleteVm(bed.context, 'ghost', { preserve: false }, actor));
    assert.equal(error.code, 'not_found');
  }));

  test('preserved root volume boots again', () => withTestBed(async (bed) => {
    const { root } = seedVm(bed, 'web');
    await deleteVm(bed.context, 'web', { preserve: true }, actor);
    const view = await deployVm(bed.context, { volume: 'web-root', name: 'web2' }, actor, quiet);
    const after = bed.store.findVolume('web-root');
    assert.equal(view.root_volume, 'web-root');
    assert.equal(after?.id, root.id);
    assert.equal(after?.vm_id, bed.store.findVm('web2')?.id);
    assert.equal(after?.role, 'boot');
    assert.equal(bed.engine.started[0]?.disks[0]?.file, bed.paths.volumeFile(root.id));
  }));

  test('deleted name can be deployed again', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    await deleteVm(bed.context, 'web', { preserve: false }, actor);
    const view = await deployVm(bed.context, { image: 'debian', name: 'web', storage: '2G' }, actor, quiet);
    assert.equal(view.name, 'web');
  }));

  test('delete records success in the audit log', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    await deleteVm(bed.context, 'web', { preserve: true }, actor);
    const [entry] = bed.store.listAudit({ limit: 10, action: 'vm.delete' });
    assert.equal(entry?.result, 'ok');
    assert.equal(entry?.target, 'web');
  }));
});
