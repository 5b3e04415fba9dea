import { Command, CommanderError, Option } from 'commander';
import { CommandError, SistemoError, exitCodeFor } from '../errors.js';
import { completionCommand } from './commands/completion.js';
import { configCommand, doctorCommand } from './commands/doctor.js';
import { historyCommand, imageCommand, upCommand } from './commands/misc.js';
import { networkCommand } from './commands/network.js';
import { serviceCommand } from './commands/service.js';
import { vmCommand } from './commands/vm.js';
import { volumeCommand } from './commands/volume.js';
import { note } from './output.js';

/** Builds the whole command tree. `setExitCode` lets commands pass a child's exit code through. */
export function buildProgram(setExitCode: (code: number) => void): Command {
  const program = new Command('sistemo')
    .description('VMs with first-class volumes on one Linux host')
    .version('0.5.0')
    .addOption(new Option('-o, --output <format>', 'output format for list, status, show and history').choices(['table', 'json']))
    .option('-y, --yes', 'answer yes to confirmation prompts (also accepted after the command)')
    .option('--data-dir <dir>', 'data directory (default ~/.sistemo of the invoking user, or SISTEMO_DATA_DIR)')
    // Usage errors stay one line: no help text or suggestion after them.
    .showSuggestionAfterError(false)
    .enablePositionalOptions(false)
    .exitOverride();
  const commands = [
    upCommand(setExitCode), vmCommand(setExitCode), volumeCommand(), networkCommand(), imageCommand(), historyCommand(),
    doctorCommand(setExitCode), configCommand(), serviceCommand(), completionCommand(),
  ];
  for (const command of commands) program.addCommand(command);
  // Every subcommand exits through the same override, so usage errors get exit code 2.
  const applyOverride = (command: Command) => {
    command.exitOverride();
    command.showSuggestionAfterError(false);
    command.commands.forEach(applyOverride);
  };
  applyOverride(program);
  return program;
}

/** Runs the CLI and returns the exit code; only the entry point exits the process. */
export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const program = buildProgram((code) => { exitCode = code; });
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return 0;
      return 2;
    }
    if (error instanceof SistemoError) {
      note(`Error: ${error.message}`);
      return exitCodeFor(error.code);
    }
    if (error instanceof CommandError) {
      note(`Error: ${error.message}`);
      return 1;
    }
    note(`Error: ${(error as Error)?.message ?? String(error)}`);
    return 1;
  }
}
