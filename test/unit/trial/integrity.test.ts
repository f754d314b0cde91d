// Reward parsing and clamping, the tamper classifier, the isolation choice and the pytest hardening.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { addFindings, classifyPath, dirClass, tamperReport, tamperSummary, type TamperReport } from "../../../src/trial/tamper.js";
import { testCommands, testImports } from "../../../src/trial/toolchain.js";
import { settleReward } from "../../../src/trial/trial.js";
import { parseWatch } from "../../../src/trial/verifierRun.js";
import { chooseIsolation, clampUnit, hardeningEnv, parseRewardJson, parseRewardText, rewardsOf } from "../../../src/trial/verifier.js";
import type { Task } from "../../../src/tasks/types.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-integrity-unit-"));
after(() => rm(tmp, { recursive: true, force: true }));

test("reward.txt must be one number, the whole file", () => {
  assert.equal(parseRewardText("1\n"), 1);
  assert.equal(parseRewardText("  0.25 "), 0.25);
  assert.equal(parseRewardText("1e-1"), 0.1);
  assert.equal(parseRewardText("-3"), -3);
  for (const bad of ["1 (tests failed: 0/5)", "", "one", "1.0.0", "0x1", "Infinity", "NaN", "1\n2", "1,0", "[1]"]) {
    assert.throws(() => parseRewardText(bad), /reward\.txt is not a number/, bad);
  }
});

test("reward.json: a number or an object of finite numbers", () => {
  assert.deepEqual(parseRewardJson("1"), { reward: 1 });
  assert.deepEqual(parseRewardJson('{"reward": 0.5, "style": 1}'), { reward: 0.5, style: 1 });
  assert.throws(() => parseRewardJson('{"reward": "1"}'), /"reward" is not a number/);
  assert.throws(() => parseRewardJson('{"reward": 1, "note": "ok"}'), /"note" is not a number/);
  assert.throws(() => parseRewardJson("{}"), /no numbers/);
  assert.throws(() => parseRewardJson("[1]"), /number or an object/);
  assert.throws(() => parseRewardJson("1 (tests failed)"), /not valid JSON/);
});

test("rewards are clamped to [0, 1]", () => {
  assert.equal(clampUnit(-3.4), 0);
  assert.equal(clampUnit(340), 1);
  assert.equal(clampUnit(0.3), 0.3);
  assert.equal(clampUnit(Number.NaN), 0);
});

test("tamper classes", () => {
  const cases: Array<[string, string | null]> = [
    ["/usr/local/bin/timeout", "path-dir"],
    ["/usr/local/bin/python3", "interpreter"],
    ["/usr/local/bin/pytest", "test-runner"],
    ["/usr/local/bin/bash", "interpreter"],
    ["/usr/bin/cmp", "path-dir"],
    ["/opt/tools/bin/python3", "interpreter"], // an image's own PATH dir
    ["/opt/conda/bin/pytest", "test-runner"],
    ["/root/.cargo/bin/ripgrep", "path-dir"],
    ["/app/venv/bin/python3", null], // the agent's own venv in the workdir
    ["/app/bin/tool", null],
    ["/usr/local/bin", null], // the dir entry itself: its files are what counts
    ["/usr/lib/python3/dist-packages/evil.pth", "site-hook"],
    ["/etc/python3.11/sitecustomize.py", "site-hook"],
    ["/usr/local/lib/python3.11/site-packages/usercustomize.py", "site-hook"],
    ["/usr/lib/python3/dist-packages/_pytest/runner.py", "test-runner"],
    ["/usr/local/lib/python3.11/dist-packages/attr/__init__.py", "test-runner"], // pytest's dependencies
    ["/usr/local/lib/python3.11/dist-packages/packaging/version.py", "test-runner"],
    ["/usr/lib/python3/dist-packages/numpy/core.py", null], // pip/apt installs of ordinary packages
    ["/usr/lib/python3/dist-packages", null],
    ["/usr/lib/python3.11/os.py", "interpreter"],
    ["/usr/lib/python3.11/__pycache__/os.cpython-311.pyc", null],
    ["/conftest.py", "pytest-config"],
    ["/pytest.ini", "pytest-config"],
    ["/pyproject.toml", "pytest-config"],
    ["/setup.cfg", "pytest-config"],
    ["/tox.ini", "pytest-config"],
    ["/app/pyproject.toml", null],
    ["/tests/conftest.py", "tests"],
    ["/logs/verifier/reward.json", "verifier-logs"],
    ["/logs/verifier", null],
    ["/logs/agent/oracle.txt", null],
    ["/root/.bashrc", "shell-rc"],
    ["/etc/profile.d/x.sh", "shell-rc"],
    ["/etc/ld.so.preload", "loader"],
    ["/etc/ld.so.cache", "loader"],
    ["/usr/local/lib/python3.11/dist-packages/zz_helpers-1.0.dist-info/entry_points.txt", "test-runner"],
    ["/app/evil.egg-info/entry_points.txt", "test-runner"],
    ["/usr/local/lib/python3.11/dist-packages/zz_helpers-1.0.dist-info/METADATA", null],
    ["/usr/libexec/coreutils/libstdbuf.so", "loader"],
    ["/lib/x86_64-linux-gnu/libtinfo.so.6", "loader"],
    ["/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", "loader"],
    ["/usr/local/lib/libevil.so", "loader"],
    ["/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", "interpreter"],
    ["/usr/local/lib/python3.11/site-packages/numpy/core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so", null], // pip installs
    ["/usr/lib/x86_64-linux-gnu/libfoo.sort", null],
    ["/app/libmine.so", null],
    ["/app/pytest.py", "module-shadow"],
    ["/app/shlex.py", "module-shadow"],
    ["/app/attr/__init__.py", "module-shadow"],
    ["/app/inspect.pyc", "module-shadow"],
    ["/app/textwrap.cpython-311-x86_64-linux-gnu.so", "module-shadow"],
    ["/app/html/index.html", null], // a plain dir named like a stdlib package does not shadow it
    ["/app/sub/shlex.py", null],
    ["/app/solution.py", null],
    ["/app/test.py", null],
    ["/app/output.txt", null],
    ["/app/_compression.py", "module-shadow"], // private stdlib module gzip/bz2/lzma import
    ["/app/_collections_abc.py", "module-shadow"],
    ["/usr/lib/python3/dist-packages/_pytest", null], // the package dir entry itself: its files count (a link there: dirClass)
    ["/etc/hosts", "network-config"],
    ["/etc/resolv.conf", "network-config"],
    ["/etc/ssl/certs/ca-certificates.crt", "network-config"],
    ["/usr/local/share/ca-certificates/evil.crt", "network-config"],
    ["/etc/hostname", null],
    ["/usr/local/lib/python3.11/dist-packages/certifi/cacert.pem", null], // a pip install of requests: not the system trust store
  ];
  for (const [p, cls] of cases) assert.equal(classifyPath(p, "/app"), cls, p);
});

test("tamper report: tmax's own writes are not findings; counts per class", () => {
  const report = tamperReport(
    [
      { path: "/logs", kind: 1 },
      { path: "/logs/agent", kind: 1 },
      { path: "/logs/agent/oracle.txt", kind: 1 },
      { path: "/tmp/.tmax-shell/env", kind: 1 },
      { path: "/solution/solve.sh", kind: 1 },
      { path: "/usr/local/bin/timeout", kind: 1 },
      { path: "/usr/bin/cmp", kind: 0 },
      { path: "/app/answer.txt", kind: 1 },
    ],
    { mode: "flag", workdir: "/app" },
  );
  assert.equal(report.flagged, true);
  assert.equal(report.n_changes, 3);
  assert.deepEqual(report.classes, { "path-dir": 2 });
  assert.deepEqual(report.findings[1], { path: "/usr/bin/cmp", change: "modified", class: "path-dir" });
  assert.equal(tamperSummary(report), "flagged: path-dir 2");
  assert.equal(tamperSummary(tamperReport([{ path: "/app/x", kind: 1 }], { mode: "flag" })), "clean");
});

async function fakeTask(name: string, testSh: string, raw: Record<string, unknown> = {}, files: Record<string, string> = {}): Promise<Task> {
  const dir = path.join(tmp, name);
  await mkdir(path.join(dir, "tests"), { recursive: true });
  await writeFile(path.join(dir, "tests", "test.sh"), testSh);
  for (const [f, c] of Object.entries(files)) await writeFile(path.join(dir, "tests", f), c);
  return { name, dir, format: "harbor", instruction: "", testsDir: path.join(dir, "tests"), environment: { contextDir: dir, dockerfile: "Dockerfile" }, checksum: "x", config: { agentTimeoutSec: 1, verifierTimeoutSec: 1, buildTimeoutSec: 1, allowInternet: false, env: {}, tags: [], raw } };
}

test("pytest hardening applies to TB-style test.sh only, and tasks can opt out", async () => {
  const tb = await fakeTask("tb", "#!/bin/bash\npython3 -m pytest /tests/test_outputs.py -rA\n");
  assert.deepEqual(hardeningEnv(tb), { PYTHONNOUSERSITE: "1", PYTEST_ADDOPTS: "-c /dev/null --rootdir=/tests --confcutdir=/tests" });
  const withIni = await fakeTask("ini", "#!/bin/bash\npytest /tests/test_x.py\n", {}, { "pytest.ini": "[pytest]\n" });
  assert.match(hardeningEnv(withIni)!.PYTEST_ADDOPTS, /^-c \/tests\/pytest\.ini /);
  const elsewhere = await fakeTask("elsewhere", "#!/bin/bash\ncd /app && pytest tests/\n");
  assert.deepEqual(hardeningEnv(elsewhere), { PYTHONNOUSERSITE: "1" });
  const optOut = await fakeTask("optout", "#!/bin/bash\npytest /tests/t.py\n", { verifier: { tmax_hardening: false } });
  assert.equal(hardeningEnv(optOut), null);
});

test("isolation: flag, then task.toml, then the command's default (eval/run: Harbor's shared; rollout: strong per backend)", async () => {
  const plain = await fakeTask("iso", "#!/bin/bash\n");
  const shared = await fakeTask("iso2", "#!/bin/bash\n", { verifier: { tmax_isolation: "shared" } });
  const snap = await fakeTask("iso3", "#!/bin/bash\n", { verifier: { tmax_isolation: "snapshot" } });
  for (const backend of ["docker", "daytona", "local"]) assert.equal(chooseIsolation(plain, backend), "shared", backend);
  assert.equal(chooseIsolation(plain, "docker", undefined, "strong"), "snapshot");
  assert.equal(chooseIsolation(plain, "daytona", undefined, "strong"), "kill");
  assert.equal(chooseIsolation(plain, "local", undefined, "strong"), "shared");
  assert.equal(chooseIsolation(shared, "docker", undefined, "strong"), "shared");
  assert.equal(chooseIsolation(snap, "docker"), "snapshot");
  assert.equal(chooseIsolation(shared, "docker", "kill"), "kill");
});

test("a replaced dir takes the class of what it holds or stands in", () => {
  const cases: Array<[string, string | null]> = [
    ["/usr/local/bin", "path-dir"],
    ["/usr/bin", "path-dir"],
    ["/usr", "path-dir"],
    ["/usr/local", "path-dir"],
    ["/opt/venv/bin", "interpreter"],
    ["/usr/lib/python3/dist-packages", "site-hook"],
    ["/usr/local/lib/python3.11/dist-packages", "site-hook"],
    ["/usr/lib/python3.11", "interpreter"],
    ["/usr/lib/python3/dist-packages/_pytest", "test-runner"],
    ["/usr/lib/x86_64-linux-gnu", "loader"],
    ["/etc", "loader"],
    ["/etc/ssl", "network-config"],
    ["/tests", "tests"],
    ["/logs", "verifier-logs"],
    ["/opt/data", null],
    ["/app", null],
  ];
  for (const [p, cls] of cases) assert.equal(dirClass(p), cls, p);
});

test("later findings join the report once per path and class; a flag follows", () => {
  const report = tamperReport([{ path: "/app/shlex.py", kind: 1 }], { mode: "flag", workdir: "/app" });
  addFindings(report, [
    { path: "/app/shlex.py", change: "added", class: "module-shadow" },
    { path: "/usr/lib/python311.zip", change: "added", class: "toolchain" },
    { path: "/usr/lib/python311.zip", change: "added", class: "toolchain" },
  ]);
  assert.deepEqual([report.flagged, report.n_findings, report.classes], [true, 2, { "module-shadow": 1, toolchain: 1 }]);
  const clean = tamperReport([], { mode: "strict" });
  addFindings(clean, []);
  assert.equal(clean.flagged, false);
});

test("the commands test.sh runs and the modules its tests import", async () => {
  const task = await fakeTask(
    "cmds",
    "#!/bin/bash\n# comment: rm -rf /\nset -e\napt-get update && apt-get install -y curl\ncurl -LsSf https://x/install.sh | sh\nsource $HOME/.local/bin/env\nif [ -f x ]; then uvx -p 3.13 pytest /tests; fi\nFOO=1 python3 -m pytest /tests -rA\necho $(date) > /logs/x\n",
    {},
    { "test_a.py": "import os, gzip\nfrom more_itertools import one\nfrom . import helpers\nimport helpers\nfrom numpy.linalg import norm\n", "helpers.py": "import json\n" },
  );
  assert.deepEqual(testCommands(task.testsDir).sort(), ["apt-get", "curl", "date", "python3", "sh", "uvx"]);
  assert.deepEqual(testImports(task.testsDir), ["gzip", "json", "more_itertools", "numpy", "os"]);
});

test("the watch's output: numbered lines per stream, any gap, duplicate, early sampler end or missing END is a forgery", () => {
  const clean = "\x02M1 START 1\nnoise\n\x02T1 EXIT 0\n\x02T2 END\n\x02M2 STOP\n\x02S1 END 40\n\x02M3 END\n";
  assert.deepEqual(parseWatch(clean, 0, false), { exitCode: 0, timedOut: false, forged: [], unknown: [], samples: 40, rewardFiles: {} });
  const signal = (out: string) => parseWatch(out, 0, false).forged.map((f) => f.signal);
  // an agent process seen by the sampler, and a reward rewritten after test.sh returned
  const seen = "\x02M1 START 1\n\x02S1 agent open pid=7 /logs/verifier/reward.txt\n\x02T1 EXIT 1\n\x02T2 FORGED reward-rewritten reward.txt bytes changed\n\x02T3 END\n\x02M2 STOP\n\x02S2 END 3\n\x02M3 END\n";
  assert.deepEqual(signal(seen), ["agent-process", "reward-rewritten"]);
  assert.equal(parseWatch(seen, 0, false).exitCode, 1);
  // lines injected through the pipe (a duplicate number), a missing END (the monitor was killed), an early stop
  assert.deepEqual(signal(clean.replace("\x02T1 EXIT 0\n", "\x02T1 EXIT 0\n\x02T1 EXIT 0\n")), ["monitor"]);
  assert.deepEqual(signal("\x02M1 START 1\n\x02T1 EXIT 0\n"), ["monitor", "monitor"]);
  assert.deepEqual(signal(clean.replace("\x02T2 END\n", "")), ["monitor"]);
  assert.deepEqual(signal("\x02M1 START 1\n\x02T1 EXIT 0\n\x02T2 END\n\x02S1 END 2\n\x02M2 STOP\n\x02M3 END\n"), ["monitor"]);
  assert.deepEqual(signal("\x02X1 whatever\n" + clean), ["monitor"]);
  // an orphan of unknown origin only flags
  const unknown = parseWatch(clean.replace("\x02M2 STOP", "\x02S1 unknown cwd pid=9 /tests\n\x02M2 STOP").replace("\x02S1 END 40", "\x02S2 END 40"), 0, false);
  assert.deepEqual([unknown.forged, unknown.unknown.map((u) => u.signal)], [[], ["unknown-process"]]);
  // a timeout is the verifier's timeout, not a forgery
  assert.deepEqual(parseWatch("\x02M1 START 1\n\x02S1 TIMEOUT\n", 137, false).timedOut, true);
});

test("the reward a trial scores: clamped; 0 when forged (strict and flag), or flagged under strict; off changes nothing", () => {
  const report = (over: Partial<TamperReport>): TamperReport => ({ ...tamperReport([], { mode: "flag" }), ...over });
  assert.equal(settleReward({ reward: 1e6 }, undefined, "flag"), 1);
  assert.equal(settleReward({ reward: -3 }, report({}), "strict"), 0);
  const forged = report({ forged: true, flagged: true });
  assert.equal(settleReward({ reward: 1 }, forged, "flag"), 0);
  assert.equal(forged.zeroed, true);
  assert.equal(settleReward({ reward: 1 }, report({ forged: true, flagged: true }), "off"), 1);
  assert.equal(settleReward({ reward: 1 }, report({ flagged: true }), "flag"), 1);
  assert.equal(settleReward({ reward: 1 }, report({ flagged: true }), "strict"), 0);
  assert.match(tamperSummary(report({ forged: true, flagged: true, signals: [{ signal: "reward-rewritten", severity: "refuse", detail: "x" }] })), /^refused \(forged reward\): reward-rewritten$/);
});

test("the reward is the bytes the watch took at test.sh's exit (hex lines), read by the same rules as the files", () => {
  const out = "\x02M1 START 1\n\x02T1 REWARD reward.txt 310a\n\x02T2 REWARD reward.json 7b2272223a20307d\n\x02T3 EXIT 0\n\x02T4 END\n\x02M2 STOP\n\x02S1 END 3\n\x02M3 END\n";
  const watched = parseWatch(out, 0, false);
  assert.deepEqual(watched.forged, []);
  assert.deepEqual(watched.rewardFiles, { "reward.txt": Buffer.from("1\n"), "reward.json": Buffer.from('{"r": 0}') });
  // reward.json first, as when the files are read
  assert.deepEqual(rewardsOf(watched.rewardFiles!, 0), { r: 0 });
  assert.deepEqual(rewardsOf({ "reward.txt": Buffer.from("0.5\n") }, 0), { reward: 0.5 });
  // none there when test.sh returned: no reward file (whatever appears later never counts)
  const none = parseWatch("\x02M1 START 1\n\x02T1 EXIT 1\n\x02T2 END\n\x02M2 STOP\n\x02S1 END 3\n\x02M3 END\n", 0, false);
  assert.deepEqual(none.rewardFiles, {});
  assert.throws(() => rewardsOf(none.rewardFiles!, 1), /no reward file/);
  // a NUL byte, a FIFO, 70 KiB: errors, as Harbor's float() and tmax's limits give
  assert.throws(() => rewardsOf({ "reward.txt": Buffer.from("1\0") }, 0), /not a number/);
  assert.throws(() => rewardsOf({ "reward.txt": "special" }, 0), /not a regular file/);
  assert.throws(() => rewardsOf({ "reward.txt": "big" }, 0), /over 65536 bytes/);
  // a reward line injected through the pipe is out of sequence; a second take of one file is the monitor's too
  assert.deepEqual(parseWatch(out.replace("\x02T3 EXIT 0", "\x02T3 REWARD reward.txt 310a\n\x02T4 EXIT 0").replace("\x02T4 END", "\x02T5 END"), 0, false).forged.map((f) => f.signal), ["monitor"]);
});
