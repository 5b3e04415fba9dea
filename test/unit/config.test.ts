import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { configKeys, envNameFor, loadConfig, type Config } from '../../src/config.js';
import { GiB, MiB, TiB } from '../../src/domain/size.js';
import { thrown } from '../fakes/errors.js';

/** Writes `content` as a config file in a temp dir, runs `work` with its path, then removes the dir. */
async function withConfigFile(content: string, work: (file: string) => void): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sistemo-config-'));
  try {
    const file = path.join(dir, 'config.yml');
    await fs.writeFile(file, content);
    work(file);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const missingFile = '/nonexistent/sistemo/config.yml';

describe('loadConfig defaults', () => {
  const defaults: [keyof Config, unknown][] = [
    ['port', 7777],
    ['listen_address', '127.0.0.1'],
    ['bridge_subnet', '10.200.0.0/16'],
    ['nat', true],
    ['accelerator', 'auto'],
    ['max_volume_size', 2 * TiB],
    ['default_memory', 512 * MiB],
    ['reconciler_interval_sec', 30],
    ['rate_limit_rps', 100],
    ['api_key', ''],
  ];
  for (const [key, value] of defaults) {
    test(`loadConfig defaults ${key} to ${JSON.stringify(value)}`, () => {
      assert.equal(loadConfig(missingFile, {}).config[key], value);
    });
  }

  test('loadConfig reports every value as a default without a file', () => {
    const { sources } = loadConfig(missingFile, {});
    for (const key of configKeys) assert.equal(sources[key], 'default', key);
  });

  test('loadConfig keeps default_vcpus within max_vcpus', () => {
    const { config } = loadConfig(missingFile, {});
    assert.ok(config.default_vcpus <= config.max_vcpus);
  });

  test('loadConfig caps the built-in default_vcpus', () => {
    const { config } = loadConfig(missingFile, { SISTEMO_MAX_VCPUS: '1' });
    assert.equal(config.default_vcpus, 1);
  });

  test('loadConfig rejects a set default_vcpus over max', () => {
    assert.throws(() => loadConfig(missingFile, { SISTEMO_MAX_VCPUS: '1', SISTEMO_DEFAULT_VCPUS: '2' }), /default_vcpus 2: it exceeds max_vcpus 1/);
  });

  test('loadConfig validates a file value the environment overrides', async () => {
    await withConfigFile('nat: yes\n', (file) => {
      assert.throws(() => loadConfig(file, { SISTEMO_NAT: 'false' }), /Invalid config nat "yes"/);
    });
  });

  test('loadConfig accepts an empty file', async () => {
    await withConfigFile('', (file) => {
      assert.equal(loadConfig(file, {}).config.port, 7777);
    });
  });
});

describe('loadConfig file and environment', () => {
  const fileText = [
    'port: 9000',
    'bridge_subnet: 10.50.0.0/24',
    'nat: false',
    'accelerator: tcg',
    'max_vcpus: 8',
    'max_memory: 16G',
    'max_volume_size: 500G',
    'reconciler_interval_sec: 10',
    'ssh_timeout_sec: 60',
    'rate_limit_rps: 0',
    'rate_limit_burst: 10',
    'shutdown_timeout_sec: 30',
    'api_key: from-file',
    '',
  ].join('\n');

  const fromFile: [keyof Config, unknown][] = [
    ['port', 9000],
    ['bridge_subnet', '10.50.0.0/24'],
    ['nat', false],
    ['accelerator', 'tcg'],
    ['max_vcpus', 8],
    ['max_memory', 16 * GiB],
    ['max_volume_size', 500 * GiB],
    ['reconciler_interval_sec', 10],
    ['ssh_timeout_sec', 60],
    ['rate_limit_rps', 0],
    ['rate_limit_burst', 10],
    ['shutdown_timeout_sec', 30],
    ['api_key', 'from-file'],
  ];
  for (const [key, value] of fromFile) {
    test(`loadConfig reads ${key} from the file`, async () => {
      await withConfigFile(fileText, (file) => {
        const loaded = loadConfig(file, {});
        assert.equal(loaded.config[key], value);
        assert.equal(loaded.sources[key], 'file');
      });
    });
  }

  test('SISTEMO_PORT overrides the file', async () => {
    await withConfigFile(fileText, (file) => {
      const loaded = loadConfig(file, { SISTEMO_PORT: '8123' });
      assert.equal(loaded.config.port, 8123);
      assert.equal(loaded.sources.port, 'env');
    });
  });

  test('HOST_API_KEY overrides the file', async () => {
    await withConfigFile(fileText, (file) => {
      const loaded = loadConfig(file, { HOST_API_KEY: 'from-env' });
      assert.equal(loaded.config.api_key, 'from-env');
      assert.equal(loaded.sources.api_key, 'env');
    });
  });

  test('SISTEMO_NAT overrides the file', async () => {
    await withConfigFile(fileText, (file) => {
      assert.equal(loadConfig(file, { SISTEMO_NAT: 'true' }).config.nat, true);
    });
  });

  test('SISTEMO_MAX_VOLUME_SIZE overrides the file', async () => {
    await withConfigFile(fileText, (file) => {
      assert.equal(loadConfig(file, { SISTEMO_MAX_VOLUME_SIZE: '1T' }).config.max_volume_size, TiB);
    });
  });

  test('an empty environment variable keeps the file value', async () => {
    await withConfigFile(fileText, (file) => {
      assert.equal(loadConfig(file, { SISTEMO_PORT: '' }).config.port, 9000);
    });
  });

  test('envNameFor prefixes keys with SISTEMO_', () => {
    assert.equal(envNameFor('rate_limit_rps'), 'SISTEMO_RATE_LIMIT_RPS');
    assert.equal(envNameFor('api_key'), 'HOST_API_KEY');
  });
});

describe('loadConfig rejections', () => {
  /** A bad value for each key and a value the message must show as accepted. */
  const badValues: [keyof Config, string, string][] = [
    ['port', '70000', '7777'],
    ['port', 'http', '7777'],
    ['port', '0', '7777'],
    ['port', '77.5', '7777'],
    ['listen_address', 'example.com', '127.0.0.1'],
    ['bridge_subnet', '10.200.0.1/16', '10.200.0.0/16'],
    ['bridge_subnet', '10.0.0.0/30', '10.200.0.0/16'],
    ['bridge_subnet', 'lan', '10.200.0.0/16'],
    ['nat', 'yes', 'true'],
    ['accelerator', 'hvf', 'kvm'],
    ['max_vcpus', '0', '4'],
    ['max_vcpus', 'many', '4'],
    ['max_memory', '8', '8G'],
    ['max_memory', '8X', '8G'],
    ['max_volume_size', '-1G', '2T'],
    ['max_volume_size', '1,5T', '2T'],
    ['default_vcpus', 'two', '2'],
    ['default_memory', 'half', '512M'],
    ['reconciler_interval_sec', '0', '30'],
    ['reconciler_interval_sec', '30s', '30'],
    ['ssh_timeout_sec', '-5', '180'],
    ['stop_timeout_sec', 'soon', '60'],
    ['rate_limit_rps', '-1', '100'],
    ['rate_limit_rps', '1.5', '100'],
    ['rate_limit_burst', 'lots', '50'],
    ['shutdown_timeout_sec', '0', '120'],
  ];
  for (const [key, value, example] of badValues) {
    test(`loadConfig rejects ${key} "${value}" from the environment`, () => {
      const error = thrown(() => loadConfig(missingFile, { [envNameFor(key)]: value }));
      assert.equal(error.code, 'invalid_argument');
      assert.ok(error.message.includes(key), `names the key: ${error.message}`);
      assert.ok(error.message.includes(`"${value}"`), `names the value: ${error.message}`);
      assert.ok(error.message.includes(example), `shows ${example}: ${error.message}`);
    });
  }

  test('every key has a bad value in the table', () => {
    const covered = new Set(badValues.map(([key]) => key));
    const missing = configKeys.filter((key) => key !== 'api_key' && !covered.has(key));
    assert.deepEqual(missing, []);
  });

  test('loadConfig rejects a bad value from the file', async () => {
    await withConfigFile('port: 99999\n', (file) => {
      const error = thrown(() => loadConfig(file, {}));
      assert.match(error.message, /port/);
      assert.match(error.message, /99999/);
      assert.match(error.message, /7777/);
    });
  });

  test('loadConfig rejects a size written as a number', async () => {
    await withConfigFile('max_memory: 8\n', (file) => {
      const error = thrown(() => loadConfig(file, {}));
      assert.match(error.message, /max_memory/);
      assert.match(error.message, /8G/);
    });
  });

  test('loadConfig rejects an api_key that is not a string', async () => {
    await withConfigFile('api_key: [a, b]\n', (file) => {
      const error = thrown(() => loadConfig(file, {}));
      assert.equal(error.code, 'invalid_argument');
      assert.match(error.message, /api_key/);
    });
  });

  test('loadConfig rejects an unknown key', async () => {
    await withConfigFile('port: 7777\nlisten_port: 80\n', (file) => {
      const error = thrown(() => loadConfig(file, {}));
      assert.equal(error.code, 'invalid_argument');
      assert.match(error.message, /listen_port/);
    });
  });

  test('loadConfig rejects invalid YAML', async () => {
    await withConfigFile('port: [7777\n', (file) => {
      const error = thrown(() => loadConfig(file, {}));
      assert.equal(error.code, 'invalid_argument');
      assert.ok(error.message.includes(file), error.message);
    });
  });

  test('loadConfig rejects a YAML list', async () => {
    await withConfigFile('- port\n- 7777\n', (file) => {
      assert.equal(thrown(() => loadConfig(file, {})).code, 'invalid_argument');
    });
  });

  test('loadConfig rejects default_memory above max_memory', () => {
    const error = thrown(() => loadConfig(missingFile, { SISTEMO_MAX_MEMORY: '256M', SISTEMO_DEFAULT_MEMORY: '512M' }));
    assert.match(error.message, /default_memory/);
  });

  test('loadConfig rejects a listen_address octet over 255', () => {
    assert.throws(() => loadConfig(missingFile, { SISTEMO_LISTEN_ADDRESS: '999.1.1.1' }));
  });
});
