import { spawn } from 'node:child_process';
import { Command } from 'commander';
import { SistemoError } from '../../errors.js';
import type { VmDetails } from '../../domain/networks.js';
import type { VolumeView } from '../../domain/views.js';
import { sizeHelp } from '../../domain/size.js';
import { sshClientOptions } from '../../engine/ssh.js';
import { note, printJson, printLine, printTable } from '../output.js';
import { absoluteIfPath, confirm, outputFormat, withClient } from '../shared.js';

const segment = (name: string) => encodeURIComponent(name);

/** Formats exposed ports as `8080->80/tcp, 5353->53/udp`, or `-` when there are none. */
export function portsText(ports: VmDetails['ports']): string {
  return ports.map((port) => `${port.host_port}->${port.vm_port}/${port.protocol}`).join(', ') || '-';
}

function printVm(command: Command, vm: VmDetails): void {
  if (outputFormat(command) === 'json') return printJson(vm);
  const rows: [string, string][] = [
    ['Name', vm.name], ['Status', vm.status], ['Network', vm.network], ['IP', vm.ip ?? '-'], ['Ports', portsText(vm.ports)], ['vCPUs', String(vm.vcpus)],
    ['Memory', vm.memory], ['Image', vm.image], ['Root volume', vm.root_volume ?? '-'],
    ['Volumes', vm.volumes.map((volume) => `${volume.name} (${volume.role}, ${volume.size})`).join(', ') || '-'],
    ['Created', vm.created_at],
  ];
  for (const [label, value] of rows) printLine(`${`${label}:`.padEnd(13)}${value}`);
}

interface SshInfo { host: string; user: string; identity_file: string; connect_timeout_sec: number }

/** Quotes one argument for the remote POSIX shell, so `vm exec` keeps argument boundaries. */
export function shellQuote(argument: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(argument)) return argument;
  return `'${argument.replace(/'/g, `'\\''`)}'`;
}

/** Runs ssh with the terminal attached and resolves with its exit code. */
function runSsh(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', args, { stdio: 'inherit' });
    child.on('error', (error) => reject(new SistemoError('unavailable', `Cannot run ssh: ${error.message}, install openssh-client`)));
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

interface DeployOptions {
  name?: string;
  vcpus?: number;
  memory?: string;
  storage?: string;
  attach?: string;
  volume?: string;
  network?: string;
  expose?: string[];
}

export function vmCommand(setExitCode: (code: number) => void): Command {
  const vm = new Command('vm').alias('machine').description('create, run and remove virtual machines');

  vm.command('deploy')
    .description('create a VM with a new root volume NAME-root and boot it')
    .argument('[image]', 'debian, or the path of a local .ext4 image (ignored with --volume)')
    .option('--name <name>', 'VM name (default: the image name, or the volume name without -root)')
    .option('--vcpus <n>', 'number of virtual CPUs', (value) => {
      if (!/^\d+$/.test(value)) throw new SistemoError('invalid_argument', `Invalid --vcpus "${value}": use a whole number such as 2`);
      return Number(value);
    })
    .option('--memory <size>', `memory, ${sizeHelp}`)
    .option('--storage <size>', `root volume size (default 2G or the image size), ${sizeHelp}`)
    .option('--attach <volumes>', 'data volumes to attach, comma-separated')
    .option('--volume <volume>', 'boot from this existing detached root volume instead of an image')
    .option('--network <network>', 'named network to join (default: the default bridge)')
    .option('--expose <[host:]port>', 'forward a host TCP port to the VM; repeatable', (value: string, previous: string[] = []) => [...previous, value])
    .action(async (image: string | undefined, options: DeployOptions, command: Command) => {
      const body = {
        image: options.volume ? undefined : absoluteIfPath(image ?? 'debian'),
        name: options.name,
        vcpus: options.vcpus,
        memory: options.memory,
        storage: options.storage,
        attach: options.attach ? options.attach.split(',').map((name) => name.trim()) : undefined,
        volume: options.volume,
        network: options.network,
        expose: options.expose,
      };
      if (options.volume && image) note(`Booting from volume ${options.volume}; the image argument "${image}" is ignored`);
      const created = await withClient(command, (client) => client.callWithProgress<VmDetails>('POST', '/api/v1/vms', body, note));
      if (outputFormat(command) === 'json') return printJson(created);
      printLine(`VM ${created.name} is running at ${created.ip} with root volume ${created.root_volume}`);
      if (created.ports.length > 0) printLine(`Exposed ports: ${portsText(created.ports)}`);
    });

  vm.command('list').alias('ls').description('list VMs')
    .action(async (_options: unknown, command: Command) => {
      const vms = await withClient(command, (client) => client.call<VmDetails[]>('GET', '/api/v1/vms'));
      if (outputFormat(command) === 'json') return printJson(vms);
      printTable(['NAME', 'STATUS', 'IP', 'VCPUS', 'MEMORY', 'ROOT VOLUME', 'IMAGE'],
        vms.map((item) => [item.name, item.status, item.ip ?? '-', String(item.vcpus), item.memory, item.root_volume ?? '-', item.image]));
    });

  vm.command('status').alias('show').description('show one VM').argument('<vm>')
    .action(async (name: string, _options: unknown, command: Command) => {
      printVm(command, await withClient(command, (client) => client.call<VmDetails>('GET', `/api/v1/vms/${segment(name)}`)));
    });

  vm.command('start').description('boot a stopped VM with the volumes recorded for it').argument('<vm>')
    .action(async (name: string, _options: unknown, command: Command) => {
      const started = await withClient(command, (client) => client.callWithProgress<VmDetails>('POST', `/api/v1/vms/${segment(name)}/start`, undefined, note));
      if (outputFormat(command) === 'json') return printJson(started);
      printLine(`VM ${started.name} is running at ${started.ip}`);
    });

  vm.command('stop').description('power a VM off (ACPI, then a forced stop after stop_timeout_sec)').argument('<vm>')
    .action(async (name: string, _options: unknown, command: Command) => {
      const stopped = await withClient(command, (client) => client.call<VmDetails>('POST', `/api/v1/vms/${segment(name)}/stop`));
      if (outputFormat(command) === 'json') return printJson(stopped);
      printLine(`VM ${stopped.name} is stopped`);
    });

  vm.command('restart').description('stop and start a VM').argument('<vm>')
    .action(async (name: string, _options: unknown, command: Command) => {
      const started = await withClient(command, (client) => client.callWithProgress<VmDetails>('POST', `/api/v1/vms/${segment(name)}/restart`, undefined, note));
      if (outputFormat(command) === 'json') return printJson(started);
      printLine(`VM ${started.name} is running at ${started.ip}`);
    });

  vm.command('delete').alias('rm').description('delete a VM and its root volume; data volumes are kept, detached').argument('<vm>')
    .option('--preserve-storage', 'keep the root volume too, detached')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (name: string, options: { preserveStorage?: boolean; yes?: boolean }, command: Command) => {
      const what = options.preserveStorage ? 'keeping its root volume' : 'and its root volume';
      await confirm(`Delete VM "${name}" ${what}?`, options.yes, command);
      const query = options.preserveStorage ? '?preserve_storage=true' : '';
      await withClient(command, (client) => client.call('DELETE', `/api/v1/vms/${segment(name)}${query}`));
      printLine(`VM ${name} deleted${options.preserveStorage ? '; its root volume is kept' : ''}`);
    });

  vm.command('ssh').description('open an interactive shell in a VM').argument('<vm>')
    .action(async (name: string, _options: unknown, command: Command) => {
      const target = await withClient(command, (client) => client.call<SshInfo>('GET', `/api/v1/vms/${segment(name)}/ssh`));
      setExitCode(await runSsh([...sshClientOptions(target.identity_file, target.connect_timeout_sec), '-t', `${target.user}@${target.host}`]));
    });

  vm.command('exec').description('run a command in a VM; its output and exit code pass through')
    .argument('<vm>').argument('<command...>', 'the command and its arguments, after --')
    .action(async (name: string, argv: string[], _options: unknown, command: Command) => {
      const target = await withClient(command, (client) => client.call<SshInfo>('GET', `/api/v1/vms/${segment(name)}/ssh`));
      const remote = argv.map(shellQuote).join(' ');
      setExitCode(await runSsh([...sshClientOptions(target.identity_file, target.connect_timeout_sec), `${target.user}@${target.host}`, '--', remote]));
    });

  vm.command('expose').description('forward a host port to a VM (applied while the VM runs)').argument('<vm>')
    .requiredOption('--port <[host:]port>', 'host port, and the VM port when it differs, such as 8080:80')
    .option('--protocol <protocol>', 'tcp or udp', 'tcp')
    .action(async (name: string, options: { port: string; protocol: string }, command: Command) => {
      const body = { port: options.port, protocol: options.protocol };
      const exposed = await withClient(command, (client) => client.call<VmDetails>('POST', `/api/v1/vms/${segment(name)}/ports`, body));
      if (outputFormat(command) === 'json') return printJson(exposed);
      const when = exposed.status === 'running' ? '' : '; the rule is applied when the VM starts';
      printLine(`VM ${exposed.name} exposes ${portsText(exposed.ports)}${when}`);
    });

  vm.command('unexpose').description('stop forwarding a host port to a VM').argument('<vm>')
    .requiredOption('--port <host>', 'the host port')
    .option('--protocol <protocol>', 'tcp or udp', 'tcp')
    .action(async (name: string, options: { port: string; protocol: string }, command: Command) => {
      const query = `?protocol=${encodeURIComponent(options.protocol)}`;
      const changed = await withClient(command, (client) => client.call<VmDetails>('DELETE', `/api/v1/vms/${segment(name)}/ports/${segment(options.port)}${query}`));
      if (outputFormat(command) === 'json') return printJson(changed);
      printLine(`Host port ${options.port}/${options.protocol} no longer forwards to VM ${changed.name}`);
    });

  const volume = vm.command('volume').description('attach and detach data volumes of a stopped VM');
  volume.command('attach').description('attach a detached volume to a stopped VM').argument('<vm>').argument('<volume>')
    .action(async (vmName: string, volumeName: string, _options: unknown, command: Command) => {
      const attached = await withClient(command, (client) => client.call<VolumeView>('POST', `/api/v1/vms/${segment(vmName)}/volumes`, { volume: volumeName }));
      if (outputFormat(command) === 'json') return printJson(attached);
      printLine(`Volume ${attached.name} attached to VM ${vmName}; it appears at /mnt/${attached.name} after the next start`);
    });
  volume.command('detach').description('detach a data volume from a stopped VM').argument('<vm>').argument('<volume>')
    .action(async (vmName: string, volumeName: string, _options: unknown, command: Command) => {
      const detached = await withClient(command, (client) => client.call<VolumeView>('DELETE', `/api/v1/vms/${segment(vmName)}/volumes/${segment(volumeName)}`));
      if (outputFormat(command) === 'json') return printJson(detached);
      printLine(`Volume ${detached.name} detached from VM ${vmName}`);
    });

  return vm;
}
