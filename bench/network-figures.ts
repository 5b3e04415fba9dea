import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/config.js';
import { gatewayOf, parseCidr } from '../src/network/cidr.js';
import { nftTable, renderRuleset, type FirewallState } from '../src/network/firewall.js';
import { sshClientOptions } from '../src/engine/ssh.js';
import type { TestHost } from '../test/helpers/host.js';
import { childEnvironment, median, timeApiRequest, timeProcess } from './measure.js';
import { makeRow, type Row } from './report.js';
import { cliArgv, withCleanup, withHost, withScratchDir } from './setup.js';

type Log = (line: string) => void;

/** The one VM each network figure deploys. */
const vmName = 'n1';
/** Host port that expose-unexpose claims and releases in every round. */
const togglePort = 2201;
/** Host port of the rule in the raw table, so that it never shadows the daemon's rule. */
const rawTogglePort = 2202;
/** Host port that exposed-port-throughput forwards to the VM's sshd. */
const streamPort = 2222;
/** The table the raw side loads with `nft -f`, next to the daemon's own table. */
const rawTable = 'smbench';
/** Bytes each SSH stream carries: `head -c` in the guest writes them to stdout. */
const streamBytes = 32 * 1024 * 1024;

function socketOf(host: TestHost): string {
  return path.join(host.dataDir, 'sistemo.sock');
}

/** The parts of `GET /api/v1/vms/NAME/ssh` that `vm exec` uses to open its connection. */
interface SshTarget {
  host: string;
  user: string;
  identity_file: string;
  connect_timeout_sec: number;
}

/** The default network as `GET /api/v1/networks` lists it. */
interface NetworkJson {
  name: string;
  subnet: string;
  bridge: string;
}

async function sshTargetOf(host: TestHost): Promise<SshTarget> {
  return JSON.parse((await timeApiRequest(socketOf(host), 'GET', `/api/v1/vms/${vmName}/ssh`)).body) as SshTarget;
}

async function defaultNetworkOf(host: TestHost): Promise<NetworkJson> {
  const networks = JSON.parse((await timeApiRequest(socketOf(host), 'GET', '/api/v1/networks')).body) as NetworkJson[];
  const found = networks.find((network) => network.name === 'default');
  if (!found) throw new Error(`GET /api/v1/networks lists no "default" network: ${JSON.stringify(networks)}`);
  return found;
}

/** Deploys the figure's VM inside the host's namespace. `vm deploy` exits once sshd sends its banner. */
async function deployVm(host: TestHost, log: Log, ...extra: string[]): Promise<SshTarget> {
  const started = Date.now();
  await host.ok('vm', 'deploy', 'debian', '--name', vmName, '--memory', '512M', ...extra);
  log(`${vmName} deployed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return sshTargetOf(host);
}

/**
 * Renders the ruleset that the daemon loads for this state, under the raw table's name
 * instead of Sistemo's, so that loading it leaves the daemon's table alone.
 */
function rawRuleset(state: FirewallState): string {
  const text = renderRuleset(state).replaceAll(`table ip ${nftTable}`, `table ip ${rawTable}`);
  if (text.includes(`table ip ${nftTable}`)) throw new Error(`The raw ruleset still names table ${nftTable}`);
  return text;
}

/**
 * Runs `nft -f FILE` inside the namespace and returns the milliseconds nft took, measured by
 * bash with $EPOCHREALTIME around the nft process, so that `ip netns exec` and the bash start
 * are not counted. The daemon, which already runs in the namespace, pays neither.
 */
async function timeNftLoad(host: TestHost, file: string): Promise<number> {
  const script = 'start=$EPOCHREALTIME; nft -f "$1" || exit; end=$EPOCHREALTIME; echo "$start $end"';
  const result = await timeProcess(['ip', 'netns', 'exec', host.netns, 'bash', '-c', script, 'bash', file]);
  const [start, end] = result.stdout.trim().split(' ').map((value) => Number(value.replace(',', '.')));
  if (start === undefined || end === undefined || !Number.isFinite(start) || !Number.isFinite(end)) {
    throw new Error(`Invalid timing output from bash around nft -f ${file}: "${result.stdout.trim()}"`);
  }
  return (end - start) * 1000;
}

async function sistemoRuleset(host: TestHost): Promise<string> {
  return (await timeProcess(['ip', 'netns', 'exec', host.netns, 'nft', 'list', 'table', 'ip', nftTable])).stdout;
}

/**
 * expose-unexpose: `vm expose n1 --port 2201:22` and `vm unexpose n1 --port 2201` of a running
 * VM, as CLI processes and as API requests. The raw side is one `nft -f` that loads the ruleset
 * the daemon renders for the same state (the default network with one exposure, or with none)
 * into a table of its own. After an expose the daemon also runs `sysctl` twice, which the raw
 * side does not.
 */
export async function exposeUnexpose(rounds: number, log: Log): Promise<Row[]> {
  return withHost({ withImage: true }, async (host) => {
    await host.startDaemon();
    const target = await deployVm(host, log);
    const network = await defaultNetworkOf(host);
    const socket = socketOf(host);
    const portsPath = `/api/v1/vms/${vmName}/ports`;

    return withScratchDir((scratch) => withCleanup(async () => {
      await timeProcess(['ip', 'netns', 'exec', host.netns, 'nft', 'delete', 'table', 'ip', rawTable], { allowFailure: true });
    }, async () => {
      const { config } = loadConfig(path.join(host.dataDir, 'config.yml'));
      const state = (withExposure: boolean): FirewallState => ({
        nat: config.nat,
        networks: [{ bridge: network.bridge, subnet: network.subnet }],
        exposures: withExposure ? [{ protocol: 'tcp', hostPort: rawTogglePort, vmIp: target.host, vmPort: 22 }] : [],
      });
      const addFile = path.join(scratch, 'with-rule.nft');
      const removeFile = path.join(scratch, 'without-rule.nft');
      await fs.writeFile(addFile, rawRuleset(state(true)));
      await fs.writeFile(removeFile, rawRuleset(state(false)));

      // One untimed change of each kind, which also checks that the daemon's rule appears.
      await timeProcess(cliArgv(host.dataDir, 'vm', 'expose', vmName, '--port', `${togglePort}:22`));
      if (!(await sistemoRuleset(host)).includes(`dport ${togglePort}`)) throw new Error(`expose-unexpose: no rule for port ${togglePort} in table ${nftTable} after vm expose`);
      await timeProcess(cliArgv(host.dataDir, 'vm', 'unexpose', vmName, '--port', String(togglePort)));
      await timeNftLoad(host, addFile);
      await timeNftLoad(host, removeFile);

      const samples = { cliExpose: [] as number[], cliUnexpose: [] as number[], apiExpose: [] as number[], apiUnexpose: [] as number[], rawAdd: [] as number[], rawRemove: [] as number[] };
      const kinds = {
        cli: async () => {
          samples.cliExpose.push((await timeProcess(cliArgv(host.dataDir, 'vm', 'expose', vmName, '--port', `${togglePort}:22`))).ms);
          samples.cliUnexpose.push((await timeProcess(cliArgv(host.dataDir, 'vm', 'unexpose', vmName, '--port', String(togglePort)))).ms);
        },
        api: async () => {
          samples.apiExpose.push((await timeApiRequest(socket, 'POST', portsPath, { port: `${togglePort}:22`, protocol: 'tcp' })).ms);
          samples.apiUnexpose.push((await timeApiRequest(socket, 'DELETE', `${portsPath}/${togglePort}?protocol=tcp`)).ms);
        },
        raw: async () => {
          samples.rawAdd.push(await timeNftLoad(host, addFile));
          samples.rawRemove.push(await timeNftLoad(host, removeFile));
        },
      };
      const order = ['cli', 'api', 'raw'] as const;
      for (let round = 0; round < rounds; round++) {
        for (let step = 0; step < order.length; step++) await kinds[order[(round + step) % order.length]!]();
      }
      if ((await sistemoRuleset(host)).includes(`dport ${togglePort}`)) throw new Error(`expose-unexpose: the rule for port ${togglePort} is still in table ${nftTable} after the last unexpose`);

      const show = (values: number[]) => values.map((ms) => ms.toFixed(1)).join(' ');
      log(`expose-unexpose: CLI expose ${show(samples.cliExpose)}; API expose ${show(samples.apiExpose)}; nft -f with rule ${show(samples.rawAdd)} ms`);
      log(`expose-unexpose: CLI unexpose ${show(samples.cliUnexpose)}; API unexpose ${show(samples.apiUnexpose)}; nft -f without rule ${show(samples.rawRemove)} ms`);
      // No target is set for these times. The rows use 1.2, the ratio that the volume figures
      // allow the daemon over the raw tools.
      const ratio = { kind: 'ratio', max: 1.2 } as const;
      const addLabel = 'nft -f, table with the rule';
      const removeLabel = 'nft -f, table without it';
      return [
        makeRow({ name: 'expose-unexpose', unit: 'ms', sistemoLabel: 'API expose', rawLabel: addLabel, sistemoSamples: samples.apiExpose, rawSamples: samples.rawAdd, target: ratio }),
        makeRow({ name: 'expose-unexpose', unit: 'ms', sistemoLabel: 'CLI expose', rawLabel: addLabel, sistemoSamples: samples.cliExpose, rawSamples: samples.rawAdd, target: ratio }),
        makeRow({ name: 'expose-unexpose', unit: 'ms', sistemoLabel: 'API unexpose', rawLabel: removeLabel, sistemoSamples: samples.apiUnexpose, rawSamples: samples.rawRemove, target: ratio }),
        makeRow({ name: 'expose-unexpose', unit: 'ms', sistemoLabel: 'CLI unexpose', rawLabel: removeLabel, sistemoSamples: samples.cliUnexpose, rawSamples: samples.rawRemove, target: ratio }),
      ];
    }));
  });
}

/** One SSH stream read to its end: the bytes and the time from the first byte to the last. */
interface Stream {
  bytes: number;
  /** Bytes in the first chunk, which arrived before the timed interval began. */
  firstChunkBytes: number;
  /** Milliseconds from spawn to the first byte: process start, TCP connect and the SSH handshake. */
  setupMs: number;
  /** Milliseconds from the first byte to the end of the stream. */
  transferMs: number;
}

/**
 * Runs `head -c BYTES /dev/zero` in the guest over SSH from inside the namespace, counts the
 * bytes of stdout without keeping them, and times the transfer from the first byte to the end.
 */
function readSshStream(host: TestHost, target: SshTarget, address: string, port: number, bytes: number): Promise<Stream> {
  const argv = [
    'ip', 'netns', 'exec', host.netns,
    'ssh', ...sshClientOptions(target.identity_file, target.connect_timeout_sec), '-p', String(port),
    `${target.user}@${address}`, '--', `head -c ${bytes} /dev/zero`,
  ];
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    let first: bigint | undefined;
    let firstChunkBytes = 0;
    let received = 0;
    let stderr = '';
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: childEnvironment() });
    child.stdout.on('data', (chunk: Buffer) => {
      if (first === undefined) {
        first = process.hrtime.bigint();
        firstChunkBytes = chunk.length;
      }
      received += chunk.length;
    });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      const ended = process.hrtime.bigint();
      if (code !== 0 || received !== bytes || first === undefined) {
        reject(new Error(`ssh to ${address}:${port} exited ${code} after ${received} of ${bytes} bytes: ${stderr.trim().slice(-2000)}`));
        return;
      }
      resolve({ bytes: received, firstChunkBytes, setupMs: Number(first - started) / 1e6, transferMs: Number(ended - first) / 1e6 });
    });
  });
}

/** Returns MiB/s over the timed part of a stream, which excludes the first chunk. */
function mibPerSecond(stream: Stream): number {
  return ((stream.bytes - stream.firstChunkBytes) / (1024 * 1024)) / (stream.transferMs / 1000);
}

/** Returns the milliseconds the whole stream would take at its measured rate, for the table's time rows. */
function msPerStream(stream: Stream): number {
  return (stream.bytes / (1024 * 1024)) / mibPerSecond(stream) * 1000;
}

/**
 * exposed-port-throughput: one TCP stream of 32 MiB from the VM's sshd to an SSH client inside
 * the namespace, through the exposed port on 127.0.0.1 and on the bridge address (DNAT to the
 * VM) and straight to the VM's address. The three paths take turns in every round. sshd
 * encrypts the stream inside a TCG guest, so the guest CPU bounds every path.
 */
export async function exposedPortThroughput(rounds: number, log: Log): Promise<Row[]> {
  return withHost({ withImage: true }, async (host) => {
    await host.startDaemon();
    const target = await deployVm(host, log, '--expose', `${streamPort}:22`);
    const network = await defaultNetworkOf(host);
    const bridgeAddress = gatewayOf(parseCidr(network.subnet));
    const paths = {
      direct: { address: target.host, port: 22 },
      loopback: { address: '127.0.0.1', port: streamPort },
      bridge: { address: bridgeAddress, port: streamPort },
    };
    // One short untimed stream per path checks that each path works before the timed rounds.
    for (const { address, port } of Object.values(paths)) await readSshStream(host, target, address, port, 1024 * 1024);

    const streams = { direct: [] as Stream[], loopback: [] as Stream[], bridge: [] as Stream[] };
    const order = ['direct', 'loopback', 'bridge'] as const;
    for (let round = 0; round < rounds; round++) {
      const rates: string[] = [];
      for (let step = 0; step < order.length; step++) {
        const kind = order[(round + step) % order.length]!;
        const stream = await readSshStream(host, target, paths[kind].address, paths[kind].port, streamBytes);
        streams[kind].push(stream);
        rates.push(`${kind} ${mibPerSecond(stream).toFixed(1)}`);
      }
      log(`exposed-port-throughput round ${round + 1}: ${rates.join(', ')} MiB/s`);
    }

    const rate = (kind: keyof typeof streams) => median(streams[kind].map(mibPerSecond));
    const setup = (kind: keyof typeof streams) => median(streams[kind].map((stream) => stream.setupMs));
    log(`exposed-port-throughput: median SSH setup direct ${setup('direct').toFixed(0)}, loopback ${setup('loopback').toFixed(0)}, bridge ${setup('bridge').toFixed(0)} ms`);
    const directRate = rate('direct');
    // A time ratio of at most 1.11 is a throughput of at least 0.9 of the direct path.
    const timeTarget = { kind: 'ratio', max: 1.11 } as const;
    const rawLabel = `direct ${target.host}:22`;
    const note = (kind: 'loopback' | 'bridge') =>
      `32 MiB stream time; median ${rate(kind).toFixed(1)} MiB/s exposed against ${directRate.toFixed(1)} MiB/s direct, throughput ratio ${(rate(kind) / directRate).toFixed(2)} (target >= 0.9); sshd in a TCG guest bounds both`;
    return [
      makeRow({
        name: 'exposed-port-throughput', unit: 'ms', sistemoLabel: `127.0.0.1:${streamPort} DNAT`, rawLabel,
        sistemoSamples: streams.loopback.map(msPerStream), rawSamples: streams.direct.map(msPerStream), target: timeTarget, note: note('loopback'),
      }),
      makeRow({
        name: 'exposed-port-throughput', unit: 'ms', sistemoLabel: `${bridgeAddress}:${streamPort} DNAT`, rawLabel,
        sistemoSamples: streams.bridge.map(msPerStream), rawSamples: streams.direct.map(msPerStream), target: timeTarget, note: note('bridge'),
      }),
    ];
  });
}
