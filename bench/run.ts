/**
 * Measures Sistemo operations against the raw tools doing the same work, in one run, and prints
 * a table of medians, their ratios and targets. Timing figures are a report, never a pass/fail
 * test: the exit code is 0 whenever every figure could be measured, met or not.
 *
 * Usage (as root, after `npx tsc -p .`):
 *   node dist/bench/run.js [--only NAME[,NAME...]] [--rounds N] [--json FILE]
 *
 * Every daemon and VM runs in a network namespace that the bench creates and removes.
 */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import { ensureTestImage } from '../test/helpers/host.js';
import { loadAverage } from './measure.js';
import { formatTable, type Row } from './report.js';
import { exposeUnexpose, exposedPortThroughput } from './network-figures.js';
import { runCleanups } from './setup.js';
import { deployToSsh, rootVolumeAllocation, vmList50 } from './vm-figures.js';
import { volumeCreate2g, volumeList1000, volumeResize5gTo10g } from './volume-figures.js';

type Log = (line: string) => void;

interface Figure {
  name: string;
  /** Rounds when --rounds is not given: fewer for figures that boot a VM. */
  defaultRounds: number;
  needsImage: boolean;
  run: (rounds: number, log: Log) => Promise<Row[]>;
}

const figures: readonly Figure[] = [
  { name: 'deploy-to-ssh', defaultRounds: 3, needsImage: true, run: deployToSsh },
  // One deploy: the figure is a size, which varies little between boots.
  { name: 'root-volume-allocation', defaultRounds: 1, needsImage: true, run: (_rounds, log) => rootVolumeAllocation(log) },
  { name: 'vm-list-50', defaultRounds: 10, needsImage: false, run: vmList50 },
  { name: 'volume-create-2g', defaultRounds: 10, needsImage: false, run: volumeCreate2g },
  { name: 'volume-resize-5g-10g', defaultRounds: 10, needsImage: false, run: volumeResize5gTo10g },
  { name: 'volume-list-1000', defaultRounds: 10, needsImage: false, run: volumeList1000 },
  { name: 'expose-unexpose', defaultRounds: 10, needsImage: true, run: exposeUnexpose },
  // Each round streams 32 MiB over three paths through sshd in a TCG guest.
  { name: 'exposed-port-throughput', defaultRounds: 5, needsImage: true, run: exposedPortThroughput },
];

interface Options {
  only: string[] | undefined;
  rounds: number | undefined;
  json: string | undefined;
}

const usage = 'usage: node dist/bench/run.js [--only NAME[,NAME...]] [--rounds N] [--json FILE]';

function parseArguments(argv: readonly string[]): Options {
  const options: Options = { only: undefined, rounds: undefined, json: undefined };
  for (let index = 0; index < argv.length; index++) {
    const flag = argv[index];
    const value = argv[index + 1];
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(`${usage}\nfigures: ${figures.map((figure) => figure.name).join(', ')}\n`);
      process.exit(0);
    }
    if (value === undefined || value.startsWith('--')) throw new Error(`Missing value for ${flag}: ${usage}`);
    index++;
    if (flag === '--only') {
      options.only = value.split(',').map((name) => name.trim()).filter((name) => name !== '');
      const unknown = options.only.filter((name) => !figures.some((figure) => figure.name === name));
      if (unknown.length > 0) throw new Error(`Unknown figure ${unknown.join(', ')}: use one of ${figures.map((figure) => figure.name).join(', ')}`);
    } else if (flag === '--rounds') {
      const rounds = Number(value);
      if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100) throw new Error(`Invalid --rounds "${value}": use a whole number from 1 to 100`);
      options.rounds = rounds;
    } else if (flag === '--json') {
      options.json = value;
    } else {
      throw new Error(`Unknown option ${flag}: ${usage}`);
    }
  }
  return options;
}

/** Returns the first line a tool prints for its version on stdout or stderr (mke2fs uses stderr), or "unknown". */
function toolVersion(argv: string[]): string {
  const [command, ...args] = argv;
  const result = spawnSync(command!, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  return output.split('\n')[0]?.trim() || 'unknown';
}

function describeMachine() {
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryBytes: os.totalmem(),
    kernel: os.release(),
    node: process.version,
    qemu: toolVersion(['qemu-system-x86_64', '--version']),
    e2fsprogs: toolVersion(['mke2fs', '-V']),
  };
}

async function main(): Promise<number> {
  const options = parseArguments(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('The bench needs root: it creates network namespaces and runs the daemon and QEMU');
  const selected = figures.filter((figure) => !options.only || options.only.includes(figure.name));
  const log: Log = (line) => process.stderr.write(`# ${new Date().toISOString().slice(11, 19)} ${line}\n`);
  const startedAt = new Date();
  const machine = describeMachine();
  log(`${machine.cpus} CPUs, ${machine.qemu}, node ${machine.node}, load ${loadAverage()}`);
  if (selected.some((figure) => figure.needsImage)) await ensureTestImage();

  const rows: Row[] = [];
  const runs: { name: string; rounds: number; seconds: number; loadBefore: number; loadAfter: number; error?: string }[] = [];
  for (const figure of selected) {
    const rounds = options.rounds ?? figure.defaultRounds;
    const loadBefore = loadAverage();
    const started = Date.now();
    log(`${figure.name}: ${rounds} round(s), load ${loadBefore}`);
    try {
      rows.push(...await figure.run(rounds, log));
      runs.push({ name: figure.name, rounds, seconds: (Date.now() - started) / 1000, loadBefore, loadAfter: loadAverage() });
    } catch (error) {
      const message = (error as Error).message;
      log(`${figure.name} failed: ${message}`);
      runs.push({ name: figure.name, rounds, seconds: (Date.now() - started) / 1000, loadBefore, loadAfter: loadAverage(), error: message });
    }
  }

  process.stdout.write(`${formatTable(rows)}\n`);
  for (const row of rows) {
    const notes = [row.note, row.pairedRatio === undefined ? undefined : `median of per-round ratios ${row.pairedRatio.toFixed(2)}`];
    const text = notes.filter((note) => note !== undefined).join('; ');
    if (text) process.stdout.write(`note (${row.name}, ${row.sistemoLabel}): ${text}\n`);
  }
  const failed = runs.filter((run) => run.error);
  for (const run of failed) process.stdout.write(`not measured: ${run.name}: ${run.error}\n`);
  if (options.json) {
    const report = { startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(), machine, runs, rows };
    await fs.writeFile(options.json, `${JSON.stringify(report, null, 2)}\n`);
    log(`results written to ${options.json}`);
  }
  return failed.length > 0 ? 1 : 0;
}

process.once('SIGINT', () => {
  process.stderr.write('# interrupted: removing namespaces, daemons, VMs and scratch files\n');
  void runCleanups().finally(() => process.exit(130));
});

/** Exits once stdout is flushed. TestHost.waitDaemonExit leaves a 120 s timer behind, which would hold the process open. */
function exitAfterFlush(code: number): void {
  process.stdout.write('', () => process.exit(code));
}

main()
  .then(exitAfterFlush)
  .catch(async (error: unknown) => {
    process.stderr.write(`bench: ${(error as Error).message}\n`);
    await runCleanups();
    exitAfterFlush(1);
  });
