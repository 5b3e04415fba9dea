import { invalid } from '../errors.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

const unitFactors: Record<string, number> = {
  k: KiB, kb: KiB, kib: KiB,
  m: MiB, mb: MiB, mib: MiB,
  g: GiB, gb: GiB, gib: GiB,
  t: TiB, tb: TiB, tib: TiB,
};

/** Help text shared by every flag and field that takes a size. */
export const sizeHelp =
  'a number and a unit, e.g. 512M, 5G, 1.5GB; K/M/G/T, KB/MB/GB/TB and KiB/MiB/GiB/TiB are all powers of 1024';

const sizePattern = /^(\d+(?:\.\d+)?)\s*([a-z]+)$/i;

/**
 * Parses a size such as `5G`, `5GB`, `1.5GiB` or `512m` into bytes, rounded up to a whole MiB.
 * Every unit is binary, whatever its spelling, so `5GB` and `5GiB` are the same size.
 */
export function parseSize(text: string, options: { what?: string; max?: number } = {}): number {
  const what = options.what ?? 'size';
  const trimmed = text.trim();
  const example = 'use a number and a unit, such as 5G or 512M';
  if (trimmed === '') throw invalid(`Invalid ${what} "": ${example}`);
  if (trimmed.includes(',')) throw invalid(`Invalid ${what} "${text}": use a decimal point, not a comma (1.5G)`);
  if (trimmed.startsWith('-')) throw invalid(`Invalid ${what} "${text}": a size must be positive, such as 5G`);
  if (/^\d+(\.\d+)?$/.test(trimmed)) throw invalid(`Invalid ${what} "${text}": the unit is missing, ${example}`);
  const match = sizePattern.exec(trimmed);
  if (!match) throw invalid(`Invalid ${what} "${text}": ${example}`);
  const [, amount = '', unit = ''] = match;
  const factor = unitFactors[unit.toLowerCase()];
  if (factor === undefined) throw invalid(`Invalid ${what} "${text}": unknown unit "${unit}", ${example}`);
  const bytes = Math.ceil((Number(amount) * factor) / MiB) * MiB;
  if (!Number.isFinite(bytes) || Number(amount) === 0) {
    throw invalid(`Invalid ${what} "${text}": a size must be larger than zero, such as 5G`);
  }
  if (options.max !== undefined && bytes > options.max) {
    const example = options.max >= 5 * GiB ? '5G' : `${Math.max(1, Math.floor(options.max / MiB))}M`;
    throw invalid(`Invalid ${what} "${text}": the maximum is ${formatSize(options.max)}, such as ${example}`);
  }
  return bytes;
}

/** Formats bytes the way the CLI prints sizes: `5.0GB` from 1 GiB up, `512MB` below it. */
export function formatSize(bytes: number): string {
  if (bytes >= TiB) return `${(bytes / TiB).toFixed(1)}TB`;
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(1)}GB`;
  if (bytes >= MiB) return `${Math.round(bytes / MiB)}MB`;
  if (bytes >= KiB) return `${Math.round(bytes / KiB)}KB`;
  return `${bytes}B`;
}
