import { Command } from 'commander';
import { SistemoError } from '../../errors.js';
import type { AuditEntry } from '../../db/store.js';
import type { ImageInfo } from '../../images/store.js';
import { formatSize } from '../../domain/size.js';
import { printJson, printTable } from '../output.js';
import { dataDirOf, outputFormat, withClient } from '../shared.js';

export function upCommand(setExitCode: (code: number) => void): Command {
  return new Command('up').description('run the daemon in the foreground (as root)')
    .action(async (_options: unknown, command: Command) => {
      // Loaded on demand: the daemon's dependencies would slow every other CLI command down.
      const { runDaemon } = await import('../../daemon/server.js');
      setExitCode(await runDaemon({ dataDir: dataDirOf(command) }));
    });
}

/** Cuts long values so one rejected 300-character name does not widen every later table; -o json keeps them whole. */
function shorten(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

export function historyCommand(): Command {
  return new Command('history').description('show the audit log, newest first')
    .option('--limit <n>', 'how many entries (default 50)')
    .option('--action <action>', 'only this action, such as volume.resize')
    .option('--target <name>', 'only this VM or volume')
    .action(async (options: { limit?: string; action?: string; target?: string }, command: Command) => {
      if (options.limit !== undefined && !/^[1-9]\d{0,3}$/.test(options.limit)) {
        throw new SistemoError('invalid_argument', `Invalid --limit "${options.limit}": use a whole number from 1 to 9999`);
      }
      const query = new URLSearchParams();
      if (options.limit) query.set('limit', options.limit);
      if (options.action) query.set('action', options.action);
      if (options.target) query.set('target', options.target);
      const entries = await withClient(command, (client) => client.call<AuditEntry[]>('GET', `/api/v1/history?${query.toString()}`));
      if (outputFormat(command) === 'json') return printJson(entries);
      printTable(['TIME', 'ACTOR', 'ACTION', 'TARGET', 'RESULT', 'ERROR'],
        entries.map((entry) => [entry.time, entry.actor, entry.action, shorten(entry.target, 40), entry.result, shorten(entry.error ?? '-', 120)]));
    });
}

export function imageCommand(): Command {
  const image = new Command('image').description('list images');
  image.command('list').alias('ls').description('list images and whether they are built')
    .action(async (_options: unknown, command: Command) => {
      const images = await withClient(command, (client) => client.call<ImageInfo[]>('GET', '/api/v1/images'));
      if (outputFormat(command) === 'json') return printJson(images);
      printTable(['NAME', 'BUILT', 'SIZE', 'DESCRIPTION'],
        images.map((item) => [item.name, item.built ? 'yes' : 'no (built on first deploy)', item.size_bytes === null ? '-' : formatSize(item.size_bytes), item.description]));
    });
  return image;
}
