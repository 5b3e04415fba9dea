#!/usr/bin/env node
// Builds the debian image by hand: node scripts/build-image.mjs OUTDIR (run `npx tsc -p .` first).
import { buildDebianImage } from '../dist/src/images/debian.js';
import { ProcessRunner } from '../dist/src/system/runner.js';

const outDir = process.argv[2];
if (!outDir) {
  console.error('usage: node scripts/build-image.mjs OUTDIR');
  process.exit(2);
}
const started = Date.now();
const artifacts = await buildDebianImage({
  outDir,
  aptSources: process.env.SISTEMO_APT_SOURCES ?? '/etc/apt/sources.list.d/debian.sources',
  runner: new ProcessRunner(),
  onProgress: (message) => console.error(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`),
});
console.log(JSON.stringify(artifacts, null, 2));
