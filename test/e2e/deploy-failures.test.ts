import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { TestHost } from '../helpers/host.js';

/** Returns everything a failed deploy could leave behind, so a test can require it all empty. */
async function leftovers(host: TestHost) {
  const vms = JSON.parse(await host.ok('vm', 'list', '-o', 'json')) as unknown[];
  const volumes = JSON.parse(await host.ok('volume', 'list', '-o', 'json')) as unknown[];
  const files = await fs.readdir(path.join(host.dataDir, 'volumes'));
  const links = (await host.inNetns(['ip', '-o', 'link', 'show'])).stdout.split('\n').filter((line) => /: sm[0-9a-f]{12}[:@]/.test(line));
  return { vms, volumes, files, taps: links, qemu: await host.qemuPids() };
}

const nothing = { vms: [], volumes: [], files: [], taps: [], qemu: [] };

test('failed deploys leave nothing behind', { timeout: 10 * 60_000 }, async (t) => {
  // A 1-second SSH timeout makes the boot step fail after QEMU has started.
  const host = await TestHost.create({ withImage: true, config: { ssh_timeout_sec: 1 } });
  try {
    await host.startDaemon();

    await t.test('a boot that times out is rolled back', async () => {
      const result = await host.cli('vm', 'deploy', 'debian', '--name', 'slow');
      assert.equal(result.code, 1);
      assert.match(result.stderr, /did not become ready: sshd did not respond within 1 s/);
      assert.deepEqual(await leftovers(host), nothing);
      const history = JSON.parse(await host.ok('history', '--action', 'vm.deploy', '-o', 'json')) as { result: string }[];
      assert.equal(history[0]?.result, 'failed');
    });

    const rejected: { args: string[]; code: number; message: RegExp }[] = [
      { args: ['vm', 'deploy', 'nosuchimage', '--name', 'a'], code: 1, message: /Image "nosuchimage" not found/ },
      { args: ['vm', 'deploy', 'debian', '--name', 'Bad_Name'], code: 2, message: /Invalid VM name "Bad_Name"/ },
      { args: ['vm', 'deploy', 'debian', '--name', 'a', '--vcpus', '999'], code: 2, message: /Invalid vCPU count 999/ },
      { args: ['vm', 'deploy', 'debian', '--name', 'a', '--memory', '99999G'], code: 2, message: /the maximum is/ },
      { args: ['vm', 'deploy', 'debian', '--name', 'a', '--storage', '5'], code: 2, message: /the unit is missing/ },
      { args: ['vm', 'deploy', 'debian', '--name', 'a', '--storage', '100M'], code: 2, message: /needs at least/ },
      { args: ['vm', 'deploy', 'debian', '--name', 'a', '--attach', 'ghost'], code: 1, message: /Volume "ghost" not found/ },
      { args: ['vm', 'deploy', '--volume', 'ghost'], code: 1, message: /Volume "ghost" not found/ },
      { args: ['vm', 'deploy', path.join(host.dataDir, 'missing.ext4')], code: 1, message: /no such file/ },
    ];
    for (const item of rejected) {
      await t.test(`deploy ${item.args.slice(2).join(' ')} is rejected`, async () => {
        const result = await host.cli(...item.args);
        assert.equal(result.code, item.code, result.stderr);
        assert.match(result.stderr, item.message);
        assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
        assert.deepEqual(await leftovers(host), nothing);
      });
    }
  } finally {
    await host.cleanup();
  }
});
