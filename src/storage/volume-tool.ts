import { promises as fs } from 'node:fs';
import { CommandError, SistemoError } from '../errors.js';
import type { CommandRunner } from '../system/runner.js';

/** Filesystem state read from an ext4 superblock. */
export interface FilesystemInfo {
  blockCount: number;
  blockSize: number;
  /** Bytes the filesystem spans: block count times block size. */
  bytes: number;
}

/**
 * A volume's filesystem has errors that `e2fsck -p` does not fix unattended, so it was not resized.
 * e2fsck may still have replayed the journal or marked the superblock. The tool output is in `cause`.
 */
export class FilesystemCheckError extends SistemoError {
  constructor(file: string, cause: CommandError) {
    super('wrong_state', 'the filesystem check found errors it cannot repair safely', { cause, details: { file } });
  }
}

/** File and filesystem work on volume images: the side effects of the storage layer. */
export interface VolumeTool {
  copySparse(source: string, target: string): Promise<void>;
  createFilesystem(file: string, sizeBytes: number, label: string): Promise<void>;
  fileSize(file: string): Promise<number>;
  setFileSize(file: string, sizeBytes: number): Promise<void>;
  /** Checks and preens the filesystem; throws FilesystemCheckError when errors remain. */
  check(file: string, onSpawn?: (pid: number) => void): Promise<void>;
  /** Checks without changing anything; returns whether the filesystem is clean. */
  isClean(file: string): Promise<boolean>;
  /**
   * Grows the filesystem to fill its file. With `undoFile`, blocks it overwrites are saved there
   * first, except on filesystems with blocks under 2 KiB (see the implementation).
   */
  growFilesystem(file: string, options: { undoFile?: string; onSpawn?: (pid: number) => void }): Promise<void>;
  /** Restores the blocks an interrupted grow overwrote. */
  undo(undoFile: string, file: string): Promise<void>;
  filesystemInfo(file: string): Promise<FilesystemInfo>;
  freeBytes(directory: string): Promise<number>;
  allocatedBytes(file: string): Promise<number>;
  remove(file: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  exists(file: string): Promise<boolean>;
}

/**
 * Reads an ext4 block size straight from the superblock: s_log_block_size is the 32-bit
 * little-endian value at byte 24 of the superblock, which starts at byte 1024. This saves
 * starting dumpe2fs on the resize path.
 */
export async function superblockBlockSize(file: string): Promise<number> {
  const handle = await fs.open(file, 'r');
  try {
    const buffer = Buffer.alloc(4);
    await handle.read(buffer, 0, 4, 1024 + 24);
    return 1024 << buffer.readUInt32LE(0);
  } finally {
    await handle.close();
  }
}

/** Runs e2fsprogs and coreutils on real files. */
export class Ext4VolumeTool implements VolumeTool {
  constructor(private readonly runner: CommandRunner) {}

  async copySparse(source: string, target: string): Promise<void> {
    // cp keeps holes (and reflinks where the filesystem can), so a copy allocates what the image does.
    await this.runner.run(['cp', '--sparse=always', '--reflink=auto', '--', source, target]);
    // cp keeps the image's mode; volume files are readable by root only, like created ones.
    await fs.chmod(target, 0o600);
  }

  async createFilesystem(file: string, sizeBytes: number, label: string): Promise<void> {
    const handle = await fs.open(file, 'wx', 0o600);
    try {
      await handle.truncate(sizeBytes);
    } finally {
      await handle.close();
    }
    // 4 KiB blocks whatever the size: mke2fs picks 1 KiB blocks below 512 MiB, and resize2fs -z
    // (e2fsprogs 1.47.0) leaves such a filesystem with an invalid resize inode.
    await this.runner.run(['mkfs.ext4', '-q', '-F', '-b', '4096', '-m', '0', '-L', label.slice(0, 16), '--', file]);
  }

  async fileSize(file: string): Promise<number> {
    return (await fs.stat(file)).size;
  }

  async setFileSize(file: string, sizeBytes: number): Promise<void> {
    await fs.truncate(file, sizeBytes);
  }

  async check(file: string, onSpawn?: (pid: number) => void): Promise<void> {
    try {
      // -p fixes only what is safe to fix unattended; exit 1 means it did so.
      await this.runner.run(['e2fsck', '-f', '-p', '--', file], { okExitCodes: [0, 1], onSpawn });
    } catch (error) {
      if (error instanceof CommandError) throw new FilesystemCheckError(file, error);
      throw error;
    }
  }

  async isClean(file: string): Promise<boolean> {
    try {
      await this.runner.run(['e2fsck', '-f', '-n', '--', file]);
      return true;
    } catch (error) {
      if (error instanceof CommandError && error.exitCode !== null) return false;
      throw error;
    }
  }

  async growFilesystem(file: string, options: { undoFile?: string; onSpawn?: (pid: number) => void }): Promise<void> {
    const argv = ['resize2fs'];
    if (options.undoFile) {
      await fs.rm(options.undoFile, { force: true });
      // NOTE: resize2fs -z of e2fsprogs 1.47.0 leaves an invalid resize inode on 1 KiB-block
      // filesystems, such as images under 512 MiB made elsewhere. Those grow without an undo
      // file, so an interrupted grow of one can only be checked, not undone.
      if ((await superblockBlockSize(file)) >= 2048) argv.push('-z', options.undoFile);
    }
    await this.runner.run([...argv, file], { onSpawn: options.onSpawn });
  }

  async undo(undoFile: string, file: string): Promise<void> {
    await this.runner.run(['e2undo', undoFile, file]);
  }

  async filesystemInfo(file: string): Promise<FilesystemInfo> {
    const { stdout } = await this.runner.run(['dumpe2fs', '-h', '--', file]);
    const blockCount = Number(/^Block count:\s+(\d+)/m.exec(stdout)?.[1]);
    const blockSize = Number(/^Block size:\s+(\d+)/m.exec(stdout)?.[1]);
    if (!Number.isFinite(blockCount) || !Number.isFinite(blockSize)) {
      throw new Error(`dumpe2fs printed no block count for ${file}`);
    }
    return { blockCount, blockSize, bytes: blockCount * blockSize };
  }

  async freeBytes(directory: string): Promise<number> {
    const stats = await fs.statfs(directory);
    return stats.bavail * stats.bsize;
  }

  async allocatedBytes(file: string): Promise<number> {
    return (await fs.stat(file)).blocks * 512;
  }

  async remove(file: string): Promise<void> {
    await fs.rm(file, { force: true });
  }

  async rename(from: string, to: string): Promise<void> {
    await fs.rename(from, to);
  }

  async exists(file: string): Promise<boolean> {
    try {
      await fs.access(file);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
  }
}
