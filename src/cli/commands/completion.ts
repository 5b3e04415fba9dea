import { Command } from 'commander';
import { SistemoError } from '../../errors.js';
import { printLine } from '../output.js';
import { withClient } from '../shared.js';

const groups = 'up vm machine volume network image history doctor config service completion';
const vmVerbs = 'deploy list ls status show start stop restart delete rm ssh exec expose unexpose volume';
const volumeVerbs = 'create list ls show status resize delete rm';

/** Shell scripts that complete commands, and VM and volume names from the running daemon. */
const scripts: Record<string, string> = {
  bash: `# sistemo completion for bash: source <(sistemo completion bash)
_sistemo() {
  local cur=\${COMP_WORDS[COMP_CWORD]} group=\${COMP_WORDS[1]} verb=\${COMP_WORDS[2]}
  if [ "$COMP_CWORD" -eq 1 ]; then COMPREPLY=($(compgen -W "${groups}" -- "$cur")); return; fi
  case "$group" in
    vm|machine)
      if [ "$COMP_CWORD" -eq 2 ]; then COMPREPLY=($(compgen -W "${vmVerbs}" -- "$cur"));
      elif [ "$verb" = volume ] && [ "$COMP_CWORD" -eq 3 ]; then COMPREPLY=($(compgen -W "attach detach" -- "$cur"));
      elif [ "$verb" = volume ] && [ "$COMP_CWORD" -eq 5 ]; then COMPREPLY=($(compgen -W "$(sistemo completion --names volumes 2>/dev/null)" -- "$cur"));
      else COMPREPLY=($(compgen -W "$(sistemo completion --names vms 2>/dev/null)" -- "$cur")); fi ;;
    volume)
      if [ "$COMP_CWORD" -eq 2 ]; then COMPREPLY=($(compgen -W "${volumeVerbs}" -- "$cur"));
      else COMPREPLY=($(compgen -W "$(sistemo completion --names volumes 2>/dev/null)" -- "$cur")); fi ;;
  esac
}
complete -F _sistemo sistemo
`,
  zsh: `#compdef sistemo
# sistemo completion for zsh: source <(sistemo completion zsh)
_sistemo() {
  local -a words_list
  case $CURRENT in
    2) words_list=(${groups}) ;;
    3) case $words[2] in
         vm|machine) words_list=(${vmVerbs}) ;;
         volume) words_list=(${volumeVerbs}) ;;
       esac ;;
    *) case $words[2] in
         vm|machine) words_list=(\${(f)"$(sistemo completion --names vms 2>/dev/null)"}) ;;
         volume) words_list=(\${(f)"$(sistemo completion --names volumes 2>/dev/null)"}) ;;
       esac ;;
  esac
  compadd -a words_list
}
compdef _sistemo sistemo
`,
  fish: `# sistemo completion for fish: sistemo completion fish | source
complete -c sistemo -f
complete -c sistemo -n '__fish_use_subcommand' -a '${groups}'
complete -c sistemo -n '__fish_seen_subcommand_from vm machine; and not __fish_seen_subcommand_from ${vmVerbs}' -a '${vmVerbs}'
complete -c sistemo -n '__fish_seen_subcommand_from vm machine; and __fish_seen_subcommand_from ${vmVerbs}' -a '(sistemo completion --names vms 2>/dev/null)'
complete -c sistemo -n '__fish_seen_subcommand_from volume; and not __fish_seen_subcommand_from ${volumeVerbs}' -a '${volumeVerbs}'
complete -c sistemo -n '__fish_seen_subcommand_from volume; and __fish_seen_subcommand_from ${volumeVerbs}' -a '(sistemo completion --names volumes 2>/dev/null)'
`,
};

export function completionCommand(): Command {
  return new Command('completion').description('print a shell completion script: bash, zsh or fish')
    .argument('[shell]', 'bash, zsh or fish')
    .option('--names <kind>', 'print VM or volume names, one per line (used by the scripts): vms or volumes')
    .action(async (shell: string | undefined, options: { names?: string }, command: Command) => {
      if (options.names !== undefined) {
        if (options.names !== 'vms' && options.names !== 'volumes') {
          throw new SistemoError('invalid_argument', `Invalid --names "${options.names}": use vms or volumes`);
        }
        const items = await withClient(command, (client) => client.call<{ name: string }[]>('GET', `/api/v1/${options.names}`));
        for (const item of items) printLine(item.name);
        return;
      }
      const script = shell === undefined ? undefined : scripts[shell];
      if (!script) throw new SistemoError('invalid_argument', `Invalid shell "${shell ?? ''}": use bash, zsh or fish`);
      process.stdout.write(script);
    });
}
