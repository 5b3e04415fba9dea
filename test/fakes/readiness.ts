import type { Readiness } from '../../src/domain/context.js';

/** A Readiness that resolves at once, or rejects with the configured failure. */
export class FakeReadiness implements Readiness {
  readonly waitedFor: string[] = [];
  failure: Error | undefined;

  async wait(ip: string, options: { timeoutMs: number; stillRunning: () => Promise<boolean> }): Promise<void> {
    this.waitedFor.push(ip);
    if (this.failure) throw this.failure;
    if (!(await options.stillRunning())) throw new Error('the VM process exited while booting');
  }
}
