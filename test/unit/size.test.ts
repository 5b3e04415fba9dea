import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GiB, KiB, MiB, TiB, formatSize, parseSize } from '../../src/domain/size.js';
import { SistemoError } from '../../src/errors.js';

/** Returns the error parseSize throws for a text, failing the test when it accepts the text. */
function rejectionOf(text: string, options: { max?: number } = {}): SistemoError {
  try {
    parseSize(text, options);
  } catch (error) {
    assert.ok(error instanceof SistemoError, `expected a SistemoError for "${text}"`);
    return error;
  }
  assert.fail(`parseSize accepted "${text}"`);
}

/** Returns the words of a message that parseSize itself accepts under the given maximum. */
function acceptedExamples(message: string, max?: number): string[] {
  return message.split(/[\s(),:"]+/).filter((word) => {
    if (!/^\d/.test(word)) return false;
    try {
      parseSize(word, { max });
      return true;
    } catch {
      return false;
    }
  });
}

describe('parseSize', () => {
  const accepted: [string, number][] = [
    ['1K', MiB], ['1KB', MiB], ['1KiB', MiB], ['2048k', 2 * MiB],
    ['1M', MiB], ['512MB', 512 * MiB], ['512MiB', 512 * MiB], ['512m', 512 * MiB], ['512mb', 512 * MiB],
    ['5G', 5 * GiB], ['5GB', 5 * GiB], ['5GiB', 5 * GiB], ['5g', 5 * GiB], ['5gib', 5 * GiB], ['5Gb', 5 * GiB],
    ['1T', TiB], ['1TB', TiB], ['1TiB', TiB], ['1tb', TiB],
    ['1.5G', 1536 * MiB], ['1.5GB', 1536 * MiB], ['0.5T', 512 * GiB],
    ['0.1G', 103 * MiB], ['1.0001M', 2 * MiB], ['1.5K', MiB], ['1536K', 2 * MiB],
    [' 5G ', 5 * GiB], ['5 G', 5 * GiB],
  ];
  for (const [text, bytes] of accepted) {
    test(`parseSize accepts "${text}"`, () => {
      assert.equal(parseSize(text), bytes);
    });
  }

  test('parseSize treats 5GB and 5GiB as one size', () => {
    assert.equal(parseSize('5GB'), parseSize('5GiB'));
  });

  test('parseSize rounds a decimal up to a whole MiB', () => {
    assert.equal(parseSize('1.1M') % MiB, 0);
    assert.equal(parseSize('1.1M'), 2 * MiB);
  });

  test('parseSize accepts a size equal to max', () => {
    assert.equal(parseSize('2T', { max: 2 * TiB }), 2 * TiB);
  });

  const rejected: [string, string][] = [
    ['bare number', '5'],
    ['bare decimal', '1.5'],
    ['zero', '0'],
    ['zero with unit', '0G'],
    ['zero decimal with unit', '0.0G'],
    ['negative', '-5G'],
    ['negative bare number', '-1'],
    ['comma decimal', '1,5G'],
    ['unknown unit', '5X'],
    ['unknown long unit', '5GBs'],
    ['bits unit', '5Gbit'],
    ['empty', ''],
    ['blank', '   '],
    ['unit only', 'G'],
    ['leading dot', '.5G'],
    ['exponent', '1e3G'],
    ['hex', '0x10G'],
    ['plus sign', '+5G'],
    ['two sizes', '5G 5G'],
  ];
  for (const [label, text] of rejected) {
    test(`parseSize rejects a ${label}`, () => {
      const error = rejectionOf(text);
      assert.equal(error.code, 'invalid_argument');
      const quoted = text.trim() === '' ? '""' : `"${text}"`;
      assert.ok(error.message.includes(quoted), `the message quotes the input: ${error.message}`);
      assert.ok(acceptedExamples(error.message).length > 0, `the message shows an accepted size: ${error.message}`);
    });
  }

  test('parseSize rejects a size over max', () => {
    const error = rejectionOf('3T', { max: 2 * TiB });
    assert.equal(error.code, 'invalid_argument');
    assert.match(error.message, /2\.0TB/);
    assert.ok(acceptedExamples(error.message, 2 * TiB).length > 0, error.message);
  });

  test('parseSize rejects a size one MiB over max', () => {
    const error = rejectionOf('1025M', { max: GiB });
    assert.equal(error.code, 'invalid_argument');
  });

  test('parseSize over a small max suggests a size within max', () => {
    const error = rejectionOf('2G', { max: GiB });
    const example = /such as (\w+)/.exec(error.message)?.[1] ?? '';
    assert.doesNotThrow(() => parseSize(example, { max: GiB }), error.message);
  });

  test('parseSize names the field in its message', () => {
    try {
      parseSize('5', { what: 'storage' });
      assert.fail('parseSize accepted "5"');
    } catch (error) {
      assert.ok(error instanceof SistemoError);
      assert.match(error.message, /storage/);
    }
  });
});

describe('formatSize', () => {
  const cases: [number, string][] = [
    [5 * GiB, '5.0GB'],
    [2 * GiB, '2.0GB'],
    [10 * GiB, '10.0GB'],
    [1536 * MiB, '1.5GB'],
    [GiB, '1.0GB'],
    [512 * MiB, '512MB'],
    [16 * MiB, '16MB'],
    [2 * TiB, '2.0TB'],
    [4 * KiB, '4KB'],
  ];
  for (const [bytes, text] of cases) {
    test(`formatSize prints ${text}`, () => {
      assert.equal(formatSize(bytes), text);
    });
  }

  test('formatSize output parses back to the same size', () => {
    for (const bytes of [5 * GiB, 512 * MiB, 10 * GiB, 2 * TiB]) {
      assert.equal(parseSize(formatSize(bytes)), bytes, formatSize(bytes));
    }
  });
});
