import net from 'node:net';

/** A QMP command failed, or the monitor did not respond in time. */
export class QmpError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QmpError';
  }
}

/**
 * Sends one QMP command over a fresh connection: greeting, capabilities negotiation, the
 * command, then close. QEMU serves one monitor client at a time, so no connection is kept.
 */
export async function qmpCommand(socketPath: string, command: string, args?: Record<string, unknown>, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    let buffer = '';
    let stage: 'greeting' | 'capabilities' | 'command' = 'greeting';
    const timer = setTimeout(() => finish(new QmpError(`QMP ${command} timed out after ${timeoutMs} ms`)), timeoutMs);
    const finish = (error: Error | undefined, value?: unknown) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(value);
    };
    const send = (execute: string, commandArgs?: Record<string, unknown>) => {
      socket.write(`${JSON.stringify(commandArgs ? { execute, arguments: commandArgs } : { execute })}\n`);
    };
    socket.setEncoding('utf8');
    socket.on('error', (error) => finish(new QmpError(`QMP connection to ${socketPath} failed: ${error.message}`, { cause: error })));
    socket.on('close', () => finish(new QmpError(`QMP connection closed before ${command} answered`)));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let newline = buffer.indexOf('\n');
      while (newline >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        newline = buffer.indexOf('\n');
        if (line === '') continue;
        let message: Record<string, unknown>;
        try {
          message = JSON.parse(line) as Record<string, unknown>;
        } catch (error) {
          finish(new QmpError('QMP sent a line that is not JSON', { cause: error }));
          return;
        }
        if ('event' in message) continue;
        if ('error' in message) {
          const detail = (message.error as { desc?: string } | undefined)?.desc ?? 'unknown error';
          finish(new QmpError(`QMP ${stage === 'command' ? command : 'qmp_capabilities'} failed: ${detail}`));
          return;
        }
        if (stage === 'greeting' && 'QMP' in message) {
          stage = 'capabilities';
          send('qmp_capabilities');
        } else if (stage === 'capabilities' && 'return' in message) {
          stage = 'command';
          send(command, args);
        } else if (stage === 'command' && 'return' in message) {
          finish(undefined, message.return);
          return;
        }
      }
    });
  });
}
