import { Command } from 'commander';
import type { NetworkView } from '../../domain/networks.js';
import { printJson, printLine, printTable } from '../output.js';
import { outputFormat, withClient } from '../shared.js';

const segment = (name: string) => encodeURIComponent(name);

export function networkCommand(): Command {
  const network = new Command('network').description('create and delete isolated networks for VMs');

  network.command('create').description('create a network; VMs on it reach each other and nothing on other networks').argument('<name>')
    .option('--subnet <cidr>', 'private IPv4 subnet of /16 to /29 (default: a free /24 of 10.201.0.0/16)')
    .action(async (name: string, options: { subnet?: string }, command: Command) => {
      const created = await withClient(command, (client) => client.call<NetworkView>('POST', '/api/v1/networks', { name, subnet: options.subnet }));
      if (outputFormat(command) === 'json') return printJson(created);
      printLine(`Network ${created.name} created with subnet ${created.subnet} on bridge ${created.bridge}`);
    });

  network.command('list').alias('ls').description('list networks, the default one first')
    .action(async (_options: unknown, command: Command) => {
      const networks = await withClient(command, (client) => client.call<NetworkView[]>('GET', '/api/v1/networks'));
      if (outputFormat(command) === 'json') return printJson(networks);
      printTable(['NAME', 'SUBNET', 'BRIDGE', 'VMS'], networks.map((item) => [item.name, item.subnet, item.bridge, String(item.vm_count)]));
    });

  network.command('delete').alias('rm').description('delete a network that no VM is on').argument('<name>')
    .action(async (name: string, _options: unknown, command: Command) => {
      await withClient(command, (client) => client.call('DELETE', `/api/v1/networks/${segment(name)}`));
      printLine(`Network ${name} deleted`);
    });

  return network;
}
