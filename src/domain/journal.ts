import type { OperationRow } from '../db/store.js';
import { SistemoError } from '../errors.js';
import type { Actor, Context } from './context.js';

export type OperationKind =
  | 'deploy' | 'start' | 'stop' | 'delete'
  | 'attach' | 'detach'
  | 'volume.create' | 'volume.resize' | 'volume.delete';

/**
 * One multi-step operation in the intent journal. `begin` is written before anything changes,
 * each `step` records how far it got, and recovery reads the row after a crash.
 */
export class Operation {
  private constructor(private readonly context: Context, readonly id: number, readonly kind: OperationKind) {}

  static begin(context: Context, kind: OperationKind, targets: { vmId?: string; volumeId?: string }, data: Record<string, unknown>): Operation {
    const id = context.store.beginOperation(kind, targets, data);
    // The first checkpoint is the caller's `step('recorded')` after its transaction commits.
    return new Operation(context, id, kind);
  }

  step(name: string): void {
    // `begin` already wrote 'recorded', and each journal write costs an fsync.
    if (name !== 'recorded') this.context.store.setOperationStep(this.id, name);
    this.context.checkpoint(this.kind, name);
  }

  child(pid: number | null): void {
    this.context.store.setOperationChild(this.id, pid);
  }

  done(): void {
    this.context.store.finishOperation(this.id, 'done');
  }

  rolledBack(error: unknown): void {
    this.context.store.finishOperation(this.id, 'rolled_back', messageOf(error));
  }

  failed(error: unknown): void {
    this.context.store.finishOperation(this.id, 'failed', messageOf(error));
  }
}

export function operationData<T>(row: OperationRow): T {
  return JSON.parse(row.data) as T;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Runs an operation and writes one audit entry for it, successful or not.
 * `details` may be filled in by the operation (before and after values).
 */
export async function audited<T>(
  context: Context,
  entry: { actor: Actor; action: string; target: string; details?: Record<string, unknown> },
  work: (details: Record<string, unknown>) => Promise<T> | T,
): Promise<T> {
  const details: Record<string, unknown> = { ...entry.details };
  try {
    const result = await work(details);
    context.store.addAudit({ actor: entry.actor, action: entry.action, target: entry.target, result: 'ok', details, error: null });
    return result;
  } catch (error) {
    context.store.addAudit({ actor: entry.actor, action: entry.action, target: entry.target, result: 'failed', details, error: messageOf(error) });
    const level = error instanceof SistemoError && error.code !== 'internal' ? 'info' : 'error';
    context.log[level]({ action: entry.action, target: entry.target, err: error }, `${entry.action} ${entry.target} failed`);
    throw error;
  }
}
