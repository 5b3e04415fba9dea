import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { reconcile } from '../../src/domain/recovery.js';
import { seedVm, seedVolume, withTestBed } from '../fakes/context.js';

describe('reconcile', () => {
  test('dead VM process marks it stopped', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web', { status: 'running' });
    bed.engine.processes.delete(vm.pid ?? -1);

    const report = await reconcile(bed.context);

    const after = bed.store.findVm('web');
    assert.deepEqual(report.vms_marked_stopped, ['web']);
    assert.equal(after?.status, 'stopped');
    assert.equal(after?.ip, vm.ip);
    assert.equal(after?.pid, null);
    assert.equal(bed.store.listAudit({ limit: 10, action: 'vm.stopped' }).length, 1);
  }));

  test('live VM process keeps it running', () => withTestBed(async (bed) => {
    const { vm } = seedVm(bed, 'web', { status: 'running' });

    const report = await reconcile(bed.context);

    assert.deepEqual(report.vms_marked_stopped, []);
    assert.equal(bed.store.findVm('web')?.status, 'running');
    assert.equal(bed.store.findVm('web')?.pid, vm.pid);
  }));

  test('deleted VM is never brought back', () => withTestBed(async (bed) => {
    const { vm, root } = seedVm(bed, 'web', { status: 'running' });
    bed.store.transaction(() => {
      bed.store.setVolumeAttachment(root.id, null, null);
      bed.store.deleteVm(vm.id);
    });

    await reconcile(bed.context);

    assert.equal(bed.store.findVm('web'), undefined);
    assert.equal(bed.store.listVms().length, 0);
  }));

  test('storage drift is reported, not deleted', () => withTestBed(async (bed) => {
    const orphan = path.join(bed.paths.volumesDir, 'v0123456789ab.img');
    await fs.mkdir(bed.paths.volumesDir, { recursive: true });
    await fs.writeFile(orphan, 'data');
    const lost = seedVolume(bed, 'lost');
    bed.volumes.files.delete(bed.paths.volumeFile(lost.id));

    const report = await reconcile(bed.context);

    assert.deepEqual(report.files_without_records, [orphan]);
    assert.deepEqual(report.records_without_files, ['lost']);
    assert.equal(await fs.readFile(orphan, 'utf8'), 'data');
    assert.notEqual(bed.store.findVolume('lost'), undefined);
  }));
});
