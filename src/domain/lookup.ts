import type { VmRow, VolumeRow } from '../db/store.js';
import { SistemoError, notFound } from '../errors.js';
import type { Context } from './context.js';
import { validateName } from './names.js';
import { formatSize } from './size.js';

export function requireVm(context: Context, name: string): VmRow {
  validateName(name, 'VM');
  const vm = context.store.findVm(name);
  if (!vm) throw notFound(`VM "${name}" not found: list VMs with sistemo vm list`);
  return vm;
}

export function requireVolume(context: Context, name: string): VolumeRow {
  validateName(name, 'volume');
  const volume = context.store.findVolume(name);
  if (!volume) throw notFound(`Volume "${name}" not found: list volumes with sistemo volume list`);
  return volume;
}

/**
 * Rejects an operation that would add more capacity than the host has free. Volumes are
 * sparse, so this is a promise about later use: capacity handed out never exceeds free space
 * at the time it is handed out.
 */
export async function ensureFreeSpace(context: Context, bytes: number, action: string): Promise<void> {
  const free = await context.volumes.freeBytes(context.paths.volumesDir);
  if (free < bytes) {
    throw new SistemoError('no_space', `Cannot ${action}: it needs ${formatSize(bytes)} but the host has ${formatSize(free)} free in ${context.paths.volumesDir}`);
  }
}
