import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { firstFreeAddress, gatewayOf, ipToNumber, numberToIp, parseCidr } from '../../src/network/cidr.js';
import { thrown } from '../fakes/errors.js';

describe('parseCidr', () => {
  const valid: [string, string, number][] = [
    ['10.200.0.0/16', '10.200.0.0', 16],
    ['192.168.1.0/24', '192.168.1.0', 24],
    ['10.0.0.8/29', '10.0.0.8', 29],
    ['0.0.0.0/0', '0.0.0.0', 0],
    ['10.1.2.3/32', '10.1.2.3', 32],
  ];
  for (const [text, network, prefix] of valid) {
    test(`parseCidr reads ${text}`, () => {
      const cidr = parseCidr(text);
      assert.equal(numberToIp(cidr.network), network);
      assert.equal(cidr.prefix, prefix);
    });
  }

  const invalid: [string, string][] = [
    ['a host address', '10.200.0.1/16'],
    ['a host bit in the third octet', '10.200.1.0/16'],
    ['a missing prefix', '10.200.0.0'],
    ['a prefix over 32', '10.0.0.0/33'],
    ['a three-digit prefix', '10.0.0.0/100'],
    ['an octet over 255', '10.256.0.0/16'],
    ['three octets', '10.200.0/16'],
    ['two slashes', '10.200.0.0/16/1'],
    ['a word', 'default'],
    ['an empty prefix', '10.200.0.0/'],
    ['a negative prefix', '10.200.0.0/-1'],
  ];
  for (const [label, text] of invalid) {
    test(`parseCidr rejects ${label}`, () => {
      assert.equal(thrown(() => parseCidr(text)).code, 'invalid_argument');
    });
  }

  test('parseCidr suggests the network address', () => {
    assert.match(thrown(() => parseCidr('10.200.0.1/16')).message, /10\.200\.0\.0\/16/);
  });
});

describe('address helpers', () => {
  test('ipToNumber and numberToIp round-trip', () => {
    for (const ip of ['0.0.0.0', '10.200.0.1', '255.255.255.255', '192.168.1.254']) {
      assert.equal(numberToIp(ipToNumber(ip)), ip);
    }
  });

  test('gatewayOf is the first host address', () => {
    assert.equal(gatewayOf(parseCidr('10.200.0.0/16')), '10.200.0.1');
  });

  test('firstFreeAddress skips network and gateway', () => {
    assert.equal(firstFreeAddress(parseCidr('10.200.0.0/16'), new Set()), '10.200.0.2');
  });

  test('firstFreeAddress skips used addresses', () => {
    const used = new Set(['10.200.0.2', '10.200.0.3']);
    assert.equal(firstFreeAddress(parseCidr('10.200.0.0/16'), used), '10.200.0.4');
  });

  test('firstFreeAddress fills a gap first', () => {
    const used = new Set(['10.200.0.2', '10.200.0.4']);
    assert.equal(firstFreeAddress(parseCidr('10.200.0.0/16'), used), '10.200.0.3');
  });

  test('firstFreeAddress never returns the broadcast address', () => {
    const cidr = parseCidr('10.0.0.0/29');
    const used = new Set(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']);
    assert.equal(firstFreeAddress(cidr, used), '10.0.0.6');
    used.add('10.0.0.6');
    assert.equal(firstFreeAddress(cidr, used), undefined);
  });

  test('firstFreeAddress returns undefined for a /31', () => {
    assert.equal(firstFreeAddress(parseCidr('10.0.0.0/31'), new Set()), undefined);
  });

  test('firstFreeAddress crosses an octet boundary', () => {
    const cidr = parseCidr('10.200.0.0/16');
    const used = new Set<string>();
    for (let host = 2; host <= 255; host++) used.add(`10.200.0.${host}`);
    assert.equal(firstFreeAddress(cidr, used), '10.200.1.0');
  });
});
