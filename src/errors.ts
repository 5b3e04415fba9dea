/**
 * Error kinds shared by the CLI, the HTTP layer and the domain. One table maps each code to
 * its HTTP status and CLI exit code, so the two surfaces never disagree.
 */
export type ErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'conflict'
  | 'wrong_state'
  | 'no_space'
  | 'rate_limited'
  | 'unavailable'
  | 'internal';

const httpStatusByCode: Record<ErrorCode, number> = {
  invalid_argument: 400,
  not_found: 404,
  conflict: 409,
  wrong_state: 409,
  no_space: 507,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
};

/** Returns the HTTP status of API responses for an error code. */
export function httpStatusFor(code: ErrorCode): number {
  return httpStatusByCode[code];
}

/** Returns the CLI exit code for an error code: 2 for usage errors, 1 for failed operations. */
export function exitCodeFor(code: ErrorCode): number {
  return code === 'invalid_argument' ? 2 : 1;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && value in httpStatusByCode;
}

/** An error that users see: a stable code and a one-line message, plus facts for the log. */
export class SistemoError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    // Values from users end up in messages, so control characters are escaped: a message stays one line.
    super(message.replace(/[\u0000-\u001f\u007f]/g, (character) => JSON.stringify(character).slice(1, -1)), { cause: options.cause });
    this.name = 'SistemoError';
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** A child process that exited non-zero or could not start. The message stays short. */
export class CommandError extends Error {
  readonly argv: readonly string[];
  readonly exitCode: number | null;
  readonly stderrTail: string;
  /** The signal that ended the child, if any. */
  readonly signal: string | null;
  /** Whether the runner killed the child because it ran past its time limit. */
  readonly timedOut: boolean;

  constructor(argv: readonly string[], exitCode: number | null, stderr: string, options: { cause?: unknown; signal?: string | null; timedOut?: boolean } = {}) {
    const tool = argv[0] ?? 'command';
    let outcome = `failed with exit code ${exitCode ?? 'none'}`;
    if (options.signal) outcome = `was killed by ${options.signal}`;
    if (options.timedOut) outcome = 'timed out';
    super(`${tool} ${outcome}`, { cause: options.cause });
    this.signal = options.signal ?? null;
    this.timedOut = options.timedOut ?? false;
    this.name = 'CommandError';
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderrTail = stderr.slice(-2000);
  }
}

export const invalid = (message: string, details?: Record<string, unknown>) =>
  new SistemoError('invalid_argument', message, { details });
export const notFound = (message: string) => new SistemoError('not_found', message);
export const conflict = (message: string) => new SistemoError('conflict', message);
export const wrongState = (message: string) => new SistemoError('wrong_state', message);
