// `tmax completion bash|zsh|fish`: each script is generated from the program, loaded into the real shell and asked
// what it would complete; every command of `tmax --help` is in it.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { runTmax } from "../../support/cli.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-completion-"));
after(() => rm(tmp, { recursive: true, force: true }));
const has = (shell: string) => spawnSync(shell, ["-c", "exit 0"]).status === 0;
const skipUnless = (shell: string) => (has(shell) ? false : `skipped: ${shell} is not installed`);

/** The command names a help text lists under "Commands:" (help itself left out). */
const commandsOf = (help: string) =>
  [...help.slice(help.indexOf("Commands:")).matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((c) => c !== "help");

const GROUPS = ["rl", "traces", "datasets", "tasks", "sandbox"];
const scripts: Record<string, string> = {};
const listed: Record<string, string[]> = {}; // "" → top-level commands; group → its subcommands

before(async () => {
  const runs = await Promise.all([
    ...["bash", "zsh", "fish"].map((s) => runTmax(["completion", s], { NO_COLOR: "1" })),
    runTmax(["--help"], { NO_COLOR: "1" }),
    ...GROUPS.map((g) => runTmax([g, "--help"], { NO_COLOR: "1" })),
  ]);
  for (const [i, shell] of ["bash", "zsh", "fish"].entries()) {
    assert.equal(runs[i]!.code, 0, runs[i]!.stderr);
    scripts[shell] = runs[i]!.stdout;
    await writeFile(path.join(tmp, `tmax.${shell}`), runs[i]!.stdout);
  }
  listed[""] = commandsOf(runs[3]!.stdout);
  for (const [i, g] of GROUPS.entries()) listed[g] = commandsOf(runs[4 + i]!.stdout);
  assert.ok(listed[""]!.includes("eval") && listed[""]!.includes("completion"), runs[3]!.stdout);
});

/** What `_tmax` puts in COMPREPLY for these words (the last one is being completed). */
function bashComplete(words: string[]): string[] {
  const script = `source ${JSON.stringify(path.join(tmp, "tmax.bash"))}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}
_tmax; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = spawnSync("bash", ["--norc", "--noprofile", "-c", script], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split("\n").filter(Boolean);
}

describe("completion scripts", () => {
  test("each script names every command and subcommand of the help", () => {
    for (const [shell, script] of Object.entries(scripts)) {
      for (const [group, names] of Object.entries(listed)) for (const name of names) assert.ok(script.includes(name), `${shell}: ${group} ${name}`);
    }
  });

  test("bash: commands, subcommands, options and choices, as the shell completes them", { skip: skipUnless("bash") }, () => {
    assert.deepEqual(bashComplete(["tmax", "ev"]), ["eval"]);
    assert.ok(bashComplete(["tmax", "eval", "--ag"]).includes("--agent"));
    assert.deepEqual(bashComplete(["tmax", "eval", "--agent", ""]), ["tmax", "oracle", "nop"]);
    assert.deepEqual(bashComplete(["tmax", "eval", "-a", "or"]), ["oracle"]);
    assert.deepEqual(bashComplete(["tmax", "sandbox", "prune", "--backend", ""]), ["docker", "daytona"]);
    assert.deepEqual(bashComplete(["tmax", "completion", ""]), ["bash", "zsh", "fish"]);
    // global options before the command, and a flag's value that looks like a command name, are skipped
    assert.deepEqual(bashComplete(["tmax", "-q", "--no-color", "sandbox", "pr"]), ["prune"]);
    assert.ok(bashComplete(["tmax", "eval", "--dataset", "tasks", "--n-c"]).includes("--n-concurrent"));
    assert.deepEqual(bashComplete(["tmax", "eval", "--dataset", ""]), [], "a value without choices: files (complete -o default)");
    assert.ok(bashComplete(["tmax", "tasks", "list", "--"]).includes("--json"));
    assert.ok(bashComplete(["tmax", "tasks", "list", "--"]).includes("--quiet"), "global options in every command");
    for (const [group, names] of Object.entries(listed)) {
      const offered = bashComplete(group ? ["tmax", group, ""] : ["tmax", ""]);
      for (const name of names) assert.ok(offered.includes(name), `tmax ${group} <TAB> offers ${name}: ${offered.join(" ")}`);
    }
  });

  test("zsh: valid syntax; the completion function offers the same words", { skip: skipUnless("zsh") }, () => {
    const file = path.join(tmp, "tmax.zsh");
    assert.equal(spawnSync("zsh", ["-n", file]).status, 0);
    // compadd/_describe/_files stand in for the completion system: they print what they are given
    const ask = (words: string[]) => {
      const script = `compdef() { :; }; compadd() { [[ $1 == -- ]] && shift; print -l -- "$@"; }; _describe() { print -l -- "\${(@P)4%%:*}"; }; _files() { print FILES; }
source ${JSON.stringify(file)}
words=(${words.map((w) => `'${w}'`).join(" ")}); CURRENT=${words.length}; _tmax`;
      const r = spawnSync("zsh", ["-f", "-c", script], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.split("\n").filter(Boolean);
    };
    assert.ok(ask(["tmax", "ev"]).includes("eval"));
    assert.deepEqual(ask(["tmax", "eval", "--agent", ""]), ["tmax", "oracle", "nop"]);
    assert.deepEqual(ask(["tmax", "rl", ""]), [...listed.rl!, "help"]);
    assert.deepEqual(ask(["tmax", "completion", ""]), ["bash", "zsh", "fish"]);
    assert.deepEqual(ask(["tmax", "report", ""]), ["FILES"]);
  });

  test("fish: valid syntax; `complete -C` offers the same words", { skip: skipUnless("fish") }, () => {
    const file = path.join(tmp, "tmax.fish");
    assert.equal(spawnSync("fish", ["-n", file]).status, 0);
    const ask = (line: string) => {
      const r = spawnSync("fish", ["--no-config", "-c", `source ${JSON.stringify(file)}; complete -C ${JSON.stringify(line)}`], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.split("\n").filter(Boolean).map((l) => l.split("\t")[0]!);
    };
    assert.deepEqual(ask("tmax ev"), ["eval"]);
    assert.ok(ask("tmax eval --ag").includes("--agent"));
    assert.deepEqual(ask("tmax eval --agent ").sort(), ["nop", "oracle", "tmax"]);
    assert.deepEqual(ask("tmax rl ").sort(), [...listed.rl!, "help"].sort());
    assert.deepEqual(ask("tmax -q sandbox pr"), ["prune"]);
  });
});
