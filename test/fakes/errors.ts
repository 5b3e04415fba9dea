import assert from 'node:assert/strict';
import { SistemoError } from '../../src/errors.js';

/** Awaits a promise that must reject with a SistemoError and returns that error. */
export async function rejection(promise: Promise<unknown>): Promise<SistemoError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof SistemoError, `expected a SistemoError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the operation to be rejected, but it succeeded');
}

/** Calls a function that must throw a SistemoError and returns that error. */
export function thrown(work: () => unknown): SistemoError {
  try {
    work();
  } catch (error) {
    assert.ok(error instanceof SistemoError, `expected a SistemoError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a SistemoError, but nothing was thrown');
}
