import { median } from './measure.js';

/** A row's target: a maximum ratio of Sistemo to raw, or an upper bound on Sistemo's median. */
export type Target = { kind: 'ratio'; max: number } | { kind: 'below'; max: number };

/** One line of the results table. Times are in milliseconds, sizes in bytes. */
export interface Row {
  name: string;
  unit: 'ms' | 'bytes';
  /** Label of the Sistemo measurement, such as "CLI" or "API". */
  sistemoLabel: string;
  /** Label of the raw measurement, such as "truncate + mkfs.ext4". */
  rawLabel: string;
  sistemoSamples: number[];
  rawSamples: number[];
  sistemo: number;
  raw: number;
  ratio: number;
  target: Target;
  met: boolean;
  /**
   * Median of the per-round ratios when both sides ran once per round. It is steadier than the
   * ratio of medians when host load drifts during the run.
   */
  pairedRatio?: number;
  note?: string;
}

/** Builds a row from samples: medians, their ratio and whether the target is met. */
export function makeRow(fields: {
  name: string;
  unit: Row['unit'];
  sistemoLabel: string;
  rawLabel: string;
  sistemoSamples: number[];
  rawSamples: number[];
  target: Target;
  note?: string;
}): Row {
  const sistemo = median(fields.sistemoSamples);
  const raw = median(fields.rawSamples);
  const ratio = sistemo / raw;
  const met = fields.target.kind === 'ratio' ? ratio <= fields.target.max : sistemo < fields.target.max;
  const paired = fields.sistemoSamples.length === fields.rawSamples.length && fields.sistemoSamples.length > 1;
  const pairedRatio = paired ? median(fields.sistemoSamples.map((value, round) => value / fields.rawSamples[round]!)) : undefined;
  return { ...fields, sistemo, raw, ratio, met, ...(pairedRatio === undefined ? {} : { pairedRatio }) };
}

export function formatValue(value: number, unit: Row['unit']): string {
  if (unit === 'bytes') return `${(value / (1024 * 1024)).toFixed(1)} MiB`;
  if (value >= 10_000) return `${(value / 1000).toFixed(2)} s`;
  return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} ms`;
}

export function formatTarget(target: Target, unit: Row['unit']): string {
  return target.kind === 'ratio' ? `ratio <= ${target.max}` : `< ${formatValue(target.max, unit)}`;
}

/** Formats rows as a Markdown table, which also reads well in a terminal. */
export function formatTable(rows: readonly Row[]): string {
  const header = ['name', 'Sistemo (median)', 'raw (median)', 'ratio', 'target', 'met'];
  const lines = rows.map((row) => [
    row.name,
    `${formatValue(row.sistemo, row.unit)} (${row.sistemoLabel})`,
    `${formatValue(row.raw, row.unit)} (${row.rawLabel})`,
    row.ratio.toFixed(2),
    formatTarget(row.target, row.unit),
    row.met ? 'yes' : 'no',
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column]!.length)));
  const render = (cells: readonly string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  return [render(header), render(widths.map((width) => '-'.repeat(width))), ...lines.map(render)].join('\n');
}
