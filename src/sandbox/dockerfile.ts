// The Dockerfile parser every check on a task's Dockerfile goes through (build refusals, base images, FROM
// rewriting, `tasks check`). It follows BuildKit's parser (moby/buildkit frontend/dockerfile/parser and shell),
// which buildah's imagebuilder shares for everything but heredocs:
//   - parser directives (`# escape=`, `# syntax=`, `# check=`) only at the very top; the first other line ends them;
//   - a line ending in the escape character (then blanks) continues: the escape and blanks are removed and the next
//     line is appended as is (no space is added); comment lines and blank lines inside a continuation are dropped;
//   - the first word is the instruction, case-insensitive; then builder flags (`--name=value`), whose quotes and
//     backslash escapes are removed; then the arguments, in JSON (exec) form when they are a JSON array of strings;
//   - ADD/COPY words are shell words: quotes removed, escapes (the escape character) applied, `$VAR` expanded;
//   - `<<EOF` heredocs of RUN/COPY/ADD: the lines up to the terminator are content, not instructions. Podman 4.3
//     (buildah 1.28) does not know heredocs and reads those lines as instructions, so checks look at both readings;
//   - `ONBUILD X` holds instruction X (its trigger runs in a later build FROM this image).
// Malformed input is read as leniently as the engines do; what cannot be read as a word is reported, never ignored.

export type Escape = "\\" | "`";

export interface Heredoc {
  name: string;
  /** `<<-`: leading tabs are stripped, also before the terminator */
  chomp: boolean;
  body: string;
}

export interface Instruction {
  /** 1-based line the instruction starts on */
  line: number;
  /** upper case, e.g. `ADD`; for `ONBUILD ADD …` it is `ADD` with `onbuild` set */
  keyword: string;
  onbuild: boolean;
  /** builder flags as the engine reads them (`--mount=type=bind,rw`), quotes and backslash escapes removed */
  flags: string[];
  /** the arguments after the flags, as written (continuations joined) */
  args: string;
  /** the arguments in JSON (exec) form, or null for the shell form */
  json: string[] | null;
  heredocs: Heredoc[];
}

export interface Dockerfile {
  escape: Escape;
  instructions: Instruction[];
}

const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const KNOWN_DIRECTIVES = new Set(["escape", "syntax", "check"]);
const HEREDOC_WORD = /^(\d*)<<(-?)([^<]*)$/;
const HEREDOC_INSTRUCTIONS = new Set(["RUN", "COPY", "ADD"]);

const isBlank = (s: string) => /^[ \t\v\f\r]*$/.test(s);
const isComment = (s: string) => /^[ \t\v\f\r]*#/.test(s);

/**
 * Parses a Dockerfile as BuildKit does. `heredocs: false` reads it as podman 4.3 does: `<<EOF` is an ordinary word
 * and the lines after it are instructions.
 */
export function parseDockerfile(text: string, opts: { heredocs?: boolean } = {}): Dockerfile {
  const heredocs = opts.heredocs ?? true;
  const lines = text.replace(/^\uFEFF/, "").split("\n").map((l) => l.replace(/\r$/, ""));
  let escape: Escape = "\\";
  let i = 0;
  // directives: `# name=value` lines at the very top; an unknown name, another comment or any other line ends them
  const seen = new Set<string>();
  for (; i < lines.length; i++) {
    const m = DIRECTIVE.exec(lines[i]!);
    const name = m?.[1]!.toLowerCase();
    if (!m || !KNOWN_DIRECTIVES.has(name!) || seen.has(name!)) break;
    seen.add(name!);
    if (name === "escape" && (m[2] === "`" || m[2] === "\\")) escape = m[2];
  }
  const continuation = new RegExp(`${escape === "`" ? "`" : "\\\\"}[ \\t]*$`);
  const instructions: Instruction[] = [];
  for (; i < lines.length; i++) {
    if (isBlank(lines[i]!) || isComment(lines[i]!)) continue;
    const start = i;
    let line = lines[i]!.replace(/^[ \t\v\f\r]+/, "");
    let more = continuation.test(line);
    line = line.replace(continuation, "");
    while (more && i + 1 < lines.length) {
      i++;
      const next = lines[i]!;
      if (isComment(next) || isBlank(next)) continue;
      more = continuation.test(next);
      line += next.replace(continuation, "");
    }
    const ins = instructionOf(line, start + 1, false);
    if (!ins) continue;
    if (heredocs && HEREDOC_INSTRUCTIONS.has(ins.keyword)) {
      for (const doc of heredocWords(ins)) {
        const body: string[] = [];
        while (i + 1 < lines.length) {
          i++;
          const l = lines[i]!;
          if ((doc.chomp ? l.replace(/^\t+/, "") : l) === doc.name) break;
          body.push(doc.chomp ? l.replace(/^\t+/, "") : l);
        }
        ins.heredocs.push({ ...doc, body: body.join("\n") });
      }
    }
    instructions.push(ins);
  }
  return { escape, instructions };
}

function instructionOf(line: string, lineNo: number, onbuild: boolean): Instruction | null {
  const m = /^(\S+)(?:[ \t\v\f\r]+([\s\S]*))?$/.exec(line.trim());
  if (!m) return null;
  const keyword = m[1]!.toUpperCase();
  const { flags, rest } = builderFlags(m[2] ?? "");
  if (keyword === "ONBUILD" && !onbuild) {
    const inner = instructionOf(rest, lineNo, true);
    return inner;
  }
  return { line: lineNo, keyword, onbuild, flags, args: rest, json: jsonForm(rest), heredocs: [] };
}

/** BuildKit's extractBuilderFlags: leading `--` words, quotes removed, `\` escapes the next character, `--` ends them. */
export function builderFlags(args: string): { flags: string[]; rest: string } {
  const flags: string[] = [];
  let pos = 0;
  for (;;) {
    while (pos < args.length && /\s/.test(args[pos]!)) pos++;
    if (!args.startsWith("--", pos)) return { flags, rest: args.slice(pos) };
    let word = "";
    let quote = "";
    let blankOk = false;
    for (; pos < args.length; pos++) {
      const ch = args[pos]!;
      if (quote) {
        if (ch === quote) quote = "";
        else if (ch === "\\") {
          if (pos + 1 < args.length) word += args[++pos];
        } else word += ch;
        continue;
      }
      if (/\s/.test(ch)) break;
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOk = true;
      } else if (ch === "\\") {
        if (pos + 1 < args.length) word += args[++pos];
      } else word += ch;
    }
    if (word === "--") {
      while (pos < args.length && /\s/.test(args[pos]!)) pos++;
      return { flags, rest: args.slice(pos) };
    }
    if (word || blankOk) flags.push(word);
  }
}

function jsonForm(rest: string): string[] | null {
  const t = rest.trimStart();
  if (!t.startsWith("[")) return null;
  try {
    const v: unknown = JSON.parse(t);
    return Array.isArray(v) && v.every((x) => typeof x === "string") ? v : null;
  } catch {
    return null;
  }
}

/** The instruction's arguments as words: the JSON array, else split on blanks (as BuildKit does for ADD/COPY). */
export function argWords(ins: Instruction): string[] {
  return ins.json ?? ins.args.split(/[ \t\v\f\r\n]+/).filter(Boolean);
}

/** The heredocs an instruction line opens (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`), in order. */
function heredocWords(ins: Instruction): Array<Omit<Heredoc, "body">> {
  const out: Array<Omit<Heredoc, "body">> = [];
  const words = ins.json ? [] : ins.args.split(/[ \t\v\f\r]+/);
  for (const w of words) {
    const m = HEREDOC_WORD.exec(w);
    if (!m || !m[3]) continue;
    const name = shellWord(m[3], "\\");
    if (name.error || !name.value) continue;
    out.push({ name: name.value, chomp: m[2] === "-" });
  }
  return out;
}

export interface ShellWord {
  /** the word with quotes removed and escapes applied; a variable expands to "" here */
  value: string;
  /** names of the variables the word expands (an ARG, an ENV or the base image's environment) */
  variables: string[];
  /** set when the engine would fail on the word (an unterminated quote or `${`) */
  error?: string;
}

/**
 * One word as BuildKit's shell lexer processes ADD/COPY arguments and mount values: single quotes keep everything,
 * double quotes keep all but `$` and escapes of `"`, `$` and the escape character, the escape character outside
 * quotes makes the next character literal, `$NAME` / `${NAME…}` expand.
 */
export function shellWord(word: string, escape: Escape): ShellWord {
  let value = "";
  const variables: string[] = [];
  let i = 0;
  const dollar = (): string | undefined => {
    // at word[i] === "$"
    const next = word[i + 1];
    if (next === "{") {
      const end = word.indexOf("}", i + 2);
      if (end < 0) return "missing '}' in a ${…} expansion";
      variables.push(/^[A-Za-z_][A-Za-z0-9_]*|^\d/.exec(word.slice(i + 2, end))?.[0] ?? word.slice(i + 2, end));
      i = end + 1;
      return undefined;
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*|^\d/.exec(word.slice(i + 1));
    if (!m) {
      value += "$";
      i++;
      return undefined;
    }
    variables.push(m[0]);
    i += 1 + m[0].length;
    return undefined;
  };
  while (i < word.length) {
    const ch = word[i]!;
    if (ch === escape) {
      if (i + 1 < word.length) value += word[i + 1];
      i += 2;
    } else if (ch === "'") {
      const end = word.indexOf("'", i + 1);
      if (end < 0) return { value, variables, error: "unterminated single quote" };
      value += word.slice(i + 1, end);
      i = end + 1;
    } else if (ch === '"') {
      i++;
      for (;;) {
        if (i >= word.length) return { value, variables, error: "unterminated double quote" };
        const c = word[i]!;
        if (c === '"') {
          i++;
          break;
        }
        if (c === "$") {
          const err = dollar();
          if (err) return { value, variables, error: err };
        } else if (c === escape && (word[i + 1] === '"' || word[i + 1] === "$" || word[i + 1] === escape)) {
          value += word[i + 1];
          i += 2;
        } else {
          value += c;
          i++;
        }
      }
    } else if (ch === "$") {
      const err = dollar();
      if (err) return { value, variables, error: err };
    } else {
      value += ch;
      i++;
    }
  }
  return { value, variables };
}

/** Both readings of a Dockerfile: BuildKit's (heredocs are content) and podman 4.3's (no heredocs). */
export function bothReadings(text: string): Instruction[] {
  const a = parseDockerfile(text, { heredocs: true });
  const b = parseDockerfile(text, { heredocs: false });
  const key = (x: Instruction) => `${x.line}\0${x.keyword}\0${x.onbuild}\0${x.flags.join("\0")}\0${x.args}`;
  const seen = new Set(a.instructions.map(key));
  return [...a.instructions, ...b.instructions.filter((x) => !seen.has(key(x)))].sort((x, y) => x.line - y.line);
}
