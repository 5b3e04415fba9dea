import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildQemuArgs, kernelCommandLine, macFor, type VmSpec } from '../../src/engine/qemu-args.js';

const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtestkey sistemo-daemon';

function spec(overrides: Partial<VmSpec> = {}): VmSpec {
  return {
    vmId: 'm0123456789ab',
    name: 'web',
    vcpus: 2,
    memoryBytes: 1024 * 1024 * 1024,
    accelerator: 'kvm',
    kernel: '/data/images/debian/vmlinuz',
    initrd: '/data/images/debian/initrd.img',
    disks: [
      { file: '/data/volumes/vroot00000001.img', serial: 'web-root', name: 'web-root' },
      { file: '/data/volumes/vdata00000002.img', serial: 'appdata', name: 'appdata' },
      { file: '/data/volumes/vdata00000003.img', serial: 'logs', name: 'logs' },
    ],
    network: { tap: 'sm-m0123456789', mac: '52:54:00:45:67:89', ip: '10.200.0.2', prefix: 16, gateway: '10.200.0.1' },
    sshPublicKey: publicKey,
    qmpSocket: '/data/vms/m0123456789ab/qmp.sock',
    pidFile: '/data/vms/m0123456789ab/qemu.pid',
    consoleLog: '/data/vms/m0123456789ab/console.log',
    ...overrides,
  };
}

/** Returns the value after each occurrence of an option such as `-drive`. */
function valuesOf(args: readonly string[], option: string): string[] {
  const values: string[] = [];
  args.forEach((arg, index) => {
    const next = args[index + 1];
    if (arg === option && next !== undefined) values.push(next);
  });
  return values;
}

function valueOf(args: readonly string[], option: string): string {
  const [value] = valuesOf(args, option);
  assert.ok(value !== undefined, `${option} is missing`);
  return value;
}

/** Returns the serials of the virtio-blk devices, in argv order. */
function diskSerials(args: readonly string[]): string[] {
  return valuesOf(args, '-device')
    .filter((device) => device.startsWith('virtio-blk-pci'))
    .map((device) => /serial=([^,]+)/.exec(device)?.[1] ?? '');
}

/** Returns the value of one `sistemo.*` parameter of a kernel command line. */
function kernelParameter(commandLine: string, key: string): string | undefined {
  const word = commandLine.split(' ').find((part) => part.startsWith(`${key}=`));
  return word?.slice(key.length + 1);
}

describe('buildQemuArgs', () => {
  test('buildQemuArgs starts with the QEMU binary', () => {
    assert.equal(buildQemuArgs(spec())[0], 'qemu-system-x86_64');
  });

  test('buildQemuArgs uses the q35 machine', () => {
    assert.equal(valueOf(buildQemuArgs(spec()), '-machine'), 'q35');
  });

  for (const accelerator of ['kvm', 'tcg'] as const) {
    test(`buildQemuArgs sets the ${accelerator} accelerator`, () => {
      assert.equal(valueOf(buildQemuArgs(spec({ accelerator })), '-accel'), accelerator);
    });
  }

  test('buildQemuArgs daemonizes', () => {
    assert.ok(buildQemuArgs(spec()).includes('-daemonize'));
  });

  test('buildQemuArgs writes the pid file', () => {
    assert.equal(valueOf(buildQemuArgs(spec()), '-pidfile'), '/data/vms/m0123456789ab/qemu.pid');
  });

  test('buildQemuArgs serves QMP on a unix socket', () => {
    const qmp = valueOf(buildQemuArgs(spec()), '-qmp');
    assert.ok(qmp.startsWith('unix:/data/vms/m0123456789ab/qmp.sock,'), qmp);
    assert.match(qmp, /server=on/);
    assert.match(qmp, /wait=off/);
  });

  test('buildQemuArgs sets vCPUs and memory in MiB', () => {
    const args = buildQemuArgs(spec());
    assert.equal(valueOf(args, '-smp'), '2');
    assert.equal(valueOf(args, '-m'), '1024M');
  });

  test('buildQemuArgs boots the kernel and initrd', () => {
    const args = buildQemuArgs(spec());
    assert.equal(valueOf(args, '-kernel'), '/data/images/debian/vmlinuz');
    assert.equal(valueOf(args, '-initrd'), '/data/images/debian/initrd.img');
  });

  test('buildQemuArgs puts the boot disk first', () => {
    const drives = valuesOf(buildQemuArgs(spec()), '-drive');
    assert.ok(drives[0]?.startsWith('file=/data/volumes/vroot00000001.img,'), drives[0]);
  });

  test('buildQemuArgs keeps data disks in order with serials', () => {
    assert.deepEqual(diskSerials(buildQemuArgs(spec())), ['web-root', 'appdata', 'logs']);
  });

  test('buildQemuArgs pairs each drive with its device', () => {
    const args = buildQemuArgs(spec());
    const driveIds = valuesOf(args, '-drive').map((drive) => /id=([^,]+)/.exec(drive)?.[1]);
    const deviceDrives = valuesOf(args, '-device')
      .filter((device) => device.startsWith('virtio-blk-pci'))
      .map((device) => /drive=([^,]+)/.exec(device)?.[1]);
    assert.deepEqual(deviceDrives, driveIds);
    assert.equal(new Set(driveIds).size, 3);
  });

  test('buildQemuArgs opens every disk with cache=none', () => {
    const drives = valuesOf(buildQemuArgs(spec()), '-drive');
    assert.equal(drives.length, 3);
    for (const drive of drives) assert.match(drive, /(^|,)cache=none(,|$)/, drive);
  });

  test('buildQemuArgs opens every disk as raw', () => {
    for (const drive of valuesOf(buildQemuArgs(spec()), '-drive')) assert.match(drive, /(^|,)format=raw(,|$)/, drive);
  });

  test('buildQemuArgs uses the tap without scripts', () => {
    const netdev = valueOf(buildQemuArgs(spec()), '-netdev');
    assert.ok(netdev.startsWith('tap,'), netdev);
    assert.match(netdev, /ifname=sm-m0123456789/);
    assert.match(netdev, /(^|,)script=no(,|$)/);
    assert.match(netdev, /(^|,)downscript=no(,|$)/);
  });

  test('buildQemuArgs sets the MAC address', () => {
    const nic = valuesOf(buildQemuArgs(spec()), '-device').find((device) => device.startsWith('virtio-net-pci'));
    assert.match(nic ?? '', /mac=52:54:00:45:67:89/);
  });

  test('buildQemuArgs passes the kernel command line as one argument', () => {
    const args = buildQemuArgs(spec());
    assert.equal(valueOf(args, '-append'), kernelCommandLine(spec()));
  });

  test('buildQemuArgs returns only plain strings', () => {
    const args = buildQemuArgs(spec({ name: 'web-1' }));
    for (const arg of args) assert.equal(typeof arg, 'string');
    assert.ok(!args.some((arg) => arg === 'sh' || arg === '-c' || arg === 'bash'));
  });

  test('buildQemuArgs with one disk has one drive', () => {
    const [boot] = spec().disks;
    assert.ok(boot);
    assert.equal(valuesOf(buildQemuArgs(spec({ disks: [boot] })), '-drive').length, 1);
  });

  test('buildQemuArgs escapes a comma in a data directory path', () => {
    const file = '/srv/vm,data/volumes/vroot00000001.img';
    const drive = valuesOf(buildQemuArgs(spec({ disks: [{ file, serial: 'web-root', name: 'web-root' }] })), '-drive')[0] ?? '';
    assert.ok(drive.startsWith('file=/srv/vm,,data/volumes/'), drive);
  });
});

describe('kernelCommandLine', () => {
  test('kernelCommandLine mounts root from the first disk', () => {
    assert.ok(kernelCommandLine(spec()).split(' ').includes('root=/dev/vda'));
  });

  test('kernelCommandLine sets address with prefix', () => {
    assert.equal(kernelParameter(kernelCommandLine(spec()), 'sistemo.ip'), '10.200.0.2/16');
  });

  test('kernelCommandLine sets the gateway', () => {
    assert.equal(kernelParameter(kernelCommandLine(spec()), 'sistemo.gw'), '10.200.0.1');
  });

  test('kernelCommandLine sets the hostname', () => {
    assert.equal(kernelParameter(kernelCommandLine(spec()), 'sistemo.hostname'), 'web');
  });

  test('kernelCommandLine key decodes to the public key', () => {
    const encoded = kernelParameter(kernelCommandLine(spec()), 'sistemo.key') ?? '';
    assert.match(encoded, /^[A-Za-z0-9+/]+=*$/);
    assert.equal(Buffer.from(encoded, 'base64').toString(), publicKey);
  });

  test('kernelCommandLine key drops a trailing newline', () => {
    const encoded = kernelParameter(kernelCommandLine(spec({ sshPublicKey: `${publicKey}\n` })), 'sistemo.key') ?? '';
    assert.equal(Buffer.from(encoded, 'base64').toString(), publicKey);
  });

  test('kernelCommandLine lists data disks as serial:name', () => {
    assert.equal(kernelParameter(kernelCommandLine(spec()), 'sistemo.vols'), 'appdata:appdata,logs:logs');
  });

  test('kernelCommandLine uses the short serial of a long name', () => {
    const [boot] = spec().disks;
    assert.ok(boot);
    const disks = [boot, { file: '/data/volumes/v1.img', serial: 'databas_0123456789ab', name: 'database-primary-disk' }];
    assert.equal(kernelParameter(kernelCommandLine(spec({ disks })), 'sistemo.vols'), 'databas_0123456789ab:database-primary-disk');
  });

  test('kernelCommandLine omits vols without data disks', () => {
    const [boot] = spec().disks;
    assert.ok(boot);
    assert.ok(!kernelCommandLine(spec({ disks: [boot] })).includes('sistemo.vols'));
  });

  test('kernelCommandLine fits the 2048-byte limit with 16 long data disks', () => {
    const [boot] = spec().disks;
    assert.ok(boot);
    const data = Array.from({ length: 16 }, (_, index) => ({
      file: `/data/volumes/v${index}.img`,
      serial: `abcdefg_${String(index).padStart(12, '0')}`,
      name: `${'n'.repeat(60)}-${String(index).padStart(2, '0')}`,
    }));
    assert.ok(kernelCommandLine(spec({ disks: [boot, ...data] })).length < 2048);
  });
});

describe('macFor', () => {
  test('macFor ends with the last six hex digits of the id', () => {
    assert.equal(macFor('m0123456789ab'), '52:54:00:67:89:ab');
  });

  test('macFor gives two ids two addresses', () => {
    assert.notEqual(macFor('m0123456789ab'), macFor('m0123456789ac'));
  });
});
