import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  createNetwork, deleteNetwork, desiredFirewall, exposePort, listNetworks, restoreHostNetwork, unexposePort,
} from '../../src/domain/networks.js';
import { deleteVm, deployVm, startVm, stopVm } from '../../src/domain/vms.js';
import type { Cidr } from '../../src/network/cidr.js';
import { cidrText } from '../../src/network/cidr.js';
import type { FirewallSettings, HostNetwork } from '../../src/network/network.js';
import type { Protocol } from '../../src/network/ports.js';
import { seedVm, withTestBed, type TestBed } from '../fakes/context.js';
import { rejection } from '../fakes/errors.js';

const quiet = () => {};
const actor = 'test';

/** A HostNetwork that keeps bridges, taps and the last ruleset in memory. */
class FakeHostNetwork implements HostNetwork {
  readonly bridges = new Map<string, string>();
  readonly taps = new Map<string, string>();
  readonly busyPorts = new Set<string>();
  rulesets: string[] = [];
  settings: FirewallSettings | undefined;
  bridgeFailure: Error | undefined;

  async ensureBridge(bridge: string, subnet: Cidr): Promise<void> {
    if (this.bridgeFailure) throw this.bridgeFailure;
    this.bridges.set(bridge, cidrText(subnet));
  }

  async createTap(tap: string, bridge: string): Promise<void> {
    if (!this.bridges.has(bridge)) throw new Error(`bridge ${bridge} does not exist`);
    this.taps.set(tap, bridge);
  }

  async deleteTap(tap: string): Promise<void> {
    this.taps.delete(tap);
  }

  async tapExists(tap: string): Promise<boolean> {
    return this.taps.has(tap);
  }

  async applyNat(): Promise<void> {
    throw new Error('applyNat is replaced by applyFirewall');
  }

  async deleteBridge(bridge: string): Promise<void> {
    this.bridges.delete(bridge);
  }

  async namedBridges(): Promise<string[]> {
    return [...this.bridges.keys()].filter((bridge) => bridge.startsWith('smn'));
  }

  async applyFirewall(ruleset: string, settings: FirewallSettings): Promise<void> {
    this.rulesets.push(ruleset);
    this.settings = settings;
  }

  async portInUse(port: number, protocol: Protocol): Promise<boolean> {
    return this.busyPorts.has(`${port}/${protocol}`);
  }

  get ruleset(): string {
    return this.rulesets.at(-1) ?? '';
  }
}

async function withHostNetwork(work: (bed: TestBed, network: FakeHostNetwork) => Promise<void>): Promise<void> {
  await withTestBed(async (bed) => {
    const network = new FakeHostNetwork();
    network.bridges.set(bed.context.bridge, bed.context.config.bridge_subnet);
    bed.context.network = network;
    await work(bed, network);
  });
}

function rowCount(bed: TestBed, table: 'networks' | 'exposures' | 'vms'): number {
  return (bed.store.db.prepare(`SELECT COUNT(*) AS count FROM ${table}`).get() as { count: number }).count;
}

describe('createNetwork', () => {
  test('create records the network and its bridge', () => withHostNetwork(async (bed, network) => {
    const view = await createNetwork(bed.context, { name: 'prod' }, actor);
    assert.equal(view.subnet, '10.201.0.0/24');
    assert.match(view.bridge, /^smn[0-9a-f]{12}$/);
    assert.equal(network.bridges.get(view.bridge), '10.201.0.0/24');
    assert.ok(network.ruleset.includes(`iifname "${view.bridge}" oifname { "sistemo0" } drop`), network.ruleset);
    assert.equal(bed.store.listAudit({ limit: 1 })[0]?.action, 'network.create');
  }));

  test('create rejects an overlapping subnet', () => withHostNetwork(async (bed, network) => {
    await createNetwork(bed.context, { name: 'prod', subnet: '10.201.0.0/24' }, actor);
    const error = await rejection(createNetwork(bed.context, { name: 'dev', subnet: '10.201.0.128/25' }, actor));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /overlaps 10\.201\.0\.0\/24 of network "prod"/);
    assert.equal(rowCount(bed, 'networks'), 1);
    assert.equal(network.bridges.size, 2);
  }));

  test('create rejects a duplicate name and default', () => withHostNetwork(async (bed) => {
    await createNetwork(bed.context, { name: 'prod' }, actor);
    assert.equal((await rejection(createNetwork(bed.context, { name: 'prod' }, actor))).code, 'conflict');
    assert.equal((await rejection(createNetwork(bed.context, { name: 'default' }, actor))).code, 'conflict');
    assert.equal((await rejection(createNetwork(bed.context, { name: 'Prod_1' }, actor))).code, 'invalid_argument');
    assert.equal(rowCount(bed, 'networks'), 1);
  }));

  test('create leaves nothing when the bridge fails', () => withHostNetwork(async (bed, network) => {
    network.bridgeFailure = new Error('ip failed with exit code 2');
    await assert.rejects(createNetwork(bed.context, { name: 'prod' }, actor), /ip failed/);
    assert.equal(rowCount(bed, 'networks'), 0);
    assert.deepEqual(await network.namedBridges(), []);
    assert.equal(bed.store.listAudit({ limit: 1 })[0]?.result, 'failed');
  }));
});

describe('deleteNetwork', () => {
  test('delete refuses a network with a stopped VM', () => withHostNetwork(async (bed) => {
    await createNetwork(bed.context, { name: 'prod' }, actor);
    await deployVm(bed.context, { image: 'debian', name: 'db', network: 'prod' }, actor, quiet);
    await stopVm(bed.context, 'db', actor);
    const error = await rejection(deleteNetwork(bed.context, 'prod', actor));
    assert.equal(error.code, 'wrong_state');
    assert.match(error.message, /"db"/);
    assert.equal(rowCount(bed, 'networks'), 1);
  }));

  test('delete removes the row, bridge and rules', () => withHostNetwork(async (bed, network) => {
    const view = await createNetwork(bed.context, { name: 'prod' }, actor);
    await deleteNetwork(bed.context, 'prod', actor);
    assert.equal(rowCount(bed, 'networks'), 0);
    assert.equal(network.bridges.has(view.bridge), false);
    assert.ok(!network.ruleset.includes(view.bridge), network.ruleset);
  }));

  test('delete refuses default and unknown networks', () => withHostNetwork(async (bed) => {
    assert.equal((await rejection(deleteNetwork(bed.context, 'default', actor))).code, 'conflict');
    assert.equal((await rejection(deleteNetwork(bed.context, 'nope', actor))).code, 'not_found');
  }));
});

describe('deploy on a network', () => {
  test('deploy puts the VM on the network bridge', () => withHostNetwork(async (bed, network) => {
    const created = await createNetwork(bed.context, { name: 'prod', subnet: '10.201.7.0/24' }, actor);
    const view = await deployVm(bed.context, { image: 'debian', name: 'db', network: 'prod' }, actor, quiet);
    assert.equal(view.network, 'prod');
    assert.equal(view.ip, '10.201.7.2');
    const vm = bed.store.findVm('db');
    assert.equal(network.taps.get(vm?.tap ?? ''), created.bridge);
    const spec = bed.engine.started[0];
    assert.equal(spec?.network.gateway, '10.201.7.1');
    assert.equal(spec?.network.prefix, 24);
    assert.deepEqual(listNetworks(bed.context).map((entry) => [entry.name, entry.vm_count]), [['default', 0], ['prod', 1]]);
  }));

  test('deploy with default uses the default bridge', () => withHostNetwork(async (bed, network) => {
    const view = await deployVm(bed.context, { image: 'debian', name: 'web', network: 'default' }, actor, quiet);
    assert.equal(view.network, 'default');
    assert.equal(network.taps.get(bed.store.findVm('web')?.tap ?? ''), 'sistemo0');
  }));

  test('deploy rejects an unknown network before creating anything', () => withHostNetwork(async (bed) => {
    const error = await rejection(deployVm(bed.context, { image: 'debian', name: 'web', network: 'nope' }, actor, quiet));
    assert.equal(error.code, 'not_found');
    assert.equal(rowCount(bed, 'vms'), 0);
  }));

  test('deploy exposes ports once the VM runs', () => withHostNetwork(async (bed, network) => {
    const view = await deployVm(bed.context, { image: 'debian', name: 'web', expose: ['8080:80', '2222:22'] }, actor, quiet);
    assert.deepEqual(view.ports.map((port) => port.host_port), [2222, 8080]);
    assert.match(network.ruleset, new RegExp(`tcp dport 8080 dnat to ${view.ip}:80`));
    assert.deepEqual(network.settings?.localnetBridges, ['sistemo0']);
  }));

  test('deploy rejects a claimed host port and leaves nothing', () => withHostNetwork(async (bed) => {
    await deployVm(bed.context, { image: 'debian', name: 'web', expose: ['8080'] }, actor, quiet);
    const error = await rejection(deployVm(bed.context, { image: 'debian', name: 'api', expose: ['8080:80'] }, actor, quiet));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /VM "web" already exposes it/);
    assert.equal(bed.store.findVm('api'), undefined);
    assert.equal(bed.store.findVolume('api-root'), undefined);
  }));
});

describe('exposePort', () => {
  test('expose of a stopped VM is recorded without a rule', () => withHostNetwork(async (bed, network) => {
    seedVm(bed, 'web');
    const view = await exposePort(bed.context, 'web', { port: '8080:80' }, actor);
    assert.deepEqual(view.ports, [{ host_port: 8080, vm_port: 80, protocol: 'tcp' }]);
    assert.doesNotMatch(network.ruleset, /dnat to/);
    assert.equal(bed.store.listAudit({ limit: 1 })[0]?.action, 'vm.expose');
  }));

  test('exposure rules follow start, stop and delete', () => withHostNetwork(async (bed, network) => {
    const { vm } = seedVm(bed, 'web');
    await exposePort(bed.context, 'web', { port: '8080:80' }, actor);
    await startVm(bed.context, 'web', actor, quiet);
    assert.match(network.ruleset, new RegExp(`tcp dport 8080 dnat to ${vm.ip}:80`));
    await stopVm(bed.context, 'web', actor);
    assert.doesNotMatch(network.ruleset, /dnat to/);
    await startVm(bed.context, 'web', actor, quiet);
    assert.match(network.ruleset, /dport 8080/);
    await deleteVm(bed.context, 'web', { preserve: false }, actor);
    assert.doesNotMatch(network.ruleset, /dport 8080/);
    assert.equal(rowCount(bed, 'exposures'), 0);
  }));

  test('expose rejects a port a host process uses', () => withHostNetwork(async (bed, network) => {
    seedVm(bed, 'web');
    network.busyPorts.add('7777/tcp');
    const error = await rejection(exposePort(bed.context, 'web', { port: '7777' }, actor));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /a process on the host already uses it/);
    assert.equal(rowCount(bed, 'exposures'), 0);
  }));

  test('expose rejects a duplicate host port', () => withHostNetwork(async (bed) => {
    seedVm(bed, 'web');
    seedVm(bed, 'api');
    await exposePort(bed.context, 'web', { port: '8080' }, actor);
    const error = await rejection(exposePort(bed.context, 'api', { port: '8080:80' }, actor));
    assert.equal(error.code, 'conflict');
    // The same number over UDP is another port.
    await exposePort(bed.context, 'api', { port: '8080', protocol: 'udp' }, actor);
    assert.equal(rowCount(bed, 'exposures'), 2);
  }));

  const rejected: [string, { port: string; protocol?: string }, RegExp][] = [
    ['a port out of range', { port: '70000' }, /out of range/],
    ['an unknown protocol', { port: '8080', protocol: 'sctp' }, /use tcp or udp/],
    ['garbage', { port: 'web' }, /number from 1 to 65535/],
  ];
  for (const [label, request, message] of rejected) {
    test(`expose rejects ${label}`, () => withHostNetwork(async (bed) => {
      seedVm(bed, 'web');
      const error = await rejection(exposePort(bed.context, 'web', request, actor));
      assert.equal(error.code, 'invalid_argument');
      assert.match(error.message, message);
      assert.equal(rowCount(bed, 'exposures'), 0);
    }));
  }

  test('unexpose removes the rule of a running VM', () => withHostNetwork(async (bed, network) => {
    seedVm(bed, 'web', { status: 'running' });
    await exposePort(bed.context, 'web', { port: '8080' }, actor);
    assert.match(network.ruleset, /dport 8080/);
    const view = await unexposePort(bed.context, 'web', { port: '8080' }, actor);
    assert.deepEqual(view.ports, []);
    assert.doesNotMatch(network.ruleset, /dport 8080/);
  }));

  test('unexpose rejects a port the VM does not expose', () => withHostNetwork(async (bed) => {
    seedVm(bed, 'web');
    seedVm(bed, 'api');
    await exposePort(bed.context, 'api', { port: '8080' }, actor);
    const error = await rejection(unexposePort(bed.context, 'web', { port: '8080' }, actor));
    assert.equal(error.code, 'not_found');
    assert.equal(rowCount(bed, 'exposures'), 1);
  }));
});

describe('desiredFirewall', () => {
  test('desiredFirewall lists exposures of running VMs only', () => withHostNetwork(async (bed) => {
    const { vm: running } = seedVm(bed, 'web', { status: 'running' });
    seedVm(bed, 'api');
    await exposePort(bed.context, 'web', { port: '8080:80' }, actor);
    await exposePort(bed.context, 'api', { port: '9090:90' }, actor);
    const state = desiredFirewall(bed.context);
    assert.deepEqual(state.exposures, [{ protocol: 'tcp', hostPort: 8080, vmIp: running.ip, vmPort: 80 }]);
    assert.equal(state.nat, bed.context.config.nat);
  }));

  test('restoreHostNetwork removes bridges of deleted networks', () => withHostNetwork(async (bed, network) => {
    const view = await createNetwork(bed.context, { name: 'prod' }, actor);
    network.bridges.set('smn0000000000ff', '10.201.99.0/24');
    network.bridges.delete(view.bridge);
    await restoreHostNetwork(bed.context);
    assert.equal(network.bridges.has('smn0000000000ff'), false);
    assert.equal(network.bridges.get(view.bridge), view.subnet);
    assert.ok(network.ruleset.includes(view.bridge));
  }));
});
