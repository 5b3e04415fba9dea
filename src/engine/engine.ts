import { promises as fs, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CommandRunner } from '../system/runner.js';
import { buildQemuArgs, type VmSpec } from './qemu-args.js';
import { qmpCommand } from './qmp.js';

/** Starts and stops VM processes. One QEMU process per VM, found again through its pid file. */
export interface Engine {
  /** Starts QEMU in the background and returns its pid once it has daemonized. */
  start(spec: VmSpec): Promise<number>;
  /** Returns the pid of the VM's QEMU process when it is alive, else undefined. */
  findProcess(vmId: string, pidFile: string): Promise<number | undefined>;
  /** Asks the guest to power off (ACPI power button). */
  powerdown(qmpSocket: string): Promise<void>;
  /** Waits up to timeoutMs for a process to exit; returns whether it did. */
  waitForExit(pid: number, timeoutMs: number): Promise<boolean>;
  kill(pid: number): Promise<void>;
  status(qmpSocket: string): Promise<string>;
}

export class QemuEngine implements Engine {
  constructor(private readonly runner: CommandRunner) {}

  async start(spec: VmSpec): Promise<number> {
    await fs.rm(spec.pidFile, { force: true });
    await fs.rm(spec.qmpSocket, { force: true });
    // With -daemonize the first process exits once the VM is set up; errors before that fail here.
    await this.runner.run(buildQemuArgs(spec), { timeoutMs: 60_000 });
    const pid = await this.findProcess(spec.vmId, spec.pidFile);
    if (pid === undefined) throw new Error(`QEMU for VM ${spec.name} exited right after starting; see ${spec.consoleLog}`);
    return pid;
  }

  async findProcess(vmId: string, pidFile: string): Promise<number | undefined> {
    let pid: number;
    try {
      pid = Number((await fs.readFile(pidFile, 'utf8')).trim());
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    // A pid can be reused after a host reboot: trust it only if that process is our QEMU for this VM.
    try {
      const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8');
      return cmdline.includes(pidFile) && cmdline.includes(vmId) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  async powerdown(qmpSocket: string): Promise<void> {
    await qmpCommand(qmpSocket, 'system_powerdown');
  }

  async status(qmpSocket: string): Promise<string> {
    const result = (await qmpCommand(qmpSocket, 'query-status')) as { status?: string };
    return result.status ?? 'unknown';
  }

  async waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!isAlive(pid)) return true;
      if (Date.now() >= deadline) return false;
      await sleep(100);
    }
  }

  async kill(pid: number): Promise<void> {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
    await this.waitForExit(pid, 5000);
  }
}

/** Returns whether a process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // The state letter follows the command name, which is in parentheses and may contain spaces.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).charAt(0) !== 'Z';
  } catch {
    return false;
  }
}
