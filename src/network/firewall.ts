import type { Protocol } from './ports.js';

/** The nftables table Sistemo owns; nothing outside it is ever changed. */
export const nftTable = 'sistemo';

/** A Sistemo bridge and its subnet (`10.201.0.0/24`). */
export interface FirewallNetwork {
  bridge: string;
  subnet: string;
}

/** A host port forwarded to a running VM. */
export interface FirewallExposure {
  protocol: Protocol;
  hostPort: number;
  vmIp: string;
  vmPort: number;
}

/** Everything the ruleset is built from: one snapshot of the database and the `nat` setting. */
export interface FirewallState {
  nat: boolean;
  /** The default bridge first, then named networks. */
  networks: readonly FirewallNetwork[];
  /** Exposures of running VMs only, because a stopped VM has no rules. */
  exposures: readonly FirewallExposure[];
}

const quoted = (name: string) => `"${name}"`;

function nameSet(names: readonly string[]): string {
  return `{ ${names.map(quoted).join(', ')} }`;
}

function isolationRules(networks: readonly FirewallNetwork[]): string[] {
  const bridges = networks.map((network) => network.bridge);
  const rules: string[] = [];
  for (const bridge of bridges) {
    const others = bridges.filter((other) => other !== bridge);
    if (others.length > 0) rules.push(`    iifname ${quoted(bridge)} oifname ${nameSet(others)} drop`);
  }
  return rules;
}

function dnatRules(exposures: readonly FirewallExposure[]): string[] {
  // `fib daddr type local` matches every address of this host, 127.0.0.1 and each bridge
  // address included, and nothing that is only routed through it.
  return exposures.map((exposure) =>
    `    fib daddr type local ${exposure.protocol} dport ${exposure.hostPort} dnat to ${exposure.vmIp}:${exposure.vmPort}`);
}

/**
 * Renders the whole `ip sistemo` table as one `nft -f` transaction. The first two lines
 * create the table if it is missing and then delete it, so loading the text replaces any
 * previous version (stale rules from a crashed daemon included) atomically, and a failure
 * leaves the old table in place.
 *
 * - forward: traffic to an exposed port (conntrack status dnat) is accepted, then traffic
 *   between two different Sistemo bridges is dropped, which isolates networks from each other
 *   and from the default one. VMs on one bridge talk at layer 2 and never reach this chain.
 * - prerouting and output: DNAT of exposed ports, for other hosts and for the host itself.
 * - postrouting: connections the host opens from 127.0.0.1 to an exposed port get the bridge
 *   address as source, because a VM cannot reply to 127.0.0.1. With `nat`, each subnet is
 *   masqueraded when it leaves through a non-Sistemo interface.
 * - guard: the bridges have route_localnet on, which the 127.0.0.1 path needs for routing.
 *   Loopback addresses arriving on a bridge are dropped before conntrack, so a VM cannot use
 *   that setting to reach services listening on the host's loopback.
 */
export function renderRuleset(state: FirewallState): string {
  const bridges = state.networks.map((network) => network.bridge);
  const lines = [`table ip ${nftTable} {}`, `delete table ip ${nftTable}`, `table ip ${nftTable} {`];
  if (bridges.length > 0) {
    lines.push(
      '  chain guard {',
      '    type filter hook prerouting priority raw; policy accept;',
      `    iifname ${nameSet(bridges)} ip daddr 127.0.0.0/8 drop`,
      `    iifname ${nameSet(bridges)} ip saddr 127.0.0.0/8 drop`,
      '  }',
    );
  }
  lines.push(
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    '    ct status dnat accept',
    ...isolationRules(state.networks),
  );
  if (state.nat) {
    for (const network of state.networks) {
      lines.push(`    iifname ${quoted(network.bridge)} accept`, `    oifname ${quoted(network.bridge)} ct state established,related accept`);
    }
  }
  lines.push(
    '  }',
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    ...dnatRules(state.exposures),
    '  }',
    // nft 1.0.6 accepts no priority keyword for a nat chain on the output hook; -100 is dstnat.
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    ...dnatRules(state.exposures),
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
  );
  if (bridges.length > 0 && state.exposures.length > 0) lines.push(`    ip saddr 127.0.0.0/8 oifname ${nameSet(bridges)} masquerade`);
  if (state.nat) {
    for (const network of state.networks) lines.push(`    ip saddr ${network.subnet} oifname != ${quoted(network.bridge)} masquerade`);
  }
  lines.push('  }', '}');
  return `${lines.join('\n')}\n`;
}
