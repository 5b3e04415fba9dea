import { invalid } from '../errors.js';

export interface Cidr {
  /** Network address as a 32-bit unsigned integer. */
  network: number;
  prefix: number;
}

export function ipToNumber(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4) throw invalid(`Invalid IPv4 address "${ip}"`);
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) throw invalid(`Invalid IPv4 address "${ip}"`);
    value = value * 256 + Number(part);
  }
  return value;
}

export function numberToIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 255).join('.');
}

/** Parses `10.200.0.0/16`; the address must be the network address itself. */
export function parseCidr(text: string): Cidr {
  const [address, prefixText, extra] = text.split('/');
  if (address === undefined || prefixText === undefined || extra !== undefined || !/^\d{1,2}$/.test(prefixText)) {
    throw invalid(`Invalid subnet "${text}": use CIDR notation such as 10.200.0.0/16`);
  }
  const prefix = Number(prefixText);
  if (prefix > 32) throw invalid(`Invalid subnet "${text}": the prefix length must be 0 to 32`);
  const network = ipToNumber(address);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  if ((network & mask) >>> 0 !== network) {
    throw invalid(`Invalid subnet "${text}": ${address} is not the network address, use ${numberToIp((network & mask) >>> 0)}/${prefix}`);
  }
  return { network, prefix };
}

/** Returns the gateway (first host) address of a subnet; the bridge owns it. */
export function gatewayOf(cidr: Cidr): string {
  return numberToIp(cidr.network + 1);
}

/**
 * Returns the lowest host address of the subnet that is not in use, skipping the network
 * address, the gateway and the broadcast address, or undefined when the subnet is full.
 */
export function firstFreeAddress(cidr: Cidr, used: ReadonlySet<string>): string | undefined {
  const size = 2 ** (32 - cidr.prefix);
  for (let offset = 2; offset < size - 1; offset++) {
    const candidate = numberToIp(cidr.network + offset);
    if (!used.has(candidate)) return candidate;
  }
  return undefined;
}

/** Formats a subnet as `10.201.0.0/24`. */
export function cidrText(cidr: Cidr): string {
  return `${numberToIp(cidr.network)}/${cidr.prefix}`;
}

/** Returns the number of addresses in a subnet, network and broadcast addresses included. */
export function subnetSize(cidr: Cidr): number {
  return 2 ** (32 - cidr.prefix);
}

/** Returns whether two subnets share at least one address. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.network < b.network + subnetSize(b) && b.network < a.network + subnetSize(a);
}

/** Returns whether `inner` lies entirely inside `outer`. */
export function contains(outer: Cidr, inner: Cidr): boolean {
  return inner.network >= outer.network && inner.network + subnetSize(inner) <= outer.network + subnetSize(outer);
}

/**
 * Returns the lowest subnet with the given prefix inside `pool` that overlaps none of `taken`,
 * or undefined when every one of them is taken.
 */
export function firstFreeSubnet(pool: Cidr, prefix: number, taken: readonly Cidr[]): Cidr | undefined {
  const step = 2 ** (32 - prefix);
  for (let network = pool.network; network + step <= pool.network + subnetSize(pool); network += step) {
    const candidate = { network, prefix };
    if (!taken.some((other) => overlaps(candidate, other))) return candidate;
  }
  return undefined;
}
