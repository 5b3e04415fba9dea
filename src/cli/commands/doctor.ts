import { Command } from 'commander';
import type { Config } from '../../config.js';
import { formatSize } from '../../domain/size.js';
import type { ReconcileReport } from '../../domain/recovery.js';
import type { AcceleratorChoice } from '../../engine/accelerator.js';
import { ProcessRunner } from '../../system/runner.js';
import { DataPaths } from '../../paths.js';
import { printJson, printLine, printTable } from '../output.js';
import { dataDirOf, outputFormat, withClient } from '../shared.js';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

const tools: { name: string; argv: string[]; fix: string }[] = [
  { name: 'qemu', argv: ['qemu-system-x86_64', '--version'], fix: 'apt-get install qemu-system-x86' },
  { name: 'e2fsprogs', argv: ['mke2fs', '-V'], fix: 'apt-get install e2fsprogs' },
  { name: 'mmdebstrap', argv: ['mmdebstrap', '--version'], fix: 'apt-get install mmdebstrap' },
  { name: 'nftables', argv: ['nft', '--version'], fix: 'apt-get install nftables' },
  { name: 'iproute2', argv: ['ip', '-V'], fix: 'apt-get install iproute2' },
  { name: 'ssh client', argv: ['ssh', '-V'], fix: 'apt-get install openssh-client' },
];

async function toolChecks(): Promise<Check[]> {
  const runner = new ProcessRunner();
  return Promise.all(tools.map(async (tool) => {
    try {
      const result = await runner.run(tool.argv, { timeoutMs: 10_000 });
      const firstLine = `${result.stdout}${result.stderr}`.trim().split('\n')[0] ?? '';
      return { name: tool.name, ok: true, detail: firstLine };
    } catch {
      return { name: tool.name, ok: false, detail: `${tool.argv[0]} is missing or fails`, fix: tool.fix };
    }
  }));
}

export function doctorCommand(setExitCode: (code: number) => void): Command {
  return new Command('doctor').description('check the host, the tools and the daemon; exit 1 when something is broken')
    .action(async (_options: unknown, command: Command) => {
      const checks = await toolChecks();
      try {
        const report = await withClient(command, (client) => client.call<{
          accelerator: AcceleratorChoice | null; reconciler: ReconcileReport | null; data_dir: string; free_bytes: number;
        }>('GET', '/api/v1/doctor'));
        checks.push({ name: 'daemon', ok: true, detail: `answering, data directory ${report.data_dir}` });
        checks.push(report.accelerator
          ? { name: 'accelerator', ok: true, detail: `${report.accelerator.accelerator.toUpperCase()}: ${report.accelerator.reason}${report.accelerator.accelerator === 'tcg' ? ' (warning: software emulation is slow)' : ''}` }
          : { name: 'accelerator', ok: true, detail: 'not chosen yet: the first deploy builds the guest kernel and probes KVM' });
        const lowSpace = report.free_bytes < 2 * 1024 ** 3;
        checks.push({ name: 'disk', ok: !lowSpace, detail: `${formatSize(report.free_bytes)} free`, fix: lowSpace ? 'free space in the data directory' : undefined });
        const findings = report.reconciler;
        if (findings) {
          const drift = [...findings.files_without_records.map((file) => `file without record: ${file}`),
            ...findings.records_without_files.map((name) => `volume without file: ${name}`)];
          checks.push({
            name: 'storage',
            ok: drift.length === 0,
            detail: drift.length === 0 ? `every volume has its file (checked ${findings.checked_at})` : drift.join('; '),
            fix: drift.length === 0 ? undefined : 'inspect these by hand; Sistemo never deletes unrecorded files itself',
          });
        }
      } catch (error) {
        checks.push({ name: 'daemon', ok: false, detail: (error as Error).message });
      }
      if (outputFormat(command) === 'json') printJson(checks);
      else printTable(['CHECK', 'STATUS', 'DETAIL'], checks.map((check) => [check.name, check.ok ? 'ok' : 'FAIL', check.fix ? `${check.detail} (fix: ${check.fix})` : check.detail]));
      if (checks.some((check) => !check.ok)) setExitCode(1);
    });
}

export function configCommand(): Command {
  return new Command('config')
    .description('show the configuration that config.yml and this shell\'s environment give, and where each value comes from (a daemon started with other variables differs)')
    .action(async (_options: unknown, command: Command) => {
      // Loaded on demand, so the YAML parser does not slow down every other command.
      const { configKeys, envNameFor, loadConfig, configHelp } = await import('../../config.js');
      const paths = new DataPaths(dataDirOf(command));
      const { config, sources } = loadConfig(paths.config);
      const shown = (key: keyof Config): string => {
        const value = config[key];
        if (key === 'api_key') return value ? '(set)' : '(not set)';
        if (key === 'max_memory' || key === 'max_volume_size' || key === 'default_memory') return formatSize(value as number);
        return String(value);
      };
      if (outputFormat(command) === 'json') {
        return printJson(configKeys.map((key) => ({ key, value: key === 'api_key' ? Boolean(config.api_key) : config[key], source: sources[key], env: envNameFor(key) })));
      }
      printLine(`# ${paths.config}, overridden by environment variables`);
      printTable(['KEY', 'VALUE', 'SOURCE', 'ENVIRONMENT', 'MEANING'],
        configKeys.map((key) => [key, shown(key), sources[key], envNameFor(key), configHelp(key)]));
    });
}
