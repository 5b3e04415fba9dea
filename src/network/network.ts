import { CommandError } from '../errors.js';
import type { CommandRunner } from '../system/runner.js';
import { gatewayOf, numberToIp, type Cidr } from './cidr.js';

/** Linux limits interface names to 15 bytes (IFNAMSIZ is 16 with the final NUL). */
export const maxInterfaceNameBytes = 15;

export const defaultBridge = 'sistemo0';

/** The nftables table Sistemo owns; nothing outside it is ever changed. */
export const nftTable = 'sistemo';

/** Host network devices for VMs: the bridge, one tap per VM, and NAT. */
export interface Network {
  ensureBridge(bridge: string, subnet: Cidr): Promise<void>;
  createTap(tap: string, bridge: string): Promise<void>;
  deleteTap(tap: string): Promise<void>;
  tapExists(tap: string): Promise<boolean>;
  /** Makes the NAT rules match the setting: masquerade the subnet when on, no rules when off. */
  applyNat(enabled: boolean, bridge: string, subnet: Cidr): Promise<void>;
}

export function tapNameFor(vmId: string): string {
  const name = `sm${vmId.slice(1)}`;
  if (Buffer.byteLength(name) > maxInterfaceNameBytes) throw new Error(`Tap name ${name} exceeds ${maxInterfaceNameBytes} bytes`);
  return name;
}

/** Drives iproute2 and nft. */
export class LinuxNetwork implements Network {
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

  async applyNat(enabled: boolean, bridge: string, subnet: Cidr): Promise<void> {
    // Deleting and re-creating the whole table in one nft transaction leaves no half state.
    const network = `${numberToIp(subnet.network)}/${subnet.prefix}`;
    const lines = [`table ip ${nftTable} {}`, `delete table ip ${nftTable}`];
    if (enabled) {
      lines.push(
        `table ip ${nftTable} {`,
        '  chain postrouting {',
        '    type nat hook postrouting priority srcnat; policy accept;',
        `    ip saddr ${network} oifname != "${bridge}" masquerade`,
        '  }',
        '  chain forward {',
        '    type filter hook forward priority filter; policy accept;',
        `    iifname "${bridge}" accept`,
        `    oifname "${bridge}" ct state established,related accept`,
        '  }',
        '}',
      );
    }
    await this.runner.run(['nft', '-f', '-'], { input: `${lines.join('\n')}\n` });
    if (enabled) await this.runner.run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
  }
}
