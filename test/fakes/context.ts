import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/db/database.js';
import { Store, type VmRow, type VolumeRow } from '../../src/db/store.js';
import type { Context } from '../../src/domain/context.js';
import { GiB, MiB } from '../../src/domain/size.js';
import type { VmStatus } from '../../src/domain/vm-state.js';
import type { ImageStore, ResolvedImage } from '../../src/images/store.js';
import { silentLogger } from '../../src/log.js';
import { parseCidr } from '../../src/network/cidr.js';
import { DataPaths, newId } from '../../src/paths.js';
import { FakeEngine } from './engine.js';
import { FakeNetwork } from './network.js';
import { FakeReadiness } from './readiness.js';
import { UnexpectedCallError } from './strict.js';
import { FakeVolumeTool } from './volume-tool.js';

/** Thrown by the checkpoint hook at the step named in `crashAt`, leaving the journal as a crash would. */
export class SimulatedCrash extends Error {
  constructor(readonly at: string) {
    super(`simulated crash at ${at}`);
    this.name = 'SimulatedCrash';
  }
}

/** A Context with fakes behind every side effect, a real Store on in-memory SQLite and a temp dir. */
export interface TestBed {
  context: Context;
  store: Store;
  paths: DataPaths;
  volumes: FakeVolumeTool;
  engine: FakeEngine;
  network: FakeNetwork;
  readiness: FakeReadiness;
  image: ResolvedImage;
  imageBytes: number;
  /** `kind:step` of every checkpoint the domain passed, in order. */
  checkpoints: string[];
  /** A checkpoint `kind:step` that throws SimulatedCrash. */
  crashAt: string | undefined;
  close(): Promise<void>;
}

/** Builds a test bed. The fake `debian` image is a 1 GiB rootfs unless `imageBytes` gives another size. */
export async function createTestBed(options: { imageBytes?: number } = {}): Promise<TestBed> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'sistemo-unit-'));
  const paths = new DataPaths(root);
  const db = openDatabase(':memory:');
  const store = new Store(db);
  const { config } = loadConfig('/nonexistent', {});
  const bridge = 'sistemo0';
  const volumes = new FakeVolumeTool();
  const engine = new FakeEngine();
  const network = new FakeNetwork(bridge);
  const readiness = new FakeReadiness();
  const imageBytes = options.imageBytes ?? GiB;
  const imageDir = path.join(root, 'images', 'debian');
  const image: ResolvedImage = { name: 'debian', rootfs: path.join(imageDir, 'rootfs.ext4'), bootImage: 'debian', ssh: true };
  volumes.addFile(image.rootfs, imageBytes);

  const images = {
    async resolve(reference: string): Promise<ResolvedImage> {
      if (reference !== 'debian') throw new UnexpectedCallError('ImageStore', 'resolve', [reference]);
      return image;
    },
    async bootFiles(bootImage: string): Promise<{ kernel: string; initrd: string }> {
      if (bootImage !== 'debian') throw new UnexpectedCallError('ImageStore', 'bootFiles', [bootImage]);
      return { kernel: path.join(imageDir, 'vmlinuz'), initrd: path.join(imageDir, 'initrd.img') };
    },
  };

  const bed: TestBed = {
    context: undefined as unknown as Context,
    store, paths, volumes, engine, network, readiness, image, imageBytes,
    checkpoints: [],
    crashAt: undefined,
    async close() {
      db.close();
      await fs.rm(root, { recursive: true, force: true });
    },
  };
  bed.context = {
    store,
    config,
    paths,
    volumes,
    engine,
    network,
    images: images as unknown as ImageStore,
    readiness,
    log: silentLogger,
    subnet: parseCidr(config.bridge_subnet),
    bridge,
    sshPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey sistemo-daemon',
    accelerator: async () => ({ accelerator: 'kvm', reason: 'test' }),
    checkpoint(kind: string, step: string) {
      const at = `${kind}:${step}`;
      bed.checkpoints.push(at);
      if (bed.crashAt === at) throw new SimulatedCrash(at);
    },
  };
  return bed;
}

let seededAddress = 100;

/**
 * Inserts a VM and its root volume `NAME-root` directly into the store, with a volume file in
 * the fake tool. A running VM also gets a fake QEMU process and tap. Tests of attach, resize
 * and delete use this so that they do not depend on deploy.
 */
export function seedVm(
  bed: TestBed,
  name: string,
  options: { status?: VmStatus; rootBytes?: number } = {},
): { vm: VmRow; root: VolumeRow } {
  const vmId = newId('m');
  const status = options.status ?? 'stopped';
  const tap = `sm-t${seededAddress}`;
  bed.store.insertVm({
    id: vmId, name, status, vcpus: 1, memory_bytes: 512 * MiB, image: 'debian',
    ip: `10.200.1.${seededAddress++}`, mac: '52:54:00:00:00:01', tap, pid: null, ssh: 1,
  });
  const root = seedVolume(bed, `${name}-root`, { type: 'root', sizeBytes: options.rootBytes ?? 2 * GiB, vmId, role: 'boot' });
  if (status === 'running') {
    const pid = bed.engine.addProcess({ vmId, pidFile: bed.paths.pidFile(vmId), qmpSocket: bed.paths.qmpSocket(vmId) });
    bed.store.setVmPid(vmId, pid);
    bed.network.taps.add(tap);
  }
  const vm = bed.store.getVmById(vmId);
  if (!vm) throw new Error(`seeded VM ${name} is missing`);
  return { vm, root };
}

/** Inserts a ready volume (detached unless `vmId` is given) and its file in the fake tool. */
export function seedVolume(
  bed: TestBed,
  name: string,
  options: { type?: 'root' | 'data'; sizeBytes?: number; vmId?: string; role?: 'boot' | 'data' } = {},
): VolumeRow {
  const id = newId('v');
  const type = options.type ?? 'data';
  const sizeBytes = options.sizeBytes ?? GiB;
  bed.store.insertVolume({
    id, name, type, size_bytes: sizeBytes, state: 'ready',
    vm_id: options.vmId ?? null, role: options.vmId ? options.role ?? 'data' : null,
    boot_image: type === 'root' ? 'debian' : null, ssh: type === 'root' ? 1 : 0,
  });
  bed.volumes.addFile(bed.paths.volumeFile(id), sizeBytes);
  const row = bed.store.getVolumeById(id);
  if (!row) throw new Error(`seeded volume ${name} is missing`);
  return row;
}

/** Returns every row of the vms, volumes and operations tables, to compare before and after. */
export function snapshotState(store: Store): unknown {
  return {
    vms: store.db.prepare('SELECT * FROM vms ORDER BY id').all(),
    volumes: store.db.prepare('SELECT * FROM volumes ORDER BY id').all(),
    operations: store.db.prepare('SELECT * FROM operations ORDER BY id').all(),
  };
}

/** Returns the names of the files in the fake tool that live under the volumes directory. */
export function volumeFiles(bed: TestBed): string[] {
  return [...bed.volumes.files.keys()].filter((file) => file.startsWith(bed.paths.volumesDir)).sort();
}

/** Runs `work` with a fresh test bed and closes it afterwards, also when `work` throws. */
export async function withTestBed(work: (bed: TestBed) => Promise<void>, options: { imageBytes?: number } = {}): Promise<void> {
  const bed = await createTestBed(options);
  try {
    await work(bed);
  } finally {
    await bed.close();
  }
}
