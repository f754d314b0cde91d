// Exec on the experimental Daytona backend through the session API, against the in-process fake of the SDK in
// test/support/daytonaFake.ts, which runs session commands on this machine the way the daemon does: streams,
// exit codes, caps, timeouts, aborts, background children, concurrent sessions, retries of the session calls,
// dead sessions and `direct` commands that kill their own wrapper.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { openShell } from "../../../../src/agent/shell.js";
import { daytonaBackend, decodeStream, shellQuote } from "../../../../src/sandbox/daytona/backend.js";
import { API_KEY, FAST, errorWithStatus, fakeSdk, withSandbox, type FakeSandbox } from "../../../support/daytonaFake.js";

test("exec keeps stdout and stderr separate and returns the real exit code", async (t) => {
  const { sandbox } = await withSandbox(t);
  const r = await sandbox.exec(["bash", "-c", "echo out; echo err >&2; echo out2; exit 3"]);
  assert.equal(r.stdout, "out\nout2\n");
  assert.equal(r.stderr, "err\n");
  assert.equal(r.exitCode, 3);
  assert.equal(r.timedOut, false);
  assert.equal(r.truncated, false);
  assert.ok(r.durationMs >= 0);
  const missing = await sandbox.exec(["no-such-command-tmax"]);
  assert.equal(missing.exitCode, 127);
  assert.match(missing.stderr, /no-such-command-tmax/);
  // argv runs without a shell: a builtin name is not found, $VARS stay literal
  const builtin = await sandbox.exec(["cd", "/"]);
  assert.equal(builtin.exitCode, 127);
  await assert.rejects(sandbox.exec([]), /argv is empty/);
});

test("exec passes awkward argv through unchanged", async (t) => {
  const { sandbox } = await withSandbox(t);
  const args = [
    "it's",
    `"double" and 'single'`,
    "$HOME $(id) `uname` ${PATH}",
    "line1\nline2\n",
    "ünïcødé ✓ 🚀",
    "",
    "  spaces  ",
    "*",
    "back\\slash",
    "; rm -rf / #",
    "-n",
    "tab\there",
    "'",
    "'\\''",
  ];
  const r = await sandbox.exec(["printf", "[%s]\\n", ...args]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.stdout, args.map((a) => `[${a}]\n`).join(""));
});

test("exec timeout kills the command (and what it started) and reports 124", async (t) => {
  const { sandbox, root } = await withSandbox(t);
  const started = Date.now();
  const r = await sandbox.exec(["bash", "-c", `echo before; (sleep 3; touch ${shellQuote(path.join(root, "late"))}) & sleep 5`], { timeoutSec: 1 });
  assert.equal(r.exitCode, 124);
  assert.equal(r.timedOut, true);
  assert.equal(r.stdout, "before\n");
  assert.ok(Date.now() - started < 4000, `took ${Date.now() - started} ms`);
  await new Promise((res) => setTimeout(res, 2500));
  assert.equal(existsSync(path.join(root, "late")), false, "the background child died with the group");
  const fast = await sandbox.exec(["true"], { timeoutSec: 5 });
  assert.deepEqual([fast.exitCode, fast.timedOut], [0, false]);
});

test("exec caps each stream separately; a character cut by the cap is one U+FFFD (as Python decodes it)", async (t) => {
  const { sandbox } = await withSandbox(t);
  const r = await sandbox.exec(["bash", "-c", "head -c 5000 /dev/zero | tr '\\0' a; for i in $(seq 100); do printf 'é' >&2; done"], { maxOutputBytes: 101 });
  assert.equal(r.stdout, "a".repeat(101));
  assert.equal(r.stderr, "é".repeat(50) + "\uFFFD"); // Python: ("é" * 100).encode()[:101].decode("utf-8", "replace")
  assert.equal(r.truncated, true);
  const small = await sandbox.exec(["bash", "-c", "printf 1234; printf 56 >&2"], { maxOutputBytes: 4 });
  assert.deepEqual([small.stdout, small.stderr, small.truncated], ["1234", "56", false]);
});

test("exec applies env and cwd (relative to the workdir); a missing cwd fails like a failed chdir", async (t) => {
  const { sandbox, root } = await withSandbox(t);
  await fs.mkdir(path.join(root, "sub/dir"), { recursive: true });
  const r = await sandbox.exec(["bash", "-c", 'pwd; printf "%s|%s" "$FOO" "$BAR"'], { cwd: "sub/dir", env: { FOO: "a b'c $x", BAR: "" } });
  assert.equal(r.stdout, `${path.join(root, "sub/dir")}\na b'c $x|`);
  const abs = await sandbox.exec(["pwd"], { cwd: path.join(root, "sub") });
  assert.equal(abs.stdout, `${path.join(root, "sub")}\n`);
  const gone = await sandbox.exec(["pwd"], { cwd: "nope" });
  assert.equal(gone.exitCode, 127);
  assert.match(gone.stderr, /nope/);
  await assert.rejects(sandbox.exec(["true"], { env: { "BAD-NAME": "1" } }), /BAD-NAME/);
  await assert.rejects(sandbox.exec(["true"], { user: "somebody-else" }), /cannot run as 'somebody-else'/);
});

test("a command longer than the inline limit travels as an uploaded script", async (t) => {
  const { sandbox } = await withSandbox(t);
  const big = "x".repeat(100_000); // under Linux's 128 KiB cap on one argument, far over the inline limit
  const r = await sandbox.exec(["bash", "-c", 'printf %s "$1" | wc -c', "tmax", big]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.stdout.trim(), "100000");
});

test("an aborted exec rejects with the abort reason at once and the command is killed", async (t) => {
  const { sandbox, root } = await withSandbox(t);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 300);
  const started = Date.now();
  await assert.rejects(sandbox.exec(["bash", "-c", `sleep 1.5; touch ${shellQuote(path.join(root, "ran"))}`], { signal: controller.signal }), { name: "AbortError" });
  assert.ok(Date.now() - started < 1200);
  await new Promise((res) => setTimeout(res, 2000));
  assert.equal(existsSync(path.join(root, "ran")), false);
  await assert.rejects(sandbox.exec(["true"], { signal: controller.signal }), { name: "AbortError" });
});

test("the persistent shell of the agent loop works on a Daytona sandbox: cd and export persist", async (t) => {
  const { sandbox, root } = await withSandbox(t);
  const shell = await openShell(sandbox, { timeoutSec: 30, maxOutputBytes: 100_000 });
  const first = await shell.run("mkdir -p deep/er && cd deep/er && export GREETING='hi there' && echo done");
  assert.equal(first.exitCode, 0, first.stderr);
  assert.equal(first.stdout, "done\n");
  const second = await shell.run('pwd; echo "$GREETING"; echo oops >&2; false');
  assert.equal(second.stdout, `${path.join(root, "deep/er")}\nhi there\n`);
  assert.equal(second.stderr, "oops\n");
  assert.equal(second.exitCode, 1);
});


test("exec runs through sessions: runAsync, polled to its exit code, streams read apart; no executeCommand", async (t) => {
  const { sandbox, state } = await withSandbox(t);
  const before = { ...state.calls };
  const r = await sandbox.exec(["bash", "-c", "printf out; printf err >&2; exit 7"]);
  assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.truncated], ["out", "err", 7, false], "the daemon's added newline never reaches the caller");
  assert.equal(state.calls.executeSessionCommand - (before.executeSessionCommand ?? 0), 1);
  assert.ok(state.calls.getSessionCommand - (before.getSessionCommand ?? 0) >= 1);
  assert.equal(state.calls.getSessionCommandLogs - (before.getSessionCommandLogs ?? 0), 1);
  assert.equal(state.sessionsCreated.length, 1, "one session for the sandbox");
  const again = await sandbox.exec(["bash", "-c", "echo a; echo b >&2; printf '\\n\\n'"]);
  assert.deepEqual([again.stdout, again.stderr, again.exitCode], ["a\n\n\n", "b\n", 0]);
  const empty = await sandbox.exec(["true"]);
  assert.deepEqual([empty.stdout, empty.stderr], ["", ""]);
  assert.equal(state.sessionsCreated.length, 1, "the session is reused by later execs");

  // A daemon that flushes partial lines as they are (no newline added) gives the same answer.
  state.appendNewline = false;
  const partial = await sandbox.exec(["bash", "-c", "printf out; printf err >&2"]);
  assert.deepEqual([partial.stdout, partial.stderr], ["out", "err"]);
});

test("output caps: the first maxOutputBytes of each stream, truncated only when there was more", async (t) => {
  const { sandbox } = await withSandbox(t);
  const exact = await sandbox.exec(["bash", "-c", "printf 12345; printf abcde >&2"], { maxOutputBytes: 5 });
  assert.deepEqual([exact.stdout, exact.stderr, exact.truncated], ["12345", "abcde", false]);
  const over = await sandbox.exec(["bash", "-c", "printf 123456"], { maxOutputBytes: 5 });
  assert.deepEqual([over.stdout, over.truncated], ["12345", true]);
  const lines = await sandbox.exec(["bash", "-c", "seq 1 100000; echo done >&2"], { maxOutputBytes: 10 });
  assert.deepEqual([lines.stdout, lines.stderr, lines.truncated], ["1\n2\n3\n4\n5\n", "done\n", true]);
  const euro = await sandbox.exec(["bash", "-c", "printf '€€€'"], { maxOutputBytes: 4 });
  assert.deepEqual([euro.stdout, euro.truncated], ["€\uFFFD", true]);
  const zero = await sandbox.exec(["bash", "-c", "echo x"], { maxOutputBytes: 0 });
  assert.deepEqual([zero.stdout, zero.truncated], ["", true]);
});

test("decodeStream: the wrapper's newline or cut trailer is removed; the daemon's decoding is kept", () => {
  assert.deepEqual(decodeStream("abc\n", "n1"), { text: "abc", truncated: false });
  assert.deepEqual(decodeStream("abc\n\n", "n1"), { text: "abc\n", truncated: false });
  assert.deepEqual(decodeStream("", "n1"), { text: "", truncated: false });
  assert.deepEqual(decodeStream(undefined, "n1"), { text: "", truncated: false });
  assert.deepEqual(decodeStream("12345\n__tmax_cut_n1__\n", "n1"), { text: "12345", truncated: true });
  assert.deepEqual(decodeStream("12345\n__tmax_cut_other__\n", "n1"), { text: "12345\n__tmax_cut_other__", truncated: false }, "another exec's trailer is output");
  // the daemon's U+FFFD (3 bytes each, for 1 raw byte) stay as it decoded them: nothing is cut again
  assert.deepEqual(decodeStream("a\uFFFD\uFFFD\n", "n1"), { text: "a\uFFFD\uFFFD", truncated: false });
});

test("background processes survive the command and do not hold its answer", async (t) => {
  const { sandbox, root } = await withSandbox(t);
  const marker = path.join(root, "bg-done");
  const started = Date.now();
  // the child sleeps 3 s: an answer well before that did not wait for it (generous for a loaded 2-core host)
  const r = await sandbox.exec(["sh", "-c", `(sleep 3; echo late; touch ${shellQuote(marker)}) & echo started`]);
  assert.equal(r.stdout, "started\n");
  assert.ok(Date.now() - started < 2500, `answered after ${Date.now() - started} ms`);
  const deadline = started + 15_000;
  while (!existsSync(marker) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
  assert.equal(existsSync(marker), true, "the background child ran to its end");
});

test("execs at the same time get sessions of their own; every session is deleted at close", async (t) => {
  const { sdk, state } = fakeSdk();
  const backend = daytonaBackend({ sdk, apiKey: API_KEY, ...FAST });
  const sandbox = await backend.create({ image: "x" });
  t.after(() => sandbox.remove());
  const order: string[] = [];
  const slow = sandbox.exec(["bash", "-c", "sleep 0.8; echo slow"]).then((r) => order.push(r.stdout));
  await new Promise((res) => setTimeout(res, 100));
  const rs = await Promise.all([0, 1, 2].map((i) => sandbox.exec(["bash", "-c", `echo ${i}; echo e${i} >&2; exit ${i}`])));
  order.push("quick");
  rs.forEach((r, i) => assert.deepEqual([r.stdout, r.stderr, r.exitCode], [`${i}\n`, `e${i}\n`, i]));
  await slow;
  assert.deepEqual(order, ["quick", "slow\n"], "the quick commands did not wait for the slow one");
  assert.ok(state.sessionsCreated.length >= 2 && state.sessionsCreated.length <= 4, `${state.sessionsCreated.length} sessions`);
  const made = [...state.sessionsCreated];
  await sandbox.remove();
  assert.deepEqual([...state.sessionsDeleted].sort(), made.sort(), "each session deleted once");
  assert.equal((state.sandboxes.get(sandbox.id) as FakeSandbox).deleted, true);
});

test("an abort kills the command's process group from another session; the sandbox stays usable", async (t) => {
  const { sandbox, state, root } = await withSandbox(t);
  await sandbox.exec(["true"]);
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error("stop now")), 300);
  const marker = path.join(root, "child-ran");
  await assert.rejects(sandbox.exec(["bash", "-c", `(sleep 1.2; touch ${shellQuote(marker)}) & sleep 1.5`], { signal: controller.signal }), /stop now/);
  await new Promise((res) => setTimeout(res, 1700));
  assert.equal(existsSync(marker), false, "the background child died with the group");
  assert.ok(state.sessionsCreated.length >= 2, "the kill ran in a second session");
  const after = await sandbox.exec(["echo", "still here"]);
  assert.equal(after.stdout, "still here\n");
});

test("rate limits and transient errors of the session calls are retried with backoff; a command only on a 429", async (t) => {
  const { sandbox, state } = await withSandbox(t);
  const limited = () => errorWithStatus("Too Many Requests", 429, "DaytonaRateLimitError");
  const unavailable = () => errorWithStatus("Service Unavailable", 503, "DaytonaServiceUnavailableError");
  const dropped = () => Object.assign(new Error("socket hang up"), { name: "DaytonaConnectionError" });

  // first use: the session create is refused twice, the command once, a poll and the log read fail transiently
  state.faults = {
    createSession: [limited(), limited()],
    executeSessionCommand: [limited()],
    getSessionCommand: [unavailable(), dropped()],
    getSessionCommandLogs: [limited()],
  };
  const r = await sandbox.exec(["bash", "-c", "echo through; echo err >&2; exit 4"]);
  assert.deepEqual([r.stdout, r.stderr, r.exitCode], ["through\n", "err\n", 4]);
  assert.deepEqual(Object.values(state.faults).flat(), [], "every fault was met and waited out");
  assert.equal(state.calls.createSession, 3);
  assert.equal(state.calls.executeSessionCommand, 2);

  // a 503 on the command itself may hide a command that ran: not repeated
  const calls = state.calls.executeSessionCommand;
  state.faults.executeSessionCommand = [unavailable()];
  await assert.rejects(sandbox.exec(["echo", "x"]), (err: Error & { kind?: string }) => err.kind === "exec_failed" && /Service Unavailable/.test(err.message));
  assert.equal(state.calls.executeSessionCommand, calls + 1);

  // too many 429s: the last one is reported, after `attempts` tries
  const before = state.calls.executeSessionCommand;
  state.faults.executeSessionCommand = [limited(), limited(), limited(), limited(), limited()];
  const t0 = Date.now();
  await assert.rejects(sandbox.exec(["echo", "x"]), /Too Many Requests/);
  assert.equal(state.calls.executeSessionCommand - before, 4);
  assert.ok(Date.now() - t0 >= 10, "the retries waited (backoff)");
  state.faults = {};
  assert.equal((await sandbox.exec(["echo", "fine"])).stdout, "fine\n");
});

test("a session created by a lost attempt (409 on the repeat) is used, not refused", async (t) => {
  const { sandbox, state } = await withSandbox(t);
  const fake = state.sandboxes.get(sandbox.id)!;
  const create = fake.process.createSession;
  let first = true;
  fake.process.createSession = async (sid) => {
    await create(sid);
    if (first) {
      first = false;
      throw errorWithStatus("Bad Gateway", 502);
    }
  };
  assert.equal((await sandbox.exec(["echo", "ok"])).stdout, "ok\n");
});

test("a session whose shell is gone (400 on write) is replaced by a new one; on a new session a 400 is final", async (t) => {
  const { sandbox, state } = await withSandbox(t);
  await sandbox.exec(["true"]);
  const [first] = state.sessionsCreated;
  state.faults.executeSessionCommand = [errorWithStatus("failed to write command: broken pipe", 400)];
  assert.equal((await sandbox.exec(["echo", "again"])).stdout, "again\n");
  assert.equal(state.sessionsCreated.length, 2);
  assert.ok(state.sessionsDeleted.includes(first), "the dead session was deleted");
  state.faults.executeSessionCommand = [errorWithStatus("bad", 400), errorWithStatus("bad again", 400)];
  await assert.rejects(sandbox.exec(["echo", "x"]), /bad again/);
});

test("direct: a command that kills every process but itself and its parent still reports its status and output", async (t) => {
  const { sandbox, state } = await withSandbox(t);
  await sandbox.exec(["true"]);
  const before = [...state.sessionsCreated];
  // Only this sandbox's files (other test files run at the same time and have their own in /tmp).
  const execFiles = () => [...new Set(state.commands.flatMap((c) => c.match(/\/tmp\/\.tmax-exec-[0-9a-f]+(\.sh)?/g) ?? []))];
  // Like the verifier's kill isolation, confined to this command's own ancestors (up to the test runner):
  // the exec wrapper and the session's shell die, so the daemon never learns the exit code.
  // Stopped first, then killed, as KILL_ALL_SCRIPT does (so no shell sees its child die and reports it).
  const killAncestors = (keepSessionShell: boolean) => `p=$(cut -d' ' -f4 /proc/$PPID/stat); pids=""
while [ "$p" -gt 1 ] && [ "$p" != "${process.pid}" ]; do n=$(cut -d' ' -f4 /proc/$p/stat); { ${keepSessionShell} && [ "$n" = "${process.pid}" ]; } || pids="$pids $p"; p=$n; done
for p in $pids; do kill -STOP "$p"; done; for p in $pids; do kill -KILL "$p"; done
echo ancestors gone; echo note >&2; exit 3`;
  const started = Date.now();
  const r = await sandbox.exec(["bash", "-c", killAncestors(false)], { direct: true, timeoutSec: 60 });
  assert.deepEqual([r.exitCode, r.stdout, r.stderr, r.timedOut], [3, "ancestors gone\n", "note\n", false]);
  assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  // only the wrapper dies, the session's shell reports that (137): the recorder's status wins
  const r2 = await sandbox.exec(["bash", "-c", killAncestors(true)], { direct: true, timeoutSec: 60 });
  assert.deepEqual([r2.exitCode, r2.stdout, r2.stderr], [3, "ancestors gone\n", "note\n"]);
  for (const id of before) assert.ok(state.sessionsDeleted.includes(id), "sessions from before the direct command are not reused");
  assert.equal((await sandbox.exec(["echo", "after"])).stdout, "after\n");
  assert.ok(execFiles().length >= 2, `direct commands went through files in /tmp: ${execFiles().join(", ")}`);
  assert.deepEqual(execFiles().filter((p) => existsSync(p)), [], "its files were removed");

  // a direct command runs without timeout(1): the host kills its group at the limit
  const t1 = Date.now();
  const slow = await sandbox.exec(["bash", "-c", "sleep 5 & sleep 6"], { direct: true, timeoutSec: 1 });
  assert.deepEqual([slow.exitCode, slow.timedOut], [124, true]);
  assert.ok(Date.now() - t1 < 4000, `took ${Date.now() - t1} ms`);

  // a direct command that ends normally answers as any other
  const plain = await sandbox.exec(["bash", "-c", "echo fine; exit 2"], { direct: true });
  assert.deepEqual([plain.exitCode, plain.stdout], [2, "fine\n"]);
});
