// The Python client (clients/python) against real `tmax serve` processes, through pytest: once per Python
// that has pytest and websockets (Debian's /usr/bin/python3 with websockets 10.4; a python3 on PATH with a
// current release), and once per extra site dir in TMAX_TEST_PY_SITES (colon-separated, e.g. a venv's
// site-packages with websockets 13+ put in front of Debian's pytest). Skipped visibly when none is found.
// Also: the open-instruct adapter's observations are byte for byte `tmax run`'s with the same scripted model.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { ENGINE_SKIP, EXAMPLES, ROOT } from "../../support/env.js";
import { startFakeVllm, type FakeReply } from "../../support/fake-vllm.js";
import { startTestServe } from "../../support/serve.js";

const PY_DIR = path.join(ROOT, "clients/python");

interface Interpreter {
  python: string;
  pythonPath?: string;
  label: string;
}

/** Pythons that can run the suite, one per websockets version. */
function interpreters(): Interpreter[] {
  const candidates: Interpreter[] = [];
  for (const python of ["/usr/bin/python3", "python3"]) candidates.push({ python, label: python });
  for (const site of (process.env.TMAX_TEST_PY_SITES ?? "").split(":").filter(Boolean)) candidates.push({ python: "/usr/bin/python3", pythonPath: site, label: `/usr/bin/python3 + ${site}` });
  const seen = new Set<string>();
  const usable: Interpreter[] = [];
  for (const c of candidates) {
    const r = spawnSync(c.python, ["-c", "import pytest, websockets; print(websockets.__version__)"], { encoding: "utf8", env: { ...process.env, ...(c.pythonPath ? { PYTHONPATH: c.pythonPath } : {}) } });
    if (r.status !== 0) continue;
    const version = r.stdout.trim();
    if (seen.has(version)) continue;
    seen.add(version);
    usable.push({ ...c, label: `${c.label} (websockets ${version})` });
  }
  return usable;
}

const found = interpreters();
const PY_SKIP = found.length === 0 ? "skipped: no python3 with pytest and websockets (apt install python3-pytest python3-websockets)" : false;
if (PY_SKIP) console.log(`# ${PY_SKIP}`);

/** A child process, without blocking this process's event loop (servers the child talks to may live here). */
function run(cmd: string, args: string[], opts: { cwd: string; env?: Record<string, string> }): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("close", (status) => resolve({ status, out }));
  });
}

function pytest(i: Interpreter, args: string[], env: Record<string, string> = {}) {
  return run(i.python, ["-m", "pytest", "-q", "-p", "no:cacheprovider", ...args], { cwd: PY_DIR, env: { ...(i.pythonPath ? { PYTHONPATH: i.pythonPath } : {}), ...env } });
}

describe("Python client against tmax serve", { skip: ENGINE_SKIP || PY_SKIP }, () => {
  for (const i of found) {
    test(`pytest clients/python/tests with ${i.label}`, async () => {
      const r = await pytest(i, ["tests"]);
      assert.equal(r.status, 0, r.out.slice(-6000));
      assert.match(r.out, /passed/);
    });
  }

  test("the open-instruct adapter sees byte for byte what tmax run shows the model", async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-serve-identity-"));
    after(() => rm(tmp, { recursive: true, force: true }));
    const script: FakeReply[] = [
      { text: "THOUGHT: look.", commands: ["ls -a /app; echo to-stderr >&2; exit 3"] },
      { commands: ["seq 1 4000"] },
      { commands: ["printf 'Hello, tmax!\\n  \\n' > /app/hello.txt; cat /app/hello.txt"] },
      { commands: ["printf 'Hello, tmax!\\n' > /app/hello.txt"] },
      { commands: [`echo ${SUBMIT_MARKER}`] },
    ];
    const vllm = await startFakeVllm({ reply: (ctx) => script[ctx.turn] ?? { text: "done" } });
    const serve = await startTestServe({ dataset: EXAMPLES });
    try {
      const out = path.join(tmp, "run");
      const tmaxRun = await run(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/main.ts"), "run", "--task", path.join(EXAMPLES, "hello-file"), "--base-url", vllm.baseUrl, "--out", out], { cwd: ROOT });
      assert.equal(tmaxRun.status, 0, tmaxRun.out);
      const trial = readdirSync(out).find((d) => d.startsWith("hello-file__"))!;
      const trajectory = JSON.parse(readFileSync(path.join(out, trial, "agent", "tmax-trajectory.json"), "utf8"));
      const expected = path.join(tmp, "expected.json");
      writeFileSync(expected, JSON.stringify({ observations: trajectory.messages.filter((m: any) => m.role === "tool").map((m: any) => m.content), prompt: trajectory.messages[1].content }));
      const r = await pytest(found[0]!, ["tests/identity_check.py"], { TMAX_SERVE_URL: serve.url, FAKE_VLLM_URL: vllm.baseUrl, EXPECTED_JSON: expected });
      assert.equal(r.status, 0, r.out.slice(-6000));
      assert.match(r.out, /1 passed/);
    } finally {
      await serve.close();
      await vllm.close();
    }
    assert.deepEqual(serve.containers(), []);
  });
});
