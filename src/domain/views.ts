import type { Store, VmRow, VolumeRow } from '../db/store.js';
import { formatSize } from './size.js';

/** The JSON shape of a volume in the API and in `-o json`. Field names are stable. */
export interface VolumeView {
  name: string;
  id: string;
  size_bytes: number;
  size: string;
  status: 'attached' | 'detached' | 'busy' | 'error';
  attached_to: string | null;
  type: 'root' | 'data';
  message: string | null;
  created_at: string;
}

/** The JSON shape of a VM in the API and in `-o json`. Field names are stable. */
export interface VmView {
  name: string;
  id: string;
  status: string;
  vcpus: number;
  memory_bytes: number;
  memory: string;
  ip: string | null;
  image: string;
  root_volume: string | null;
  volumes: { name: string; type: 'root' | 'data'; role: 'boot' | 'data'; size: string }[];
  created_at: string;
}

export function volumeView(volume: VolumeRow, vmName: string | null): VolumeView {
  let status: VolumeView['status'] = volume.vm_id ? 'attached' : 'detached';
  if (volume.state !== 'ready') status = volume.state;
  return {
    name: volume.name,
    id: volume.id,
    size_bytes: volume.size_bytes,
    size: formatSize(volume.size_bytes),
    status,
    attached_to: vmName,
    type: volume.type,
    message: volume.state_message,
    created_at: volume.created_at,
  };
}

export function listVolumeViews(store: Store): VolumeView[] {
  const vmNames = new Map(store.listVms().map((vm) => [vm.id, vm.name]));
  return store.listVolumes().map((volume) => volumeView(volume, volume.vm_id ? vmNames.get(volume.vm_id) ?? null : null));
}

export function vmView(vm: VmRow, volumes: readonly VolumeRow[]): VmView {
  return {
    name: vm.name,
    id: vm.id,
    status: vm.status,
    vcpus: vm.vcpus,
    memory_bytes: vm.memory_bytes,
    memory: formatSize(vm.memory_bytes),
    ip: vm.ip,
    image: vm.image,
    root_volume: volumes.find((volume) => volume.role === 'boot')?.name ?? null,
    volumes: volumes.map((volume) => ({
      name: volume.name,
      type: volume.type,
      role: volume.role ?? 'data',
      size: formatSize(volume.size_bytes),
    })),
    created_at: vm.created_at,
  };
}

export function listVmViews(store: Store): VmView[] {
  const byVm = new Map<string, VolumeRow[]>();
  for (const volume of store.listVolumes()) {
    if (!volume.vm_id) continue;
    const list = byVm.get(volume.vm_id) ?? [];
    list.push(volume);
    byVm.set(volume.vm_id, list);
  }
  return store.listVms().map((vm) => {
    const volumes = (byVm.get(vm.id) ?? []).sort((a, b) => Number(b.role === 'boot') - Number(a.role === 'boot') || a.name.localeCompare(b.name));
    return vmView(vm, volumes);
  });
}
