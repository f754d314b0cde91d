// `tmax completion bash|zsh|fish`: a completion script generated from the program's own command tree
// (commands, subcommands, options, choices), so it never lists a command or a flag that is not there.
import { Argument, type Command } from "commander";

export const SHELLS = ["bash", "zsh", "fish"] as const;
export type Shell = (typeof SHELLS)[number];

/** One option as completion sees it. */
export interface CompletionOption {
  short?: string;
  long?: string;
  /** A value must follow it (`--agent <name>`); an optional value (`[types]`) is not completed. */
  takesValue: boolean;
  choices: string[];
  description: string;
}

/** One command: its path from the root ("" for tmax itself), its subcommands and its options (global ones included). */
export interface CompletionNode {
  path: string;
  description: string;
  subcommands: { name: string; description: string }[];
  /** The allowed values of its positional arguments (`completion <shell>`: bash zsh fish). */
  argumentChoices: string[];
  options: CompletionOption[];
}

// Words that go into the scripts unquoted in places (names, flags, choices): anything else is left out.
const SAFE = /^[A-Za-z0-9][A-Za-z0-9_.:@/+=-]*$/;
const hidden = (c: Command) => (c as unknown as { _hidden?: boolean })._hidden === true;
const oneLine = (s: string, max = 70) => {
  const line = s.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};

/** Every visible command of `program`, parents before children. */
export function completionTree(program: Command): CompletionNode[] {
  const globals = program.options.filter((o) => !o.hidden && o.long !== "--version");
  const toOption = (o: (typeof program.options)[number]): CompletionOption => ({
    ...(o.short ? { short: o.short } : {}),
    ...(o.long ? { long: o.long } : {}),
    takesValue: o.required,
    choices: (o.argChoices ?? []).filter((c) => SAFE.test(c)),
    description: oneLine(o.description),
  });
  const help: CompletionOption = { short: "-h", long: "--help", takesValue: false, choices: [], description: "display help" };
  const nodes: CompletionNode[] = [];
  const walk = (cmd: Command, path: string[]) => {
    const subs = cmd.commands.filter((c) => !hidden(c) && SAFE.test(c.name()));
    const own = cmd.options.filter((o) => !o.hidden).map(toOption);
    const inherited = path.length ? globals.map(toOption) : [];
    nodes.push({
      path: path.join(" "),
      description: oneLine(cmd.description()),
      subcommands: subs.map((c) => ({ name: c.name(), description: oneLine(c.description()) })),
      argumentChoices: cmd.registeredArguments.flatMap((a) => a.argChoices ?? []).filter((c) => SAFE.test(c)),
      options: [...own, ...inherited, help].filter((o) => (!o.long || SAFE.test(o.long.slice(2))) && (!o.short || /^-[A-Za-z0-9]$/.test(o.short))),
    });
    for (const c of subs) walk(c, [...path, c.name()]);
  };
  walk(program, []);
  return nodes;
}

const flags = (o: CompletionOption) => [o.short, o.long].filter((f): f is string => Boolean(f));
/** sh single quotes (bash, zsh). */
const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
/** fish single quotes. */
const fishq = (s: string) => `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;

/** The `case` arms shared by bash and zsh: the data, one function per question, keyed by command path. */
function shCaseFunctions(nodes: CompletionNode[]): string {
  const fn = (name: string, doc: string, arms: [string, string][]) =>
    [`# ${doc}`, `${name}() {`, `  case "$1" in`, ...arms.filter(([, v]) => v).map(([k, v]) => `    ${shq(k)}) echo ${shq(v)} ;;`), `  esac`, `}`].join("\n");
  const choiceArms: [string, string][] = [];
  for (const n of nodes) for (const o of n.options) if (o.takesValue && o.choices.length) for (const f of flags(o)) choiceArms.push([`${n.path}|${f}`, o.choices.join(" ")]);
  return [
    fn("_tmax_subcommands", "subcommands of a command path", nodes.map((n) => [n.path, [...n.subcommands.map((s) => s.name), ...(n.subcommands.length ? ["help"] : [])].join(" ")])),
    fn("_tmax_arguments", "the allowed values of positional arguments", nodes.map((n) => [n.path, n.argumentChoices.join(" ")])),
    fn("_tmax_options", "every flag of a command path", nodes.map((n) => [n.path, n.options.flatMap(flags).join(" ")])),
    fn("_tmax_value_options", "the flags that take a value", nodes.map((n) => [n.path, n.options.filter((o) => o.takesValue).flatMap(flags).join(" ")])),
    fn("_tmax_choices", "the allowed values of a flag: 'path|flag'", choiceArms),
  ].join("\n\n");
}

/**
 * The command path of the words before the one being completed (shared by bash and zsh): flags are skipped with
 * their value, a word that names a subcommand of the path so far extends it. `$1` is the index of the first word.
 */
const SH_WALK = (first: string, last: string, word: string) => `  local cmdpath="" skip="" i w
  for (( i=${first}; i<${last}; i++ )); do
    w=${word}
    if [[ -n $skip ]]; then skip=""; continue; fi
    if [[ $w == -* ]]; then
      if [[ $w != *=* && " $(_tmax_value_options "$cmdpath") " == *" $w "* ]]; then skip=1; fi
      continue
    fi
    if [[ " $(_tmax_subcommands "$cmdpath") " == *" $w "* ]]; then cmdpath="\${cmdpath:+$cmdpath }$w"; fi
  done`;

export function bashScript(nodes: CompletionNode[], version: string): string {
  return `# bash completion for tmax ${version}, generated by \`tmax completion bash\` from its commands.
# Load it with:  source <(tmax completion bash)
# or install it: tmax completion bash > ~/.local/share/bash-completion/completions/tmax

${shCaseFunctions(nodes)}

_tmax() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
${SH_WALK("1", "COMP_CWORD", '"${COMP_WORDS[i]}"')}
  COMPREPLY=()
  if [[ -n $skip ]]; then
    # the value of $prev: its choices, else files (complete -o default)
    local choices; choices="$(_tmax_choices "$cmdpath|$prev")"
    if [[ -n $choices ]]; then COMPREPLY=( $(compgen -W "$choices" -- "$cur") ); fi
    return 0
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=( $(compgen -W "$(_tmax_options "$cmdpath")" -- "$cur") )
    return 0
  fi
  local subs; subs="$(_tmax_subcommands "$cmdpath")"
  [[ -n $subs ]] || subs="$(_tmax_arguments "$cmdpath")"
  if [[ -n $subs ]]; then COMPREPLY=( $(compgen -W "$subs" -- "$cur") ); fi
  return 0
}

complete -o default -F _tmax tmax
`;
}

export function zshScript(nodes: CompletionNode[], version: string): string {
  const described = nodes
    .filter((n) => n.subcommands.length)
    .map((n) => `    ${shq(n.path)}) reply=(${n.subcommands.map((s) => shq(`${s.name}:${s.description.replace(/:/g, "\\:")}`)).join(" ")} 'help:display help for a command') ;;`);
  return `#compdef tmax
# zsh completion for tmax ${version}, generated by \`tmax completion zsh\` from its commands.
# Load it with:  source <(tmax completion zsh)   (after compinit)
# or install it: tmax completion zsh > "\${fpath[1]}/_tmax"

${shCaseFunctions(nodes)}

# subcommands with their descriptions, for _describe
_tmax_described() {
  reply=()
  case "$1" in
${described.join("\n")}
  esac
}

_tmax() {
  local cur="\${words[CURRENT]}" prev="\${words[CURRENT-1]}"
${SH_WALK("2", "CURRENT", '"${words[i]}"')}
  if [[ -n $skip ]]; then
    local choices; choices="$(_tmax_choices "$cmdpath|$prev")"
    if [[ -n $choices ]]; then compadd -- \${=choices}; else _files; fi
    return
  fi
  if [[ $cur == -* ]]; then
    compadd -- \${=$(_tmax_options "$cmdpath")}
    return
  fi
  local -a reply
  _tmax_described "$cmdpath"
  local args; args="$(_tmax_arguments "$cmdpath")"
  if (( \${#reply} )); then _describe -t commands 'tmax command' reply
  elif [[ -n $args ]]; then compadd -- \${=args}
  else _files
  fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _tmax "$@"
else
  compdef _tmax tmax
fi
`;
}

export function fishScript(nodes: CompletionNode[], version: string): string {
  const sw = (name: string, doc: string, arms: [string, string[]][]) =>
    [`# ${doc}`, `function ${name}`, `    switch "$argv[1]"`, ...arms.filter(([, v]) => v.length).flatMap(([k, v]) => [`        case ${fishq(k)}`, `            printf '%s\\n' ${v.map(fishq).join(" ")}`]), `    end`, `end`].join("\n");
  const lines: string[] = [];
  for (const n of nodes) {
    const at = `-n ${fishq(`__tmax_at ${fishq(n.path)}`)}`;
    for (const s of n.subcommands) lines.push(`complete -c tmax ${at} -f -a ${fishq(s.name)} -d ${fishq(s.description)}`);
    if (n.subcommands.length) lines.push(`complete -c tmax ${at} -f -a help -d 'display help for a command'`);
    if (n.argumentChoices.length) lines.push(`complete -c tmax ${at} -f -a ${fishq(n.argumentChoices.join(" "))}`);
    for (const o of n.options) {
      const f = [o.short ? `-s ${o.short.slice(1)}` : "", o.long ? `-l ${o.long.slice(2)}` : ""].filter(Boolean).join(" ");
      const value = o.takesValue ? (o.choices.length ? ` -x -a ${fishq(o.choices.join(" "))}` : " -r") : "";
      lines.push(`complete -c tmax ${at} ${f}${value} -d ${fishq(o.description)}`);
    }
  }
  return `# fish completion for tmax ${version}, generated by \`tmax completion fish\` from its commands.
# Load it with:  tmax completion fish | source
# or install it: tmax completion fish > ~/.config/fish/completions/tmax.fish

${sw("__tmax_subcommands", "subcommands of a command path", nodes.map((n) => [n.path, n.subcommands.map((s) => s.name)]))}

${sw("__tmax_value_options", "the flags that take a value", nodes.map((n) => [n.path, n.options.filter((o) => o.takesValue).flatMap(flags)]))}

# the command path of the words before the cursor: flags skipped with their value, subcommand names followed
function __tmax_path
    set -l words (commandline -opc)
    set -e words[1]
    set -l cmdpath
    set -l skip 0
    for w in $words
        if test $skip = 1
            set skip 0
            continue
        end
        if string match -q -- '-*' $w
            if not string match -q -- '*=*' $w; and contains -- $w (__tmax_value_options "$cmdpath")
                set skip 1
            end
            continue
        end
        if contains -- $w (__tmax_subcommands "$cmdpath")
            set -a cmdpath $w
            set cmdpath (string join ' ' $cmdpath)
        end
    end
    echo $cmdpath
end

function __tmax_at
    set -l here (__tmax_path)
    test "$here" = "$argv[1]"
end

${lines.join("\n")}
`;
}

export function completionScript(program: Command, shell: Shell, version: string): string {
  const nodes = completionTree(program);
  return shell === "bash" ? bashScript(nodes, version) : shell === "zsh" ? zshScript(nodes, version) : fishScript(nodes, version);
}

export function registerCompletion(program: Command, version: string): void {
  program
    .command("completion")
    .description("print a shell completion script (bash, zsh or fish), generated from tmax's own commands")
    .addArgument(new Argument("<shell>", "the shell").choices(SHELLS))
    .action((shell: Shell) => {
      process.stdout.write(completionScript(program, shell, version));
    });
}
