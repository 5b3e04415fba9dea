import type { Engine } from '../../src/engine/engine.js';
import type { VmSpec } from '../../src/engine/qemu-args.js';
import { UnexpectedCallError, never, type RecordedCall } from './strict.js';

interface FakeProcess {
  pid: number;
  vmId: string;
  pidFile: string;
  qmpSocket: string;
}

/**
 * An Engine whose VM processes are map entries. It is strict: starting a VM that already has
 * a process, or sending QMP to a socket with no process behind it, throws.
 */
export class FakeEngine implements Engine {
  readonly processes = new Map<number, FakeProcess>();
  readonly started: VmSpec[] = [];
  readonly calls: RecordedCall[] = [];
  /** When set, `start` throws this error, as QEMU failing to boot would. */
  startFailure: Error | undefined;
  /** When true, `powerdown` never returns, which simulates a daemon killed while stopping a VM. */
  hangPowerdown = false;
  /** When true, the guest ignores the ACPI power button and only `kill` ends it. */
  ignorePowerdown = false;
  private nextPid = 1000;

  /** Registers a running QEMU process, as a VM started by an earlier daemon would leave one. */
  addProcess(process: Omit<FakeProcess, 'pid'>): number {
    const pid = this.nextPid++;
    this.processes.set(pid, { pid, ...process });
    return pid;
  }

  processOf(vmId: string): FakeProcess | undefined {
    return [...this.processes.values()].find((process) => process.vmId === vmId);
  }

  async start(spec: VmSpec): Promise<number> {
    this.calls.push({ method: 'start', args: [spec.vmId] });
    if (this.startFailure) throw this.startFailure;
    if (this.processOf(spec.vmId)) throw new UnexpectedCallError('Engine', 'start', [spec.vmId, 'already running']);
    this.started.push(spec);
    return this.addProcess({ vmId: spec.vmId, pidFile: spec.pidFile, qmpSocket: spec.qmpSocket });
  }

  async findProcess(vmId: string, pidFile: string): Promise<number | undefined> {
    this.calls.push({ method: 'findProcess', args: [vmId, pidFile] });
    const process = this.processOf(vmId);
    return process && process.pidFile === pidFile ? process.pid : undefined;
  }

  async powerdown(qmpSocket: string): Promise<void> {
    this.calls.push({ method: 'powerdown', args: [qmpSocket] });
    const process = [...this.processes.values()].find((candidate) => candidate.qmpSocket === qmpSocket);
    if (!process) throw new UnexpectedCallError('Engine', 'powerdown', [qmpSocket, 'no process']);
    if (this.hangPowerdown) await never<void>();
    if (!this.ignorePowerdown) this.processes.delete(process.pid);
  }

  async waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
    this.calls.push({ method: 'waitForExit', args: [pid, timeoutMs] });
    return !this.processes.has(pid);
  }

  async kill(pid: number): Promise<void> {
    this.calls.push({ method: 'kill', args: [pid] });
    this.processes.delete(pid);
  }

  async status(qmpSocket: string): Promise<string> {
    throw new UnexpectedCallError('Engine', 'status', [qmpSocket]);
  }
}
