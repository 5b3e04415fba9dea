import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { invalid } from './errors.js';

/** The longest Unix socket path Linux accepts (sun_path is 108 bytes with the final NUL). */
export const maxSocketPathBytes = 107;

/**
 * The on-disk layout of a data directory. Every file the product writes is named here, and
 * only from ids that Sistemo generates, never from names users type.
 */
export class DataPaths {
  constructor(readonly root: string) {}

  get database(): string { return path.join(this.root, 'sistemo.db'); }
  get socket(): string { return path.join(this.root, 'sistemo.sock'); }
  get config(): string { return path.join(this.root, 'config.yml'); }
  get log(): string { return path.join(this.root, 'daemon.log'); }
  get lock(): string { return path.join(this.root, 'daemon.lock'); }
  get sshDir(): string { return path.join(this.root, 'ssh'); }
  get sshKey(): string { return path.join(this.sshDir, 'id_ed25519'); }
  get volumesDir(): string { return path.join(this.root, 'volumes'); }
  get vmsDir(): string { return path.join(this.root, 'vms'); }
  get imagesDir(): string { return path.join(this.root, 'images'); }
  get undoDir(): string { return path.join(this.root, 'undo'); }
  get acceleratorCache(): string { return path.join(this.root, 'accelerator.json'); }

  volumeFile(volumeId: string): string { return path.join(this.volumesDir, `${checkId(volumeId)}.img`); }
  /** A volume file while it is being written; recovery deletes it when its operation failed. */
  partialVolumeFile(volumeId: string): string { return `${this.volumeFile(volumeId)}.partial`; }
  vmDir(vmId: string): string { return path.join(this.vmsDir, checkId(vmId)); }
  qmpSocket(vmId: string): string { return path.join(this.vmDir(vmId), 'qmp.sock'); }
  pidFile(vmId: string): string { return path.join(this.vmDir(vmId), 'qemu.pid'); }
  consoleLog(vmId: string): string { return path.join(this.vmDir(vmId), 'console.log'); }
  imageDir(imageName: string): string { return path.join(this.imagesDir, checkId(imageName)); }
  resizeUndoFile(operationId: number): string { return path.join(this.undoDir, `resize-${operationId}.e2undo`); }

  /** Rejects a data directory whose socket paths would not fit in sun_path. */
  checkSocketLengths(): void {
    const longest = this.qmpSocket('m000000000000');
    if (Buffer.byteLength(longest) > maxSocketPathBytes) {
      throw invalid(`Invalid data directory "${this.root}": socket paths under it would exceed ${maxSocketPathBytes} bytes, choose a shorter path`);
    }
  }
}

const idPattern = /^[a-z][a-z0-9-]{0,40}$/;

function checkId(id: string): string {
  // Ids come from newId() or fixed image names; this guards the invariant, not user input.
  if (!idPattern.test(id)) throw new Error(`Refusing to build a path from id ${JSON.stringify(id)}`);
  return id;
}

/** Returns a new random id such as `v3f9a2c1b0e4d` (a letter and 12 hex digits). */
export function newId(prefix: 'v' | 'm' | 'n'): string {
  return prefix + randomBytes(6).toString('hex');
}

/**
 * Returns the default data directory: `~/.sistemo` of the invoking user, also under sudo,
 * unless `SISTEMO_DATA_DIR` names another.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SISTEMO_DATA_DIR) return path.resolve(env.SISTEMO_DATA_DIR);
  const sudoUser = env.SUDO_USER;
  const home = sudoUser && sudoUser !== 'root' ? homeOf(sudoUser) : undefined;
  return path.join(home ?? os.homedir(), '.sistemo');
}

/** Returns a user's home directory from /etc/passwd, or undefined when the user is unknown. */
function homeOf(user: string): string | undefined {
  let passwd: string;
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of passwd.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === user && fields[5]) return fields[5];
  }
  return undefined;
}
