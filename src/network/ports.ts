import { invalid } from '../errors.js';

export type Protocol = 'tcp' | 'udp';

/** One host port forwarded to a port of a VM. */
export interface PortMapping {
  hostPort: number;
  vmPort: number;
  protocol: Protocol;
}

function parsePort(text: string, what: string, given: string): number {
  if (!/^\d{1,5}$/.test(text)) throw invalid(`Invalid port "${given}": the ${what} port must be a number from 1 to 65535, such as 8080 or 8080:80`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw invalid(`Invalid port "${given}": ${port} is out of range, use 1 to 65535`);
  return port;
}

/** Parses `tcp` or `udp`; without a value the protocol is tcp. */
export function parseProtocol(text: string | undefined): Protocol {
  if (text === undefined) return 'tcp';
  if (text === 'tcp' || text === 'udp') return text;
  throw invalid(`Invalid protocol "${text}": use tcp or udp`);
}

/** Parses `[HOST:]PORT`: `8080` forwards host port 8080 to port 8080 of the VM, `8080:80` to port 80. */
export function parsePortMapping(text: string, protocol: Protocol = 'tcp'): PortMapping {
  const parts = text.split(':');
  if (parts.length > 2) throw invalid(`Invalid port "${text}": use PORT or HOST:PORT, such as 8080:80`);
  const [first = '', second] = parts;
  const hostPort = parsePort(first, 'host', text);
  const vmPort = second === undefined ? hostPort : parsePort(second, 'VM', text);
  return { hostPort, vmPort, protocol };
}

/** Parses the host port of `vm unexpose`, which names a mapping by its host side only. */
export function parseHostPort(text: string): number {
  return parsePort(text, 'host', text);
}

/**
 * Returns the local ports of the sockets in a /proc/net/{tcp,tcp6,udp,udp6} table that hold a
 * port: listening TCP sockets (state 0A), and every UDP socket, since any bound UDP socket
 * receives datagrams sent to its port.
 */
export function boundPorts(table: string, protocol: Protocol): Set<number> {
  const ports = new Set<number>();
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const local = fields[1];
    const state = fields[3];
    if (local === undefined || state === undefined) continue;
    if (protocol === 'tcp' && state !== '0A') continue;
    const portHex = local.split(':').pop() ?? '';
    const port = Number.parseInt(portHex, 16);
    if (Number.isInteger(port) && port > 0) ports.add(port);
  }
  return ports;
}

export function mappingText(mapping: PortMapping): string {
  return `${mapping.hostPort}:${mapping.vmPort}/${mapping.protocol}`;
}
