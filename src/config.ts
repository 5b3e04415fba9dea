import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import { parse as parseYaml } from 'yaml';
import { invalid } from './errors.js';
import { GiB, TiB, formatSize, parseSize } from './domain/size.js';
import { parseCidr } from './network/cidr.js';

export type Accelerator = 'auto' | 'kvm' | 'tcg';

export interface Config {
  port: number;
  listen_address: string;
  bridge_subnet: string;
  nat: boolean;
  accelerator: Accelerator;
  max_vcpus: number;
  max_memory: number;
  max_volume_size: number;
  default_vcpus: number;
  default_memory: number;
  reconciler_interval_sec: number;
  ssh_timeout_sec: number;
  stop_timeout_sec: number;
  rate_limit_rps: number;
  rate_limit_burst: number;
  shutdown_timeout_sec: number;
  api_key: string;
}

export type ConfigSource = 'default' | 'file' | 'env';

export interface LoadedConfig {
  config: Config;
  sources: Record<keyof Config, ConfigSource>;
}

type Parser<T> = (raw: unknown, key: string) => T;

function describe(raw: unknown): string {
  return typeof raw === 'string' ? `"${raw}"` : JSON.stringify(raw);
}

function integer(min: number, max: number, example: number): Parser<number> {
  return (raw, key) => {
    const value = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw invalid(`Invalid config ${key} ${describe(raw)}: use a whole number from ${min} to ${max}, such as ${example}`);
    }
    return value;
  };
}

function size(example: string, max = 64 * TiB): Parser<number> {
  return (raw, key) => {
    if (typeof raw !== 'string') throw invalid(`Invalid config ${key} ${describe(raw)}: use a size such as ${example}`);
    try {
      return parseSize(raw, { what: `config ${key}`, max });
    } catch {
      throw invalid(`Invalid config ${key} ${describe(raw)}: use a size such as ${example}`);
    }
  };
}

const boolean: Parser<boolean> = (raw, key) => {
  if (typeof raw === 'boolean') return raw;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw invalid(`Invalid config ${key} ${describe(raw)}: use true or false`);
};

function oneOf<T extends string>(values: readonly T[]): Parser<T> {
  return (raw, key) => {
    if (typeof raw === 'string' && (values as readonly string[]).includes(raw)) return raw as T;
    throw invalid(`Invalid config ${key} ${describe(raw)}: use one of ${values.join(', ')}`);
  };
}

const subnet: Parser<string> = (raw, key) => {
  if (typeof raw !== 'string') throw invalid(`Invalid config ${key} ${describe(raw)}: use an IPv4 CIDR such as 10.200.0.0/16`);
  try {
    const cidr = parseCidr(raw);
    if (cidr.prefix > 29) throw new Error('too small');
    return raw;
  } catch {
    throw invalid(`Invalid config ${key} ${describe(raw)}: use an IPv4 network of /29 or larger, such as 10.200.0.0/16`);
  }
};

const text: Parser<string> = (raw, key) => {
  if (typeof raw !== 'string') throw invalid(`Invalid config ${key} ${describe(raw)}: use a string`);
  return raw;
};

const listenAddress: Parser<string> = (raw, key) => {
  if (typeof raw === 'string' && (isIP(raw) !== 0 || raw === 'localhost')) return raw;
  throw invalid(`Invalid config ${key} ${describe(raw)}: use an IP address such as 127.0.0.1`);
};

const hostCores = os.availableParallelism();
const hostMemory = os.totalmem();

/** Every configuration key, its parser and its default. Unknown keys are rejected. */
const schema: { [K in keyof Config]: { parse: Parser<Config[K]>; fallback: Config[K]; help: string } } = {
  port: { parse: integer(1, 65535, 7777), fallback: 7777, help: 'HTTP port of the API' },
  listen_address: { parse: listenAddress, fallback: '127.0.0.1', help: 'HTTP listen address' },
  bridge_subnet: { parse: subnet, fallback: '10.200.0.0/16', help: 'subnet of the default bridge sistemo0' },
  nat: { parse: boolean, fallback: true, help: 'outbound NAT for VMs' },
  accelerator: { parse: oneOf(['auto', 'kvm', 'tcg'] as const), fallback: 'auto', help: 'auto, kvm or tcg' },
  max_vcpus: { parse: integer(1, 1024, 4), fallback: hostCores, help: 'maximum vCPUs per VM' },
  max_memory: { parse: size('8G'), fallback: hostMemory - (hostMemory % (1 << 20)), help: 'maximum memory per VM' },
  max_volume_size: { parse: size('2T'), fallback: 2 * TiB, help: 'maximum volume size' },
  default_vcpus: { parse: integer(1, 1024, 2), fallback: Math.min(2, hostCores), help: 'vCPUs when deploy has no --vcpus' },
  default_memory: { parse: size('512M'), fallback: GiB / 2, help: 'memory when deploy has no --memory' },
  reconciler_interval_sec: { parse: integer(1, 86400, 30), fallback: 30, help: 'seconds between reconciler runs' },
  ssh_timeout_sec: { parse: integer(1, 3600, 180), fallback: 180, help: 'seconds to wait for sshd in a VM' },
  stop_timeout_sec: { parse: integer(1, 3600, 60), fallback: 60, help: 'seconds a VM gets to power off before it is killed' },
  rate_limit_rps: { parse: integer(0, 1_000_000, 100), fallback: 100, help: 'requests per second per client address, 0 turns limiting off' },
  rate_limit_burst: { parse: integer(0, 1_000_000, 50), fallback: 50, help: 'extra requests a client may send at once' },
  shutdown_timeout_sec: { parse: integer(1, 3600, 120), fallback: 120, help: 'seconds in-flight operations get on SIGTERM' },
  api_key: { parse: text, fallback: '', help: 'API key that clients other than the local host must send' },
};

export const configKeys = Object.keys(schema) as (keyof Config)[];

export function configHelp(key: keyof Config): string {
  return schema[key].help;
}

/** Returns the environment variable that overrides a key: the key upper-cased with SISTEMO_. */
export function envNameFor(key: keyof Config): string {
  return key === 'api_key' ? 'HOST_API_KEY' : `SISTEMO_${key.toUpperCase()}`;
}

/**
 * Loads `config.yml` (if present) and lets environment variables override it. Every key is
 * validated, so a bad value stops the daemon at start with the key, the value and an example.
 */
export function loadConfig(configFile: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let fileValues: Record<string, unknown> = {};
  let content: string | undefined;
  try {
    content = readFileSync(configFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (content !== undefined) {
    let parsed: unknown;
    try {
      parsed = parseYaml(content);
    } catch (error) {
      const detail = ((error as Error).message.split('\n')[0] ?? '').replace(/:$/, '');
      throw invalid(`Invalid config file "${configFile}": ${detail}`);
    }
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed)) {
        throw invalid(`Invalid config file "${configFile}": expected key: value lines, such as "port: 7777"`);
      }
      fileValues = parsed as Record<string, unknown>;
    }
  }
  for (const key of Object.keys(fileValues)) {
    if (!(key in schema)) {
      throw invalid(`Invalid config file "${configFile}": unknown key "${key}", known keys are ${configKeys.join(', ')}`);
    }
  }
  const config = {} as Record<string, unknown>;
  const sources = {} as Record<keyof Config, ConfigSource>;
  for (const key of configKeys) {
    const envValue = env[envNameFor(key)];
    const entry = schema[key] as { parse: Parser<unknown>; fallback: unknown };
    // A file value is validated even when the environment overrides it, so a bad file never hides.
    if (key in fileValues) entry.parse(fileValues[key], key);
    if (envValue !== undefined && envValue !== '') {
      config[key] = entry.parse(envValue, key);
      sources[key] = 'env';
    } else if (key in fileValues) {
      config[key] = entry.parse(fileValues[key], key);
      sources[key] = 'file';
    } else {
      config[key] = entry.fallback;
      sources[key] = 'default';
    }
  }
  const result = config as unknown as Config;
  if (result.default_vcpus > result.max_vcpus) {
    // The built-in default follows a lower max_vcpus; a value someone set is an error instead.
    if (sources.default_vcpus !== 'default') {
      throw invalid(`Invalid config default_vcpus ${result.default_vcpus}: it exceeds max_vcpus ${result.max_vcpus}, such as ${result.max_vcpus}`);
    }
    result.default_vcpus = result.max_vcpus;
  }
  if (result.default_memory > result.max_memory) {
    throw invalid(`Invalid config default_memory ${formatSize(result.default_memory)}: it exceeds max_memory ${formatSize(result.max_memory)}`);
  }
  return { config: result, sources };
}
