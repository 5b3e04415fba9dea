import { chmod, copyFile, mkdir, mkdtemp, readdir, rename, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CommandRunner } from '../system/runner.js';

export interface BusyboxBuildOptions {
  /** Directory that receives rootfs.ext4. */
  outDir: string;
  runner: CommandRunner;
  /** Statically linked busybox copied into the image. Default: /bin/busybox from Debian's busybox-static. */
  busyboxPath?: string;
}

/** Line the guest prints on its console once it has booted. */
export const busyboxReadyMarker = 'sistemo-busybox-ready';

const imageSizeBytes = 64 * 1024 * 1024;

// busybox init runs rcS once, then the shutdown lines when `poweroff` signals it.
const inittab = `::sysinit:/etc/init.d/rcS
::shutdown:/bin/umount -a -r
::shutdown:/bin/mount -o remount,ro /
`;

// The initramfs of the debian image has already moved /proc, /sys and /dev into this root,
// so each mount is tried and its failure ignored.
const rcS = `#!/bin/sh
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /run /tmp
read -r cmdline < /proc/cmdline
for word in $cmdline; do
	case "$word" in
	sistemo.ip=*) address=\${word#*=} ;;
	sistemo.gw=*) gateway=\${word#*=} ;;
	sistemo.hostname=*) hostname "\${word#*=}" ;;
	esac
done
if [ -n "\${address:-}" ]; then
	for dir in /sys/class/net/*; do
		[ -e "$dir/device" ] || continue
		iface=\${dir##*/}
		ip link set dev "$iface" up
		ip address add "$address" dev "$iface"
		[ -n "\${gateway:-}" ] && ip route add default via "$gateway" dev "$iface"
		break
	done
fi
# acpid turns the ACPI power button (QMP system_powerdown) into /etc/acpi/PWRF/00000080.
acpid
echo ${busyboxReadyMarker}
`;

const powerButtonAction = `#!/bin/sh
exec poweroff
`;

/**
 * Builds a 64 MiB ext4 root filesystem that contains only busybox, for tests that need a guest but
 * not Debian. It boots with the debian image's kernel and initrd, whose initramfs loads the
 * ACPI button driver, so QMP system_powerdown powers it off through busybox acpid.
 */
export async function buildBusyboxImage(options: BusyboxBuildOptions): Promise<{ rootfs: string }> {
  const { outDir, runner } = options;
  await mkdir(outDir, { recursive: true });
  const workDir = await mkdtemp(path.join(outDir, '.build-busybox-'));
  try {
    const treeDir = path.join(workDir, 'tree');
    await writeTree(treeDir, runner, options.busyboxPath ?? '/bin/busybox');
    const staged = path.join(workDir, 'rootfs.ext4');
    await writeFile(staged, '');
    await truncate(staged, imageSizeBytes);
    await runner.run(['mkfs.ext4', '-q', '-F', '-L', 'sistemo-busybox', '-d', treeDir, staged]);
    const rootfs = path.join(outDir, 'rootfs.ext4');
    await rename(staged, rootfs);
    return { rootfs };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

async function writeTree(treeDir: string, runner: CommandRunner, busyboxPath: string): Promise<void> {
  const dirs = ['bin', 'sbin', 'etc/init.d', 'etc/acpi/PWRF', 'proc', 'sys', 'dev', 'run', 'tmp', 'root', 'mnt', 'var/log'];
  for (const dir of dirs) await mkdir(path.join(treeDir, dir), { recursive: true });
  // acpid exits at start when it cannot write /var/log/acpid.log or /var/run/acpid.pid.
  await symlink('../run', path.join(treeDir, 'var/run'));
  await copyFile(busyboxPath, path.join(treeDir, 'bin/busybox'));
  await chmod(path.join(treeDir, 'bin/busybox'), 0o755);

  const { stdout } = await runner.run([busyboxPath, '--list']);
  const applets = stdout.split('\n').filter((name) => /^[a-z0-9_.[-]+$/.test(name) && name !== 'busybox');
  const present = new Set(await readdir(path.join(treeDir, 'bin')));
  for (const applet of applets) {
    if (!present.has(applet)) await symlink('busybox', path.join(treeDir, 'bin', applet));
  }
  // Relative, so the initramfs finds it whether or not it resolves links inside the new root.
  await symlink('../bin/busybox', path.join(treeDir, 'sbin/init'));

  await writeExecutable(path.join(treeDir, 'etc/init.d/rcS'), rcS);
  await writeExecutable(path.join(treeDir, 'etc/acpi/PWRF/00000080'), powerButtonAction);
  await writeFile(path.join(treeDir, 'etc/inittab'), inittab);
}

async function writeExecutable(file: string, content: string): Promise<void> {
  await writeFile(file, content);
  await chmod(file, 0o755);
}
