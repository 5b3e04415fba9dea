import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { SistemoError } from '../../errors.js';
import { ProcessRunner } from '../../system/runner.js';
import { note, printLine } from '../output.js';
import { dataDirOf } from '../shared.js';

export const unitPath = '/etc/systemd/system/sistemo.service';

/**
 * Returns the systemd unit for the daemon. KillMode=process matters: QEMU processes share the
 * service's cgroup, and the default mode would kill every VM on `systemctl stop` or restart.
 */
export function serviceUnit(options: { node: string; cli: string; dataDir: string }): string {
  const quote = (value: string) => `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  return [
    '[Unit]',
    'Description=Sistemo VM daemon',
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${quote(options.node)} ${quote(options.cli)} up --data-dir ${quote(options.dataDir)}`,
    'KillMode=process',
    'KillSignal=SIGTERM',
    'TimeoutStopSec=180',
    'Restart=on-failure',
    'RestartSec=2',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

function systemdRunning(): boolean {
  // The documented test for "booted with systemd" (sd_booted): this directory exists.
  return existsSync('/run/systemd/system');
}

export function serviceCommand(): Command {
  const service = new Command('service').description('install the daemon as a systemd service');
  service.command('install').description('write, enable and start sistemo.service (restart it when already installed)')
    .action(async (_options: unknown, command: Command) => {
      if (process.getuid?.() !== 0) throw new SistemoError('wrong_state', 'Cannot install the service: run it as root (sudo)');
      const cli = path.resolve(process.argv[1] ?? 'sistemo');
      const unit = serviceUnit({ node: process.execPath, cli, dataDir: dataDirOf(command) });
      const existed = existsSync(unitPath);
      await fs.writeFile(unitPath, unit, { mode: 0o644 });
      printLine(`Wrote ${unitPath}`);
      if (!systemdRunning()) {
        note('systemd is not running on this host, so the service was written but not started; run sistemo up instead');
        return;
      }
      const runner = new ProcessRunner();
      await runner.run(['systemctl', 'daemon-reload']);
      await runner.run(['systemctl', 'enable', 'sistemo.service']);
      await runner.run(['systemctl', existed ? 'restart' : 'start', 'sistemo.service']);
      printLine(`sistemo.service is enabled and ${existed ? 'restarted' : 'started'}`);
    });
  service.command('uninstall').description('stop, disable and remove sistemo.service; running VMs keep running')
    .action(async () => {
      if (process.getuid?.() !== 0) throw new SistemoError('wrong_state', 'Cannot uninstall the service: run it as root (sudo)');
      if (!existsSync(unitPath)) throw new SistemoError('not_found', `Cannot uninstall the service: ${unitPath} does not exist`);
      if (systemdRunning()) {
        const runner = new ProcessRunner();
        await runner.run(['systemctl', 'disable', '--now', 'sistemo.service']);
      }
      await fs.rm(unitPath);
      if (systemdRunning()) await new ProcessRunner().run(['systemctl', 'daemon-reload']);
      printLine(`Removed ${unitPath}`);
    });
  return service;
}
