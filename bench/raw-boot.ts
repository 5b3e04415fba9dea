/**
 * Boots one VM with a QEMU command given in a JSON file and prints how long it took until sshd
 * sent its banner. The bench runs this inside its network namespace with `ip netns exec`,
 * because the VM's address is only reachable there.
 *
 * Usage: node dist/bench/raw-boot.js SPEC.json
 * SPEC.json: { "argv": ["qemu-system-x86_64", ...], "ip": "10.201.0.2", "timeoutMs": 300000, "consoleLog": FILE }
 * Output: { "ms": total, "daemonizedMs": until the -daemonize parent exited }
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { sshBannerAnswers } from '../src/engine/ssh.js';

interface BootSpec {
  argv: string[];
  ip: string;
  timeoutMs: number;
  /** The guest's serial console file, named in error messages. */
  consoleLog: string;
}

/** Runs argv to its exit; with -daemonize that is when QEMU has set up the VM. */
function runToExit(argv: readonly string[]): Promise<void> {
  const [command, ...args] = argv;
  if (!command) throw new Error('the spec has an empty argv');
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} exited ${code}: ${stderr.trim()}`));
    });
  });
}

async function main(): Promise<void> {
  const specFile = process.argv[2];
  if (!specFile) throw new Error('Missing argument: the path of a boot spec JSON file');
  const spec = JSON.parse(readFileSync(specFile, 'utf8')) as BootSpec;
  const started = process.hrtime.bigint();
  const elapsedMs = () => Number(process.hrtime.bigint() - started) / 1e6;
  await runToExit(spec.argv);
  const daemonizedMs = elapsedMs();
  // The same probe and poll interval as the daemon's readiness wait (src/engine/ssh.ts).
  const deadline = Date.now() + spec.timeoutMs;
  for (;;) {
    if (await sshBannerAnswers(spec.ip)) break;
    if (Date.now() >= deadline) throw new Error(`Timed out: sshd at ${spec.ip} sent no SSH banner within ${spec.timeoutMs} ms, see ${spec.consoleLog}`);
    await sleep(250);
  }
  process.stdout.write(`${JSON.stringify({ ms: elapsedMs(), daemonizedMs })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`raw-boot: ${(error as Error).message}\n`);
  process.exit(1);
});
