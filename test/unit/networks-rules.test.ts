import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { chooseSubnet } from '../../src/domain/networks.js';
import { cidrText, parseCidr, type Cidr } from '../../src/network/cidr.js';
import { renderRuleset, type FirewallState } from '../../src/network/firewall.js';
import { bridgeNameFor, maxInterfaceNameBytes } from '../../src/network/network.js';
import { boundPorts, parseHostPort, parsePortMapping, parseProtocol } from '../../src/network/ports.js';
import { newId } from '../../src/paths.js';
import { thrown } from '../fakes/errors.js';

const defaultOnly = [{ name: 'default', subnet: parseCidr('10.200.0.0/16') }];

describe('chooseSubnet', () => {
  test('chooseSubnet picks the first free /24 of the pool', () => {
    assert.equal(cidrText(chooseSubnet(undefined, defaultOnly)), '10.201.0.0/24');
  });

  test('chooseSubnet skips subnets other networks use', () => {
    const taken = [...defaultOnly, { name: 'prod', subnet: parseCidr('10.201.0.0/24') }, { name: 'big', subnet: parseCidr('10.201.2.0/23') }];
    assert.equal(cidrText(chooseSubnet(undefined, taken)), '10.201.1.0/24');
  });

  test('chooseSubnet skips a default subnet inside the pool', () => {
    const taken = [{ name: 'default', subnet: parseCidr('10.201.0.0/22') }];
    assert.equal(cidrText(chooseSubnet(undefined, taken)), '10.201.4.0/24');
  });

  test('chooseSubnet reports an exhausted pool', () => {
    const taken: { name: string; subnet: Cidr }[] = [];
    for (let third = 0; third < 256; third++) taken.push({ name: `n${third}`, subnet: parseCidr(`10.201.${third}.0/24`) });
    const error = thrown(() => chooseSubnet(undefined, taken));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /10\.201\.0\.0\/16/);
    assert.match(error.message, /--subnet/);
  });

  test('chooseSubnet accepts a free requested subnet', () => {
    assert.equal(cidrText(chooseSubnet('192.168.50.0/24', defaultOnly)), '192.168.50.0/24');
  });

  test('chooseSubnet rejects an overlap with the default bridge', () => {
    const error = thrown(() => chooseSubnet('10.200.5.0/24', defaultOnly));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /overlaps 10\.200\.0\.0\/16 of network "default"/);
  });

  test('chooseSubnet rejects an overlap with another network', () => {
    const taken = [...defaultOnly, { name: 'prod', subnet: parseCidr('10.201.0.0/24') }];
    const error = thrown(() => chooseSubnet('10.201.0.0/16', taken));
    assert.equal(error.code, 'conflict');
    assert.match(error.message, /network "prod"/);
  });

  const rejected: [string, string, RegExp][] = [
    ['a /30', '10.201.9.0/30', /too small/],
    ['a /32', '10.201.9.1/32', /too small/],
    ['a /8', '10.0.0.0/8', /too large/],
    ['a public range', '8.8.8.0/24', /private range/],
    ['a host address', '10.201.9.1/24', /not the network address/],
    ['garbage', 'prod', /CIDR notation/],
  ];
  for (const [label, text, message] of rejected) {
    test(`chooseSubnet rejects ${label}`, () => {
      const error = thrown(() => chooseSubnet(text, defaultOnly));
      assert.equal(error.code, 'invalid_argument');
      assert.match(error.message, message);
    });
  }
});

describe('bridgeNameFor', () => {
  test('bridgeNameFor fits the interface name limit', () => {
    const bridge = bridgeNameFor(newId('n'));
    assert.ok(Buffer.byteLength(bridge) <= maxInterfaceNameBytes, bridge);
    assert.match(bridge, /^smn[0-9a-f]{12}$/);
  });

  test('bridgeNameFor rejects a name over 15 bytes', () => {
    const error = thrown(() => bridgeNameFor('n0123456789abcdef'));
    assert.equal(error.code, 'internal');
    assert.match(error.message, /15 bytes/);
  });
});

describe('parsePortMapping', () => {
  test('parsePortMapping reads a single port as both sides', () => {
    assert.deepEqual(parsePortMapping('8080'), { hostPort: 8080, vmPort: 8080, protocol: 'tcp' });
  });

  test('parsePortMapping reads HOST:PORT', () => {
    assert.deepEqual(parsePortMapping('8080:80', 'udp'), { hostPort: 8080, vmPort: 80, protocol: 'udp' });
  });

  const rejected: [string, RegExp][] = [
    ['0', /out of range/],
    ['65536', /out of range/],
    ['8080:70000', /out of range/],
    ['99999', /out of range/],
    ['http', /number from 1 to 65535/],
    ['-1', /number from 1 to 65535/],
    ['80.5', /number from 1 to 65535/],
    ['', /number from 1 to 65535/],
    ['8080:', /number from 1 to 65535/],
    ['1:2:3', /HOST:PORT/],
  ];
  for (const [text, message] of rejected) {
    test(`parsePortMapping rejects "${text}"`, () => {
      const error = thrown(() => parsePortMapping(text));
      assert.equal(error.code, 'invalid_argument');
      assert.match(error.message, message);
    });
  }

  test('parseHostPort rejects HOST:PORT', () => {
    assert.equal(thrown(() => parseHostPort('8080:80')).code, 'invalid_argument');
  });

  test('parseProtocol defaults to tcp', () => {
    assert.equal(parseProtocol(undefined), 'tcp');
    assert.equal(parseProtocol('udp'), 'udp');
  });

  test('parseProtocol rejects an unknown protocol', () => {
    const error = thrown(() => parseProtocol('sctp'));
    assert.equal(error.code, 'invalid_argument');
    assert.match(error.message, /Invalid protocol "sctp": use tcp or udp/);
  });
});

describe('boundPorts', () => {
  const tcp = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:1E61 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0',
    '   1: 0100007F:9C40 0100007F:1E61 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0',
  ].join('\n');

  test('boundPorts lists listening TCP ports only', () => {
    assert.deepEqual([...boundPorts(tcp, 'tcp')], [7777]);
  });

  test('boundPorts lists every bound UDP port', () => {
    const udp = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops',
      '  1: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0 0',
    ].join('\n');
    assert.deepEqual([...boundPorts(udp, 'udp')], [5353]);
  });

  test('boundPorts reads an empty table', () => {
    assert.equal(boundPorts('  sl  local_address\n', 'tcp').size, 0);
  });
});

describe('renderRuleset', () => {
  const networks = [
    { bridge: 'sistemo0', subnet: '10.200.0.0/16' },
    { bridge: 'smn000000000001', subnet: '10.201.0.0/24' },
    { bridge: 'smn000000000002', subnet: '10.201.1.0/24' },
  ];
  const state = (overrides: Partial<FirewallState> = {}): FirewallState => ({ nat: false, networks, exposures: [], ...overrides });

  test('renderRuleset replaces the whole table in one transaction', () => {
    const lines = renderRuleset(state()).split('\n');
    assert.equal(lines[0], 'table ip sistemo {}');
    assert.equal(lines[1], 'delete table ip sistemo');
    assert.equal(lines[2], 'table ip sistemo {');
    assert.equal(lines.filter((line) => line.startsWith('table ')).length, 2);
  });

  test('renderRuleset drops traffic between different bridges', () => {
    const text = renderRuleset(state());
    assert.match(text, /iifname "sistemo0" oifname \{ "smn000000000001", "smn000000000002" \} drop/);
    assert.match(text, /iifname "smn000000000001" oifname \{ "sistemo0", "smn000000000002" \} drop/);
    assert.match(text, /iifname "smn000000000002" oifname \{ "sistemo0", "smn000000000001" \} drop/);
  });

  test('renderRuleset never drops traffic within one bridge', () => {
    for (const line of renderRuleset(state()).split('\n').filter((entry) => entry.includes(' drop') && entry.includes('oifname'))) {
      const [, inBridge, outSet] = /iifname "([^"]+)" oifname \{([^}]*)\}/.exec(line) ?? [];
      assert.ok(inBridge, line);
      assert.ok(outSet, line);
      assert.ok(!outSet.includes(`"${inBridge}"`), line);
    }
  });

  test('renderRuleset masquerades each subnet with nat on', () => {
    const text = renderRuleset(state({ nat: true }));
    for (const network of networks) {
      assert.ok(text.includes(`ip saddr ${network.subnet} oifname != "${network.bridge}" masquerade`), network.bridge);
    }
  });

  test('renderRuleset has no masquerade with nat off', () => {
    assert.doesNotMatch(renderRuleset(state()), /masquerade/);
  });

  test('renderRuleset forwards an exposed port from outside and from the host', () => {
    const text = renderRuleset(state({ exposures: [{ protocol: 'tcp', hostPort: 2222, vmIp: '10.201.0.2', vmPort: 22 }] }));
    const rule = 'fib daddr type local tcp dport 2222 dnat to 10.201.0.2:22';
    const prerouting = text.slice(text.indexOf('chain prerouting'), text.indexOf('chain output'));
    const output = text.slice(text.indexOf('chain output'), text.indexOf('chain postrouting'));
    assert.ok(prerouting.includes(rule), prerouting);
    assert.ok(output.includes(rule), output);
    assert.match(text, /ip saddr 127\.0\.0\.0\/8 oifname \{ "sistemo0", "smn000000000001", "smn000000000002" \} masquerade/);
  });

  test('renderRuleset guards the bridges against loopback addresses', () => {
    const text = renderRuleset(state());
    assert.match(text, /hook prerouting priority raw/);
    assert.match(text, /ip daddr 127\.0\.0\.0\/8 drop/);
    assert.match(text, /ip saddr 127\.0\.0\.0\/8 drop/);
  });

  test('renderRuleset accepts exposed traffic before isolation', () => {
    const text = renderRuleset(state());
    assert.ok(text.indexOf('ct status dnat accept') < text.indexOf('oifname { "smn'), text);
  });
});
