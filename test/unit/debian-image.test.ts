import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { CommandError, SistemoError } from '../../src/errors.js';
import {
  buildDebianImage,
  debianImageVersion,
  debianPackages,
  maskedUnits,
  mmdebstrapArgv,
  rootfsSizeBytes,
} from '../../src/images/debian.js';
import type { CommandRunner, RunOptions, RunResult } from '../../src/system/runner.js';

const mib = 1024 * 1024;
const kernelVersion = '6.1.0-99-cloud-amd64';

/** Records every command and imitates mmdebstrap, chroot, du and mkfs. Any other command fails the test. */
class FakeRunner implements CommandRunner {
  readonly calls: string[][] = [];
  failOn: string | undefined;

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    this.calls.push([...argv]);
    const program = argv[0] ?? '';
    if (program === this.failOn) throw new CommandError(argv, 1, `${program}: simulated failure`);
    switch (program) {
      case 'mmdebstrap':
        await writeFakeTree(argv[argv.length - 2] ?? '');
        options.onLine?.('I: downloading packages with apt...');
        return ok();
      case 'chroot':
        return ok();
      case 'du':
        return ok(`${300 * mib}\t${argv[argv.length - 1]}\n`);
      case 'mkfs.ext4':
        return ok();
      default:
        throw new Error(`unexpected command: ${argv.join(' ')}`);
    }
  }
}

function ok(stdout = ''): RunResult {
  return { stdout, stderr: '', exitCode: 0 };
}

async function writeFakeTree(treeDir: string): Promise<void> {
  for (const dir of ['boot', 'etc/ssh', 'etc/systemd/system/timers.target.wants', 'etc/initramfs-tools', 'var/lib/dbus']) {
    await mkdir(path.join(treeDir, dir), { recursive: true });
  }
  await writeFile(path.join(treeDir, 'boot', `vmlinuz-${kernelVersion}`), 'kernel');
  await writeFile(path.join(treeDir, 'boot', `initrd.img-${kernelVersion}`), 'initrd');
  await writeFile(path.join(treeDir, 'etc/ssh/ssh_host_ed25519_key'), 'private');
  await writeFile(path.join(treeDir, 'etc/ssh/ssh_host_ed25519_key.pub'), 'public');
  await writeFile(path.join(treeDir, 'etc/ssh/sshd_config'), 'Include /etc/ssh/sshd_config.d/*.conf\n');
  await writeFile(path.join(treeDir, 'etc/machine-id'), '0123456789abcdef0123456789abcdef\n');
  await writeFile(path.join(treeDir, 'etc/resolv.conf'), 'nameserver 192.0.2.53\n');
  await writeFile(path.join(treeDir, 'etc/hostname'), 'buildhost\n');
  await writeFile(path.join(treeDir, 'etc/shadow'), 'root:$y$secret:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n');
  await writeFile(path.join(treeDir, 'etc/initramfs-tools/modules'), '# modules\n');
  await writeFile(path.join(treeDir, 'etc/systemd/system/timers.target.wants/apt-daily.timer'), '');
}

describe('debian image recipe', () => {
  let outDir: string;
  let runner: FakeRunner;
  let progress: string[];
  // The fake tree lives inside the work folder, so configuration checks read it from a copy.
  let capturedTree: string;

  beforeEach(async () => {
    outDir = await mkdtemp(path.join(tmpdir(), 'sistemo-debian-test-'));
    runner = new FakeRunner();
    progress = [];
    capturedTree = '';
  });

  afterEach(async () => {
    await rm(outDir, { recursive: true, force: true });
  });

  const build = () =>
    buildDebianImage({
      outDir,
      aptSources: '/etc/apt/sources.list.d/debian.sources',
      runner,
      onProgress: (message) => progress.push(message),
    });

  it('mmdebstrap argv uses the apt sources file as mirror', () => {
    const argv = mmdebstrapArgv('/out/.build-x/tree', '/etc/apt/sources.list.d/debian.sources');
    assert.equal(argv[0], 'mmdebstrap');
    assert.ok(argv.includes('--variant=apt'));
    assert.ok(argv.includes('--format=directory'));
    assert.deepEqual(argv.slice(-3), ['bookworm', '/out/.build-x/tree', '/etc/apt/sources.list.d/debian.sources']);
    const include = argv.find((arg) => arg.startsWith('--include='));
    assert.ok(include);
    for (const name of ['systemd-sysv', 'udev', 'openssh-server', 'linux-image-cloud-amd64', 'initramfs-tools', 'iproute2']) {
      assert.ok(include.split('=')[1]?.split(',').includes(name), `missing package ${name}`);
    }
    assert.ok(!debianPackages.includes('ca-certificates'));
  });

  it('rootfs size adds at least 256 MiB', () => {
    assert.equal(rootfsSizeBytes(100 * mib), 356 * mib);
    assert.equal(rootfsSizeBytes(2000 * mib), 2500 * mib);
    assert.equal(rootfsSizeBytes(100 * mib + 1) % mib, 0);
  });

  it('image version is a non-empty string', () => {
    assert.match(debianImageVersion, /^[a-z0-9.-]+$/);
  });

  it('build runs the expected commands in order', async () => {
    const artifacts = await build();
    const programs = runner.calls.map((argv) => argv[0]);
    assert.deepEqual(programs, ['mmdebstrap', 'chroot', 'du', 'mkfs.ext4']);

    const [chroot, , mkfs] = runner.calls.slice(1);
    assert.deepEqual(chroot?.slice(2), ['update-initramfs', '-u', '-k', 'all']);
    assert.ok(mkfs?.includes('-d'));
    assert.equal(mkfs?.[mkfs.indexOf('-d') + 1], chroot?.[1]);

    assert.deepEqual(artifacts, {
      rootfs: path.join(outDir, 'rootfs.ext4'),
      kernel: path.join(outDir, 'vmlinuz'),
      initrd: path.join(outDir, 'initrd.img'),
    });
    assert.equal(await readFile(artifacts.kernel, 'utf8'), 'kernel');
    assert.equal(await readFile(artifacts.initrd, 'utf8'), 'initrd');
    assert.equal((await stat(artifacts.rootfs)).size, rootfsSizeBytes(300 * mib));
    assert.deepEqual((await readdir(outDir)).sort(), ['initrd.img', 'rootfs.ext4', 'vmlinuz']);
    assert.ok(progress.includes('Downloading and installing Debian packages'));
    assert.ok(progress.includes('Downloading Debian packages'));
  });

  it('build configures the tree for a guest', async () => {
    const realRun = runner.run.bind(runner);
    runner.run = async (argv, options) => {
      // Snapshot the tree when mkfs would read it, because the work folder is removed afterwards.
      if (argv[0] === 'mkfs.ext4') capturedTree = await snapshotTree(argv[argv.indexOf('-d') + 1] ?? '');
      return realRun(argv, options);
    };
    await build();
    const tree = capturedTree;

    const sshFiles = await readdir(path.join(tree, 'etc/ssh'));
    assert.ok(!sshFiles.some((name) => name.startsWith('ssh_host_')), `host keys left: ${sshFiles.join(' ')}`);
    assert.equal(await readFile(path.join(tree, 'etc/machine-id'), 'utf8'), '');
    assert.equal(await readFile(path.join(tree, 'etc/resolv.conf'), 'utf8'), '');
    assert.equal(await readFile(path.join(tree, 'etc/hostname'), 'utf8'), 'sistemo\n');
    assert.equal(await readFile(path.join(tree, 'etc/fstab'), 'utf8'), '/dev/vda / ext4 defaults 0 1\n');
    assert.match(await readFile(path.join(tree, 'etc/shadow'), 'utf8'), /^root:\*:/);
    assert.match(await readFile(path.join(tree, 'etc/ssh/sshd_config.d/sistemo.conf'), 'utf8'), /PasswordAuthentication no/);

    const script = await stat(path.join(tree, 'usr/local/sbin/sistemo-guest-init'));
    assert.equal(script.mode & 0o777, 0o755);
    assert.equal(
      await readlink(path.join(tree, 'etc/systemd/system/multi-user.target.wants/sistemo-guest-init.service')),
      '/etc/systemd/system/sistemo-guest-init.service',
    );
    for (const unit of maskedUnits) {
      assert.equal(await readlink(path.join(tree, 'etc/systemd/system', unit)), '/dev/null', `${unit} not masked`);
    }
    await assert.rejects(stat(path.join(tree, 'etc/systemd/system/timers.target.wants/apt-daily.timer')));

    const modules = await readFile(path.join(tree, 'etc/initramfs-tools/modules'), 'utf8');
    for (const module of ['virtio_pci', 'virtio_blk', 'virtio_net', 'button', 'evdev']) {
      assert.ok(modules.split('\n').includes(module), `initramfs lacks ${module}`);
    }
    await rm(tree, { recursive: true, force: true });
  });

  it('failed mkfs leaves no finished image', async () => {
    runner.failOn = 'mkfs.ext4';
    await assert.rejects(build(), (error: unknown) => {
      assert.ok(error instanceof SistemoError);
      assert.match(error.message, /writing the root filesystem/);
      return true;
    });
    assert.deepEqual(await readdir(outDir), []);
  });

  it('build removes stale work folders', async () => {
    await mkdir(path.join(outDir, '.build-stale/tree'), { recursive: true });
    await build();
    assert.deepEqual((await readdir(outDir)).sort(), ['initrd.img', 'rootfs.ext4', 'vmlinuz']);
  });

  it('unexpected commands fail the fake', async () => {
    await assert.rejects(runner.run(['rm', '-rf', '/']), /unexpected command/);
  });
});

async function snapshotTree(treeDir: string): Promise<string> {
  const { cp } = await import('node:fs/promises');
  const copy = await mkdtemp(path.join(tmpdir(), 'sistemo-tree-copy-'));
  await cp(treeDir, copy, { recursive: true, verbatimSymlinks: true });
  return copy;
}
