import type { NetworkRow, VmRow } from '../db/store.js';
import { SistemoError, conflict, invalid, notFound, wrongState } from '../errors.js';
import { cidrText, contains, firstFreeSubnet, overlaps, parseCidr, type Cidr } from '../network/cidr.js';
import { renderRuleset, type FirewallState } from '../network/firewall.js';
import { bridgeNameFor, isHostNetwork } from '../network/network.js';
import { mappingText, parseHostPort, parsePortMapping, parseProtocol, type PortMapping } from '../network/ports.js';
import { newId } from '../paths.js';
import type { Actor, Context } from './context.js';
import { audited } from './journal.js';
import { requireVm } from './lookup.js';
import { validateName } from './names.js';
import { listVmViews, vmView, type VmView } from './views.js';

/** The name that `--network` uses for the default bridge; it has no row in the database. */
export const defaultNetworkName = 'default';

/** Named networks without `--subnet` get the lowest free /24 of this pool. */
export const subnetPool = '10.201.0.0/16';
export const allocatedPrefix = 24;

/**
 * The prefix lengths a named network may have. /29 leaves the gateway and five VMs; /16 is
 * the size of the default network, and larger subnets would make address allocation scan
 * millions of addresses.
 */
export const minSubnetPrefix = 16;
export const maxSubnetPrefix = 29;

const privateRanges = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'].map(parseCidr);

/** The network a VM is on: the default bridge (id null) or a named network. */
export interface VmNetwork {
  id: string | null;
  name: string;
  bridge: string;
  subnet: Cidr;
}

/** The JSON shape of a network in the API and in `network list -o json`. */
export interface NetworkView {
  name: string;
  subnet: string;
  bridge: string;
  vm_count: number;
}

/** The JSON shape of one exposed port. */
export interface PortView {
  host_port: number;
  vm_port: number;
  protocol: 'tcp' | 'udp';
}

/** A VM as the API returns it: the VM view plus its network and exposed ports. */
export interface VmDetails extends VmView {
  network: string;
  ports: PortView[];
}

export function defaultNetwork(context: Context): VmNetwork {
  return { id: null, name: defaultNetworkName, bridge: context.bridge, subnet: context.subnet };
}

function fromRow(row: NetworkRow): VmNetwork {
  return { id: row.id, name: row.name, bridge: row.bridge, subnet: parseCidr(row.subnet) };
}

export function networkOfVm(context: Context, vm: VmRow): VmNetwork {
  if (vm.network_id === null) return defaultNetwork(context);
  const row = context.store.getNetworkById(vm.network_id);
  if (!row) throw new SistemoError('internal', `VM "${vm.name}" is on network ${vm.network_id}, which has no record`);
  return fromRow(row);
}

/** Returns the network that `--network NAME` names; no name or `default` is the default bridge. */
export function resolveNetwork(context: Context, name: string | undefined): VmNetwork {
  if (name === undefined || name === defaultNetworkName) return defaultNetwork(context);
  validateName(name, 'network');
  const row = context.store.findNetwork(name);
  if (!row) throw notFound(`Network "${name}" not found: list networks with sistemo network list, or create it with sistemo network create ${name}`);
  return fromRow(row);
}

/** Returns the VM view with its network and exposed ports. */
export function vmDetails(context: Context, vmId: string): VmDetails {
  const vm = context.store.getVmById(vmId);
  if (!vm) throw new Error(`VM ${vmId} vanished`);
  return withNetwork(context, vm, vmView(vm, context.store.volumesOfVm(vmId)));
}

function withNetwork(context: Context, vm: VmRow, view: VmView): VmDetails {
  const ports = context.store.exposuresOfVm(vm.id).map((row) => ({ host_port: row.host_port, vm_port: row.vm_port, protocol: row.protocol }));
  return { ...view, network: networkOfVm(context, vm).name, ports };
}

export function listVmDetails(context: Context): VmDetails[] {
  const rows = new Map(context.store.listVms().map((vm) => [vm.id, vm]));
  return listVmViews(context.store).flatMap((view) => {
    const vm = rows.get(view.id);
    return vm ? [withNetwork(context, vm, view)] : [];
  });
}

export function listNetworks(context: Context): NetworkView[] {
  const counts = context.store.vmCountsByNetwork();
  const named = context.store.listNetworks().map((row) => ({ name: row.name, subnet: row.subnet, bridge: row.bridge, vm_count: counts.get(row.id) ?? 0 }));
  return [{ name: defaultNetworkName, subnet: cidrText(context.subnet), bridge: context.bridge, vm_count: counts.get(null) ?? 0 }, ...named];
}

/**
 * Picks the subnet of a new network: the requested one if it is a private IPv4 subnet of /16
 * to /29 that overlaps none of `taken`, else the lowest free /24 of `pool`.
 */
export function chooseSubnet(requested: string | undefined, taken: readonly { name: string; subnet: Cidr }[], pool: Cidr = parseCidr(subnetPool)): Cidr {
  if (requested === undefined) {
    const free = firstFreeSubnet(pool, allocatedPrefix, taken.map((other) => other.subnet));
    if (!free) throw conflict(`Cannot pick a subnet: every /${allocatedPrefix} of ${cidrText(pool)} is in use, pass one with --subnet`);
    return free;
  }
  const subnet = parseCidr(requested);
  if (subnet.prefix > maxSubnetPrefix) {
    throw invalid(`Invalid subnet "${requested}": it is too small, use a prefix of /${minSubnetPrefix} to /${maxSubnetPrefix}, such as 10.201.7.0/24`);
  }
  if (subnet.prefix < minSubnetPrefix) {
    throw invalid(`Invalid subnet "${requested}": it is too large, use a prefix of /${minSubnetPrefix} to /${maxSubnetPrefix}, such as 10.201.7.0/24`);
  }
  if (!privateRanges.some((range) => contains(range, subnet))) {
    throw invalid(`Invalid subnet "${requested}": use a private range (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)`);
  }
  const clash = taken.find((other) => overlaps(subnet, other.subnet));
  if (clash) throw conflict(`Cannot use subnet ${requested}: it overlaps ${cidrText(clash.subnet)} of network "${clash.name}"`);
  return subnet;
}

function takenSubnets(context: Context): { name: string; subnet: Cidr }[] {
  return [
    { name: defaultNetworkName, subnet: context.subnet },
    ...context.store.listNetworks().map((row) => ({ name: row.name, subnet: parseCidr(row.subnet) })),
  ];
}

function networkView(context: Context, name: string): NetworkView {
  const view = listNetworks(context).find((network) => network.name === name);
  if (!view) throw new Error(`network ${name} vanished`);
  return view;
}

/**
 * Creates a named network: its row, its bridge, and the firewall rules that isolate it. On a
 * failure after the row exists, the bridge and the row are removed again. A crash in between
 * leaves a row without a bridge, which the next daemon start repairs.
 */
export async function createNetwork(context: Context, request: { name: string; subnet?: string }, actor: Actor): Promise<NetworkView> {
  return audited(context, { actor, action: 'network.create', target: request.name, details: { subnet: request.subnet ?? null } }, async (details) => {
    validateName(request.name, 'network');
    if (request.name === defaultNetworkName) throw conflict(`Cannot create network "${defaultNetworkName}": it is the name of the default bridge ${context.bridge}`);
    const id = newId('n');
    const bridge = bridgeNameFor(id);
    const subnet = context.store.transaction(() => {
      if (context.store.findNetwork(request.name)) throw conflict(`Cannot create network "${request.name}": a network with that name exists`);
      const chosen = chooseSubnet(request.subnet, takenSubnets(context));
      context.store.insertNetwork({ id, name: request.name, subnet: cidrText(chosen), bridge });
      return chosen;
    });
    details.subnet = cidrText(subnet);
    details.bridge = bridge;
    try {
      await context.network.ensureBridge(bridge, subnet);
      await syncFirewall(context);
    } catch (error) {
      context.store.deleteNetwork(id);
      await removeBridge(context, bridge).catch((bridgeError: unknown) => context.log.error({ network: request.name, bridge, err: bridgeError }, 'bridge removal failed'));
      await syncFirewall(context).catch((syncError: unknown) => context.log.error({ network: request.name, err: syncError }, 'firewall rebuild failed'));
      throw error;
    }
    context.log.info({ network: request.name, subnet: cidrText(subnet), bridge }, 'network created');
    return networkView(context, request.name);
  });
}

async function removeBridge(context: Context, bridge: string): Promise<void> {
  if (isHostNetwork(context.network)) await context.network.deleteBridge(bridge);
}

/** Deletes a named network. It is rejected while any VM, running or stopped, is on it. */
export async function deleteNetwork(context: Context, name: string, actor: Actor): Promise<void> {
  await audited(context, { actor, action: 'network.delete', target: name }, async (details) => {
    validateName(name, 'network');
    if (name === defaultNetworkName) throw conflict(`Cannot delete network "${defaultNetworkName}": it is the default bridge ${context.bridge}`);
    const row = context.store.transaction(() => {
      const found = context.store.findNetwork(name);
      if (!found) throw notFound(`Network "${name}" not found: list networks with sistemo network list`);
      const vms = context.store.listVms().filter((vm) => vm.network_id === found.id).map((vm) => vm.name);
      if (vms.length > 0) {
        throw wrongState(`Cannot delete network "${name}": VMs ${vms.map((vm) => `"${vm}"`).join(', ')} are on it, delete them first with sistemo vm delete`);
      }
      context.store.deleteNetwork(found.id);
      return found;
    });
    details.subnet = row.subnet;
    details.bridge = row.bridge;
    // The row is gone first: a crash before the bridge is removed leaves a bridge without a
    // row, which the next daemon start deletes.
    await syncFirewall(context);
    await removeBridge(context, row.bridge);
    context.log.info({ network: name, bridge: row.bridge }, 'network deleted');
  });
}

/**
 * Checks that host ports can be claimed: no other VM has them, and no host process uses them.
 * Runs before anything is created; the database's primary key settles a race between two
 * requests.
 */
export async function checkPortsFree(context: Context, mappings: readonly PortMapping[], vmName: string): Promise<void> {
  const seen = new Set<string>();
  for (const mapping of mappings) {
    const key = `${mapping.protocol}/${mapping.hostPort}`;
    if (seen.has(key)) throw invalid(`Invalid port "${mapping.hostPort}": host port ${key} is listed twice`);
    seen.add(key);
    checkPortUnclaimed(context, mapping, vmName);
    if (isHostNetwork(context.network) && (await context.network.portInUse(mapping.hostPort, mapping.protocol))) {
      throw conflict(`Cannot expose host port ${mapping.hostPort}/${mapping.protocol} for VM "${vmName}": a process on the host already uses it, pick another host port such as ${mapping.hostPort + 1}:${mapping.vmPort}`);
    }
  }
}

/** Rejects a host port that another VM has claimed. Call it inside the claiming transaction too. */
export function checkPortUnclaimed(context: Context, mapping: PortMapping, vmName: string): void {
  const owner = context.store.findExposure(mapping.protocol, mapping.hostPort);
  if (!owner) return;
  const ownerName = context.store.getVmById(owner.vm_id)?.name ?? owner.vm_id;
  throw conflict(`Cannot expose host port ${mapping.hostPort}/${mapping.protocol} for VM "${vmName}": VM "${ownerName}" already exposes it, unexpose it there first`);
}

/** Forwards a host port to a VM. A stopped VM keeps the claim and gets the rule at its next start. */
export async function exposePort(context: Context, vmName: string, request: { port: string; protocol?: string }, actor: Actor): Promise<VmDetails> {
  return audited(context, { actor, action: 'vm.expose', target: vmName, details: { port: request.port, protocol: request.protocol ?? 'tcp' } }, async (details) => {
    const mapping = parsePortMapping(request.port, parseProtocol(request.protocol));
    details.mapping = mappingText(mapping);
    const vm = requireVm(context, vmName);
    if (vm.status === 'deleting') throw wrongState(`Cannot expose a port of VM "${vmName}": it is being deleted`);
    await checkPortsFree(context, [mapping], vmName);
    context.store.transaction(() => {
      checkPortUnclaimed(context, mapping, vmName);
      context.store.insertExposure({ protocol: mapping.protocol, host_port: mapping.hostPort, vm_id: vm.id, vm_port: mapping.vmPort });
    });
    try {
      await syncFirewall(context);
    } catch (error) {
      context.store.deleteExposure(mapping.protocol, mapping.hostPort);
      throw error;
    }
    return vmDetails(context, vm.id);
  });
}

/** Removes the forward of a host port from a VM, and its rule if the VM runs. */
export async function unexposePort(context: Context, vmName: string, request: { port: string; protocol?: string }, actor: Actor): Promise<VmDetails> {
  return audited(context, { actor, action: 'vm.unexpose', target: vmName, details: { port: request.port, protocol: request.protocol ?? 'tcp' } }, async () => {
    const hostPort = parseHostPort(request.port);
    const protocol = parseProtocol(request.protocol);
    const vm = requireVm(context, vmName);
    const existing = context.store.findExposure(protocol, hostPort);
    if (!existing || existing.vm_id !== vm.id) {
      throw notFound(`Cannot unexpose port ${hostPort}/${protocol} of VM "${vmName}": it does not expose that host port, see sistemo vm status ${vmName}`);
    }
    context.store.deleteExposure(protocol, hostPort);
    await syncFirewall(context);
    return vmDetails(context, vm.id);
  });
}

/** Builds the firewall state from the database: every network, and exposures of running VMs. */
export function desiredFirewall(context: Context): FirewallState {
  const networks = [
    { bridge: context.bridge, subnet: cidrText(context.subnet) },
    ...context.store.listNetworks().map((row) => ({ bridge: row.bridge, subnet: row.subnet })),
  ];
  const vms = new Map(context.store.listVms().map((vm) => [vm.id, vm]));
  const exposures = context.store.listExposures().flatMap((row) => {
    const vm = vms.get(row.vm_id);
    if (!vm || vm.status !== 'running' || !vm.ip) return [];
    return [{ protocol: row.protocol, hostPort: row.host_port, vmIp: vm.ip, vmPort: row.vm_port }];
  });
  return { nat: context.config.nat, networks, exposures };
}

const firewallQueues = new WeakMap<Context, Promise<void>>();

/**
 * Replaces Sistemo's nftables table with the rules that the database records now require. Calls run one
 * at a time, and each reads the database when its turn comes, so the last one to finish
 * always applies the newest state.
 */
export function syncFirewall(context: Context): Promise<void> {
  const network = context.network;
  if (!isHostNetwork(network)) return Promise.resolve();
  const previous = firewallQueues.get(context) ?? Promise.resolve();
  const next = previous.catch(() => undefined).then(async () => {
    const state = desiredFirewall(context);
    const bridges = state.networks.map((entry) => entry.bridge);
    await network.applyFirewall(renderRuleset(state), {
      forwarding: state.nat || state.exposures.length > 0,
      localnetBridges: state.exposures.length > 0 ? bridges : [],
    });
    context.log.debug({ exposures: state.exposures.length, networks: bridges.length }, 'firewall rules applied');
  });
  firewallQueues.set(context, next);
  return next;
}

/**
 * Syncs the firewall after a VM changed state. The VM change is kept even if this fails, so
 * the failure is only logged, and the next change or daemon start applies the rules again.
 */
export async function syncFirewallAfter(context: Context, vmName: string): Promise<void> {
  try {
    await syncFirewall(context);
  } catch (error) {
    context.log.error({ vm: vmName, err: error }, 'firewall rules were not updated after a VM change');
  }
}

/**
 * Makes bridges and rules match the database at daemon start: every named network gets its
 * bridge, bridges of deleted networks are removed, and the nftables table is rebuilt. Only
 * Sistemo's own bridges (`sistemo0` and `smn` + network id) and table are touched.
 */
export async function restoreHostNetwork(context: Context): Promise<void> {
  await context.network.ensureBridge(context.bridge, context.subnet);
  const rows = context.store.listNetworks();
  for (const row of rows) await context.network.ensureBridge(row.bridge, parseCidr(row.subnet));
  if (isHostNetwork(context.network)) {
    const known = new Set(rows.map((row) => row.bridge));
    for (const bridge of await context.network.namedBridges()) {
      if (known.has(bridge)) continue;
      context.log.warn({ bridge }, 'removing the bridge of a deleted network');
      await context.network.deleteBridge(bridge);
    }
  }
  await syncFirewall(context);
}
