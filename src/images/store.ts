import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { CommandError, invalid, notFound } from '../errors.js';
import type { DataPaths } from '../paths.js';
import type { CommandRunner } from '../system/runner.js';
import { buildDebianImage, debianImageVersion } from './debian.js';

/** An image ready to copy into a root volume, with the kernel that boots it. */
export interface ResolvedImage {
  /** `debian`, or `file` for a local .ext4 image. */
  name: string;
  rootfs: string;
  /** The image whose kernel and initrd boot volumes made from this one. */
  bootImage: string;
  /** Whether the image has sshd, so readiness can wait for it. */
  ssh: boolean;
}

export interface ImageInfo {
  name: string;
  built: boolean;
  size_bytes: number | null;
  description: string;
}

export const builtInImages = ['debian'] as const;

/**
 * Finds images and builds the `debian` image on first use. Builds are cached in the data
 * directory together with the recipe version, and a changed recipe builds again.
 */
export class ImageStore {
  private building: Promise<void> | undefined;

  constructor(
    private readonly paths: DataPaths,
    private readonly runner: CommandRunner,
    private readonly aptSources: string,
  ) {}

  private files(name: string) {
    const dir = this.paths.imageDir(name);
    return {
      dir,
      rootfs: path.join(dir, 'rootfs.ext4'),
      kernel: path.join(dir, 'vmlinuz'),
      initrd: path.join(dir, 'initrd.img'),
      version: path.join(dir, 'version'),
    };
  }

  async isBuilt(name: string): Promise<boolean> {
    const files = this.files(name);
    try {
      const version = (await fs.readFile(files.version, 'utf8')).trim();
      if (version !== debianImageVersion) return false;
      await Promise.all([fs.access(files.rootfs), fs.access(files.kernel), fs.access(files.initrd)]);
      return true;
    } catch {
      return false;
    }
  }

  /** Builds the debian image unless a build of the current recipe is cached. */
  async ensureDebian(onProgress: (message: string) => void): Promise<void> {
    if (await this.isBuilt('debian')) return;
    // One build at a time; a second deploy waits for the first build instead of starting another.
    if (!this.building) {
      this.building = this.buildDebian(onProgress).finally(() => {
        this.building = undefined;
      });
    } else {
      onProgress('Waiting for the debian image build that is already running');
    }
    await this.building;
  }

  private async buildDebian(onProgress: (message: string) => void): Promise<void> {
    const files = this.files('debian');
    onProgress('Building the debian image from Debian packages (first use only)');
    await fs.mkdir(files.dir, { recursive: true });
    await fs.rm(files.version, { force: true });
    const artifacts = await buildDebianImage({ outDir: files.dir, aptSources: this.aptSources, runner: this.runner, onProgress });
    for (const [built, wanted] of [[artifacts.rootfs, files.rootfs], [artifacts.kernel, files.kernel], [artifacts.initrd, files.initrd]] as const) {
      if (path.resolve(built) !== path.resolve(wanted)) await fs.rename(built, wanted);
    }
    // The version file is written last: its presence marks a complete build.
    await fs.writeFile(files.version, `${debianImageVersion}\n`);
    onProgress('The debian image is built and cached');
  }

  /** Returns the kernel and initrd that boot volumes made from an image. */
  async bootFiles(bootImage: string, onProgress: (message: string) => void = () => {}): Promise<{ kernel: string; initrd: string }> {
    if (bootImage !== 'debian') throw notFound(`Boot image "${bootImage}" not found`);
    await this.ensureDebian(onProgress);
    const files = this.files('debian');
    return { kernel: files.kernel, initrd: files.initrd };
  }

  /**
   * Resolves what `vm deploy` was given: `debian`, or an absolute path to a local .ext4 image,
   * which boots with the debian image's kernel.
   */
  async resolve(reference: string, onProgress: (message: string) => void): Promise<ResolvedImage> {
    if (reference === 'debian') {
      await this.ensureDebian(onProgress);
      return { name: 'debian', rootfs: this.files('debian').rootfs, bootImage: 'debian', ssh: true };
    }
    if (/^https?:\/\//i.test(reference)) {
      throw invalid(`Unsupported image "${reference}": downloading images is not supported yet, download it and pass the .ext4 file`);
    }
    if (path.isAbsolute(reference) && !reference.endsWith('.ext4') && existsSync(reference)) {
      throw invalid(`Invalid image "${reference}": a local image must be an ext4 file whose name ends in .ext4`);
    }
    if (!path.isAbsolute(reference) || !reference.endsWith('.ext4')) {
      throw notFound(`Image "${reference}" not found: use debian or the path of a local .ext4 file`);
    }
    let stat;
    try {
      stat = await fs.stat(reference);
    } catch {
      throw notFound(`Image "${reference}" not found: no such file`);
    }
    if (!stat.isFile()) throw invalid(`Invalid image "${reference}": not a regular file`);
    const ssh = await this.hasSshd(reference);
    await this.ensureDebian(onProgress);
    return { name: 'file', rootfs: reference, bootImage: 'debian', ssh };
  }

  private async hasSshd(rootfs: string): Promise<boolean> {
    try {
      const { stdout } = await this.runner.run(['debugfs', '-R', 'stat /usr/sbin/sshd', rootfs]);
      return stdout.includes('Inode:');
    } catch (error) {
      if (error instanceof CommandError) throw invalid(`Invalid image "${rootfs}": it is not an ext4 filesystem`);
      throw error;
    }
  }

  async list(): Promise<ImageInfo[]> {
    const built = await this.isBuilt('debian');
    let size: number | null = null;
    if (built) size = (await fs.stat(this.files('debian').rootfs)).size;
    return [{ name: 'debian', built, size_bytes: size, description: 'Debian 12 (bookworm) with systemd and sshd, built locally from Debian packages' }];
  }
}
