import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Ext4VolumeTool, FilesystemCheckError, superblockBlockSize } from '../../src/storage/volume-tool.js';
import { ProcessRunner } from '../../src/system/runner.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const runner = new ProcessRunner();
const tool = new Ext4VolumeTool(runner);

/** Runs a tool and returns its stdout as bytes, so binary file contents survive. */
async function stdoutBytes(argv: string[]): Promise<Buffer> {
  const [file = '', ...args] = argv;
  const { stdout } = await execFileAsync(file, args, { encoding: 'buffer', maxBuffer: 256 * MiB });
  return stdout;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function fileSha256(file: string): Promise<string> {
  return sha256(await readFile(file));
}

/** Runs `e2fsck -fn`, which never writes, and returns its exit code (0 only when clean) and output. */
async function e2fsckReadOnly(file: string): Promise<{ exitCode: number; output: string }> {
  const result = await runner.run(['e2fsck', '-fn', file], { okExitCodes: [0, 1, 2, 4, 8, 12] });
  return { exitCode: result.exitCode, output: result.stdout + result.stderr };
}

/** Copies a host file into the root directory of an ext4 image with debugfs. */
async function debugfsWrite(image: string, source: string, name: string): Promise<void> {
  await runner.run(['debugfs', '-w', '-R', `write ${source} ${name}`, image]);
}

/** Returns the sha256 of a file inside an ext4 image, read with `debugfs cat`. */
async function debugfsSha256(image: string, inImagePath: string): Promise<string> {
  return sha256(await stdoutBytes(['debugfs', '-R', `cat ${inImagePath}`, image]));
}

describe('Ext4VolumeTool', () => {
  let dir: string;
  let payload: string;
  let payloadSha: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sistemo-storage-test-'));
    payload = path.join(dir, 'payload.bin');
    const bytes = randomBytes(MiB);
    await writeFile(payload, bytes);
    payloadSha = sha256(bytes);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('createFilesystem makes clean sparse ext4', async () => {
    const file = path.join(dir, 'create.img');
    await tool.createFilesystem(file, GiB, 'data-1');

    const stats = await stat(file);
    assert.equal(stats.size, GiB);
    assert.ok(stats.blocks * 512 < GiB / 10, `a new 1 GiB volume allocates ${stats.blocks * 512} bytes, expected far below 1 GiB`);
    const check = await e2fsckReadOnly(file);
    assert.equal(check.exitCode, 0, check.output);
    const info = await tool.filesystemInfo(file);
    assert.equal(info.bytes, GiB);
  });

  it('superblock block size matches dumpe2fs', async () => {
    for (const blockSize of [1024, 4096]) {
      const file = path.join(dir, `blocks-${blockSize}.img`);
      await writeFile(file, '');
      await execFileAsync('truncate', ['-s', '64M', file]);
      await execFileAsync('mkfs.ext4', ['-q', '-F', '-b', String(blockSize), file]);
      assert.equal(await superblockBlockSize(file), blockSize);
      assert.equal((await tool.filesystemInfo(file)).blockSize, blockSize);
    }
  });

  it('createFilesystem rejects an existing file', async () => {
    const file = path.join(dir, 'exists.img');
    await writeFile(file, 'keep me');

    await assert.rejects(tool.createFilesystem(file, 64 * MiB, 'data'), { code: 'EEXIST' });
    assert.equal(await readFile(file, 'utf8'), 'keep me');
  });

  it('copySparse keeps holes of 1 GiB image', async () => {
    const source = path.join(dir, 'sparse-source.img');
    const target = path.join(dir, 'sparse-target.img');
    await tool.createFilesystem(source, GiB, 'root');
    await debugfsWrite(source, payload, 'payload');

    await tool.copySparse(source, target);

    const sourceStats = await stat(source);
    const targetStats = await stat(target);
    assert.equal(targetStats.size, sourceStats.size);
    assert.ok(
      targetStats.blocks <= sourceStats.blocks * 1.05,
      `the copy allocates ${targetStats.blocks} blocks of 512 bytes, the source ${sourceStats.blocks}`,
    );
    assert.equal(await fileSha256(target), await fileSha256(source));
  });

  it('grow keeps data and fills file', async () => {
    const file = path.join(dir, 'grow.img');
    const undoFile = path.join(dir, 'grow.e2undo');
    await tool.createFilesystem(file, 64 * MiB, 'grow');
    await debugfsWrite(file, payload, 'payload');

    await tool.setFileSize(file, 256 * MiB);
    await tool.growFilesystem(file, { undoFile });

    assert.equal(await tool.fileSize(file), 256 * MiB);
    assert.equal((await tool.filesystemInfo(file)).bytes, 256 * MiB);
    assert.equal(await debugfsSha256(file, '/payload'), payloadSha);
  });

  it('grow of 1 GiB volume stays clean', async () => {
    const file = path.join(dir, 'grow-large.img');
    const undoFile = path.join(dir, 'grow-large.e2undo');
    await tool.createFilesystem(file, GiB, 'grow-large');
    await tool.setFileSize(file, 4 * GiB);

    await tool.growFilesystem(file, { undoFile });

    assert.equal((await tool.filesystemInfo(file)).bytes, 4 * GiB);
    const check = await e2fsckReadOnly(file);
    assert.equal(check.exitCode, 0, check.output);
  });

  it('grow of 64 MiB volume stays clean', async () => {
    const file = path.join(dir, 'grow-small.img');
    const undoFile = path.join(dir, 'grow-small.e2undo');
    await tool.createFilesystem(file, 64 * MiB, 'grow-small');
    await tool.setFileSize(file, 256 * MiB);

    await tool.growFilesystem(file, { undoFile });

    const check = await e2fsckReadOnly(file);
    assert.equal(check.exitCode, 0, check.output);
  });

  it('check passes a clean filesystem', async () => {
    const file = path.join(dir, 'clean.img');
    await tool.createFilesystem(file, 64 * MiB, 'clean');

    await tool.check(file);
    assert.equal(await tool.isClean(file), true);
  });

  describe('check on a cleared root inode', () => {
    let file: string;
    let original: Buffer;
    let error: unknown;

    before(async () => {
      file = path.join(dir, 'corrupt.img');
      await tool.createFilesystem(file, 64 * MiB, 'corrupt');
      await debugfsWrite(file, payload, 'payload');
      // A cleared root inode is damage that e2fsck -p does not repair: it exits 4.
      await runner.run(['debugfs', '-w', '-R', 'clri <2>', file]);
      original = await readFile(file);
      error = await tool.check(file).then(() => undefined, (caught: unknown) => caught);
    });

    it('check throws FilesystemCheckError', () => {
      assert.ok(error instanceof FilesystemCheckError, `check threw ${String(error)}`);
      assert.equal(error.code, 'wrong_state');
    });

    it('check leaves data blocks unchanged', async () => {
      // Everything but the primary superblock (bytes 1024 to 2047) must be as before.
      const after = await readFile(file);
      assert.equal(after.length, original.length);
      assert.equal(sha256(after.subarray(0, 1024)), sha256(original.subarray(0, 1024)));
      assert.equal(sha256(after.subarray(2048)), sha256(original.subarray(2048)));
    });

    it('isClean reports the damage', async () => {
      assert.equal(await tool.isClean(file), false);
    });
  });

  it('undo restores filesystem before grow', async () => {
    const file = path.join(dir, 'undo.img');
    const undoFile = path.join(dir, 'undo.e2undo');
    await tool.createFilesystem(file, 256 * MiB, 'undo');
    await debugfsWrite(file, payload, 'payload');
    const oldInfo = await tool.filesystemInfo(file);

    await tool.setFileSize(file, 8 * GiB);
    // resize2fs finishes this grow in well under a second, too fast to kill part-way reliably,
    // so this test undoes a completed grow: e2undo restores every block that resize2fs overwrote.
    await tool.growFilesystem(file, { undoFile });
    assert.equal((await tool.filesystemInfo(file)).bytes, 8 * GiB);

    await tool.undo(undoFile, file);

    const check = await e2fsckReadOnly(file);
    assert.equal(check.exitCode, 0, check.output);
    const info = await tool.filesystemInfo(file);
    assert.equal(info.blockCount, oldInfo.blockCount);
    assert.equal(info.bytes, 256 * MiB);
    assert.equal(await debugfsSha256(file, '/payload'), payloadSha);
  });

  it('undo after SIGKILL leaves clean filesystem', async () => {
    const file = path.join(dir, 'killed.img');
    const undoFile = path.join(dir, 'killed.e2undo');
    await tool.createFilesystem(file, 256 * MiB, 'killed');
    await debugfsWrite(file, payload, 'payload');
    const oldInfo = await tool.filesystemInfo(file);
    await tool.setFileSize(file, 8 * GiB);

    // The kill lands wherever resize2fs happens to be, often before its first write.
    const grow = tool.growFilesystem(file, { undoFile, onSpawn: (pid) => process.kill(pid, 'SIGKILL') });
    const outcome = await grow.then(() => 'finished', () => 'killed');
    const undoExists = await stat(undoFile).then(() => true, () => false);
    if (undoExists) await tool.undo(undoFile, file).catch(() => undefined);

    const check = await e2fsckReadOnly(file);
    assert.equal(check.exitCode, 0, `after a ${outcome} grow: ${check.output}`);
    const info = await tool.filesystemInfo(file);
    if (outcome === 'killed') assert.equal(info.blockCount, oldInfo.blockCount);
    assert.equal(await debugfsSha256(file, '/payload'), payloadSha);
  });

  it('freeBytes measures 64 MiB tmpfs', async () => {
    const mountPoint = path.join(dir, 'tmpfs');
    await mkdir(mountPoint);
    await runner.run(['mount', '-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', mountPoint]);
    try {
      const free = await tool.freeBytes(mountPoint);
      assert.ok(free <= 64 * MiB, `freeBytes returned ${free}`);
      assert.ok(free >= 63 * MiB, `freeBytes returned ${free}`);
    } finally {
      await runner.run(['umount', mountPoint]);
    }
  });
});
