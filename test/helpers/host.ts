import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { promises as fs, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildDebianImage, debianImageVersion } from '../../src/images/debian.js';
import { ProcessRunner } from '../../src/system/runner.js';

const execFileAsync = promisify(execFile);

export const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
const cli = path.join(repoRoot, 'bin', 'sistemo');

/** Where tests keep the one Debian image they build per machine; every test data dir links to it. */
export const testImageCache = process.env.SISTEMO_TEST_IMAGE_CACHE ?? '/var/tmp/sistemo-test-image';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Builds the debian image into the shared test cache unless the current recipe is there.
 * Concurrent test files wait on a lock directory instead of building twice.
 */
export async function ensureTestImage(): Promise<string> {
  const versionFile = path.join(testImageCache, 'version');
  if (existsSync(versionFile) && readFileSync(versionFile, 'utf8').trim() === debianImageVersion) return testImageCache;
  await fs.mkdir(testImageCache, { recursive: true });
  const lock = path.join(testImageCache, '.lock');
  for (;;) {
    try {
      await fs.mkdir(lock);
      break;
    } catch {
      if (existsSync(versionFile) && readFileSync(versionFile, 'utf8').trim() === debianImageVersion) return testImageCache;
      await sleep(1000);
    }
  }
  try {
    if (existsSync(versionFile) && readFileSync(versionFile, 'utf8').trim() === debianImageVersion) return testImageCache;
    const started = Date.now();
    process.stderr.write('# building the debian test image\n');
    await buildDebianImage({
      outDir: testImageCache,
      aptSources: existsSync('/etc/apt/sources.list.d/debian.sources') ? '/etc/apt/sources.list.d/debian.sources' : '/etc/apt/sources.list',
      runner: new ProcessRunner(),
      onProgress: (message) => process.stderr.write(`# image: ${message}\n`),
    });
    await fs.writeFile(versionFile, `${debianImageVersion}\n`);
    process.stderr.write(`# debian test image built in ${Math.round((Date.now() - started) / 1000)} s\n`);
    return testImageCache;
  } finally {
    await fs.rm(lock, { recursive: true, force: true });
  }
}

let counter = 0;

/**
 * A throwaway Sistemo host: a network namespace of its own (so bridges, taps and VM traffic
 * never leave it), a data directory, and the daemon running inside the namespace.
 */
export class TestHost {
  daemon: ChildProcess | undefined;
  private daemonExit: Promise<number | null> | undefined;

  private constructor(readonly netns: string, readonly dataDir: string) {}

  static async create(options: { config?: Record<string, unknown>; withImage?: boolean } = {}): Promise<TestHost> {
    counter++;
    const id = `${process.pid.toString(36)}${counter}`;
    const netns = `smt-${id}`;
    const dataDir = await fs.mkdtemp('/var/tmp/smt-');
    const host = new TestHost(netns, dataDir);
    await execFileAsync('ip', ['netns', 'add', netns]);
    await execFileAsync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    const config = { nat: false, accelerator: 'tcg', ssh_timeout_sec: 300, stop_timeout_sec: 60, ...options.config };
    await fs.writeFile(path.join(dataDir, 'config.yml'), Object.entries(config).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join('\n') + '\n');
    if (options.withImage) {
      const cache = await ensureTestImage();
      const target = path.join(dataDir, 'images', 'debian');
      await fs.mkdir(target, { recursive: true });
      // Hard links: the image files are only read, and linking is instant.
      for (const file of ['rootfs.ext4', 'vmlinuz', 'initrd.img', 'version']) await fs.link(path.join(cache, file), path.join(target, file));
    }
    return host;
  }

  /** Runs a command inside the namespace. */
  async inNetns(argv: string[]): Promise<CliResult> {
    return new Promise((resolve) => {
      const child = spawn('ip', ['netns', 'exec', this.netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
      child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  }

  /** Runs the sistemo CLI inside the namespace against this host's data directory. */
  async cli(...args: string[]): Promise<CliResult> {
    return this.inNetns(['node', cli, '--data-dir', this.dataDir, ...args]);
  }

  /** Runs the CLI and fails with its stderr unless it exits 0. */
  async ok(...args: string[]): Promise<string> {
    const result = await this.cli(...args);
    if (result.code !== 0) throw new Error(`sistemo ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return result.stdout;
  }

  async startDaemon(env: Record<string, string> = {}): Promise<void> {
    const log = await fs.open(path.join(this.dataDir, 'daemon.stderr'), 'a');
    const child = spawn('ip', ['netns', 'exec', this.netns, 'node', cli, 'up', '--data-dir', this.dataDir], {
      stdio: ['ignore', log.fd, log.fd],
      env: { ...process.env, ...env },
    });
    await log.close();
    this.daemon = child;
    this.daemonExit = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`daemon exited ${child.exitCode}: ${await this.daemonStderr()}`);
      const health = await this.cli('image', 'list');
      if (health.code === 0) return;
      await sleep(200);
    }
    throw new Error(`daemon did not answer within 60 s: ${await this.daemonStderr()}`);
  }

  async daemonStderr(): Promise<string> {
    return (await fs.readFile(path.join(this.dataDir, 'daemon.stderr'), 'utf8').catch(() => '')).slice(-4000);
  }

  /** Waits for the daemon to exit and returns its exit code. */
  async waitDaemonExit(timeoutMs = 120_000): Promise<number | null> {
    if (!this.daemonExit) return null;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs); });
    // The timer is cleared either way, so a finished test file does not wait for it.
    const result = await Promise.race([this.daemonExit, timeout]).finally(() => clearTimeout(timer));
    if (result === 'timeout') throw new Error('daemon did not exit in time');
    this.daemon = undefined;
    return result;
  }

  /** Kills the daemon with SIGKILL, as a crash would. `ip netns exec` runs it as its child. */
  async killDaemon(): Promise<void> {
    const pid = await this.daemonPid();
    if (pid !== undefined) process.kill(pid, 'SIGKILL');
    await this.waitDaemonExit();
  }

  async terminateDaemon(): Promise<number | null> {
    const pid = await this.daemonPid();
    if (pid !== undefined) process.kill(pid, 'SIGTERM');
    return this.waitDaemonExit();
  }

  /** Returns the pid of the node process running `sistemo up` for this data dir. */
  async daemonPid(): Promise<number | undefined> {
    if (!this.daemon?.pid) return undefined;
    // `ip netns exec` execs the command in place, so the child's pid is the daemon's.
    return this.daemon.pid;
  }

  /** Returns the pids of QEMU processes whose pid files are in this data dir. */
  async qemuPids(): Promise<number[]> {
    const pids: number[] = [];
    const vmsDir = path.join(this.dataDir, 'vms');
    for (const entry of await fs.readdir(vmsDir).catch(() => [] as string[])) {
      const pidFile = path.join(vmsDir, entry, 'qemu.pid');
      const pid = Number((await fs.readFile(pidFile, 'utf8').catch(() => '')).trim());
      if (!pid) continue;
      const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.includes(pidFile)) pids.push(pid);
    }
    return pids;
  }

  /** Stops the daemon and every QEMU process of this host, then removes the namespace and data. */
  async cleanup(): Promise<void> {
    const daemonPid = await this.daemonPid();
    if (daemonPid !== undefined) {
      try { process.kill(daemonPid, 'SIGKILL'); } catch { /* already gone */ }
      await this.waitDaemonExit().catch(() => undefined);
    }
    for (const pid of await this.qemuPids()) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    await sleep(300);
    await execFileAsync('ip', ['netns', 'del', this.netns]).catch(() => undefined);
    if (!process.env.SISTEMO_TEST_KEEP) await fs.rm(this.dataDir, { recursive: true, force: true });
  }
}
