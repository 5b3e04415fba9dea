import { promises as fs } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Store } from '../src/db/store.js';
import { GiB } from '../src/domain/size.js';
import { macFor } from '../src/engine/qemu-args.js';
import { tapNameFor } from '../src/network/network.js';
import { newId } from '../src/paths.js';
import { TestHost, repoRoot } from '../test/helpers/host.js';

/** The CLI entry point of this checkout. */
export const cliPath = path.join(repoRoot, 'bin', 'sistemo');

/** Returns the argv that runs the CLI against a data directory, outside any network namespace. */
export function cliArgv(dataDir: string, ...args: string[]): string[] {
  // The CLI only opens the daemon's Unix socket in the data directory, so it needs no namespace.
  return ['node', cliPath, '--data-dir', dataDir, ...args];
}

const cleanups = new Set<() => Promise<void>>();

/** Runs every registered cleanup once; used by `finally` blocks and the SIGINT handler. */
export async function runCleanups(): Promise<void> {
  for (const cleanup of [...cleanups].reverse()) {
    cleanups.delete(cleanup);
    await cleanup().catch((error: unknown) => process.stderr.write(`# cleanup failed: ${(error as Error).message}\n`));
  }
}

/** Runs work with a registered cleanup that runs when work ends or the bench is interrupted. */
export async function withCleanup<T>(cleanup: () => Promise<void>, work: () => Promise<T>): Promise<T> {
  cleanups.add(cleanup);
  try {
    return await work();
  } finally {
    if (cleanups.delete(cleanup)) await cleanup();
  }
}

/** Runs work on a fresh TestHost (network namespace, data directory, daemon not started). */
export async function withHost<T>(options: { withImage?: boolean }, work: (host: TestHost) => Promise<T>): Promise<T> {
  const host = await TestHost.create({ withImage: options.withImage ?? false });
  return withCleanup(() => host.cleanup(), () => work(host));
}

/** Runs work with a scratch directory for the raw tools, on the same filesystem as the data directories. */
export async function withScratchDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await fs.mkdtemp('/var/tmp/smb-');
  return withCleanup(() => fs.rm(dir, { recursive: true, force: true }), () => work(dir));
}

/**
 * Opens the daemon's database for seeding. It does not run migrations: the daemon has already
 * created the schema, and a bench compiled before a newer migration must not reject it.
 */
function openSeedStore(dataDir: string): Store {
  const db = new BetterSqlite3(path.join(dataDir, 'sistemo.db'));
  db.pragma('busy_timeout = 5000');
  return new Store(db);
}

/** Returns the bytes a file has allocated on disk: st_blocks times 512. */
export async function allocatedBytes(file: string): Promise<number> {
  return (await fs.stat(file)).blocks * 512;
}

/**
 * Inserts stopped VMs, each with a 2 GiB root volume, straight into the database. The rows have
 * the shapes `vm deploy` writes (ids from newId, MAC from macFor, tap from tapNameFor), but no
 * volume files exist. The daemon must be stopped.
 */
export function seedVms(dataDir: string, count: number): void {
  const store = openSeedStore(dataDir);
  try {
    store.transaction(() => {
      for (let index = 1; index <= count; index++) {
        const vmId = newId('m');
        const name = `list-vm-${String(index).padStart(3, '0')}`;
        // 10.200.0.1 is the bridge address (the gateway of the default bridge_subnet), so VMs start at .2.
        const ip = `10.200.${Math.floor((index + 1) / 256)}.${(index + 1) % 256}`;
        store.insertVm({
          id: vmId, name, status: 'stopped', vcpus: 2, memory_bytes: GiB / 2, image: 'debian',
          ip, mac: macFor(vmId), tap: tapNameFor(vmId), pid: null, ssh: 1,
        });
        store.insertVolume({
          id: newId('v'), name: `${name}-root`, type: 'root', size_bytes: 2 * GiB, state: 'ready',
          vm_id: vmId, role: 'boot', boot_image: 'debian', ssh: 1,
        });
      }
    });
  } finally {
    store.db.close();
  }
}

/** Inserts detached, ready data volumes straight into the database, with no files. The daemon must be stopped. */
export function seedVolumes(dataDir: string, count: number): void {
  const store = openSeedStore(dataDir);
  try {
    store.transaction(() => {
      for (let index = 1; index <= count; index++) {
        store.insertVolume({
          id: newId('v'), name: `list-vol-${String(index).padStart(4, '0')}`, type: 'data',
          size_bytes: (1 + (index % 8)) * GiB, state: 'ready', vm_id: null, role: null, boot_image: null, ssh: 0,
        });
      }
    });
  } finally {
    store.db.close();
  }
}
