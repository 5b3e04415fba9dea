import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildApp } from '../../src/daemon/app.js';
import { attachVolume, resizeVolume } from '../../src/domain/volumes.js';
import { SistemoError } from '../../src/errors.js';
import { seedVm, seedVolume, withTestBed, type TestBed } from '../fakes/context.js';

async function appFor(bed: TestBed, ready: boolean) {
  return buildApp(bed.context, { ready: () => ready, lastReconcile: () => undefined, accelerator: async () => undefined, inFlight: { count: 0 } });
}

describe('HTTP layer', () => {
  test('requests during recovery get 503', () => withTestBed(async (bed) => {
    const app = await appFor(bed, false);
    try {
      const response = await app.inject({ method: 'GET', url: '/api/v1/vms' });
      assert.equal(response.statusCode, 503);
      assert.equal(response.headers['retry-after'], '2');
      assert.equal(response.json().error.code, 'unavailable');
      assert.match(response.json().error.message, /finishing operations interrupted/);
    } finally {
      await app.close();
    }
  }));

  test('unknown field is named in the error', () => withTestBed(async (bed) => {
    const app = await appFor(bed, true);
    try {
      const response = await app.inject({ method: 'POST', url: '/api/v1/volumes', payload: { size: '1G', colour: 'red' } });
      assert.equal(response.statusCode, 400);
      assert.equal(response.json().error.message, 'Invalid request: unknown field "colour"');
    } finally {
      await app.close();
    }
  }));

  test('wrong type names the field', () => withTestBed(async (bed) => {
    const app = await appFor(bed, true);
    try {
      const response = await app.inject({ method: 'POST', url: '/api/v1/vms', payload: { name: 'web', vcpus: 0 } });
      assert.equal(response.statusCode, 400);
      assert.match(response.json().error.message, /^Invalid request: field "vcpus" must be >= 1$/);
    } finally {
      await app.close();
    }
  }));
});

describe('volume messages', () => {
  test('resize of a missing file says so', () => withTestBed(async (bed) => {
    const volume = seedVolume(bed, 'lost');
    bed.volumes.files.delete(bed.paths.volumeFile(volume.id));
    await assert.rejects(resizeVolume(bed.context, 'lost', '2G', 'test'), (error: unknown) => {
      assert.ok(error instanceof SistemoError);
      assert.equal(error.code, 'wrong_state');
      assert.match(error.message, /its file .* is missing, see sistemo doctor/);
      return true;
    });
    assert.equal(bed.store.findVolume('lost')?.state, 'ready');
  }));

  test('attach names the other VM first', () => withTestBed(async (bed) => {
    const { vm: owner } = seedVm(bed, 'api');
    seedVm(bed, 'web', { status: 'running' });
    seedVolume(bed, 'appdata', { vmId: owner.id });
    await assert.rejects(attachVolume(bed.context, 'web', 'appdata', 'test'), /it is attached to VM "api"/);
  }));
});
