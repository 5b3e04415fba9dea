import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { parseDaemonUrl } from '../../src/cli/client.js';
import { volumeHeaders, volumeRows } from '../../src/cli/commands/volume.js';
import { shellQuote } from '../../src/cli/commands/vm.js';
import { formatTable } from '../../src/cli/output.js';
import type { VolumeView } from '../../src/domain/views.js';
import { thrown } from '../fakes/errors.js';

describe('parseDaemonUrl', () => {
  const accepted: [string, string][] = [
    ['http://127.0.0.1:7777', 'http://127.0.0.1:7777'],
    ['http://127.0.0.1:7777/', 'http://127.0.0.1:7777'],
    ['https://vm-host.example:8443', 'https://vm-host.example:8443'],
    ['http://localhost', 'http://localhost'],
    ['http://[::1]:7777', 'http://[::1]:7777'],
    ['HTTP://Host.Example:7777', 'http://host.example:7777'],
  ];
  for (const [text, origin] of accepted) {
    test(`parseDaemonUrl accepts ${text}`, () => {
      assert.deepEqual(parseDaemonUrl(text), { kind: 'url', origin });
    });
  }

  const rejected: [string, string, RegExp][] = [
    ['ftp', 'ftp://127.0.0.1:7777', /scheme/],
    ['a file URL', 'file:///run/sistemo.sock', /scheme/],
    ['a path', 'http://127.0.0.1:7777/api/v1', /path/],
    ['a double slash path', 'http://127.0.0.1:7777//', /path/],
    ['a query', 'http://127.0.0.1:7777?debug=1', /./],
    ['a query after a slash', 'http://127.0.0.1:7777/?debug=1', /./],
    ['a fragment', 'http://127.0.0.1:7777#top', /./],
    ['credentials', 'http://admin:secret@127.0.0.1:7777', /credentials/],
    ['a user name', 'http://admin@127.0.0.1:7777', /credentials/],
    ['garbage', 'not a url', /http:\/\/127\.0\.0\.1:7777/],
    ['an empty string', '', /http:\/\/127\.0\.0\.1:7777/],
    ['a bare host and port', '127.0.0.1:7777', /./],
    ['a port out of range', 'http://127.0.0.1:70000', /./],
  ];
  for (const [label, text, reason] of rejected) {
    test(`parseDaemonUrl rejects ${label}`, () => {
      const error = thrown(() => parseDaemonUrl(text));
      assert.equal(error.code, 'invalid_argument');
      assert.match(error.message, /SISTEMO_DAEMON_URL/);
      assert.match(error.message, reason);
    });
  }

  test('parseDaemonUrl does not echo a password', () => {
    const error = thrown(() => parseDaemonUrl('http://admin:hunter2@127.0.0.1:7777'));
    assert.ok(!error.message.includes('hunter2'), error.message);
  });

  test('parseDaemonUrl names the query it rejects', () => {
    assert.match(thrown(() => parseDaemonUrl('http://127.0.0.1:7777?debug=1')).message, /query/);
  });

  test('parseDaemonUrl accepts an explicit default port', () => {
    assert.deepEqual(parseDaemonUrl('http://127.0.0.1:80'), { kind: 'url', origin: 'http://127.0.0.1' });
  });
});

function volume(overrides: Partial<VolumeView>): VolumeView {
  return {
    name: 'web-root', id: 'v000000000001', size_bytes: 5 * 1024 ** 3, size: '5.0GB', status: 'attached',
    attached_to: 'web', type: 'root', message: null, created_at: '2026-01-01T00:00:00.000Z', ...overrides,
  };
}

describe('volume list table', () => {
  const volumes = [
    volume({}),
    volume({ name: 'appdata', size: '2.0GB', status: 'detached', attached_to: null, type: 'data' }),
    volume({ name: 'a-much-longer-volume-name', size: '512MB', status: 'busy', attached_to: 'database-primary', type: 'data' }),
  ];
  const lines = formatTable(volumeHeaders, volumeRows(volumes)).split('\n');
  const header = lines[0] ?? '';

  test('volume list header has the release columns', () => {
    assert.deepEqual(header.split(/\s{2,}/), ['NAME', 'SIZE', 'STATUS', 'ATTACHED TO', 'TYPE']);
  });

  test('volume list has one line per volume', () => {
    assert.equal(lines.length, 4);
  });

  test('volume list aligns every column with its header', () => {
    const rows = volumeRows(volumes);
    const starts = volumeHeaders.map((title) => header.indexOf(title));
    for (const [index, row] of rows.entries()) {
      const line = lines[index + 1] ?? '';
      for (const [column, cell] of row.entries()) {
        const start = starts[column] ?? -1;
        assert.equal(line.slice(start, start + cell.length), cell, `column ${volumeHeaders[column]} of: ${line}`);
      }
    }
  });

  test('volume list shows - for a detached volume', () => {
    const detached = lines.find((line) => line.startsWith('appdata')) ?? '';
    assert.deepEqual(detached.split(/\s+/), ['appdata', '2.0GB', 'detached', '-', 'data']);
  });

  test('volume list has no trailing spaces', () => {
    for (const line of lines) assert.equal(line, line.trimEnd());
  });

  test('formatTable separates columns by at least two spaces', () => {
    const table = formatTable(['A', 'B'], [['long-value', 'x']]);
    assert.match(table.split('\n')[1] ?? '', /^long-value {2,}x$/);
  });

  test('formatTable prints only the header for no rows', () => {
    assert.equal(formatTable(volumeHeaders, []), 'NAME   SIZE   STATUS   ATTACHED TO   TYPE');
  });
});

describe('shellQuote', () => {
  /** Runs the quoted words through /bin/sh and returns the arguments it receives. */
  function roundTrip(argv: string[]): string[] {
    const output = execFileSync('/bin/sh', ['-c', `printf '%s\\0' ${argv.map(shellQuote).join(' ')}`], { encoding: 'utf8' });
    return output.split('\0').slice(0, -1);
  }

  const cases: [string, string[]][] = [
    ['plain words', ['ls', '-la', '/tmp']],
    ['a space', ['echo', 'hello world']],
    ['single quotes', ['echo', "it's"]],
    ['double quotes', ['echo', 'say "hi"']],
    ['a dollar sign', ['echo', '$HOME', '${PATH}']],
    ['a semicolon', ['echo', 'a; rm -rf /']],
    ['backticks', ['echo', '`id`', '$(id)']],
    ['a glob', ['echo', '*', '?']],
    ['an empty argument', ['printf', '']],
    ['a newline', ['echo', 'line1\nline2']],
    ['a backslash', ['echo', 'a\\b']],
    ['pipes and redirects', ['echo', 'a | b > c < d & e']],
  ];
  for (const [label, argv] of cases) {
    test(`shellQuote keeps ${label}`, () => {
      assert.deepEqual(roundTrip(argv), argv);
    });
  }

  test('shellQuote leaves a safe word unquoted', () => {
    assert.equal(shellQuote('/usr/bin/env'), '/usr/bin/env');
  });
});
