// The live view of `tmax eval`, captured under a pseudo-terminal (util-linux `script`): clock, ETA, one line
// per running trial with its phase, a scrolling log of finished trials. Without a TTY: plain lines only.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ENGINE_SKIP, EXAMPLES, ROOT } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-live-"));
after(() => rm(tmp, { recursive: true, force: true }));
const CLI = path.join(ROOT, "src/cli/main.ts");
const SCRIPT_SKIP = spawnSync("script", ["--version"]).status === 0 ? false : "skipped: util-linux `script` not installed (apt-get install util-linux)";

function run(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", COLUMNS: "120", LINES: "40" } });
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.resume();
    child.on("exit", (code) => resolve({ code, stdout }));
  });
}

const evalArgs = (dir: string) => ["--import", "tsx", CLI, "eval", "--dataset", path.join(EXAMPLES, "hello-file"), "--agent", "oracle", "-k", "3", "-n", "2", "--job-dir", dir];

describe("live view", { skip: ENGINE_SKIP }, () => {
  test("on a TTY: clock, ETA, running trials with their phase, finished trials scrolling above", { skip: SCRIPT_SKIP }, async () => {
    const quoted = [process.execPath, ...evalArgs(path.join(tmp, "tty"))].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
    const r = await run("script", ["-qfec", quoted, "/dev/null"]);
    assert.equal(r.code, 0, r.stdout);
    const screen = r.stdout;
    assert.match(screen, /⏱ \d+s · \d\/3 trials · running \d · mean [-\d.]+ · errors 0 · ETA /);
    assert.match(screen, /hello-file #[012] · (queued|build|agent|verify|logs)/);
    assert.match(screen, /hello-file #[012] · (build|agent|verify)/, "a phase is shown");
    for (const a of [0, 1, 2]) assert.match(screen, new RegExp(`✓ hello-file__${a} pass reward=1`));
    assert.ok(screen.includes("\x1b[J"), "the status block is redrawn in place");
    assert.match(screen, /⏱ (\d+m)?\d+s · 3\/3 trials · running 0 · mean 1\.000/);
  });

  test("not on a TTY: one plain line per finished trial, no control sequences", async () => {
    const r = await run(process.execPath, evalArgs(path.join(tmp, "plain")));
    assert.equal(r.code, 0, r.stdout);
    assert.equal(r.stdout.includes("\x1b["), false);
    for (const a of [0, 1, 2]) assert.match(r.stdout, new RegExp(`^\\[\\d/3\\] hello-file__${a} pass reward=1( · \\d+ steps)? · (\\d+m)?\\d+s · (\\d+m)?\\d+s$`, "m"));
  });
});
