import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestHost } from '../helpers/host.js';

interface VmJson { name: string; status: string; ip: string; network: string; ports: { host_port: number; vm_port: number; protocol: string }[] }
interface NetworkJson { name: string; subnet: string; bridge: string; vm_count: number }

/** The default bridge address: the daemon gives sistemo0 the first address of 10.200.0.0/16. */
const defaultBridgeAddress = '10.200.0.1';

/** Returns whether a TCP connection from inside a VM to IP:PORT opens within 5 s. */
async function vmConnects(host: TestHost, vm: string, ip: string, port: number): Promise<boolean> {
  // The Debian image has neither ping nor nc, so bash's /dev/tcp opens the connection.
  const result = await host.cli('vm', 'exec', vm, '--', 'timeout', '5', 'bash', '-c', `exec 3<>/dev/tcp/${ip}/${port}`);
  return result.code === 0;
}

/** Reads the first 7 bytes that ADDRESS:PORT sends, from inside the namespace, or '' when nothing replies. */
async function banner(host: TestHost, address: string, port: number): Promise<string> {
  const result = await host.inNetns(['timeout', '5', 'bash', '-c', `exec 3<>/dev/tcp/${address}/${port} && head -c 7 <&3`]);
  return result.code === 0 ? result.stdout : '';
}

async function ruleset(host: TestHost): Promise<string> {
  return (await host.inNetns(['nft', 'list', 'table', 'ip', 'sistemo'])).stdout;
}

async function status(host: TestHost, vm: string): Promise<VmJson> {
  return JSON.parse(await host.ok('vm', 'status', vm, '-o', 'json')) as VmJson;
}

test('named networks and exposed ports on real Debian VMs', { timeout: 15 * 60_000 }, async (t) => {
  const host = await TestHost.create({ withImage: true });
  try {
    await host.startDaemon();

    let prod: NetworkJson | undefined;
    await t.test('network create picks a free subnet and rejects overlaps', async () => {
      await host.ok('network', 'create', 'prod');
      const networks = JSON.parse(await host.ok('network', 'list', '-o', 'json')) as NetworkJson[];
      assert.deepEqual(networks.map((network) => network.name), ['default', 'prod']);
      prod = networks[1];
      assert.equal(prod?.subnet, '10.201.0.0/24');
      const links = await host.inNetns(['ip', '-o', 'link', 'show', 'dev', prod?.bridge ?? '']);
      assert.equal(links.code, 0);

      const overlap = await host.cli('network', 'create', 'dev', '--subnet', '10.201.0.0/25');
      assert.equal(overlap.code, 1);
      assert.match(overlap.stderr, /overlaps 10\.201\.0\.0\/24 of network "prod"/);
      const overlapDefault = await host.cli('network', 'create', 'dev', '--subnet', '10.200.9.0/24');
      assert.equal(overlapDefault.code, 1);
      const tooSmall = await host.cli('network', 'create', 'dev', '--subnet', '10.202.0.0/30');
      assert.equal(tooSmall.code, 2);
      assert.match(tooSmall.stderr, /too small/);
      assert.equal((JSON.parse(await host.ok('network', 'list', '-o', 'json')) as NetworkJson[]).length, 2);
    });

    await t.test('deploy puts two VMs on prod and one on the default network', async () => {
      // One boot at a time: three parallel TCG boots on 2 busy cores can miss the sshd timeout.
      await host.ok('vm', 'deploy', 'debian', '--name', 'a', '--network', 'prod', '--memory', '384M', '--expose', '2222:22');
      await host.ok('vm', 'deploy', 'debian', '--name', 'b', '--network', 'prod', '--memory', '384M');
      await host.ok('vm', 'deploy', 'debian', '--name', 'c', '--memory', '384M');
      const a = await status(host, 'a');
      assert.equal(a.network, 'prod');
      assert.match(a.ip, /^10\.201\.0\./);
      assert.deepEqual(a.ports, [{ host_port: 2222, vm_port: 22, protocol: 'tcp' }]);
      assert.equal((await status(host, 'c')).network, 'default');
      const shown = await host.ok('vm', 'status', 'a');
      assert.match(shown, /Network:\s+prod/);
      assert.match(shown, /Ports:\s+2222->22\/tcp/);
    });

    await t.test('VMs on prod reach each other but not the default network', async () => {
      const [a, b, c] = await Promise.all([status(host, 'a'), status(host, 'b'), status(host, 'c')]);
      assert.equal(await vmConnects(host, 'a', b.ip, 22), true, 'a reaches b');
      assert.equal(await vmConnects(host, 'b', a.ip, 22), true, 'b reaches a');
      assert.equal(await vmConnects(host, 'c', a.ip, 22), false, 'c must not reach a');
      assert.equal(await vmConnects(host, 'a', c.ip, 22), false, 'a must not reach c');
    });

    await t.test('the exposed port answers on loopback and the bridge address', async () => {
      assert.equal(await banner(host, '127.0.0.1', 2222), 'SSH-2.0');
      assert.equal(await banner(host, defaultBridgeAddress, 2222), 'SSH-2.0');
    });

    await t.test('bad exposures and a busy network delete are rejected', async () => {
      const duplicate = await host.cli('vm', 'expose', 'b', '--port', '2222:22');
      assert.equal(duplicate.code, 1);
      assert.match(duplicate.stderr, /VM "a" already exposes it/);
      const outOfRange = await host.cli('vm', 'expose', 'b', '--port', '70000');
      assert.equal(outOfRange.code, 2);
      assert.match(outOfRange.stderr, /out of range/);
      const protocol = await host.cli('vm', 'expose', 'b', '--port', '2223:22', '--protocol', 'sctp');
      assert.equal(protocol.code, 2);
      assert.match(protocol.stderr, /use tcp or udp/);
      // The daemon's own HTTP port is held by a host process.
      const busy = await host.cli('vm', 'expose', 'b', '--port', '7777:22');
      assert.equal(busy.code, 1);
      assert.match(busy.stderr, /already uses it/);
      assert.deepEqual((await status(host, 'b')).ports, []);
      const deleteBusy = await host.cli('network', 'delete', 'prod');
      assert.equal(deleteBusy.code, 1);
      assert.match(deleteBusy.stderr, /"a", "b"/);
    });

    await t.test('the rule goes with stop and comes back with start', async () => {
      await host.ok('vm', 'stop', 'a');
      assert.equal(await banner(host, '127.0.0.1', 2222), '');
      assert.doesNotMatch(await ruleset(host), /dport 2222/);
      await host.ok('vm', 'start', 'a');
      assert.equal(await banner(host, '127.0.0.1', 2222), 'SSH-2.0');
    });

    await t.test('a daemon restart after SIGKILL rebuilds the table', async () => {
      await host.killDaemon();
      // A lost rule and a stale one, as a crash or a hand edit could leave them.
      await host.inNetns(['nft', 'flush', 'chain', 'ip', 'sistemo', 'output']);
      await host.inNetns(['nft', 'add', 'rule', 'ip', 'sistemo', 'prerouting', 'tcp', 'dport', '4444', 'dnat', 'to', '10.201.0.99:22']);
      await host.startDaemon();
      const rules = await ruleset(host);
      assert.doesNotMatch(rules, /dport 4444/);
      assert.equal(await banner(host, '127.0.0.1', 2222), 'SSH-2.0');
      assert.equal(await banner(host, defaultBridgeAddress, 2222), 'SSH-2.0');
    });

    await t.test('delete removes the rule and then the network', async () => {
      const a = await status(host, 'a');
      await host.ok('vm', 'delete', 'a', '-y');
      const rules = await ruleset(host);
      assert.doesNotMatch(rules, /dport 2222/);
      assert.ok(!rules.includes(`${a.ip}:22`), rules);
      await host.ok('vm', 'delete', 'b', '-y');
      await host.ok('network', 'delete', 'prod');
      const links = await host.inNetns(['ip', '-o', 'link', 'show', 'dev', prod?.bridge ?? '']);
      assert.notEqual(links.code, 0);
      const history = await host.ok('history', '--action', 'vm.expose', '-o', 'json');
      assert.ok((JSON.parse(history) as unknown[]).length >= 4, history);
    });
  } finally {
    await host.cleanup();
  }
});
