import { Command } from 'commander';
import type { VolumeView } from '../../domain/views.js';
import { sizeHelp } from '../../domain/size.js';
import { printJson, printLine, printTable } from '../output.js';
import { confirm, outputFormat, withClient } from '../shared.js';

const segment = (name: string) => encodeURIComponent(name);

/** Returns the rows of `volume list`, in the columns the release documents. */
export function volumeRows(volumes: readonly VolumeView[]): string[][] {
  return volumes.map((volume) => [volume.name, volume.size, volume.status, volume.attached_to ?? '-', volume.type]);
}

export const volumeHeaders = ['NAME', 'SIZE', 'STATUS', 'ATTACHED TO', 'TYPE'];

export function volumeCommand(): Command {
  const volume = new Command('volume').description('create, resize and delete volumes');

  volume.command('create').description(`create an empty ext4 data volume; SIZE is ${sizeHelp}`).argument('<size>')
    .option('--name <name>', 'volume name (default: vol- and four hex digits)')
    .action(async (size: string, options: { name?: string }, command: Command) => {
      const created = await withClient(command, (client) => client.call<VolumeView>('POST', '/api/v1/volumes', { size, name: options.name }));
      if (outputFormat(command) === 'json') return printJson(created);
      printLine(`Volume ${created.name} created (${created.size})`);
    });

  volume.command('list').alias('ls').description('list volumes')
    .action(async (_options: unknown, command: Command) => {
      const volumes = await withClient(command, (client) => client.call<VolumeView[]>('GET', '/api/v1/volumes'));
      if (outputFormat(command) === 'json') return printJson(volumes);
      printTable(volumeHeaders, volumeRows(volumes));
    });

  volume.command('show').alias('status').description('show one volume').argument('<volume>')
    .action(async (name: string, _options: unknown, command: Command) => {
      const shown = await withClient(command, (client) => client.call<VolumeView>('GET', `/api/v1/volumes/${segment(name)}`));
      if (outputFormat(command) === 'json') return printJson(shown);
      printTable(volumeHeaders, volumeRows([shown]));
      if (shown.message) printLine(`Message: ${shown.message}`);
    });

  volume.command('resize').description(`grow a volume (its VM must be stopped); SIZE is ${sizeHelp}`).argument('<volume>').argument('<size>')
    .action(async (name: string, size: string, _options: unknown, command: Command) => {
      const resized = await withClient(command, (client) => client.call<VolumeView>('POST', `/api/v1/volumes/${segment(name)}/resize`, { size }));
      if (outputFormat(command) === 'json') return printJson(resized);
      printLine(`Volume ${resized.name} resized to ${resized.size}`);
    });

  volume.command('delete').alias('rm').description('delete a detached volume and its data').argument('<volume>')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (name: string, options: { yes?: boolean }, command: Command) => {
      await confirm(`Delete volume "${name}" and all data on it?`, options.yes, command);
      await withClient(command, (client) => client.call('DELETE', `/api/v1/volumes/${segment(name)}`));
      printLine(`Volume ${name} deleted`);
    });

  return volume;
}
