import pino from 'pino';

/**
 * The daemon's log. error = an operation failed, warn = a fallback was taken, info = lifecycle
 * steps, debug = argv and child output. Each line carries the VM or volume it concerns.
 */
export interface Logger {
  error(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  debug(fields: Record<string, unknown>, message: string): void;
}

/** Creates the daemon logger: JSON lines to the log file, and to stderr for a foreground daemon. */
export function createLogger(options: { file: string; level?: string; toStderr: boolean }): pino.Logger {
  const streams: pino.StreamEntry[] = [{ stream: pino.destination({ dest: options.file, mkdir: true, sync: true }) }];
  if (options.toStderr) streams.push({ stream: pino.destination(2) });
  return pino({ level: options.level ?? 'info', base: undefined }, pino.multistream(streams));
}

/** A logger that drops everything, for tests. */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
};
