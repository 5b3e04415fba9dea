/** Everything QEMU needs to boot one VM. Built by the domain layer from the database. */
export interface VmSpec {
  vmId: string;
  name: string;
  vcpus: number;
  memoryBytes: number;
  accelerator: 'kvm' | 'tcg';
  kernel: string;
  initrd: string;
  /** The boot disk first, then data disks in a stable order. */
  disks: readonly { file: string; serial: string; name: string }[];
  network: { tap: string; mac: string; ip: string; prefix: number; gateway: string };
  sshPublicKey: string;
  qmpSocket: string;
  pidFile: string;
  consoleLog: string;
}

/**
 * Returns the kernel command line: root on the first virtio disk, and the `sistemo.*`
 * parameters the guest boot script reads at every boot (address, hostname, SSH key, mounts).
 */
export function kernelCommandLine(spec: VmSpec): string {
  const dataDisks = spec.disks.slice(1);
  const parts = [
    'root=/dev/vda',
    'rw',
    'console=ttyS0',
    'quiet',
    `sistemo.ip=${spec.network.ip}/${spec.network.prefix}`,
    `sistemo.gw=${spec.network.gateway}`,
    `sistemo.hostname=${spec.name}`,
    `sistemo.key=${Buffer.from(spec.sshPublicKey.trim()).toString('base64')}`,
  ];
  if (dataDisks.length > 0) {
    parts.push(`sistemo.vols=${dataDisks.map((disk) => `${disk.serial}:${disk.name}`).join(',')}`);
  }
  return parts.join(' ');
}

/**
 * Builds the qemu-system-x86_64 argument array. The machine is q35: it is what these hosts
 * were measured with, and its PCIe root ports are where disks can be hot-plugged later.
 * The process daemonizes so that VMs keep running when the daemon stops or crashes.
 */
export function buildQemuArgs(spec: VmSpec): string[] {
  const memoryMiB = Math.floor(spec.memoryBytes / (1024 * 1024));
  const args = [
    'qemu-system-x86_64',
    '-name', `${spec.name},debug-threads=off`,
    '-machine', 'q35',
    '-accel', spec.accelerator,
    '-cpu', spec.accelerator === 'kvm' ? 'host' : 'max',
    '-smp', String(spec.vcpus),
    '-m', `${memoryMiB}M`,
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-serial', `file:${qemuOptionValue(spec.consoleLog)}`,
    '-kernel', spec.kernel,
    '-initrd', spec.initrd,
    '-append', kernelCommandLine(spec),
  ];
  spec.disks.forEach((disk, index) => {
    // cache=none bypasses the host page cache, so a write the guest flushed is on disk even if
    // the host loses power; file locking (on by default) stops a second QEMU opening the file.
    args.push('-drive', `file=${qemuOptionValue(disk.file)},format=raw,if=none,id=disk${index},cache=none,aio=threads,discard=unmap`);
    args.push('-device', `virtio-blk-pci,drive=disk${index},serial=${disk.serial}`);
  });
  args.push(
    '-netdev', `tap,id=net0,ifname=${spec.network.tap},script=no,downscript=no`,
    '-device', `virtio-net-pci,netdev=net0,mac=${spec.network.mac}`,
    '-device', 'virtio-rng-pci',
    '-qmp', `unix:${qemuOptionValue(spec.qmpSocket)},server=on,wait=off`,
    '-pidfile', spec.pidFile,
    '-daemonize',
  );
  return args;
}

/** Escapes a value inside a QEMU option string, where a comma separates options and `,,` is a comma. */
export function qemuOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** Returns a stable locally administered MAC address derived from a VM id. */
export function macFor(vmId: string): string {
  const hex = vmId.slice(-6).padStart(6, '0');
  return `52:54:00:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}`;
}
