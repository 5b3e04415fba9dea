import { CommandError } from '../../src/errors.js';
import { FilesystemCheckError, type FilesystemInfo, type VolumeTool } from '../../src/storage/volume-tool.js';
import { UnexpectedCallError, never, type RecordedCall } from './strict.js';

const blockSize = 4096;

/** One file in the fake volume directory: its apparent size and the ext4 filesystem inside it. */
export interface FakeFile {
  size: number;
  filesystemBytes: number;
  clean: boolean;
}

/** The e2fsck output of a failing check. It must reach the log only, never a user message. */
export const rawCheckOutput = 'Inode 12 has illegal block(s). e2fsck: aborted (RAW-TOOL-OUTPUT)';

type Method = keyof VolumeTool;

/**
 * An in-memory VolumeTool. Files are entries in a map, so tests can read sizes directly.
 * It is strict: reading, copying, renaming or growing a file that does not exist throws, and a
 * method listed in `forbidden` throws when called. `failures` makes one method throw, and
 * `hanging` makes one method never return, which simulates a daemon killed at that point.
 */
export class FakeVolumeTool implements VolumeTool {
  readonly files = new Map<string, FakeFile>();
  readonly calls: RecordedCall[] = [];
  readonly failures = new Map<Method, Error>();
  readonly hanging = new Set<Method>();
  readonly forbidden = new Set<Method>();
  /** Files whose filesystem check fails with FilesystemCheckError. */
  readonly failingChecks = new Set<string>();
  free = 1024 * 1024 * 1024 * 1024;

  /** Adds a file with a clean filesystem that fills it. */
  addFile(file: string, size: number): void {
    this.files.set(file, { size, filesystemBytes: size, clean: true });
  }

  calledMethods(): string[] {
    return this.calls.map((call) => call.method);
  }

  private async enter(method: Method, args: unknown[]): Promise<void> {
    this.calls.push({ method, args });
    if (this.forbidden.has(method)) throw new UnexpectedCallError('VolumeTool', method, args);
    const failure = this.failures.get(method);
    if (failure) throw failure;
    if (this.hanging.has(method)) await never<void>();
  }

  private require(method: Method, file: string): FakeFile {
    const entry = this.files.get(file);
    if (!entry) throw new UnexpectedCallError('VolumeTool', method, [`missing file ${file}`]);
    return entry;
  }

  async copySparse(source: string, target: string): Promise<void> {
    await this.enter('copySparse', [source, target]);
    const entry = this.require('copySparse', source);
    this.files.set(target, { ...entry });
  }

  async createFilesystem(file: string, sizeBytes: number, label: string): Promise<void> {
    await this.enter('createFilesystem', [file, sizeBytes, label]);
    if (this.files.has(file)) throw new UnexpectedCallError('VolumeTool', 'createFilesystem', [`file exists ${file}`]);
    this.addFile(file, sizeBytes);
  }

  async fileSize(file: string): Promise<number> {
    await this.enter('fileSize', [file]);
    return this.require('fileSize', file).size;
  }

  async setFileSize(file: string, sizeBytes: number): Promise<void> {
    await this.enter('setFileSize', [file, sizeBytes]);
    this.require('setFileSize', file).size = sizeBytes;
  }

  async check(file: string, onSpawn?: (pid: number) => void): Promise<void> {
    await this.enter('check', [file]);
    const entry = this.require('check', file);
    onSpawn?.(4242);
    if (this.failingChecks.has(file) || !entry.clean) {
      throw new FilesystemCheckError(file, new CommandError(['e2fsck', '-f', '-p', '--', file], 4, rawCheckOutput));
    }
  }

  async isClean(file: string): Promise<boolean> {
    await this.enter('isClean', [file]);
    return this.require('isClean', file).clean && !this.failingChecks.has(file);
  }

  async growFilesystem(file: string, options: { undoFile?: string; onSpawn?: (pid: number) => void }): Promise<void> {
    await this.enter('growFilesystem', [file, options.undoFile]);
    const entry = this.require('growFilesystem', file);
    if (options.undoFile) this.files.set(options.undoFile, { size: blockSize, filesystemBytes: entry.filesystemBytes, clean: true });
    options.onSpawn?.(4243);
    entry.filesystemBytes = entry.size;
  }

  async undo(undoFile: string, file: string): Promise<void> {
    await this.enter('undo', [undoFile, file]);
    const saved = this.require('undo', undoFile);
    this.require('undo', file).filesystemBytes = saved.filesystemBytes;
  }

  async filesystemInfo(file: string): Promise<FilesystemInfo> {
    await this.enter('filesystemInfo', [file]);
    const bytes = this.require('filesystemInfo', file).filesystemBytes;
    return { blockCount: bytes / blockSize, blockSize, bytes };
  }

  async freeBytes(directory: string): Promise<number> {
    await this.enter('freeBytes', [directory]);
    return this.free;
  }

  async allocatedBytes(file: string): Promise<number> {
    await this.enter('allocatedBytes', [file]);
    return Math.min(this.require('allocatedBytes', file).size, 64 * 1024 * 1024);
  }

  /** Removes a file. A missing file is not an error, as with `rm -f`. */
  async remove(file: string): Promise<void> {
    await this.enter('remove', [file]);
    this.files.delete(file);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.enter('rename', [from, to]);
    const entry = this.require('rename', from);
    this.files.delete(from);
    this.files.set(to, entry);
  }

  async exists(file: string): Promise<boolean> {
    await this.enter('exists', [file]);
    return this.files.has(file);
  }
}
