import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { buildBusyboxImage } from '../../src/images/busybox.js';
import { ProcessRunner } from '../../src/system/runner.js';

const runner = new ProcessRunner();
const execFileAsync = promisify(execFile);

/** Where tests keep the busybox image they build once per machine. */
export const busyboxImageCache = process.env.SISTEMO_TEST_BUSYBOX_CACHE ?? '/var/tmp/sistemo-test-busybox';

/** Returns a sha256 of the compiled busybox recipe, so a changed recipe rebuilds the cached image. */
function busyboxRecipeVersion(): string {
  const recipe = new URL('../../src/images/busybox.js', import.meta.url);
  return createHash('sha256').update(readFileSync(recipe)).digest('hex');
}

/**
 * Builds the busybox image into the shared cache unless the current recipe is there, and returns
 * the path of its rootfs.ext4. Concurrent test files wait on a lock directory instead of
 * building twice.
 */
export async function ensureBusyboxImage(): Promise<string> {
  const version = busyboxRecipeVersion();
  const versionFile = path.join(busyboxImageCache, 'version');
  const rootfs = path.join(busyboxImageCache, 'rootfs.ext4');
  const isCurrent = () => existsSync(versionFile) && readFileSync(versionFile, 'utf8').trim() === version;
  if (isCurrent()) return rootfs;
  await fs.mkdir(busyboxImageCache, { recursive: true });
  const lock = path.join(busyboxImageCache, '.lock');
  for (;;) {
    try {
      await fs.mkdir(lock);
      break;
    } catch {
      if (isCurrent()) return rootfs;
      await sleep(500);
    }
  }
  try {
    if (isCurrent()) return rootfs;
    await fs.rm(versionFile, { force: true });
    await buildBusyboxImage({ outDir: busyboxImageCache, runner });
    // The version file is written last: its presence marks a complete build.
    await fs.writeFile(versionFile, `${version}\n`);
    return rootfs;
  } finally {
    await fs.rm(lock, { recursive: true, force: true });
  }
}

/** An operations row of the intent journal, as the daemon stores it. */
export interface JournalEntry {
  id: number;
  kind: string;
  state: string;
  step: string;
  vm_id: string | null;
  volume_id: string | null;
  data: string;
}

/** A volumes row, as the daemon stores it. */
export interface VolumeRecord {
  id: string;
  name: string;
  type: string;
  size_bytes: number;
  state: string;
  vm_id: string | null;
}

/** Runs one read-only query on the daemon's database. The daemon may be running or dead. */
function queryDatabase<T>(dataDir: string, sql: string, ...parameters: unknown[]): T[] {
  const db = new Database(path.join(dataDir, 'sistemo.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...parameters) as T[];
  } finally {
    db.close();
  }
}

export function runningOperationCount(dataDir: string): number {
  const rows = queryDatabase<{ count: number }>(dataDir, "SELECT count(*) AS count FROM operations WHERE state = 'running'");
  return rows[0]?.count ?? -1;
}

/** Returns the newest journal entry of a kind, or undefined when there is none. */
export function lastOperation(dataDir: string, kind: string): JournalEntry | undefined {
  const rows = queryDatabase<JournalEntry>(dataDir, 'SELECT id, kind, state, step, vm_id, volume_id, data FROM operations WHERE kind = ? ORDER BY id DESC LIMIT 1', kind);
  return rows[0];
}

export function volumeRecords(dataDir: string): VolumeRecord[] {
  return queryDatabase<VolumeRecord>(dataDir, 'SELECT id, name, type, size_bytes, state, vm_id FROM volumes ORDER BY name');
}

/** Volume files and rows that do not match: what a lost or orphaned volume leaves behind. */
export interface StorageDrift {
  rowsWithoutFiles: string[];
  filesWithoutRows: string[];
  partialFiles: string[];
}

export async function storageDrift(dataDir: string): Promise<StorageDrift> {
  const volumesDir = path.join(dataDir, 'volumes');
  const files = await fs.readdir(volumesDir).catch(() => [] as string[]);
  const rows = volumeRecords(dataDir);
  const expected = new Set(rows.map((row) => `${row.id}.img`));
  return {
    rowsWithoutFiles: rows.filter((row) => !files.includes(`${row.id}.img`)).map((row) => row.name),
    filesWithoutRows: files.filter((file) => file.endsWith('.img') && !expected.has(file)),
    partialFiles: files.filter((file) => file.endsWith('.partial')),
  };
}

export function volumeFile(dataDir: string, volumeId: string): string {
  return path.join(dataDir, 'volumes', `${volumeId}.img`);
}

/**
 * Writes `bytes` random bytes as /NAME into an ext4 image with debugfs and returns their sha256.
 * Only for images that no running VM uses.
 */
export async function writeRandomFile(image: string, name: string, bytes = 256 * 1024): Promise<string> {
  const content = randomBytes(bytes);
  const local = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'sistemo-upload-')), name);
  await fs.writeFile(local, content);
  try {
    await runner.run(['debugfs', '-w', '-R', `write ${local} ${name}`, image]);
  } finally {
    await fs.rm(path.dirname(local), { recursive: true, force: true });
  }
  return createHash('sha256').update(content).digest('hex');
}

/** Returns the sha256 of /NAME in an ext4 image, read with debugfs without changing the image. */
export async function fileSha256(image: string, name: string): Promise<string> {
  const { stdout } = await execFileAsync('debugfs', ['-R', `cat /${name}`, image], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
  return createHash('sha256').update(stdout).digest('hex');
}

/** Returns block count times block size from the superblock, as `dumpe2fs -h` prints them. */
export async function filesystemBytes(image: string): Promise<number> {
  const { stdout } = await runner.run(['dumpe2fs', '-h', '--', image]);
  const blockCount = Number(/^Block count:\s+(\d+)/m.exec(stdout)?.[1]);
  const blockSize = Number(/^Block size:\s+(\d+)/m.exec(stdout)?.[1]);
  return blockCount * blockSize;
}

/** Returns whether a process runs. A zombie counts as exited, because it has released its files and runs no code. */
export function isProcessAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // The state letter follows the command name, which is in parentheses and may contain spaces.
  return stat.slice(stat.lastIndexOf(')') + 2).charAt(0) !== 'Z';
}

/** Returns the pid of the live QEMU process of a VM, or undefined when none runs. */
export async function vmQemuPid(dataDir: string, vmId: string): Promise<number | undefined> {
  const pidFile = path.join(dataDir, 'vms', vmId, 'qemu.pid');
  const pid = Number((await fs.readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!pid) return undefined;
  // A pid file can outlive its process, and the pid can be reused: the command line must match.
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.includes(pidFile) ? pid : undefined;
}

export function operationById(dataDir: string, id: number): JournalEntry | undefined {
  const rows = queryDatabase<JournalEntry>(dataDir, 'SELECT id, kind, state, step, vm_id, volume_id, data FROM operations WHERE id = ?', id);
  return rows[0];
}

/** Returns whether `e2fsck -fn` finds the filesystem in an image clean, without changing it. */
export async function isCleanFilesystem(image: string): Promise<boolean> {
  try {
    await execFileAsync('e2fsck', ['-fn', image]);
    return true;
  } catch {
    return false;
  }
}
