import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { TestHost } from '../test/helpers/host.js';
import { timeApiRequest, timeProcess } from './measure.js';
import { makeRow, type Row } from './report.js';
import { cliArgv, seedVolumes, withHost, withScratchDir } from './setup.js';

function socketOf(host: TestHost): string {
  return path.join(host.dataDir, 'sistemo.sock');
}

/** Flushes dirty pages of the filesystem that contains dir, so one sample's writeback does not land in the next. */
async function flush(dir: string): Promise<void> {
  await timeProcess(['sync', '-f', dir]);
}

/** Returns the milliseconds a list of commands takes when run one after another. */
async function timeSequence(commands: readonly string[][]): Promise<number> {
  let total = 0;
  for (const argv of commands) total += (await timeProcess(argv)).ms;
  return total;
}

/** Returns the mkfs.ext4 argv that Ext4VolumeTool.createFilesystem runs, with the same flags. */
function mkfsArgv(file: string, label: string): string[] {
  return ['mkfs.ext4', '-q', '-F', '-m', '0', '-L', label.slice(0, 16), '--', file];
}

/** Throws unless the scratch directory and the daemon's volumes directory are on one filesystem. */
async function checkSameFilesystem(host: TestHost, scratch: string): Promise<void> {
  const volumes = await fs.stat(path.join(host.dataDir, 'volumes'));
  const scratchStat = await fs.stat(scratch);
  if (volumes.dev !== scratchStat.dev) {
    throw new Error(`${scratch} and ${host.dataDir}/volumes are on different filesystems, so the raw tools would not do the same work`);
  }
}

/**
 * volume-create-2g: `volume create 2G` through the API and the CLI, against `truncate -s 2G`
 * and `mkfs.ext4` with the daemon's flags on the same filesystem. The three kinds take turns.
 */
export async function volumeCreate2g(rounds: number, log: (line: string) => void): Promise<Row[]> {
  return withHost({}, async (host) => {
    await host.startDaemon();
    const socket = socketOf(host);
    return withScratchDir(async (scratch) => {
      await checkSameFilesystem(host, scratch);
      const api: number[] = [];
      const cli: number[] = [];
      const raw: number[] = [];
      const kinds = {
        api: async (round: number) => {
          const name = `create-api-${round}`;
          await flush(scratch);
          api.push((await timeApiRequest(socket, 'POST', '/api/v1/volumes', { size: '2G', name })).ms);
          await timeApiRequest(socket, 'DELETE', `/api/v1/volumes/${name}`);
        },
        cli: async (round: number) => {
          const name = `create-cli-${round}`;
          await flush(scratch);
          cli.push((await timeProcess(cliArgv(host.dataDir, 'volume', 'create', '2G', '--name', name))).ms);
          await timeApiRequest(socket, 'DELETE', `/api/v1/volumes/${name}`);
        },
        raw: async (round: number) => {
          const file = path.join(scratch, `create-raw-${round}.img`);
          await flush(scratch);
          raw.push(await timeSequence([['truncate', '-s', '2G', file], mkfsArgv(file, `create-raw-${round}`)]));
          await fs.rm(file);
        },
      };
      const order = ['api', 'cli', 'raw'] as const;
      for (let round = 0; round < rounds; round++) {
        for (let step = 0; step < order.length; step++) await kinds[order[(round + step) % order.length]!](round);
      }
      log(`volume-create-2g: API ${api.map((ms) => ms.toFixed(0)).join(' ')}; CLI ${cli.map((ms) => ms.toFixed(0)).join(' ')}; raw ${raw.map((ms) => ms.toFixed(0)).join(' ')} ms`);
      const rawLabel = 'truncate + mkfs.ext4';
      return [
        makeRow({ name: 'volume-create-2g', unit: 'ms', sistemoLabel: 'API', rawLabel, sistemoSamples: api, rawSamples: raw, target: { kind: 'ratio', max: 1.2 } }),
        makeRow({ name: 'volume-create-2g', unit: 'ms', sistemoLabel: 'CLI', rawLabel, sistemoSamples: cli, rawSamples: raw, target: { kind: 'ratio', max: 1.2 } }),
      ];
    });
  });
}

/**
 * volume-resize-5g-10g: `volume resize V 10G` of a fresh 5G volume through the API and the CLI,
 * against e2fsck -f -p, truncate -s 10G and resize2fs by hand on a fresh 5G ext4 file, in the
 * daemon's order. The daemon also writes a resize2fs undo file (-z), so the same commands with
 * -z run as a fourth kind and show what the undo file costs.
 */
export async function volumeResize5gTo10g(rounds: number, log: (line: string) => void): Promise<Row[]> {
  return withHost({}, async (host) => {
    await host.startDaemon();
    const socket = socketOf(host);
    return withScratchDir(async (scratch) => {
      await checkSameFilesystem(host, scratch);
      const api: number[] = [];
      const cli: number[] = [];
      const raw: number[] = [];
      const rawWithUndo: number[] = [];
      const createVolume = async (name: string) => {
        await timeApiRequest(socket, 'POST', '/api/v1/volumes', { size: '5G', name });
        await flush(scratch);
      };
      const resizeByHand = async (round: number, withUndo: boolean) => {
        const file = path.join(scratch, `resize-raw-${round}.img`);
        const undoFile = path.join(scratch, `resize-raw-${round}.e2undo`);
        await timeSequence([['truncate', '-s', '5G', file], mkfsArgv(file, `resize-raw-${round}`)]);
        await flush(scratch);
        const resize2fs = withUndo ? ['resize2fs', '-z', undoFile, file] : ['resize2fs', file];
        const ms = await timeSequence([['e2fsck', '-f', '-p', '--', file], ['truncate', '-s', '10G', file], resize2fs]);
        await fs.rm(file);
        await fs.rm(undoFile, { force: true });
        return ms;
      };
      const kinds = {
        api: async (round: number) => {
          const name = `resize-api-${round}`;
          await createVolume(name);
          api.push((await timeApiRequest(socket, 'POST', `/api/v1/volumes/${name}/resize`, { size: '10G' })).ms);
          await timeApiRequest(socket, 'DELETE', `/api/v1/volumes/${name}`);
        },
        cli: async (round: number) => {
          const name = `resize-cli-${round}`;
          await createVolume(name);
          cli.push((await timeProcess(cliArgv(host.dataDir, 'volume', 'resize', name, '10G'))).ms);
          await timeApiRequest(socket, 'DELETE', `/api/v1/volumes/${name}`);
        },
        raw: async (round: number) => { raw.push(await resizeByHand(round, false)); },
        rawWithUndo: async (round: number) => { rawWithUndo.push(await resizeByHand(round, true)); },
      };
      const order = ['api', 'cli', 'raw', 'rawWithUndo'] as const;
      for (let round = 0; round < rounds; round++) {
        for (let step = 0; step < order.length; step++) await kinds[order[(round + step) % order.length]!](round);
      }
      const show = (samples: number[]) => samples.map((ms) => ms.toFixed(0)).join(' ');
      log(`volume-resize-5g-10g: API ${show(api)}; CLI ${show(cli)}; raw ${show(raw)}; raw with -z ${show(rawWithUndo)} ms`);
      const rawLabel = 'e2fsck + truncate + resize2fs';
      const undoLabel = 'same with resize2fs -z';
      return [
        makeRow({ name: 'volume-resize-5g-10g', unit: 'ms', sistemoLabel: 'API', rawLabel, sistemoSamples: api, rawSamples: raw, target: { kind: 'ratio', max: 1.2 } }),
        makeRow({ name: 'volume-resize-5g-10g', unit: 'ms', sistemoLabel: 'CLI', rawLabel, sistemoSamples: cli, rawSamples: raw, target: { kind: 'ratio', max: 1.2 } }),
        makeRow({ name: 'volume-resize-5g-10g', unit: 'ms', sistemoLabel: 'API', rawLabel: undoLabel, sistemoSamples: api, rawSamples: rawWithUndo, target: { kind: 'ratio', max: 1.2 } }),
      ];
    });
  });
}

/**
 * volume-list-1000: `volume list` (CLI process end to end) and `GET /api/v1/volumes` with 1,000
 * data volumes recorded. Listing reads only the database, so the volume files do not exist.
 */
export async function volumeList1000(rounds: number, log: (line: string) => void): Promise<Row[]> {
  return withHost({}, async (host) => {
    await host.startDaemon();
    await host.terminateDaemon();
    seedVolumes(host.dataDir, 1000);
    await host.startDaemon();
    const socket = socketOf(host);
    const listed = JSON.parse((await timeApiRequest(socket, 'GET', '/api/v1/volumes')).body) as unknown[];
    if (listed.length !== 1000) throw new Error(`volume-list-1000: the daemon lists ${listed.length} volumes, expected 1000`);
    await timeProcess(cliArgv(host.dataDir, 'volume', 'list'));
    await timeProcess(['node', '-e', '']);

    const cli: number[] = [];
    const node: number[] = [];
    const api: number[] = [];
    const health: number[] = [];
    for (let round = 0; round < rounds; round++) {
      cli.push((await timeProcess(cliArgv(host.dataDir, 'volume', 'list'))).ms);
      node.push((await timeProcess(['node', '-e', ''])).ms);
      api.push((await timeApiRequest(socket, 'GET', '/api/v1/volumes')).ms);
      health.push((await timeApiRequest(socket, 'GET', '/api/v1/health')).ms);
    }
    log(`volume-list-1000: CLI ${cli.map((ms) => ms.toFixed(0)).join(' ')} ms; API ${api.map((ms) => ms.toFixed(1)).join(' ')} ms`);
    const note = 'the 1,000 volumes are database rows without files';
    return [
      makeRow({ name: 'volume-list-1000', unit: 'ms', sistemoLabel: 'CLI', rawLabel: "node -e ''", sistemoSamples: cli, rawSamples: node, target: { kind: 'below', max: 200 }, note }),
      makeRow({ name: 'volume-list-1000', unit: 'ms', sistemoLabel: 'API', rawLabel: 'GET /health', sistemoSamples: api, rawSamples: health, target: { kind: 'below', max: 200 }, note }),
    ];
  });
}
