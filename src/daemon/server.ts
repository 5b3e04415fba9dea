import { promises as fs, existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { loadConfig, type Config } from '../config.js';
import { openDatabase } from '../db/database.js';
import { Store } from '../db/store.js';
import type { Context } from '../domain/context.js';
import { restoreHostNetwork } from '../domain/networks.js';
import { reconcile, recoverOperations, type ReconcileReport } from '../domain/recovery.js';
import { SistemoError, invalid } from '../errors.js';
import { chooseAccelerator, type AcceleratorChoice } from '../engine/accelerator.js';
import { QemuEngine } from '../engine/engine.js';
import { ensureSshKey, waitForSsh } from '../engine/ssh.js';
import { ImageStore } from '../images/store.js';
import { createLogger } from '../log.js';
import { parseCidr } from '../network/cidr.js';
import { LinuxNetwork, defaultBridge } from '../network/network.js';
import { DataPaths } from '../paths.js';
import { ProcessRunner } from '../system/runner.js';
import { Ext4VolumeTool } from '../storage/volume-tool.js';
import { buildApp } from './app.js';

/** Returns the apt sources file that image builds use, so they fetch from the host's own mirror. */
export function hostAptSources(): string {
  for (const candidate of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    if (existsSync(candidate)) return candidate;
  }
  throw invalid('No apt sources found in /etc/apt: the debian image is built from the host\'s configured Debian mirror');
}

async function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.createConnection(socketPath);
    socket.on('connect', () => { socket.destroy(); resolve(true); });
    socket.on('error', () => resolve(false));
  });
}

/** Builds the production context: real processes, files, QEMU and network devices. */
async function createContext(paths: DataPaths, config: Config, log: Context['log']): Promise<Context> {
  const runner = new ProcessRunner();
  const store = new Store(openDatabase(paths.database));
  const sshPublicKey = await ensureSshKey(paths.sshKey, runner);
  const accelerators = new Map<string, Promise<AcceleratorChoice>>();
  const crashAt = process.env.SISTEMO_TEST_CRASH_AT;
  return {
    store,
    config,
    paths,
    volumes: new Ext4VolumeTool(runner),
    engine: new QemuEngine(runner),
    network: new LinuxNetwork(runner),
    images: new ImageStore(paths, runner, hostAptSources()),
    readiness: { wait: waitForSsh },
    log,
    subnet: parseCidr(config.bridge_subnet),
    bridge: defaultBridge,
    sshPublicKey,
    accelerator(kernel: string) {
      let choice = accelerators.get(kernel);
      if (!choice) {
        choice = chooseAccelerator({ setting: config.accelerator, kernel, cacheFile: paths.acceleratorCache, runner });
        choice.then((value) => log.info({ ...value }, 'accelerator chosen'), () => accelerators.delete(kernel));
        accelerators.set(kernel, choice);
      }
      return choice;
    },
    checkpoint(kind: string, step: string) {
      if (crashAt && crashAt === `${kind}:${step}`) {
        log.warn({ kind, step }, 'SISTEMO_TEST_CRASH_AT reached: killing the daemon');
        process.kill(process.pid, 'SIGKILL');
      }
    },
  };
}

/**
 * Runs the daemon in the foreground until SIGTERM or SIGINT. It recovers interrupted
 * operations and adopts running VMs before it accepts requests.
 */
export async function runDaemon(options: { dataDir: string }): Promise<number> {
  if (process.getuid?.() !== 0) {
    throw new SistemoError('wrong_state', 'sistemo up needs root: it creates network devices and runs QEMU, run it with sudo');
  }
  const paths = new DataPaths(options.dataDir);
  paths.checkSocketLengths();
  if (paths.root.includes(',')) throw invalid(`Invalid data directory "${paths.root}": QEMU options cannot contain a comma in a file path`);
  for (const dir of [paths.root, paths.volumesDir, paths.vmsDir, paths.imagesDir, paths.undoDir, paths.sshDir]) {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  }
  const { config } = loadConfig(paths.config);
  if (await socketAnswers(paths.socket)) {
    throw new SistemoError('conflict', `Another daemon is already running for ${paths.root}`);
  }
  await fs.rm(paths.socket, { force: true });

  const log = createLogger({ file: paths.log, toStderr: true });
  log.info({ dataDir: paths.root, pid: process.pid }, 'daemon starting');
  const context = await createContext(paths, config, log);
  await context.network.ensureBridge(context.bridge, context.subnet);

  let lastReport: ReconcileReport | undefined;
  let recovered = false;
  const inFlight = { count: 0 };
  const app = await buildApp(context, {
    ready: () => recovered,
    lastReconcile: () => lastReport,
    accelerator: async () => {
      const kernel = `${paths.imageDir('debian')}/vmlinuz`;
      return existsSync(kernel) ? context.accelerator(kernel) : undefined;
    },
    inFlight,
  });
  await app.ready();

  const unixServer = http.createServer((request, response) => app.routing(request, response));
  await new Promise<void>((resolve, reject) => {
    unixServer.once('error', reject);
    unixServer.listen(paths.socket, () => resolve());
  });
  await fs.chmod(paths.socket, 0o600);
  await app.listen({ port: config.port, host: config.listen_address });
  log.info({ socket: paths.socket, http: `${config.listen_address}:${config.port}` }, 'daemon listening');

  // Recovery can wait for a VM to power off, so the daemon listens first and returns 503
  // until it is done. Clients then get a clear message instead of a connection that hangs.
  await recoverOperations(context);
  lastReport = await reconcile(context);
  // After recovery, so that exposures follow the VM states it settled.
  await restoreHostNetwork(context);
  recovered = true;
  log.info({}, 'daemon ready');

  let reconciling = false;
  const reconcileTimer = setInterval(() => {
    if (reconciling) return;
    reconciling = true;
    reconcile(context)
      .then((report) => { lastReport = report; })
      .catch((error: unknown) => log.error({ err: error }, 'reconciler run failed'))
      .finally(() => { reconciling = false; });
  }, config.reconciler_interval_sec * 1000);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      clearInterval(reconcileTimer);
      log.info({ signal, inFlight: inFlight.count }, 'daemon stopping: no new requests, waiting for running operations');
      unixServer.close();
      const deadline = Date.now() + config.shutdown_timeout_sec * 1000;
      const closed = app.close();
      const waitForOperations = async () => {
        while (inFlight.count > 0 && Date.now() < deadline) await new Promise((done) => setTimeout(done, 100));
        await Promise.race([closed, new Promise((done) => setTimeout(done, Math.max(0, deadline - Date.now())))]);
      };
      void waitForOperations().then(() => {
        if (inFlight.count > 0) log.warn({ inFlight: inFlight.count }, 'shutdown timeout reached; the next start recovers what was left');
        else log.info({}, 'daemon stopped; VMs keep running');
        context.store.db.close();
        resolve(0);
      });
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
}
