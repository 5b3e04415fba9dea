import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assertTransition, canTransition, isTransient, type VmStatus } from '../../src/domain/vm-state.js';
import { thrown } from '../fakes/errors.js';

const statuses: VmStatus[] = ['creating', 'starting', 'running', 'stopping', 'stopped', 'deleting'];

/** The status changes the product allows. Every other pair must be rejected. */
const allowed = new Set([
  'creating>running', 'creating>stopped',
  'starting>running', 'starting>stopped',
  'running>stopping', 'running>deleting', 'running>stopped',
  'stopping>stopped', 'stopping>running',
  'stopped>starting', 'stopped>deleting',
]);

describe('VM status transitions', () => {
  for (const from of statuses) {
    for (const to of statuses) {
      const expected = allowed.has(`${from}>${to}`);
      test(`canTransition ${expected ? 'allows' : 'rejects'} ${from} to ${to}`, () => {
        assert.equal(canTransition(from, to), expected);
      });
    }
  }

  test('assertTransition passes an allowed change', () => {
    assert.doesNotThrow(() => assertTransition('web', 'stopped', 'starting'));
  });

  test('assertTransition explains start of a running VM', () => {
    const error = thrown(() => assertTransition('web', 'running', 'starting'));
    assert.equal(error.code, 'wrong_state');
    assert.equal(error.message, 'Cannot start VM "web": it is already running');
  });

  test('assertTransition explains stop of a stopped VM', () => {
    const error = thrown(() => assertTransition('web', 'stopped', 'stopping'));
    assert.equal(error.code, 'wrong_state');
    assert.equal(error.message, 'Cannot stop VM "web": it is already stopped');
  });

  test('assertTransition asks to wait during a transient status', () => {
    const error = thrown(() => assertTransition('web', 'deleting', 'starting'));
    assert.equal(error.code, 'wrong_state');
    assert.match(error.message, /deleting/);
    assert.match(error.message, /wait/);
  });

  test('deleting allows no further change', () => {
    for (const to of statuses) assert.equal(canTransition('deleting', to), false, to);
  });

  const transient: [VmStatus, boolean][] = [
    ['creating', true], ['starting', true], ['stopping', true], ['deleting', true],
    ['running', false], ['stopped', false],
  ];
  for (const [status, expected] of transient) {
    test(`isTransient is ${expected} for ${status}`, () => {
      assert.equal(isTransient(status), expected);
    });
  }
});
