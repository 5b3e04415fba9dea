import path from 'node:path';
import readline from 'node:readline/promises';
import type { Command } from 'commander';
import { SistemoError } from '../errors.js';
import { defaultDataDir, DataPaths } from '../paths.js';
import { ApiClient, parseDaemonUrl } from './client.js';
import type { OutputFormat } from './output.js';

interface GlobalOptions {
  yes?: boolean;
  output?: string;
  dataDir?: string;
}

function globals(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

export function outputFormat(command: Command): OutputFormat {
  const output = globals(command).output ?? 'table';
  if (output !== 'table' && output !== 'json') {
    throw new SistemoError('invalid_argument', `Invalid output format "${output}": use json or table`);
  }
  return output;
}

export function dataDirOf(command: Command): string {
  const given = globals(command).dataDir;
  return given ? path.resolve(given) : defaultDataDir();
}

/** Opens a client to the daemon: SISTEMO_DAEMON_URL when set (validated), else the local socket. */
export function clientFor(command: Command): ApiClient {
  const url = process.env.SISTEMO_DAEMON_URL;
  const apiKey = process.env.HOST_API_KEY || undefined;
  if (url !== undefined && url !== '') return new ApiClient(parseDaemonUrl(url), apiKey);
  return new ApiClient({ kind: 'socket', path: new DataPaths(dataDirOf(command)).socket }, apiKey);
}

/** Runs a command body with a client and always closes it. */
export async function withClient<T>(command: Command, work: (client: ApiClient) => Promise<T>): Promise<T> {
  const client = clientFor(command);
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}

/**
 * Asks before a destructive action. Without a terminal on stdin no one can answer, so it
 * rejects the action (exit 1) instead of deleting or waiting forever. `-y` skips the question.
 */
export async function confirm(question: string, yes: boolean | undefined, command?: Command): Promise<void> {
  if (yes || (command && globals(command).yes)) return;
  if (!process.stdin.isTTY) {
    throw new SistemoError('wrong_state', `Refusing to continue without confirmation: stdin is not a terminal, pass -y to confirm (${question})`);
  }
  const prompt = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await prompt.question(`${question} [y/N] `)).trim().toLowerCase();
    if (answer !== 'y' && answer !== 'yes') throw new SistemoError('wrong_state', 'Cancelled: nothing was changed');
  } finally {
    prompt.close();
  }
}

/** Turns a path the user typed into an absolute one, for image arguments that are files. */
export function absoluteIfPath(reference: string): string {
  if (reference.includes('/') || reference.endsWith('.ext4')) return path.resolve(reference);
  return reference;
}
