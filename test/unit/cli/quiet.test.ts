// -q/--quiet: no progress, steps or notices; the final lines and errors only.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import type { AgentEvent } from "../../../src/agent/loop.js";
import { createLiveView } from "../../../src/cli/liveView.js";
import { setOutputFlags, stepPrinter } from "../../../src/cli/render.js";
import type { JobProgress } from "../../../src/jobs/runner.js";
import { finished, spawnTmax } from "../../support/cli.js";
import { EXAMPLES } from "../../support/env.js";
import { startFakeEngine } from "../../support/fakeEngine.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-quiet-"));
after(() => rm(tmp, { recursive: true, force: true }));

function capture(tty: boolean) {
  let text = "";
  const out = { isTTY: tty, columns: 120, rows: 40, write: (s: string) => ((text += s), true) } as unknown as NodeJS.WriteStream;
  return { out, text: () => text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "") }; // colour and cursor moves left out
}

const finishedTrial = {
  total: 2,
  done: 1,
  running: 1,
  errors: 0,
  infraErrors: 0,
  rewardSum: 1,
  last: { trial_name: "hello-file__0", reward: 1, exception_info: null, started_at: "2026-01-01T00:00:00Z", finished_at: "2026-01-01T00:00:05Z" },
} as unknown as JobProgress;

function drive(view: ReturnType<typeof createLiveView>) {
  view.trial({ type: "start", trial: "hello-file__0" });
  view.trial({ type: "phase", trial: "hello-file__0", phase: "agent" } as never);
  view.trial({ type: "retry", trial: "hello-file__1", retry: 1, reason: "engine busy" } as never);
  view.progress(finishedTrial);
  view.log("note: the breaker paused the job");
}

describe("--quiet", () => {
  for (const tty of [false, true]) {
    test(`the live view (${tty ? "terminal" : "pipe"}) prints nothing but lines logged as always`, () => {
      const loud = capture(tty);
      const v1 = createLiveView({ out: loud.out, tty, quiet: false, refreshMs: 60_000 });
      drive(v1);
      v1.done();
      assert.match(loud.text(), /hello-file__0 pass reward=1/);
      assert.match(loud.text(), /note: the breaker paused the job/);

      const quiet = capture(tty);
      const v2 = createLiveView({ out: quiet.out, tty, quiet: true, refreshMs: 60_000 });
      drive(v2);
      v2.log("interrupted: continue with tmax eval --resume DIR", true);
      v2.done();
      assert.equal(quiet.text(), "interrupted: continue with tmax eval --resume DIR\n", "no status block, no progress, no notices");
    });
  }

  test("the step printer prints nothing", () => {
    const lines: string[] = [];
    const event: AgentEvent = { type: "command", step: 0, command: "ls" } as AgentEvent;
    stepPrinter((l) => lines.push(l))(event);
    assert.equal(lines.length, 1);
    setOutputFlags({ quiet: true });
    try {
      stepPrinter((l) => lines.push(l))(event);
      assert.equal(lines.length, 1);
    } finally {
      setOutputFlags({});
    }
  });

  test("tmax eval … -q: no header and no progress; an interruption still says how to resume", async () => {
    const engine = await startFakeEngine(); // answers the preflight, then never answers: the job waits
    after(() => engine.close());
    const job = path.join(tmp, "job");
    const child = spawnTmax(["eval", "-d", path.join(EXAMPLES, "hello-file"), "-a", "oracle", "-e", "docker", "--job-dir", job, "-q"], { NO_COLOR: "1", DOCKER_HOST: engine.host });
    const done = finished(child);
    const started = Date.now();
    while (!(engine.requests.some((r) => r.startsWith("GET /images/")) && (await readFile(path.join(job, "config.json")).catch(() => null)))) {
      assert.ok(Date.now() - started < 60_000, "the job never started");
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill("SIGINT");
    const r = await done;
    assert.equal(r.code, 130, r.stdout + r.stderr);
    assert.equal(r.stdout.trim(), `interrupted (SIGINT): finished trials are kept; continue with\n  tmax eval --resume ${job}`);
  });
});
