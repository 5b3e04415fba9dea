/** A call that a strict fake was not set up to receive. Tests fail on it instead of passing silently. */
export class UnexpectedCallError extends Error {
  constructor(fake: string, method: string, args: readonly unknown[]) {
    super(`${fake}.${method} was called unexpectedly with ${JSON.stringify(args)}`);
    this.name = 'UnexpectedCallError';
  }
}

/** One recorded call of a fake method. */
export interface RecordedCall {
  method: string;
  args: unknown[];
}

/** Returns a promise that never settles, which simulates a daemon that died during the call. */
export function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}
