// The sandbox contract: what every backend promises through src/sandbox/types.ts, as one list of tests any
// backend runs. A new backend is a folder, one case in src/sandbox/index.ts, and one call of sandboxContract.
// Callers: test/unit/sandbox/contract.test.ts (local, the Daytona fake) and test/e2e/sandbox/docker/contract.test.ts
// (docker, through the resident executor and an exec per command).
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile, mkdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, test, type TestContext } from "node:test";
import type { Sandbox } from "../../src/sandbox/types.js";

/** Opens a fresh sandbox for one test; the factory registers its removal on `t`. */
export type OpenSandbox = (t: TestContext) => Promise<Sandbox>;

export interface ContractOptions {
  skip?: boolean | string;
}

/** Awkward argv items: quotes, expansions that must stay literal, newlines, non-ASCII, an empty string. */
const AWKWARD = ["it's", `"double" and 'single'`, "$HOME $(id) `uname` ${PATH}", "line1\nline2\n", "ünïcødé ✓", "", "-n", "*"];

async function hostDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "tmax-contract-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export function sandboxContract(name: string, open: OpenSandbox, opts: ContractOptions = {}): void {
  describe(`sandbox contract: ${name}`, { skip: opts.skip }, () => {
    test("exec: stdout and stderr apart, the real exit code, 127 for a missing program, no shell around argv", async (t) => {
      const sb = await open(t);
      const r = await sb.exec(["sh", "-c", "echo out; echo err >&2; echo out2; exit 3"]);
      assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.timedOut, r.truncated], ["out\nout2\n", "err\n", 3, false, false]);
      assert.ok(r.durationMs >= 0);
      const missing = await sb.exec(["no-such-program-tmax-contract"]);
      assert.equal(missing.exitCode, 127);
      assert.match(missing.stderr, /no-such-program-tmax-contract/);
      assert.equal((await sb.exec(["cd", "/"])).exitCode, 127, "a shell builtin is not a program");
      await assert.rejects(sb.exec([]), /argv is empty/);
    });

    test("exec: argv reaches the program unchanged", async (t) => {
      const sb = await open(t);
      const r = await sb.exec(["printf", "%s\\0", ...AWKWARD]);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.deepEqual(r.stdout.split("\0").slice(0, -1), AWKWARD);
    });

    test("exec: env is added, the default cwd is the workdir, a relative cwd is under it", async (t) => {
      const sb = await open(t);
      const r = await sb.exec(["sh", "-c", 'printf "%s|%s" "$CONTRACT_VAR" "$(pwd -P)"'], { env: { CONTRACT_VAR: "a value with spaces" } });
      const workdir = (await sb.exec(["sh", "-c", `cd ${JSON.stringify(sb.workdir)} && pwd -P`])).stdout.trim();
      assert.equal(r.stdout, `a value with spaces|${workdir}`);
      assert.equal((await sb.exec(["mkdir", "-p", "contract-sub"])).exitCode, 0);
      assert.equal((await sb.exec(["sh", "-c", "pwd -P"], { cwd: "contract-sub" })).stdout.trim(), path.posix.join(workdir, "contract-sub"));
    });

    test("exec: a timeout stops the command and its children, returns promptly with 124 and what was written", async (t) => {
      const sb = await open(t);
      const t0 = Date.now();
      const r = await sb.exec(["sh", "-c", "echo started; sleep 211 & sleep 212"], { timeoutSec: 1 });
      const elapsed = Date.now() - t0;
      assert.deepEqual([r.timedOut, r.exitCode], [true, 124]);
      assert.match(r.stdout, /started/);
      assert.ok(elapsed < 8000, `took ${elapsed} ms`);
      const done = await sb.exec(["sh", "-c", "exit 5"], { timeoutSec: 10 });
      assert.deepEqual([done.exitCode, done.timedOut], [5, false]);
    });

    test("exec: output over maxOutputBytes is cut there and marked", async (t) => {
      const sb = await open(t);
      const r = await sb.exec(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a"], { maxOutputBytes: 1000 });
      assert.equal(r.exitCode, 0);
      assert.equal(r.stdout, "a".repeat(1000));
      assert.equal(r.truncated, true);
    });

    test("files: writeFile and readFile keep bytes and mode; a missing file reads as null", async (t) => {
      const sb = await open(t);
      const file = path.posix.join(sb.workdir, "contract", "deep", "f.bin");
      const bytes = Buffer.from([0xef, 0xbb, 0xbf, 0x00, 0xff, 0x0a, 0x41]);
      await sb.writeFile(file, bytes, 0o640);
      assert.deepEqual(await sb.readFile(file), bytes);
      assert.equal((await sb.exec(["stat", "-c", "%a", file])).stdout.trim(), "640");
      await sb.writeFile(file, "replaced");
      assert.equal((await sb.readFile(file))?.toString(), "replaced");
      assert.equal(await sb.readFile(path.posix.join(sb.workdir, "contract", "missing.txt")), null);
    });

    test("files: upload lands a dir as <remoteDir>/<name>; download brings it back; a missing path is false", async (t) => {
      const sb = await open(t);
      const local = await hostDir(t);
      await mkdir(path.join(local, "tree", "sub"), { recursive: true });
      await writeFile(path.join(local, "tree", "a.txt"), "alpha\n");
      await writeFile(path.join(local, "tree", "sub", "b.txt"), "beta\n");
      const remote = path.posix.join(sb.workdir, "contract-up");
      await sb.upload(path.join(local, "tree"), remote);
      assert.equal((await sb.exec(["cat", `${remote}/tree/a.txt`, `${remote}/tree/sub/b.txt`])).stdout, "alpha\nbeta\n");
      const back = await hostDir(t);
      assert.equal(await sb.download(`${remote}/tree`, back), true);
      assert.equal(await readFile(path.join(back, "tree", "sub", "b.txt"), "utf8"), "beta\n");
      assert.equal(await sb.download(path.posix.join(sb.workdir, "contract-none"), back), false);
    });

    test("remove: idempotent", async (t) => {
      const sb = await open(t);
      await sb.remove();
      await sb.remove();
    });
  });
}
