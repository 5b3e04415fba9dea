import { promises as fs } from 'node:fs';
import { CommandError, SistemoError } from '../errors.js';
import type { CommandRunner } from '../system/runner.js';
import { cidrText, gatewayOf, type Cidr } from './cidr.js';
import { nftTable, renderRuleset } from './firewall.js';
import { boundPorts, type Protocol } from './ports.js';

export { nftTable };

/** Linux limits interface names to 15 bytes (IFNAMSIZ is 16 with the final NUL). */
export const maxInterfaceNameBytes = 15;

export const defaultBridge = 'sistemo0';

/** Bridges of named networks: `smn` and the 12 hex digits of the network id. */
const namedBridgePattern = /^smn[0-9a-f]{12}$/;

/** Host network devices for VMs: the bridge, one tap per VM, and NAT. */
export interface Network {
  ensureBridge(bridge: string, subnet: Cidr): Promise<void>;
  createTap(tap: string, bridge: string): Promise<void>;
  deleteTap(tap: string): Promise<void>;
  tapExists(tap: string): Promise<boolean>;
  /** Makes the NAT rules match the setting: masquerade the subnet when on, no rules when off. */
  applyNat(enabled: boolean, bridge: string, subnet: Cidr): Promise<void>;
}

/** Host settings that go with a ruleset. */
export interface FirewallSettings {
  /** Turns on IPv4 forwarding, which NAT and exposures to other hosts need. It is never turned off. */
  forwarding: boolean;
  /** Bridges that get route_localnet, so the host reaches exposed ports at 127.0.0.1. */
  localnetBridges: readonly string[];
}

/**
 * The host side of named networks and exposed ports. LinuxNetwork implements it; the domain
 * skips firewall work for a Network without it (a test double of VM-only tests).
 */
export interface HostNetwork extends Network {
  deleteBridge(bridge: string): Promise<void>;
  /** Returns the bridges of named networks that exist on the host. */
  namedBridges(): Promise<string[]>;
  /** Replaces the whole Sistemo nftables table with `ruleset` in one transaction. */
  applyFirewall(ruleset: string, settings: FirewallSettings): Promise<void>;
  /** Returns whether a host process uses the port (a listening TCP socket, any bound UDP socket). */
  portInUse(port: number, protocol: Protocol): Promise<boolean>;
}

export function isHostNetwork(network: Network): network is HostNetwork {
  return 'applyFirewall' in network;
}

/** Returns the bridge of a named network. Interface names are at most 15 bytes. */
export function bridgeNameFor(networkId: string): string {
  const name = `smn${networkId.slice(1)}`;
  if (Buffer.byteLength(name) > maxInterfaceNameBytes || !namedBridgePattern.test(name)) {
    throw new SistemoError('internal', `Cannot name the bridge of network ${networkId}: "${name}" is not smn and 12 hex digits (at most ${maxInterfaceNameBytes} bytes)`);
  }
  return name;
}

export function tapNameFor(vmId: string): string {
  const name = `sm${vmId.slice(1)}`;
  if (Buffer.byteLength(name) > maxInterfaceNameBytes) throw new Error(`Tap name ${name} exceeds ${maxInterfaceNameBytes} bytes`);
  return name;
}

/** Drives iproute2, nft and sysctl. */
export class LinuxNetwork implements HostNetwork {
  constructor(private readonly runner: CommandRunner) {}

  private async linkExists(name: string): Promise<boolean> {
    try {
      await this.runner.run(['ip', '-o', 'link', 'show', 'dev', name]);
      return true;
    } catch (error) {
      if (error instanceof CommandError && error.exitCode !== null) return false;
      throw error;
    }
  }

  async ensureBridge(bridge: string, subnet: Cidr): Promise<void> {
    if (!(await this.linkExists(bridge))) {
      await this.runner.run(['ip', 'link', 'add', 'name', bridge, 'type', 'bridge']);
    }
    const address = `${gatewayOf(subnet)}/${subnet.prefix}`;
    const { stdout } = await this.runner.run(['ip', '-o', '-4', 'addr', 'show', 'dev', bridge]);
    if (!stdout.includes(` ${address} `)) {
      await this.runner.run(['ip', 'addr', 'replace', address, 'dev', bridge]);
    }
    await this.runner.run(['ip', 'link', 'set', 'dev', bridge, 'up']);
  }

  async createTap(tap: string, bridge: string): Promise<void> {
    if (!(await this.linkExists(tap))) {
      await this.runner.run(['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    }
    await this.runner.run(['ip', 'link', 'set', 'dev', tap, 'master', bridge]);
    await this.runner.run(['ip', 'link', 'set', 'dev', tap, 'up']);
  }

  async deleteTap(tap: string): Promise<void> {
    if (await this.linkExists(tap)) await this.runner.run(['ip', 'link', 'delete', 'dev', tap]);
  }

  async tapExists(tap: string): Promise<boolean> {
    return this.linkExists(tap);
  }

  async deleteBridge(bridge: string): Promise<void> {
    if (await this.linkExists(bridge)) await this.runner.run(['ip', 'link', 'delete', 'dev', bridge, 'type', 'bridge']);
  }

  async namedBridges(): Promise<string[]> {
    const { stdout } = await this.runner.run(['ip', '-o', 'link', 'show', 'type', 'bridge']);
    // Lines look like `12: smn0123456789ab: <BROADCAST,...> mtu 1500 ...`.
    const names = stdout.split('\n').map((line) => line.split(':')[1]?.trim().split('@')[0] ?? '');
    return names.filter((name) => namedBridgePattern.test(name));
  }

  async applyNat(enabled: boolean, bridge: string, subnet: Cidr): Promise<void> {
    const ruleset = renderRuleset({ nat: enabled, networks: [{ bridge, subnet: cidrText(subnet) }], exposures: [] });
    await this.applyFirewall(ruleset, { forwarding: enabled, localnetBridges: [] });
  }

  async applyFirewall(ruleset: string, settings: FirewallSettings): Promise<void> {
    await this.runner.run(['nft', '-f', '-'], { input: ruleset });
    // The sysctls come after the table, so route_localnet is never on without the guard chain.
    for (const bridge of settings.localnetBridges) {
      await this.runner.run(['sysctl', '-q', '-w', `net.ipv4.conf.${bridge}.route_localnet=1`]);
    }
    if (settings.forwarding) await this.runner.run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
  }

  async portInUse(port: number, protocol: Protocol): Promise<boolean> {
    for (const file of [`/proc/net/${protocol}`, `/proc/net/${protocol}6`]) {
      let table: string;
      try {
        table = await fs.readFile(file, 'utf8');
      } catch (error) {
        // A kernel without IPv6 has no tcp6 or udp6 table.
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      if (boundPorts(table, protocol).has(port)) return true;
    }
    return false;
  }
}
