import type { TestHost } from './host.js';

/**
 * Kills the host's daemon with SIGKILL and waits for its exit event, then clears
 * `host.daemon` so that `host.cleanup()` skips its own wait. That wait races the exit against
 * a 120 s timer that it never clears, which keeps the test process alive for two minutes.
 */
export async function killDaemonAndWait(host: TestHost): Promise<void> {
  const child = host.daemon;
  if (!child?.pid) return;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    process.kill(child.pid, 'SIGKILL');
    await exited;
  }
  host.daemon = undefined;
}
