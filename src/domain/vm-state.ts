import { wrongState } from '../errors.js';

export type VmStatus = 'creating' | 'starting' | 'running' | 'stopping' | 'stopped' | 'deleting';

/**
 * Allowed VM status changes. A status that is in the middle of an operation (creating,
 * starting, stopping, deleting) belongs to that operation; other requests are rejected.
 */
const transitions: Record<VmStatus, readonly VmStatus[]> = {
  creating: ['running', 'stopped'],
  starting: ['running', 'stopped'],
  running: ['stopping', 'deleting', 'stopped'],
  stopping: ['stopped', 'running'],
  stopped: ['starting', 'deleting'],
  deleting: [],
};

export function canTransition(from: VmStatus, to: VmStatus): boolean {
  return transitions[from].includes(to);
}

/** Throws a wrong-state error, with what to do next, when `from` cannot become `to`. */
export function assertTransition(vmName: string, from: VmStatus, to: VmStatus): void {
  if (canTransition(from, to)) return;
  if (to === 'starting' && from === 'running') {
    throw wrongState(`Cannot start VM "${vmName}": it is already running`);
  }
  if (to === 'stopping' && from === 'stopped') {
    throw wrongState(`Cannot stop VM "${vmName}": it is already stopped`);
  }
  if (isTransient(from)) {
    throw wrongState(`Cannot change VM "${vmName}": it is ${from}, wait for that to finish`);
  }
  throw wrongState(`Cannot change VM "${vmName}" from ${from} to ${to}`);
}

export function isTransient(status: VmStatus): boolean {
  return status === 'creating' || status === 'starting' || status === 'stopping' || status === 'deleting';
}
