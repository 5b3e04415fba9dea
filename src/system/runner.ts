import { spawn } from 'node:child_process';
import { CommandError } from '../errors.js';

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface RunOptions {
  /** Exit codes that count as success; default [0]. */
  okExitCodes?: readonly number[];
  /** Kill the child after this many milliseconds. */
  timeoutMs?: number;
  /** Called with the child's pid right after it starts, so callers can journal it. */
  onSpawn?: (pid: number) => void;
  /** Called for each line the child writes to stdout or stderr. */
  onLine?: (line: string) => void;
  /** Text written to the child's stdin; without it stdin is closed. */
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs system tools with argument arrays, never through a shell. */
export interface CommandRunner {
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
}

const maxCapturedBytes = 1 << 20;

function appendCapped(buffer: string, chunk: string): string {
  const joined = buffer + chunk;
  return joined.length > maxCapturedBytes ? joined.slice(-maxCapturedBytes) : joined;
}

/** Runs real processes. Output is captured (the last 1 MiB of each stream) for errors and logs. */
export class ProcessRunner implements CommandRunner {
  run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error('ProcessRunner.run needs a program name');
    const okExitCodes = options.okExitCodes ?? [0];
    return new Promise((resolve, reject) => {
      const child = spawn(file, args, {
        stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        env: options.env ?? process.env,
        cwd: options.cwd,
      });
      let stdout = '';
      let stderr = '';
      let pending = '';
      const emitLines = (chunk: string) => {
        if (!options.onLine) return;
        pending += chunk;
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) options.onLine(line);
      };
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        stdout = appendCapped(stdout, chunk);
        emitLines(chunk);
      });
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
        stderr = appendCapped(stderr, chunk);
        emitLines(chunk);
      });
      if (options.input !== undefined) child.stdin?.end(options.input);
      let timedOut = false;
      const timer = options.timeoutMs
        ? setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, options.timeoutMs)
        : undefined;
      child.on('spawn', () => {
        if (child.pid !== undefined) options.onSpawn?.(child.pid);
      });
      child.on('error', (error) => {
        clearTimeout(timer);
        reject(new CommandError(argv, null, stderr, { cause: error }));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (pending && options.onLine) options.onLine(pending);
        const exitCode = code ?? (signal ? 128 : -1);
        if (okExitCodes.includes(exitCode)) resolve({ stdout, stderr, exitCode });
        else reject(new CommandError(argv, exitCode, stderr, { signal, timedOut }));
      });
    });
  }
}
