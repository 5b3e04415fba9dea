import { setTimeout as sleep } from 'node:timers/promises';
import type { TestHost } from './host.js';

/**
 * Waits until the daemon process of a host has exited and returns its exit code, which is null
 * when a signal ended it. TestHost.waitDaemonExit is called only once the process is gone, so
 * its timeout timer is short and does not keep the test process alive after the last test.
 */
export async function waitForDaemonExit(host: TestHost, timeoutMs = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const child = host.daemon;
  if (!child) throw new Error('no daemon was started for this host');
  const deadline = Date.now() + timeoutMs;
  while (child.exitCode === null && child.signalCode === null) {
    if (Date.now() > deadline) throw new Error(`daemon pid ${child.pid} did not exit within ${timeoutMs} ms`);
    await sleep(50);
  }
  await host.waitDaemonExit(1000);
  return { code: child.exitCode, signal: child.signalCode };
}

/** Sends a signal to the daemon of a host, if one runs, and waits for it to exit. */
export async function signalDaemon(host: TestHost, signal: NodeJS.Signals, timeoutMs = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  const child = host.daemon;
  if (!child?.pid) return undefined;
  // An exited child's pid may belong to another process by now, so only a live one gets the signal.
  if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, signal);
  return waitForDaemonExit(host, timeoutMs);
}
