import assert from 'node:assert/strict';
import { access, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBusyboxImage } from '../../src/images/busybox.js';
import { ProcessRunner } from '../../src/system/runner.js';
import { ensureTestImage } from '../helpers/host.js';

const runner = new ProcessRunner();

// e2fsck -n exits 0 only when the filesystem is clean, and -f checks it even when it is marked clean.
async function assertCleanExt4(file: string): Promise<void> {
  const result = await runner.run(['e2fsck', '-fn', file], { okExitCodes: [0, 1, 2, 4, 8] });
  assert.equal(result.exitCode, 0, `e2fsck -fn ${file} exited ${result.exitCode}: ${result.stdout}${result.stderr}`);
}

async function debugfsCat(image: string, file: string): Promise<string> {
  const { stdout } = await runner.run(['debugfs', '-R', `cat ${file}`, image]);
  return stdout;
}

describe('busybox image', () => {
  let outDir: string;
  let rootfs: string;

  before(async () => {
    outDir = await mkdtemp(path.join(tmpdir(), 'sistemo-busybox-test-'));
    ({ rootfs } = await buildBusyboxImage({ outDir, runner }));
  });

  after(async () => {
    await rm(outDir, { recursive: true, force: true });
  });

  it('busybox rootfs is a clean 64 MiB ext4', async () => {
    assert.equal(rootfs, path.join(outDir, 'rootfs.ext4'));
    assert.equal((await stat(rootfs)).size, 64 * 1024 * 1024);
    await assertCleanExt4(rootfs);
  });

  it('busybox rootfs has init and the power button action', async () => {
    assert.match(await debugfsCat(rootfs, '/etc/inittab'), /::sysinit:\/etc\/init\.d\/rcS/);
    assert.match(await debugfsCat(rootfs, '/etc/init.d/rcS'), /sistemo-busybox-ready/);
    assert.match(await debugfsCat(rootfs, '/etc/acpi/PWRF/00000080'), /poweroff/);
    const { stdout } = await runner.run(['debugfs', '-R', 'stat /sbin/init', rootfs]);
    assert.match(stdout, /Fast link dest: "\.\.\/bin\/busybox"/);
  });
});

describe('debian image', () => {
  // SISTEMO_TEST_DEBIAN_IMAGE_DIR checks another build; by default the shared test image is built and checked.
  let dir = '';

  before(async () => {
    dir = process.env.SISTEMO_TEST_DEBIAN_IMAGE_DIR ?? await ensureTestImage();
  });

  it('debian image has kernel, initrd and rootfs', async () => {
    for (const name of ['rootfs.ext4', 'vmlinuz', 'initrd.img']) {
      await access(path.join(dir, name));
      assert.ok((await stat(path.join(dir, name))).size > 0, `${name} is empty`);
    }
  });

  it('debian rootfs passes e2fsck', async () => {
    await assertCleanExt4(path.join(dir, 'rootfs.ext4'));
  });

  it('debian rootfs ships no host keys', async () => {
    const { stdout } = await runner.run(['debugfs', '-R', 'ls -l /etc/ssh', path.join(dir, 'rootfs.ext4')]);
    assert.doesNotMatch(stdout, /ssh_host_/);
    assert.equal(await debugfsCat(path.join(dir, 'rootfs.ext4'), '/etc/machine-id'), '');
  });
});
