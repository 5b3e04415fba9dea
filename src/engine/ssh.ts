import net from 'node:net';
import { promises as fs } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CommandRunner } from '../system/runner.js';

/** Returns whether something at host:22 sends an SSH banner within timeoutMs. */
export function sshBannerAnswers(host: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.createConnection({ host, port: 22 });
    let received = '';
    const done = (answer: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (received.startsWith('SSH-')) done(true);
      else if (received.length >= 4) done(false);
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
  });
}

/**
 * Waits until the VM's sshd sends its banner. The guest boot script installs the daemon's key
 * before sshd starts, so a banner means key login works. Throws when the deadline passes or
 * `stillRunning` reports that the VM process has exited.
 */
export async function waitForSsh(host: string, options: { timeoutMs: number; stillRunning: () => Promise<boolean> }): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await sshBannerAnswers(host)) return;
    if (!(await options.stillRunning())) throw new Error('the VM process exited while booting');
    if (Date.now() >= deadline) throw new Error(`sshd did not respond within ${Math.round(options.timeoutMs / 1000)} s`);
    await sleep(250);
  }
}

/** OpenSSH client options for VMs: key only, no prompts, no host key store (addresses are reused). */
export function sshClientOptions(identityFile: string, connectTimeoutSec: number): string[] {
  return [
    '-i', identityFile,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'LogLevel=ERROR',
    '-o', `ConnectTimeout=${connectTimeoutSec}`,
  ];
}

/** Creates the daemon's ed25519 key pair unless it exists; returns the public key line. */
export async function ensureSshKey(keyFile: string, runner: CommandRunner): Promise<string> {
  try {
    return (await fs.readFile(`${keyFile}.pub`, 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await fs.rm(keyFile, { force: true });
  await runner.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'sistemo-daemon', '-f', keyFile]);
  return (await fs.readFile(`${keyFile}.pub`, 'utf8')).trim();
}

export { sleep };
