import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CommandError } from '../../src/errors.js';
import { GiB, MiB } from '../../src/domain/size.js';
import { attachVolume, createVolume, deleteVolume, detachVolume, resizeVolume } from '../../src/domain/volumes.js';
import { seedVm, seedVolume, snapshotState, withTestBed, type TestBed } from '../fakes/context.js';
import { rejection } from '../fakes/errors.js';
import { rawCheckOutput } from '../fakes/volume-tool.js';

const actor = 'test';

function operationStates(bed: TestBed, kind: string): string[] {
  const rows = bed.store.db.prepare('SELECT state FROM operations WHERE kind = ? ORDER BY id').all(kind) as { state: string }[];
  return rows.map((row) => row.state);
}

describe('attachVolume', () => {
  test('attach makes a detached volume a data disk', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web');
    seedVolume(bed, 'appdata');
    const view = await attachVolume(bed.context, 'web', 'appdata', actor);
    const row = bed.store.findVolume('appdata');
    assert.equal(view.attached_to, 'web');
    assert.equal(view.status, 'attached');
    assert.equal(row?.vm_id, vm.id);
    assert.equal(row?.role, 'data');
    assert.equal(row?.state, 'ready');
  }));

  test('attach accepts a detached root volume as data', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    seedVolume(bed, 'old-root', { type: 'root' });
    await attachVolume(bed.context, 'web', 'old-root', actor);
    assert.equal(bed.store.findVolume('old-root')?.role, 'data');
  }));

  test('attach rejects a running VM', () => withTestBed(async (bed) => {
    seedVm(bed, 'web', { status: 'running' });
    seedVolume(bed, 'appdata');
    const before = snapshotState(bed.store);
    const error = await rejection(attachVolume(bed.context, 'web', 'appdata', actor));
    assert.equal(error.code, 'wrong_state');
    assert.match(error.message, /sistemo vm stop web/);
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('attach rejects a volume attached elsewhere', () => withTestBed(async (bed) => {
    const { vm: db } = seedVm(bed, 'db');
    seedVm(bed, 'web');
    seedVolume(bed, 'appdata', { vmId: db.id });
    const before = snapshotState(bed.store);
    const error = await rejection(attachVolume(bed.context, 'web', 'appdata', actor));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /"db"/);
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('attach rejects another VM root volume', () => withTestBed(async (bed) => {
    seedVm(bed, 'db');
    seedVm(bed, 'web');
    const before = snapshotState(bed.store);
    const error = await rejection(attachVolume(bed.context, 'web', 'db-root', actor));
    assert.equal(error.code, 'conflict');
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('attach rejects a volume attached to the same VM', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web');
    seedVolume(bed, 'appdata', { vmId: vm.id });
    const before = snapshotState(bed.store);
    const error = await rejection(attachVolume(bed.context, 'web', 'appdata', actor));
    assert.equal(error.code, 'conflict');
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('attach rejects a busy volume', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    const volume = seedVolume(bed, 'appdata');
    bed.store.setVolumeState(volume.id, 'busy');
    const before = snapshotState(bed.store);
    await assert.rejects(attachVolume(bed.context, 'web', 'appdata', actor));
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('attach of an unknown VM is not_found', () => withTestBed(async (bed) => {
    seedVolume(bed, 'appdata');
    const before = snapshotState(bed.store);
    const error = await rejection(attachVolume(bed.context, 'ghost', 'appdata', actor));
    assert.equal(error.code, 'not_found');
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('attach of an unknown volume is not_found', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    const before = snapshotState(bed.store);
    const error = await rejection(attachVolume(bed.context, 'web', 'ghost', actor));
    assert.equal(error.code, 'not_found');
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('attach of an invalid volume name is rejected', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    const error = await rejection(attachVolume(bed.context, 'web', '../../etc/passwd', actor));
    assert.equal(error.code, 'invalid_argument');
  }));
});

describe('detachVolume', () => {
  test('detach frees a data volume', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web');
    seedVolume(bed, 'appdata', { vmId: vm.id });
    const view = await detachVolume(bed.context, 'web', 'appdata', actor);
    assert.equal(view.status, 'detached');
    assert.equal(bed.store.findVolume('appdata')?.vm_id, null);
    assert.equal(bed.store.findVolume('appdata')?.role, null);
  }));

  test('detach rejects a running VM', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web', { status: 'running' });
    seedVolume(bed, 'appdata', { vmId: vm.id });
    const before = snapshotState(bed.store);
    const error = await rejection(detachVolume(bed.context, 'web', 'appdata', actor));
    assert.equal(error.code, 'wrong_state');
    assert.match(error.message, /sistemo vm stop web/);
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('detach rejects the root volume', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    const before = snapshotState(bed.store);
    const error = await rejection(detachVolume(bed.context, 'web', 'web-root', actor));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /root volume/);
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('detach rejects the wrong VM', () => withTestBed(async (bed) => {
    const { vm: db } = seedVm(bed, 'db');
    seedVm(bed, 'web');
    seedVolume(bed, 'appdata', { vmId: db.id });
    const before = snapshotState(bed.store);
    const error = await rejection(detachVolume(bed.context, 'web', 'appdata', actor));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /"db"/);
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('detach rejects a detached volume', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    seedVolume(bed, 'appdata');
    const before = snapshotState(bed.store);
    const error = await rejection(detachVolume(bed.context, 'web', 'appdata', actor));
    assert.equal(error.code, 'conflict');
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('detach of an unknown VM is not_found', () => withTestBed(async (bed) => {
    seedVolume(bed, 'appdata');
    const before = snapshotState(bed.store);
    const error = await rejection(detachVolume(bed.context, 'ghost', 'appdata', actor));
    assert.equal(error.code, 'not_found');
    assert.deepEqual(snapshotState(bed.store), before);
  }));

  test('detach of an unknown volume is not_found', () => withTestBed(async (bed) => {
    seedVm(bed, 'web');
    const before = snapshotState(bed.store);
    const error = await rejection(detachVolume(bed.context, 'web', 'ghost', actor));
    assert.equal(error.code, 'not_found');
    assert.deepEqual(snapshotState(bed.store), before);
  }));
});

describe('resizeVolume', () => {
  test('resize grows file, filesystem and record', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'appdata', { sizeBytes: 2 * GiB });
    const view = await resizeVolume(bed.context, 'appdata', '5G', actor);
    const file = bed.volumes.files.get(bed.paths.volumeFile(volume.id));
    assert.equal(view.size, '5.0GB');
    assert.equal(bed.store.findVolume('appdata')?.size_bytes, 5 * GiB);
    assert.equal(bed.store.findVolume('appdata')?.state, 'ready');
    assert.equal(file?.size, 5 * GiB);
    assert.equal(file?.filesystemBytes, 5 * GiB);
    assert.deepEqual(operationStates(bed, 'volume.resize'), ['done']);
  }));

  test('resize checks the filesystem before growing', () => withTestBed(async (bed) => {
    seedVolume(bed, 'appdata', { sizeBytes: 2 * GiB });
    await resizeVolume(bed.context, 'appdata', '5G', actor);
    const methods = bed.volumes.calledMethods();
    assert.ok(methods.indexOf('check') >= 0);
    assert.ok(methods.indexOf('check') < methods.indexOf('setFileSize'));
    assert.ok(methods.indexOf('setFileSize') < methods.indexOf('growFilesystem'));
  }));

  test('resize grows a stopped VM root volume', () => withTestBed(async (bed) => {
    seedVm(bed, 'web', { rootBytes: 5 * GiB });
    await resizeVolume(bed.context, 'web-root', '10GB', actor);
    assert.equal(bed.store.findVolume('web-root')?.size_bytes, 10 * GiB);
  }));

  test('resize rejects an equal size', () => withTestBed(async (bed) => {
    seedVolume(bed, 'appdata', { sizeBytes: 2 * GiB });
    const error = await rejection(resizeVolume(bed.context, 'appdata', '2G', actor));
    assert.equal(error.code, 'invalid_argument');
    assert.match(error.message, /2\.0GB is not larger than its current 2\.0GB/);
    assert.equal(bed.store.findVolume('appdata')?.state, 'ready');
  }));

  test('resize rejects a smaller size', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'appdata', { sizeBytes: 10 * GiB });
    const error = await rejection(resizeVolume(bed.context, 'appdata', '8G', actor));
    assert.equal(error.code, 'invalid_argument');
    assert.match(error.message, /8\.0GB/);
    assert.match(error.message, /10\.0GB/);
    assert.equal(bed.volumes.files.get(bed.paths.volumeFile(volume.id))?.size, 10 * GiB);
    assert.equal(bed.store.findVolume('appdata')?.state, 'ready');
  }));

  test('resize compares with the real file size', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'appdata', { sizeBytes: 2 * GiB });
    const file = bed.volumes.files.get(bed.paths.volumeFile(volume.id));
    assert.ok(file);
    file.size = 4 * GiB;
    const error = await rejection(resizeVolume(bed.context, 'appdata', '3G', actor));
    assert.equal(error.code, 'invalid_argument');
    assert.match(error.message, /4\.0GB/);
  }));

  test('resize rejects a volume of a running VM', () => withTestBed(async (bed) => {
    seedVm(bed, 'web', { status: 'running' });
    const before = snapshotState(bed.store);
    const error = await rejection(resizeVolume(bed.context, 'web-root', '10G', actor));
    assert.equal(error.code, 'wrong_state');
    assert.match(error.message, /sistemo vm stop web/);
    assert.deepEqual(snapshotState(bed.store), before);
    assert.ok(!bed.volumes.calledMethods().includes('setFileSize'));
  }));

  test('resize leaves a volume with a failing check unchanged', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'appdata', { sizeBytes: 2 * GiB });
    const path = bed.paths.volumeFile(volume.id);
    bed.volumes.failingChecks.add(path);
    const error = await rejection(resizeVolume(bed.context, 'appdata', '5G', actor));
    assert.equal(error.code, 'wrong_state');
    assert.equal(bed.volumes.files.get(path)?.size, 2 * GiB);
    assert.equal(bed.volumes.files.get(path)?.filesystemBytes, 2 * GiB);
    assert.equal(bed.store.findVolume('appdata')?.size_bytes, 2 * GiB);
    assert.equal(bed.store.findVolume('appdata')?.state, 'ready');
    assert.ok(!bed.volumes.calledMethods().includes('setFileSize'));
  }));

  test('resize check failure hides the tool output', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'appdata', { sizeBytes: 2 * GiB });
    bed.volumes.failingChecks.add(bed.paths.volumeFile(volume.id));
    const error = await rejection(resizeVolume(bed.context, 'appdata', '5G', actor));
    assert.ok(!error.message.includes(rawCheckOutput), error.message);
    assert.ok(!error.message.includes('RAW-TOOL-OUTPUT'), error.message);
    assert.ok(!error.message.includes('\n'), error.message);
    assert.match(error.message, /appdata/);
  }));

  test('resize without free space touches nothing', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'appdata', { sizeBytes: 2 * GiB });
    bed.volumes.free = 512 * MiB;
    const error = await rejection(resizeVolume(bed.context, 'appdata', '5G', actor));
    assert.equal(error.code, 'no_space');
    for (const method of ['check', 'setFileSize', 'growFilesystem']) {
      assert.ok(!bed.volumes.calledMethods().includes(method), method);
    }
    assert.equal(bed.volumes.files.get(bed.paths.volumeFile(volume.id))?.size, 2 * GiB);
    assert.equal(bed.store.findVolume('appdata')?.state, 'ready');
  }));

  test('resize counts only the added bytes against free space', () => withTestBed(async (bed) => {
    seedVolume(bed, 'appdata', { sizeBytes: 4 * GiB });
    bed.volumes.free = 2 * GiB;
    await resizeVolume(bed.context, 'appdata', '5G', actor);
    assert.equal(bed.store.findVolume('appdata')?.size_bytes, 5 * GiB);
  }));

  test('resize rolls back a failed filesystem grow', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'appdata', { sizeBytes: 2 * GiB });
    bed.volumes.failures.set('growFilesystem', new CommandError(['resize2fs'], 1, 'resize2fs: No space left on device'));
    await assert.rejects(resizeVolume(bed.context, 'appdata', '5G', actor));
    assert.equal(bed.volumes.files.get(bed.paths.volumeFile(volume.id))?.size, 2 * GiB);
    assert.equal(bed.store.findVolume('appdata')?.size_bytes, 2 * GiB);
    assert.equal(bed.store.findVolume('appdata')?.state, 'ready');
    assert.deepEqual(operationStates(bed, 'volume.resize'), ['rolled_back']);
  }));

  test('resize rejects a size over max_volume_size', () => withTestBed(async (bed) => {
    seedVolume(bed, 'appdata');
    const error = await rejection(resizeVolume(bed.context, 'appdata', '3T', actor));
    assert.equal(error.code, 'invalid_argument');
  }));

  test('two resizes at once: one wins', () => withTestBed(async (bed) => {
    seedVolume(bed, 'appdata', { sizeBytes: 2 * GiB });
    const results = await Promise.allSettled([
      resizeVolume(bed.context, 'appdata', '5G', actor),
      resizeVolume(bed.context, 'appdata', '6G', actor),
    ]);
    const fulfilled = results.filter((result) => result.status === 'fulfilled');
    const rejected = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
    assert.equal(fulfilled.length, 1);
    assert.equal(rejected.length, 1);
    assert.equal((rejected[0]?.reason as { code?: string }).code, 'conflict');
    assert.equal(bed.store.findVolume('appdata')?.state, 'ready');
  }));
});

describe('createVolume and deleteVolume', () => {
  test('create makes a detached data volume', () => withTestBed(async (bed) => {
    const view = await createVolume(bed.context, { size: '2G', name: 'appdata' }, actor);
    const row = bed.store.findVolume('appdata');
    assert.equal(view.status, 'detached');
    assert.equal(row?.type, 'data');
    assert.equal(row?.vm_id, null);
    assert.equal(bed.volumes.files.get(bed.paths.volumeFile(row?.id ?? ''))?.size, 2 * GiB);
  }));

  test('create rejects a taken name', () => withTestBed(async (bed) => {
    seedVolume(bed, 'appdata');
    const error = await rejection(createVolume(bed.context, { size: '2G', name: 'appdata' }, actor));
    assert.equal(error.code, 'conflict');
  }));

  test('create names the file by id, not by name', () => withTestBed(async (bed) => {
    await createVolume(bed.context, { size: '1G', name: 'appdata' }, actor);
    const files = [...bed.volumes.files.keys()].filter((file) => file.startsWith(bed.paths.volumesDir));
    assert.equal(files.length, 1);
    assert.ok(!files[0]?.includes('appdata'), files[0]);
  }));

  test('create failure leaves no row and no file', () => withTestBed(async (bed) => {
    bed.volumes.failures.set('rename', new Error('EIO'));
    await assert.rejects(createVolume(bed.context, { size: '2G', name: 'appdata' }, actor));
    assert.equal(bed.store.findVolume('appdata'), undefined);
    assert.deepEqual([...bed.volumes.files.keys()].filter((file) => file.startsWith(bed.paths.volumesDir)), []);
  }));

  test('volume delete rejects an attached volume', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web');
    const volume = seedVolume(bed, 'appdata', { vmId: vm.id });
    const before = snapshotState(bed.store);
    const error = await rejection(deleteVolume(bed.context, 'appdata', actor));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /detach/);
    assert.deepEqual(snapshotState(bed.store), before);
    assert.ok(bed.volumes.files.has(bed.paths.volumeFile(volume.id)));
  }));

  test('volume delete rejects a root volume in use', () => withTestBed(async (bed) => {
    const { root } = seedVm(bed, 'web');
    await assert.rejects(deleteVolume(bed.context, 'web-root', actor));
    assert.ok(bed.volumes.files.has(bed.paths.volumeFile(root.id)));
  }));

  test('volume delete rejects a busy volume', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'appdata');
    bed.store.setVolumeState(volume.id, 'busy');
    const error = await rejection(deleteVolume(bed.context, 'appdata', actor));
    assert.equal(error.code, 'conflict');
    assert.ok(bed.volumes.files.has(bed.paths.volumeFile(volume.id)));
  }));

  test('volume delete removes row and file', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'appdata');
    await deleteVolume(bed.context, 'appdata', actor);
    assert.equal(bed.store.findVolume('appdata'), undefined);
    assert.equal(bed.volumes.files.has(bed.paths.volumeFile(volume.id)), false);
  }));

  test('audit log records success and failure', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web');
    seedVolume(bed, 'appdata', { vmId: vm.id });
    seedVolume(bed, 'scratch');
    await assert.rejects(deleteVolume(bed.context, 'appdata', actor));
    await deleteVolume(bed.context, 'scratch', actor);
    const entries = bed.store.listAudit({ limit: 10, action: 'volume.delete' });
    const failed = entries.find((entry) => entry.target === 'appdata');
    const ok = entries.find((entry) => entry.target === 'scratch');
    assert.equal(failed?.result, 'failed');
    assert.match(failed?.error ?? '', /appdata/);
    assert.equal(ok?.result, 'ok');
    assert.equal(ok?.actor, actor);
    assert.ok(!Number.isNaN(Date.parse(ok?.time ?? '')));
  }));

  test('audit log records a failed resize', () => withTestBed(async (bed) => {
    seedVolume(bed, 'appdata', { sizeBytes: 2 * GiB });
    await assert.rejects(resizeVolume(bed.context, 'appdata', '1G', actor));
    const [entry] = bed.store.listAudit({ limit: 10, action: 'volume.resize' });
    assert.equal(entry?.result, 'failed');
    assert.equal(entry?.target, 'appdata');
  }));
});
