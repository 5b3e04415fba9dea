import { appendFile, chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommandError, SistemoError } from '../errors.js';
import type { CommandRunner } from '../system/runner.js';

export interface ImageArtifacts {
  rootfs: string;
  kernel: string;
  initrd: string;
}

export interface DebianBuildOptions {
  /** Directory that receives rootfs.ext4, vmlinuz and initrd.img. */
  outDir: string;
  /** apt sources file passed to mmdebstrap as its mirror, e.g. /etc/apt/sources.list.d/debian.sources. */
  aptSources: string;
  runner: CommandRunner;
  onProgress: (message: string) => void;
}

/** Version of the recipe below. Bump it whenever the image contents change, so cached images are rebuilt. */
export const debianImageVersion = 'bookworm-2';

export const debianSuite = 'bookworm';

/** Packages on top of mmdebstrap's apt variant: what a VM with systemd, sshd and its own kernel needs. */
export const debianPackages: readonly string[] = [
  'systemd-sysv',
  'udev',
  // systemd-logind turns the ACPI power button into a poweroff, and it needs a D-Bus system bus.
  'dbus',
  'openssh-server',
  'linux-image-cloud-amd64',
  'initramfs-tools',
  // initramfs.conf asks for zstd, and without it update-initramfs warns and falls back to gzip.
  'zstd',
  'iproute2',
  'kmod',
  'e2fsprogs',
];

/** Units masked in the image because in a VM they only cost boot time or background work. */
export const maskedUnits: readonly string[] = [
  'apt-daily.timer',
  'apt-daily.service',
  'apt-daily-upgrade.timer',
  'apt-daily-upgrade.service',
  'dpkg-db-backup.timer',
  'dpkg-db-backup.service',
  'e2scrub_all.timer',
  'e2scrub_all.service',
  'e2scrub_reap.service',
  'systemd-networkd-wait-online.service',
  // With an empty machine-id every boot of a fresh volume is a first boot, and this unit
  // would wait on the console for a locale and a root password.
  'systemd-firstboot.service',
  // QEMU runs with -nodefaults and no display, so no one can see a login prompt on tty1.
  'getty@tty1.service',
];

/**
 * Modules the initramfs loads before the root is mounted: the disk and network drivers, and
 * button plus evdev so the ACPI power button reaches a guest without udev (the busybox image).
 */
export const initramfsModules: readonly string[] = ['virtio_pci', 'virtio_blk', 'virtio_net', 'button', 'evdev'];

const guestDir = fileURLToPath(new URL('../../../guest/', import.meta.url));
const mib = 1024 * 1024;
const minHeadroomBytes = 256 * mib;
const mmdebstrapTimeoutMs = 30 * 60 * 1000;
const stepTimeoutMs = 10 * 60 * 1000;

/** Returns the mmdebstrap command line that writes the root tree into treeDir. */
export function mmdebstrapArgv(treeDir: string, aptSources: string): string[] {
  return [
    'mmdebstrap',
    '--variant=apt',
    '--mode=root',
    '--format=directory',
    `--include=${debianPackages.join(',')}`,
    // Documentation, manuals and translations are unused in a VM and only make the image bigger.
    '--dpkgopt=path-exclude=/usr/share/man/*',
    '--dpkgopt=path-exclude=/usr/share/info/*',
    '--dpkgopt=path-exclude=/usr/share/locale/*',
    '--dpkgopt=path-exclude=/usr/share/doc/*',
    '--dpkgopt=path-include=/usr/share/doc/*/copyright',
    debianSuite,
    treeDir,
    aptSources,
  ];
}

/** Returns the root filesystem size for a tree of usedBytes: 25% or 256 MiB of headroom, whichever is larger. */
export function rootfsSizeBytes(usedBytes: number): number {
  const headroom = Math.max(Math.ceil(usedBytes * 0.25), minHeadroomBytes);
  return Math.ceil((usedBytes + headroom) / mib) * mib;
}

/**
 * Builds the debian image into options.outDir. Work happens in a temporary folder inside
 * outDir, and rootfs.ext4 is renamed into place last, so its presence marks a finished build.
 */
export async function buildDebianImage(options: DebianBuildOptions): Promise<ImageArtifacts> {
  const { outDir, runner, onProgress } = options;
  await mkdir(outDir, { recursive: true });
  await removeStaleBuilds(outDir);
  const workDir = await mkdtemp(path.join(outDir, '.build-'));
  try {
    const treeDir = path.join(workDir, 'tree');
    const staged: ImageArtifacts = {
      rootfs: path.join(workDir, 'rootfs.ext4'),
      kernel: path.join(workDir, 'vmlinuz'),
      initrd: path.join(workDir, 'initrd.img'),
    };

    onProgress('Downloading and installing Debian packages');
    await step('installing Debian packages', () =>
      runner.run(mmdebstrapArgv(treeDir, options.aptSources), {
        timeoutMs: mmdebstrapTimeoutMs,
        onLine: (line) => reportMmdebstrapPhase(line, onProgress),
      }),
    );

    onProgress('Configuring the guest');
    await configureTree(treeDir);
    onProgress('Rebuilding the initramfs');
    await step('rebuilding the initramfs', () =>
      runner.run(['chroot', treeDir, 'update-initramfs', '-u', '-k', 'all'], { timeoutMs: stepTimeoutMs }),
    );
    await copyBootFiles(treeDir, staged);

    const usedBytes = await step('measuring the tree', () => measureTree(runner, treeDir));
    const sizeBytes = rootfsSizeBytes(usedBytes);
    onProgress(`Writing root filesystem (${Math.round(sizeBytes / mib)} MiB)`);
    await writeFile(staged.rootfs, '');
    await truncate(staged.rootfs, sizeBytes);
    await step('writing the root filesystem', () =>
      runner.run(['mkfs.ext4', '-q', '-F', '-L', 'sistemo-root', '-d', treeDir, staged.rootfs], {
        timeoutMs: stepTimeoutMs,
      }),
    );

    const finished: ImageArtifacts = {
      rootfs: path.join(outDir, 'rootfs.ext4'),
      kernel: path.join(outDir, 'vmlinuz'),
      initrd: path.join(outDir, 'initrd.img'),
    };
    await rm(finished.rootfs, { force: true });
    await rename(staged.kernel, finished.kernel);
    await rename(staged.initrd, finished.initrd);
    await rename(staged.rootfs, finished.rootfs);
    onProgress('Debian image ready');
    return finished;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

// NOTE: assumes one build per outDir at a time (the caller serializes builds); a second
// build started meanwhile would delete the first one's work folder.
async function removeStaleBuilds(outDir: string): Promise<void> {
  for (const entry of await readdir(outDir)) {
    if (entry.startsWith('.build-')) await rm(path.join(outDir, entry), { recursive: true, force: true });
  }
}

async function step<T>(description: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    const stderrTail = error instanceof CommandError ? error.stderrTail : undefined;
    const reason = error instanceof Error ? error.message : String(error);
    throw new SistemoError('internal', `Building the debian image failed while ${description}: ${reason}`, {
      cause: error,
      details: stderrTail === undefined ? {} : { stderrTail },
    });
  }
}

const mmdebstrapPhases: ReadonlyArray<[string, string]> = [
  ['I: downloading packages', 'Downloading Debian packages'],
  ['I: extracting archives', 'Unpacking Debian packages'],
  ['I: installing essential packages', 'Installing essential packages'],
  ['I: installing remaining packages', 'Installing the kernel, systemd and sshd'],
];

function reportMmdebstrapPhase(line: string, onProgress: (message: string) => void): void {
  for (const [prefix, message] of mmdebstrapPhases) {
    if (line.startsWith(prefix)) onProgress(message);
  }
}

/** Turns the freshly installed tree into a Sistemo guest; every change is a file write, no chroot. */
export async function configureTree(treeDir: string): Promise<void> {
  const etc = path.join(treeDir, 'etc');

  // Host keys made during the build would be shared by every VM; the guest script makes them.
  for (const entry of await readdir(path.join(etc, 'ssh'))) {
    if (entry.startsWith('ssh_host_')) await rm(path.join(etc, 'ssh', entry));
  }
  // An empty machine-id makes systemd generate a new one at the first boot of each volume.
  await writeFile(path.join(etc, 'machine-id'), '');
  await rm(path.join(treeDir, 'var/lib/dbus/machine-id'), { force: true });
  // mmdebstrap copies the build host's resolv.conf and hostname; neither belongs in a guest.
  await rm(path.join(etc, 'resolv.conf'), { force: true });
  await writeFile(path.join(etc, 'resolv.conf'), '');
  await writeFile(path.join(etc, 'hostname'), 'sistemo\n');
  await writeFile(path.join(etc, 'hosts'), '127.0.0.1\tlocalhost\n127.0.1.1\tsistemo\n::1\t\tlocalhost ip6-localhost ip6-loopback\n');
  await writeFile(path.join(etc, 'fstab'), '/dev/vda / ext4 defaults 0 1\n');
  await lockRootPassword(path.join(etc, 'shadow'));

  await installGuestFiles(treeDir);
  for (const unit of maskedUnits) await maskUnit(treeDir, unit);
  await appendFile(path.join(etc, 'initramfs-tools/modules'), `${initramfsModules.join('\n')}\n`);
}

async function lockRootPassword(shadowPath: string): Promise<void> {
  const lines = (await readFile(shadowPath, 'utf8')).split('\n');
  const locked = lines.map((line) => {
    const fields = line.split(':');
    if (fields[0] !== 'root' || fields.length < 2) return line;
    fields[1] = '*';
    return fields.join(':');
  });
  await writeFile(shadowPath, locked.join('\n'));
}

async function installGuestFiles(treeDir: string): Promise<void> {
  const script = path.join(treeDir, 'usr/local/sbin/sistemo-guest-init');
  await mkdir(path.dirname(script), { recursive: true });
  await copyFile(path.join(guestDir, 'sistemo-guest-init'), script);
  await chmod(script, 0o755);

  const unitDir = path.join(treeDir, 'etc/systemd/system');
  await copyFile(path.join(guestDir, 'sistemo-guest-init.service'), path.join(unitDir, 'sistemo-guest-init.service'));
  const wantsDir = path.join(unitDir, 'multi-user.target.wants');
  await mkdir(wantsDir, { recursive: true });
  await symlink('/etc/systemd/system/sistemo-guest-init.service', path.join(wantsDir, 'sistemo-guest-init.service'));

  const sshdDropIn = path.join(treeDir, 'etc/ssh/sshd_config.d/sistemo.conf');
  await mkdir(path.dirname(sshdDropIn), { recursive: true });
  await copyFile(path.join(guestDir, 'sshd_config.conf'), sshdDropIn);
}

// Same result as `systemctl mask`, which needs a running systemd or --root support for every unit.
async function maskUnit(treeDir: string, unit: string): Promise<void> {
  const unitDir = path.join(treeDir, 'etc/systemd/system');
  const target = path.join(unitDir, unit);
  await rm(target, { force: true });
  await symlink('/dev/null', target);
  for (const entry of await readdir(unitDir, { withFileTypes: true })) {
    if (entry.isDirectory() && entry.name.endsWith('.wants')) {
      await rm(path.join(unitDir, entry.name, unit), { force: true });
    }
  }
}

async function copyBootFiles(treeDir: string, staged: ImageArtifacts): Promise<void> {
  const bootDir = path.join(treeDir, 'boot');
  const entries = await readdir(bootDir);
  await copyFile(path.join(bootDir, onlyEntry(entries, 'vmlinuz-')), staged.kernel);
  await copyFile(path.join(bootDir, onlyEntry(entries, 'initrd.img-')), staged.initrd);
}

function onlyEntry(entries: readonly string[], prefix: string): string {
  const matches = entries.filter((entry) => entry.startsWith(prefix));
  const [first] = matches;
  if (matches.length !== 1 || first === undefined) {
    throw new SistemoError('internal', `Building the debian image failed: expected one /boot/${prefix}* file, found ${matches.length}`);
  }
  return first;
}

// du counts allocated blocks, which is closer than apparent sizes to what ext4 will use.
async function measureTree(runner: CommandRunner, treeDir: string): Promise<number> {
  const { stdout } = await runner.run(['du', '-s', '-x', '-B1', treeDir]);
  const bytes = Number.parseInt(stdout.split('\t')[0] ?? '', 10);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`unexpected du output: ${stdout.trim()}`);
  return bytes;
}
