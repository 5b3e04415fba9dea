/** Results go to stdout and diagnostics to stderr, only through this module. */

export type OutputFormat = 'table' | 'json';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLine(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Writes a diagnostic line (progress, warnings) to stderr. */
export function note(text: string): void {
  process.stderr.write(`${text}\n`);
}

/**
 * Formats rows as an aligned plain-text table: columns separated by at least three spaces,
 * no borders, the header in upper case as given.
 */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const render = (cells: readonly string[]) =>
    cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd((widths[column] ?? 0) + 3))).join('').trimEnd();
  return [render(headers), ...rows.map(render)].join('\n');
}

export function printTable(headers: readonly string[], rows: readonly (readonly string[])[]): void {
  printLine(formatTable(headers, rows));
}
