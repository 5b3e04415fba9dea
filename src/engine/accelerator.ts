import { promises as fs, constants } from 'node:fs';
import type { Accelerator } from '../config.js';
import type { CommandRunner } from '../system/runner.js';
import { CommandError } from '../errors.js';

export interface AcceleratorChoice {
  accelerator: 'kvm' | 'tcg';
  reason: string;
}

const probeTimeoutMs = 15_000;

/**
 * Picks KVM or TCG. `auto` does not trust /dev/kvm alone: some hosts accept KVM_CREATE_VM but
 * hang a stock guest kernel. So it boots the guest kernel under KVM with no root disk, which
 * must reach its "unable to mount root" panic quickly; only then is KVM used.
 * The result is cached per kernel (path, size and mtime), so the probe runs once.
 */
export async function chooseAccelerator(options: {
  setting: Accelerator;
  kernel: string;
  cacheFile: string;
  runner: CommandRunner;
}): Promise<AcceleratorChoice> {
  if (options.setting === 'tcg') return { accelerator: 'tcg', reason: 'accelerator is set to tcg' };
  if (options.setting === 'kvm') return { accelerator: 'kvm', reason: 'accelerator is set to kvm' };
  try {
    await fs.access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { accelerator: 'tcg', reason: '/dev/kvm is missing or not accessible' };
  }
  const stat = await fs.stat(options.kernel);
  const cacheKey = `${options.kernel}:${stat.size}:${stat.mtimeMs}`;
  try {
    const cached = JSON.parse(await fs.readFile(options.cacheFile, 'utf8')) as AcceleratorChoice & { key: string };
    if (cached.key === cacheKey && (cached.accelerator === 'kvm' || cached.accelerator === 'tcg')) {
      return { accelerator: cached.accelerator, reason: cached.reason };
    }
  } catch {
    // No usable cache: probe below.
  }
  const choice = await probeKvm(options.kernel, options.runner);
  await fs.writeFile(options.cacheFile, JSON.stringify({ ...choice, key: cacheKey }));
  return choice;
}

async function probeKvm(kernel: string, runner: CommandRunner): Promise<AcceleratorChoice> {
  const argv = [
    'qemu-system-x86_64', '-machine', 'q35', '-accel', 'kvm', '-cpu', 'host', '-m', '256M',
    '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot',
    '-kernel', kernel, '-append', 'console=ttyS0 panic=-1',
  ];
  try {
    const result = await runner.run(argv, { timeoutMs: probeTimeoutMs, okExitCodes: [0] });
    if (/Kernel panic|Unable to mount root/.test(result.stdout)) {
      return { accelerator: 'kvm', reason: 'a guest kernel boots under KVM on this host' };
    }
    return { accelerator: 'tcg', reason: 'the KVM probe boot did not reach the kernel panic it expects' };
  } catch (error) {
    if (error instanceof CommandError) {
      return {
        accelerator: 'tcg',
        reason: `/dev/kvm exists but a stock guest kernel does not boot under KVM here (the probe boot ${error.timedOut ? `timed out after ${probeTimeoutMs / 1000} s` : error.signal ? `was killed by ${error.signal}` : `exited with code ${error.exitCode}`})`,
      };
    }
    throw error;
  }
}
