// Colour is decided per stream: --no-color > NO_COLOR > FORCE_COLOR > TERM=dumb > the stream is a terminal.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { colorDecision, paletteFor, setOutputFlags, type ColorInputs } from "../../../src/cli/render.js";
import { MAIN, runTmax } from "../../support/cli.js";
import { EXAMPLES, ROOT } from "../../support/env.js";

const SGR = /\x1b\[[0-9;]*m/;
// the child's environment without anything that decides colour, then the case's own
const clean = { NO_COLOR: undefined, FORCE_COLOR: undefined, TERM: "xterm-256color" };

describe("colorDecision", () => {
  const values = { NO_COLOR: [undefined, "", "1"], FORCE_COLOR: [undefined, "", "0", "1", "3"], TERM: [undefined, "dumb", "xterm"] };
  const all: ColorInputs[] = [];
  for (const noColorFlag of [false, true])
    for (const isTTY of [false, true])
      for (const NO_COLOR of values.NO_COLOR)
        for (const FORCE_COLOR of values.FORCE_COLOR) for (const TERM of values.TERM) all.push({ noColorFlag, isTTY, env: { NO_COLOR, FORCE_COLOR, TERM } });

  test(`every one of the ${2 * 2 * 3 * 5 * 3} combinations follows the first rule that applies`, () => {
    for (const i of all) {
      const { NO_COLOR, FORCE_COLOR, TERM } = i.env;
      const why = JSON.stringify(i);
      const got = colorDecision(i);
      if (i.noColorFlag) assert.equal(got, false, `--no-color wins: ${why}`);
      else if (NO_COLOR) assert.equal(got, false, `NO_COLOR next: ${why}`);
      else if (FORCE_COLOR !== undefined && FORCE_COLOR !== "" && FORCE_COLOR !== "0") assert.equal(got, true, `FORCE_COLOR next: ${why}`);
      else if (TERM === "dumb") assert.equal(got, false, `TERM=dumb next: ${why}`);
      else assert.equal(got, i.isTTY, `else the terminal: ${why}`);
    }
  });

  test("the documented corner cases", () => {
    const d = (isTTY: boolean, env: ColorInputs["env"], noColorFlag = false) => colorDecision({ isTTY, noColorFlag, env });
    assert.equal(d(true, {}), true);
    assert.equal(d(false, {}), false);
    assert.equal(d(true, { NO_COLOR: "" }), true, "an empty NO_COLOR is unset");
    assert.equal(d(false, { FORCE_COLOR: "0" }), false, "FORCE_COLOR=0 does not force");
    assert.equal(d(false, { FORCE_COLOR: "" }), false, "an empty FORCE_COLOR does not force");
    assert.equal(d(false, { FORCE_COLOR: "1", TERM: "dumb" }), true, "FORCE_COLOR beats TERM=dumb");
    assert.equal(d(true, { FORCE_COLOR: "1", NO_COLOR: "1" }), false, "NO_COLOR beats FORCE_COLOR");
    assert.equal(d(true, { FORCE_COLOR: "1" }, true), false, "--no-color beats everything");
  });

  test("paletteFor decides by the stream it is given, at each call", () => {
    const saved = { NO_COLOR: process.env.NO_COLOR, FORCE_COLOR: process.env.FORCE_COLOR, TERM: process.env.TERM };
    try {
      delete process.env.NO_COLOR;
      delete process.env.FORCE_COLOR;
      process.env.TERM = "xterm";
      assert.equal(paletteFor({ isTTY: true }).red("x"), "\x1b[31mx\x1b[0m");
      assert.equal(paletteFor({ isTTY: false }).red("x"), "x");
      setOutputFlags({ noColor: true });
      assert.equal(paletteFor({ isTTY: true }).red("x"), "x");
    } finally {
      setOutputFlags({});
      for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
});

describe("colour of the CLI's streams", () => {
  let broken: string;
  const tmp = mkdtemp(path.join(os.tmpdir(), "tmax-color-"));
  after(async () => rm(await tmp, { recursive: true, force: true }));

  test("on pipes: none by default; FORCE_COLOR=1 colours both streams; NO_COLOR and --no-color win over it", async () => {
    broken = path.join(await tmp, "broken");
    await cp(path.join(EXAMPLES, "hello-file"), broken, { recursive: true });
    await writeFile(path.join(broken, "task.toml"), `${await readFile(path.join(broken, "task.toml"), "utf8")}\n[verifier]\ntimeout_sec = "x"\n`);
    const missing = path.join(await tmp, "missing");
    const cases: [string, Record<string, string | undefined>, string[], boolean][] = [
      ["default", {}, [], false],
      ["FORCE_COLOR=1", { FORCE_COLOR: "1" }, [], true],
      ["FORCE_COLOR=1 TERM=dumb", { FORCE_COLOR: "1", TERM: "dumb" }, [], true],
      ["FORCE_COLOR=0", { FORCE_COLOR: "0" }, [], false],
      ["NO_COLOR=1 FORCE_COLOR=1", { NO_COLOR: "1", FORCE_COLOR: "1" }, [], false],
      ["--no-color FORCE_COLOR=1", { FORCE_COLOR: "1" }, ["--no-color"], false],
    ];
    await Promise.all(
      cases.map(async ([what, env, flags, colour]) => {
        const check = await runTmax(["tasks", "check", broken, ...flags], { ...clean, ...env }); // "N error(s)" in red, stdout
        assert.equal(check.code, 1, what);
        assert.equal(SGR.test(check.stdout), colour, `${what}, stdout: ${JSON.stringify(check.stdout.slice(-60))}`);
        const err = await runTmax(["rl", "pack", missing, ...flags], { ...clean, ...env }); // "tmax: error: …" in red, stderr
        assert.equal(err.code, 1, what);
        assert.equal(SGR.test(err.stderr), colour, `${what}, stderr: ${JSON.stringify(err.stderr)}`);
      }),
    );
  });

  // one stream on a pseudo-terminal (Python's pty module), the other on a pipe
  const python = spawnSync("python3", ["-c", "import pty"]).status === 0;
  test("a terminal on one stream colours that stream only", { skip: python ? false : "skipped: python3 with the pty module is not installed" }, () => {
    const helper = `
import json, os, pty, subprocess, sys
which = sys.argv[1]
m, s = pty.openpty()
other = "stderr" if which == "stdout" else "stdout"
p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, **{which: s, other: subprocess.PIPE})
os.close(s)
seen = b""
while True:
    try:
        chunk = os.read(m, 65536)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
piped = getattr(p, other).read()
p.wait()
print(json.dumps({"code": p.returncode, "tty": seen.decode(errors="replace"), "pipe": piped.decode(errors="replace")}))
`;
    const env: NodeJS.ProcessEnv = { ...process.env, TERM: "xterm-256color" };
    delete env.NO_COLOR;
    delete env.FORCE_COLOR;
    const run = (which: "stdout" | "stderr") => {
      const r = spawnSync("python3", ["-c", helper, which, process.execPath, "--import", "tsx", MAIN, "rl", "pack", path.join(ROOT, "no-such-dir")], { cwd: ROOT, env, encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as { code: number; tty: string; pipe: string };
    };
    // the error goes to stderr: coloured when stderr is the terminal, whatever stdout is
    const errOnTty = run("stderr");
    assert.equal(errOnTty.code, 1);
    assert.match(errOnTty.tty, /\x1b\[31mtmax: error: /);
    const outOnTty = run("stdout");
    assert.equal(outOnTty.code, 1);
    assert.match(outOnTty.pipe, /^tmax: error: /);
    assert.doesNotMatch(outOnTty.pipe, SGR, "stderr on a pipe stays plain when stdout is a terminal");
  });
});
