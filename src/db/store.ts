import type { Database } from './database.js';
import type { VmStatus } from '../domain/vm-state.js';
import type { Protocol } from '../network/ports.js';

export interface VmRow {
  id: string;
  name: string;
  status: VmStatus;
  vcpus: number;
  memory_bytes: number;
  image: string;
  ip: string | null;
  mac: string;
  tap: string;
  pid: number | null;
  ssh: number;
  /** The named network, or null for the default one. */
  network_id: string | null;
  created_at: string;
  updated_at: string;
}

export interface NetworkRow {
  id: string;
  name: string;
  subnet: string;
  bridge: string;
  created_at: string;
}

export interface ExposureRow {
  protocol: Protocol;
  host_port: number;
  vm_id: string;
  vm_port: number;
  created_at: string;
}

export type VolumeType = 'root' | 'data';
export type VolumeState = 'ready' | 'busy' | 'error';

export interface VolumeRow {
  id: string;
  name: string;
  type: VolumeType;
  size_bytes: number;
  state: VolumeState;
  state_message: string | null;
  vm_id: string | null;
  role: 'boot' | 'data' | null;
  boot_image: string | null;
  ssh: number;
  created_at: string;
  updated_at: string;
}

export type OperationState = 'running' | 'done' | 'rolled_back' | 'failed';

export interface OperationRow {
  id: number;
  kind: string;
  state: OperationState;
  step: string;
  vm_id: string | null;
  volume_id: string | null;
  data: string;
  child_pid: number | null;
  error: string | null;
  created_at: string;
  updated_at: string;
}

export interface AuditEntry {
  id: number;
  time: string;
  actor: string;
  action: string;
  target: string;
  result: 'ok' | 'failed';
  details: Record<string, unknown>;
  error: string | null;
}

/** Typed queries over the state database. Callers group writes with `transaction`. */
export class Store {
  constructor(readonly db: Database, private readonly now: () => Date = () => new Date()) {}

  transaction<T>(work: () => T): T {
    return this.db.transaction(work)();
  }

  private timestamp(): string {
    return this.now().toISOString();
  }

  // VMs

  listVms(): VmRow[] {
    return this.db.prepare('SELECT * FROM vms ORDER BY name').all() as VmRow[];
  }

  findVm(name: string): VmRow | undefined {
    return this.db.prepare('SELECT * FROM vms WHERE name = ?').get(name) as VmRow | undefined;
  }

  getVmById(id: string): VmRow | undefined {
    return this.db.prepare('SELECT * FROM vms WHERE id = ?').get(id) as VmRow | undefined;
  }

  /** Inserts a VM; without `network_id` it is on the default network. */
  insertVm(vm: Omit<VmRow, 'created_at' | 'updated_at' | 'network_id'> & { network_id?: string | null }): void {
    const at = this.timestamp();
    this.db.prepare(`INSERT INTO vms (id, name, status, vcpus, memory_bytes, image, ip, mac, tap, pid, ssh, network_id, created_at, updated_at)
      VALUES (@id, @name, @status, @vcpus, @memory_bytes, @image, @ip, @mac, @tap, @pid, @ssh, @network_id, @at, @at)`)
      .run({ ...vm, network_id: vm.network_id ?? null, at });
  }

  /** Sets a VM's status only if it still has the expected one; returns whether it changed. */
  setVmStatus(id: string, from: VmStatus | readonly VmStatus[], to: VmStatus): boolean {
    const expected = Array.isArray(from) ? from : [from];
    const placeholders = expected.map(() => '?').join(', ');
    const result = this.db.prepare(`UPDATE vms SET status = ?, updated_at = ? WHERE id = ? AND status IN (${placeholders})`)
      .run(to, this.timestamp(), id, ...expected);
    return result.changes === 1;
  }

  setVmPid(id: string, pid: number | null): void {
    this.db.prepare('UPDATE vms SET pid = ?, updated_at = ? WHERE id = ?').run(pid, this.timestamp(), id);
  }

  deleteVm(id: string): void {
    this.db.prepare('DELETE FROM exposures WHERE vm_id = ?').run(id);
    this.db.prepare('DELETE FROM vms WHERE id = ?').run(id);
  }

  usedAddresses(): Set<string> {
    const rows = this.db.prepare('SELECT ip FROM vms WHERE ip IS NOT NULL').all() as { ip: string }[];
    return new Set(rows.map((row) => row.ip));
  }

  // Networks and exposed ports

  listNetworks(): NetworkRow[] {
    return this.db.prepare('SELECT * FROM networks ORDER BY name').all() as NetworkRow[];
  }

  findNetwork(name: string): NetworkRow | undefined {
    return this.db.prepare('SELECT * FROM networks WHERE name = ?').get(name) as NetworkRow | undefined;
  }

  getNetworkById(id: string): NetworkRow | undefined {
    return this.db.prepare('SELECT * FROM networks WHERE id = ?').get(id) as NetworkRow | undefined;
  }

  insertNetwork(network: Omit<NetworkRow, 'created_at'>): void {
    this.db.prepare('INSERT INTO networks (id, name, subnet, bridge, created_at) VALUES (@id, @name, @subnet, @bridge, @at)')
      .run({ ...network, at: this.timestamp() });
  }

  deleteNetwork(id: string): void {
    this.db.prepare('DELETE FROM networks WHERE id = ?').run(id);
  }

  /** Returns how many VMs, in any status, are on each named network, by network id. */
  vmCountsByNetwork(): Map<string | null, number> {
    const rows = this.db.prepare('SELECT network_id, COUNT(*) AS count FROM vms GROUP BY network_id').all() as { network_id: string | null; count: number }[];
    return new Map(rows.map((row) => [row.network_id, row.count]));
  }

  listExposures(): ExposureRow[] {
    return this.db.prepare('SELECT * FROM exposures ORDER BY protocol, host_port').all() as ExposureRow[];
  }

  exposuresOfVm(vmId: string): ExposureRow[] {
    return this.db.prepare('SELECT * FROM exposures WHERE vm_id = ? ORDER BY protocol, host_port').all(vmId) as ExposureRow[];
  }

  findExposure(protocol: Protocol, hostPort: number): ExposureRow | undefined {
    return this.db.prepare('SELECT * FROM exposures WHERE protocol = ? AND host_port = ?').get(protocol, hostPort) as ExposureRow | undefined;
  }

  insertExposure(exposure: Omit<ExposureRow, 'created_at'>): void {
    this.db.prepare('INSERT INTO exposures (protocol, host_port, vm_id, vm_port, created_at) VALUES (@protocol, @host_port, @vm_id, @vm_port, @at)')
      .run({ ...exposure, at: this.timestamp() });
  }

  /** Deletes one exposure; returns whether it existed. */
  deleteExposure(protocol: Protocol, hostPort: number): boolean {
    return this.db.prepare('DELETE FROM exposures WHERE protocol = ? AND host_port = ?').run(protocol, hostPort).changes === 1;
  }

  // Volumes

  listVolumes(): VolumeRow[] {
    return this.db.prepare('SELECT * FROM volumes ORDER BY name').all() as VolumeRow[];
  }

  findVolume(name: string): VolumeRow | undefined {
    return this.db.prepare('SELECT * FROM volumes WHERE name = ?').get(name) as VolumeRow | undefined;
  }

  getVolumeById(id: string): VolumeRow | undefined {
    return this.db.prepare('SELECT * FROM volumes WHERE id = ?').get(id) as VolumeRow | undefined;
  }

  /** Returns a VM's volumes, boot volume first, then data volumes by name: the order QEMU gets. */
  volumesOfVm(vmId: string): VolumeRow[] {
    return this.db.prepare(`SELECT * FROM volumes WHERE vm_id = ? ORDER BY role = 'boot' DESC, name`).all(vmId) as VolumeRow[];
  }

  insertVolume(volume: Omit<VolumeRow, 'created_at' | 'updated_at' | 'state_message'>): void {
    const at = this.timestamp();
    this.db.prepare(`INSERT INTO volumes (id, name, type, size_bytes, state, state_message, vm_id, role, boot_image, ssh, created_at, updated_at)
      VALUES (@id, @name, @type, @size_bytes, @state, NULL, @vm_id, @role, @boot_image, @ssh, @at, @at)`).run({ ...volume, at });
  }

  /** Marks a volume busy for one operation; false when it is not ready (another operation won). */
  claimVolume(id: string, options: { fromError?: boolean } = {}): boolean {
    const states = options.fromError ? `('ready', 'error')` : `('ready')`;
    const result = this.db.prepare(`UPDATE volumes SET state = 'busy', state_message = NULL, updated_at = ? WHERE id = ? AND state IN ${states}`)
      .run(this.timestamp(), id);
    return result.changes === 1;
  }

  setVolumeState(id: string, state: VolumeState, message: string | null = null): void {
    this.db.prepare('UPDATE volumes SET state = ?, state_message = ?, updated_at = ? WHERE id = ?')
      .run(state, message, this.timestamp(), id);
  }

  setVolumeSize(id: string, sizeBytes: number): void {
    this.db.prepare('UPDATE volumes SET size_bytes = ?, updated_at = ? WHERE id = ?').run(sizeBytes, this.timestamp(), id);
  }

  setVolumeAttachment(id: string, vmId: string | null, role: 'boot' | 'data' | null): void {
    this.db.prepare('UPDATE volumes SET vm_id = ?, role = ?, updated_at = ? WHERE id = ?').run(vmId, role, this.timestamp(), id);
  }

  deleteVolume(id: string): void {
    this.db.prepare('DELETE FROM volumes WHERE id = ?').run(id);
  }

  // Operations (the intent journal)

  beginOperation(kind: string, targets: { vmId?: string; volumeId?: string }, data: Record<string, unknown>): number {
    const at = this.timestamp();
    const result = this.db.prepare(`INSERT INTO operations (kind, state, step, vm_id, volume_id, data, created_at, updated_at)
      VALUES (?, 'running', 'recorded', ?, ?, ?, ?, ?)`)
      .run(kind, targets.vmId ?? null, targets.volumeId ?? null, JSON.stringify(data), at, at);
    return Number(result.lastInsertRowid);
  }

  setOperationStep(id: number, step: string): void {
    this.db.prepare('UPDATE operations SET step = ?, updated_at = ? WHERE id = ?').run(step, this.timestamp(), id);
  }

  setOperationChild(id: number, pid: number | null): void {
    this.db.prepare('UPDATE operations SET child_pid = ?, updated_at = ? WHERE id = ?').run(pid, this.timestamp(), id);
  }

  finishOperation(id: number, state: Exclude<OperationState, 'running'>, error: string | null = null): void {
    this.db.prepare('UPDATE operations SET state = ?, error = ?, child_pid = NULL, updated_at = ? WHERE id = ?')
      .run(state, error, this.timestamp(), id);
  }

  runningOperations(): OperationRow[] {
    return this.db.prepare(`SELECT * FROM operations WHERE state = 'running' ORDER BY id`).all() as OperationRow[];
  }

  getOperation(id: number): OperationRow | undefined {
    return this.db.prepare('SELECT * FROM operations WHERE id = ?').get(id) as OperationRow | undefined;
  }

  // Audit log

  addAudit(entry: Omit<AuditEntry, 'id' | 'time'>): void {
    this.db.prepare('INSERT INTO audit (time, actor, action, target, result, details, error) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(this.timestamp(), entry.actor, entry.action, entry.target, entry.result, JSON.stringify(entry.details), entry.error);
  }

  listAudit(filter: { limit: number; action?: string; target?: string }): AuditEntry[] {
    const clauses: string[] = [];
    const params: unknown[] = [];
    if (filter.action) { clauses.push('action = ?'); params.push(filter.action); }
    if (filter.target) { clauses.push('target = ?'); params.push(filter.target); }
    const where = clauses.length > 0 ? `WHERE ${clauses.join(' AND ')}` : '';
    const rows = this.db.prepare(`SELECT * FROM audit ${where} ORDER BY id DESC LIMIT ?`).all(...params, filter.limit) as
      (Omit<AuditEntry, 'details'> & { details: string })[];
    return rows.map((row) => ({ ...row, details: JSON.parse(row.details) as Record<string, unknown> }));
  }
}
