import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { maxVmNameLength, rootVolumeName, validateName, validateVmName, volumeSerial } from '../../src/domain/names.js';
import { newId } from '../../src/paths.js';
import { thrown } from '../fakes/errors.js';

describe('validateName', () => {
  const valid = ['web', 'a', '0', 'web-1', 'my-data-volume', 'x1y2', '1web', 'a'.repeat(63), 'a-b-c'];
  for (const name of valid) {
    test(`validateName accepts "${name.length > 20 ? `${name.length} characters` : name}"`, () => {
      assert.equal(validateName(name, 'volume'), name);
    });
  }

  const invalid: [string, string][] = [
    ['a slash', 'web/data'],
    ['a leading slash', '/etc'],
    ['two dots', '..'],
    ['a parent path', '../web'],
    ['a dot', 'web.1'],
    ['a space', 'web 1'],
    ['a newline', 'web\n'],
    ['a tab', 'web\tx'],
    ['a NUL', 'web\u0000'],
    ['an escape character', 'web\u001b[31m'],
    ['an uppercase letter', 'Web'],
    ['all uppercase', 'WEB'],
    ['a leading hyphen', '-web'],
    ['a trailing hyphen', 'web-'],
    ['a lone hyphen', '-'],
    ['an underscore', 'web_1'],
    ['64 characters', 'a'.repeat(64)],
    ['300 characters', 'b'.repeat(300)],
    ['an empty string', ''],
    ['an accented letter', 'wéb'],
    ['a Cyrillic letter', 'wеb'],
    ['an emoji', 'web🙂'],
    ['a shell character', 'web;rm'],
    ['a dollar sign', '$web'],
  ];
  for (const [label, name] of invalid) {
    test(`validateName rejects ${label}`, () => {
      const error = thrown(() => validateName(name, 'volume'));
      assert.equal(error.code, 'invalid_argument');
      assert.match(error.message, /volume name/);
    });
  }

  test('validateName shows an accepted example', () => {
    const error = thrown(() => validateName('Web', 'VM'));
    assert.match(error.message, /web-1/);
  });

  test('validateName shortens a 300-character name in its message', () => {
    const error = thrown(() => validateName('b'.repeat(300), 'VM'));
    assert.ok(error.message.length < 200, `message has ${error.message.length} characters`);
    assert.match(error.message, /300/);
  });
});

describe('validateVmName', () => {
  test('validateVmName accepts the longest name whose root volume fits', () => {
    const name = 'a'.repeat(maxVmNameLength);
    assert.equal(validateVmName(name), name);
    assert.equal(validateName(rootVolumeName(name), 'volume'), rootVolumeName(name));
  });

  test('validateVmName rejects a name whose root volume would not fit', () => {
    const name = 'a'.repeat(maxVmNameLength + 1);
    const error = thrown(() => validateVmName(name));
    assert.equal(error.code, 'invalid_argument');
    assert.ok(error.message.includes(rootVolumeName(name)), error.message);
    assert.throws(() => validateName(rootVolumeName(name), 'volume'));
  });

  test('validateVmName rejects a name the name rule rejects', () => {
    assert.equal(thrown(() => validateVmName('Web')).code, 'invalid_argument');
  });

  test('rootVolumeName appends -root', () => {
    assert.equal(rootVolumeName('web'), 'web-root');
  });
});

describe('volumeSerial', () => {
  const serialBytes = (serial: string) => Buffer.byteLength(serial);

  test('volumeSerial uses a 20-character name as it is', () => {
    const name = 'a'.repeat(20);
    assert.equal(volumeSerial({ name, id: newId('v') }), name);
  });

  test('volumeSerial uses a short name as it is', () => {
    assert.equal(volumeSerial({ name: 'appdata', id: newId('v') }), 'appdata');
  });

  test('volumeSerial shortens a 21-character name to 20 bytes', () => {
    const serial = volumeSerial({ name: 'a'.repeat(21), id: newId('v') });
    assert.ok(serialBytes(serial) <= 20, serial);
    assert.ok(serial.includes('_'), serial);
  });

  test('volumeSerial shortens a 63-character name to 20 bytes', () => {
    const serial = volumeSerial({ name: 'z'.repeat(63), id: newId('v') });
    assert.ok(serialBytes(serial) <= 20, serial);
    assert.ok(serial.includes('_'), serial);
  });

  test('volumeSerial separates long names with one prefix', () => {
    const first = volumeSerial({ name: 'project-data-volume-one', id: newId('v') });
    const second = volumeSerial({ name: 'project-data-volume-two', id: newId('v') });
    assert.notEqual(first, second);
  });

  test('volumeSerial short form is never a valid name', () => {
    const serial = volumeSerial({ name: 'a-very-long-volume-name-here', id: newId('v') });
    assert.throws(() => validateName(serial, 'volume'));
  });

  test('volumeSerial short form keeps the name prefix', () => {
    const serial = volumeSerial({ name: 'database-primary-disk', id: newId('v') });
    assert.ok(serial.startsWith('databas'), serial);
  });
});
