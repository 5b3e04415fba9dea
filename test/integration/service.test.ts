import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { serviceUnit } from '../../src/cli/commands/service.js';
import { repoRoot } from '../helpers/host.js';

const execFileAsync = promisify(execFile);

test('service unit passes systemd-analyze verify', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sistemo-unit-'));
  try {
    const unitFile = path.join(dir, 'sistemo.service');
    await fs.writeFile(unitFile, serviceUnit({ node: process.execPath, cli: path.join(repoRoot, 'bin', 'sistemo'), dataDir: '/var/lib/sistemo test' }));
    const result = await execFileAsync('systemd-analyze', ['verify', unitFile]).then(
      (output) => ({ code: 0, stderr: output.stderr }),
      (error: { code?: number; stderr?: string }) => ({ code: error.code ?? 1, stderr: error.stderr ?? '' }),
    );
    // verify prints unrelated warnings about the host's other units when systemd is not PID 1;
    // only lines about this unit count.
    const ownLines = result.stderr.split('\n').filter((line) => line.includes('sistemo.service'));
    assert.deepEqual(ownLines, []);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('service unit keeps VMs on stop', () => {
  const unit = serviceUnit({ node: '/usr/bin/node', cli: '/opt/sistemo/bin/sistemo', dataDir: '/root/.sistemo' });
  assert.match(unit, /^KillMode=process$/m);
  assert.match(unit, /^ExecStart="\/usr\/bin\/node" "\/opt\/sistemo\/bin\/sistemo" up --data-dir "\/root\/.sistemo"$/m);
  assert.match(unit, /^WantedBy=multi-user.target$/m);
});
