// The exec contract, run through both paths of the docker backend: the resident executor (one helper per
// container on one attached stream) and one exec per command. Same assertions, same results.
import assert from "node:assert/strict";
import { describe, test, type TestContext } from "node:test";
import { openShell } from "../../../../src/agent/shell.js";
import { connectEngine, dockerBackend, TMAX_JOB_LABEL, type Sandbox } from "../../../../src/sandbox/index.js";
import { BASE_IMAGE, ENGINE_SKIP } from "../../../support/env.js";

const docker = connectEngine();
const JOB = `executor-test-${process.pid}`;

for (const mode of ["resident", "exec"] as const) {
  const backend = dockerBackend({ docker, executor: mode });
  async function sandbox(t: TestContext, env?: Record<string, string>): Promise<Sandbox> {
    const sb = await backend.create({ image: BASE_IMAGE, env, labels: { [TMAX_JOB_LABEL]: JOB } });
    t.after(() => sb.remove());
    return sb;
  }
  /** Whether the helper process runs in the container (the resident path really is in use). */
  const helperRunning = async (sb: Sandbox) =>
    (await sb.exec(["sh", "-c", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"])).stdout.includes("tmax-executor");

  describe(`exec contract through ${mode === "resident" ? "the resident executor" : "an exec per command"}`, { skip: ENGINE_SKIP }, () => {
    test("stdout/stderr apart, exit codes, signals, a missing binary, empty argv", async (t) => {
      const sb = await sandbox(t);
      const r = await sb.exec(["sh", "-c", "echo out; echo err >&2; echo out2; exit 3"]);
      assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.timedOut, r.truncated], ["out\nout2\n", "err\n", 3, false, false]);
      assert.equal((await sb.exec(["true"])).exitCode, 0);
      assert.equal((await sb.exec(["sh", "-c", "kill -9 $$"])).exitCode, 137);
      const missing = await sb.exec(["no-such-binary"]);
      assert.equal(missing.exitCode, 127);
      assert.match(missing.stderr, /no-such-binary/);
      await assert.rejects(sb.exec([]), /argv is empty/);
      assert.equal(await helperRunning(sb), mode === "resident");
    });

    test("argv passes through unchanged: quotes, newlines, utf-8, $ and backslashes", async (t) => {
      const sb = await sandbox(t);
      const args = ["it's", 'a "b"', "line1\nline2", "€ ünï", "$HOME `id` \\n", "", "  spaced  "];
      const r = await sb.exec(["python3", "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", ...args]).catch(() => null);
      // the base image may lack python3: fall back to printf
      const out = r && r.exitCode === 0 ? JSON.parse(r.stdout) : (await sb.exec(["bash", "-c", 'for a in "$@"; do printf "%s\\0" "$a"; done', "x", ...args])).stdout.split("\0").slice(0, -1);
      assert.deepEqual(out, args);
    });

    test("env and cwd per command; spec.env is the container env; a relative cwd is under the workdir", async (t) => {
      const sb = await sandbox(t, { FROM_SPEC: "spec value" });
      const r = await sb.exec(["sh", "-c", 'echo "$FROM_SPEC|$FROM_EXEC|$(pwd)"'], { env: { FROM_EXEC: "exec value" }, cwd: "/tmp" });
      assert.equal(r.stdout, "spec value|exec value|/tmp\n");
      await sb.exec(["mkdir", "-p", "/sub"]);
      assert.equal((await sb.exec(["pwd"], { cwd: "sub" })).stdout, "/sub\n");
      assert.equal((await sb.exec(["sh", "-c", "echo $FROM_EXEC"])).stdout, "\n", "env does not leak into the next command");
      const user = await sb.exec(["id", "-u"], { user: "nobody" });
      assert.equal(user.stdout, "65534\n");
    });

    test("no stdin: a command reading stdin sees EOF at once", async (t) => {
      const sb = await sandbox(t);
      const t0 = Date.now();
      const r = await sb.exec(["sh", "-c", "cat; echo end"], { timeoutSec: 20 });
      assert.equal(r.stdout, "end\n");
      assert.ok(Date.now() - t0 < 15_000);
    });

    test("timeout: killed in the container, 124 and timedOut, nothing left running", async (t) => {
      const sb = await sandbox(t);
      const t0 = Date.now();
      const r = await sb.exec(["sleep", "200"], { timeoutSec: 2 });
      const elapsed = Date.now() - t0;
      assert.deepEqual([r.exitCode, r.timedOut], [124, true]);
      assert.ok(elapsed >= 1900 && elapsed < 8000, `took ${elapsed} ms`);
      const ps = await sb.exec(["sh", "-c", "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done"]);
      assert.doesNotMatch(ps.stdout.replaceAll("\0", " "), /sleep 200/);
      const ok = await sb.exec(["sh", "-c", "exit 5"], { timeoutSec: 10 });
      assert.deepEqual([ok.exitCode, ok.timedOut], [5, false]);
    });

    test("abort rejects at once and kills the command", async (t) => {
      const sb = await sandbox(t);
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 500);
      const t0 = Date.now();
      await assert.rejects(sb.exec(["sleep", "61"], { signal: controller.signal }), { name: "AbortError" });
      assert.ok(Date.now() - t0 < 5000);
      assert.equal((await sb.exec(["echo", "still works"])).stdout, "still works\n");
    });

    test("output caps per stream, drained; utf-8 never split; binary passes", async (t) => {
      const sb = await sandbox(t);
      const t0 = Date.now();
      const r = await sb.exec(["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' a; echo done >&2"], { maxOutputBytes: 1024 * 1024 });
      assert.deepEqual([r.truncated, r.stdout.length, r.stderr, r.exitCode], [true, 1024 * 1024, "done\n", 0]);
      assert.ok(Date.now() - t0 < 10_000);
      const small = await sb.exec(["sh", "-c", "seq 1 1000; seq 1 1000 >&2"], { maxOutputBytes: 10 });
      assert.deepEqual([small.stdout, small.stderr, small.truncated], ["1\n2\n3\n4\n5\n", "1\n2\n3\n4\n5\n", true]);
      assert.equal((await sb.exec(["sh", "-c", "printf '\\342'; sleep 0.2; printf '\\202\\254 ok\\n'"])).stdout, "€ ok\n");
      assert.equal((await sb.exec(["sh", "-c", "printf 'a\\377\\376b\\000c'"])).stdout, "a\uFFFD\uFFFDb\0c");
      const cut = await sb.exec(["sh", "-c", "printf '€€€'"], { maxOutputBytes: 4 });
      assert.deepEqual([cut.stdout, cut.truncated], ["€\uFFFD", true]); // Python: b"\xe2\x82\xac\xe2"[:4].decode("utf-8", "replace")
    });

    test("background processes survive the command, and do not hold its answer", async (t) => {
      const sb = await sandbox(t);
      const t0 = Date.now();
      const r = await sb.exec(["sh", "-c", "sleep 30 & echo started"]);
      assert.equal(r.stdout, "started\n");
      assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
      const ps = await sb.exec(["sh", "-c", "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done"]);
      assert.match(ps.stdout.replaceAll("\0", " "), /sleep 30/);
    });

    test("output still in the pipe when the command ends is kept, however late the readers run (a loaded machine)", async (t) => {
      const sb = await sandbox(t);
      // The command finds the processes reading its stdout and stderr (the resident executor's `head` readers),
      // stops them, has a detached process (holding none of the pipes) continue them 1.5 s later, prints and
      // exits: the readers start reading only long after the command ended, as on a machine at load 30.
      const script = `
        for _ in $(seq 100); do
          stopped=
          for f in /proc/[0-9]*/fd/0; do
            p=\${f#/proc/}; p=\${p%%/*}
            [ "$(cat /proc/$p/comm 2>/dev/null)" = head ] || continue
            if [ $f -ef /proc/$$/fd/1 ] || [ $f -ef /proc/$$/fd/2 ]; then stopped="$stopped $p"; fi
          done
          [ $(echo $stopped | wc -w) = 2 ] && break
          sleep 0.02
        done
        [ -n "$stopped" ] && kill -STOP $stopped
        setsid sh -c "sleep 1.5; kill -CONT $stopped" </dev/null >/dev/null 2>&1 &
        echo "readers stopped:$stopped"
        seq 1 2000 | tail -n 1 >&2`;
      const t0 = Date.now();
      const r = await sb.exec(["bash", "-c", script]);
      const readers = r.stdout.replace(/^readers stopped:/, "").trim().split(/\s+/).filter(Boolean);
      assert.equal(readers.length, mode === "resident" ? 2 : 0, r.stdout);
      assert.match(r.stdout, /^readers stopped:( \d+)*\n$/);
      assert.equal(r.stderr, "2000\n");
      assert.equal(r.exitCode, 0);
      if (mode === "resident") assert.ok(Date.now() - t0 >= 1400, "the answer waited for the readers");
    });

    test("commands at the same time get their own results", async (t) => {
      const sb = await sandbox(t);
      const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => sb.exec(["sh", "-c", `sleep 0.$((${i} % 3)); echo ${i}; echo e${i} >&2; exit ${i}`])));
      rs.forEach((r, i) => assert.deepEqual([r.stdout, r.stderr, r.exitCode], [`${i}\n`, `e${i}\n`, i]));
    });

    test("the agent's persistent shell: cd and export persist, exit codes and timeouts as before", async (t) => {
      const sb = await sandbox(t);
      const shell = await openShell(sb, { timeoutSec: 3, maxOutputBytes: 1024 * 1024 });
      await shell.run("mkdir -p /work && cd /work && export GREETING=hi");
      const r = await shell.run('echo "$GREETING from $(pwd)"; false');
      assert.deepEqual([r.stdout, r.exitCode], ["hi from /work\n", 1]);
      const slow = await shell.run("sleep 30");
      assert.equal(slow.timedOut, true);
      assert.equal((await shell.run("pwd")).stdout, "/work\n");
    });
  });
}

// A hostile process in the container writes into the helper's own stdout/stderr (/proc/<helper>/fd/1, fd/2):
// a line that never ends, an answer announcing terabytes, forged control lines. Measured before the limits: the
// host kept appending to one string (quadratic CPU, memory growing) and every later command "timed out" after
// 30 s. Measured before the per-session key: a forged `\x01F` line (or a corrupt answer) ended the executor and
// failed the command in flight as an infrastructure error, which eval retries (a free re-roll).
describe("the resident executor under a hostile container", { skip: ENGINE_SKIP }, () => {
  const backend = dockerBackend({ docker, executor: "resident" });
  const helperPid = "for p in $(ls -d /proc/[0-9]* | sort -t/ -k3 -n); do if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q tmax-executor; then echo ${p#/proc/}; break; fi; done";
  for (const [name, write] of [
    ["an endless control line on fd 2", `head -c 200000000 /dev/zero | tr '\\0' a > /proc/$h/fd/2`],
    ["a forged answer header on fd 1", `{ printf '\\001O 1 999999999999 0 999999999999 0\\n'; head -c 200000000 /dev/zero; } > /proc/$h/fd/1`],
    ["a forged exit code for the next command, then the helper killed", `printf '\\001D 3 0\\n' > /proc/$h/fd/2; kill -9 $h`],
  ] as const) {
    test(`${name}: later commands run and answer at once`, async (t) => {
      const sb = await backend.create({ image: BASE_IMAGE, labels: { [TMAX_JOB_LABEL]: JOB } });
      t.after(() => sb.remove());
      assert.equal((await sb.exec(["true"])).exitCode, 0);
      const started = await sb.exec(["bash", "-c", `h=$(${helperPid}); [ -n "$h" ] || exit 9; (${write}) 2>/dev/null &`], { timeoutSec: 20 }).catch((e: Error) => e);
      // the command that starts the flood may itself be answered or fail with the executor: either is fine
      if (!(started instanceof Error)) assert.notEqual(started.exitCode, 9, "helper not found");
      await new Promise((r) => setTimeout(r, 1000));
      const t0 = Date.now();
      const r = await sb.exec(["echo", "hi"], { timeoutSec: 5 });
      assert.deepEqual([r.stdout, r.exitCode, r.timedOut], ["hi\n", 0, false]);
      assert.ok(Date.now() - t0 < 4000, `took ${Date.now() - t0} ms`);
    });
  }

  test("forged control lines and answers written by the command itself are not frames: its own answer is exact, the executor lives on", async (t) => {
    const sb = await backend.create({ image: BASE_IMAGE, labels: { [TMAX_JOB_LABEL]: JOB } });
    t.after(() => sb.remove());
    const h = (await sb.exec(["bash", "-c", helperPid])).stdout.trim();
    assert.match(h, /^\d+$/);
    // every form the old framing accepted, with and without a guessed key, on both streams of the helper
    const forge = [
      `printf '\\001F forged: cannot serve\\n' > /proc/${h}/fd/2`,
      `printf '\\001D 2 0\\n\\001D 3 0\\n' > /proc/${h}/fd/2`,
      `printf '\\001${"0".repeat(32)} F forged\\n' > /proc/${h}/fd/2`,
      `printf '\\001O 2 3 0 3 0\\nabc' > /proc/${h}/fd/1`,
      `printf 'noise without a newline' > /proc/${h}/fd/2`,
      "echo real-out; echo real-err >&2; exit 7",
    ].join("; ");
    const r = await sb.exec(["bash", "-c", forge], { timeoutSec: 20 });
    assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.timedOut], ["real-out\n", "real-err\n", 7, false]);
    const next = await sb.exec(["sh", "-c", "echo next; exit 3"], { timeoutSec: 20 });
    assert.deepEqual([next.stdout, next.exitCode], ["next\n", 3]);
    assert.equal((await sb.exec(["bash", "-c", helperPid])).stdout.trim(), h, "the same helper still serves (it was never dropped)");
  });
});
