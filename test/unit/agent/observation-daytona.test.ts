// The daytona stream rule: Harbor's Daytona environment returns stdout and stderr apart and the eval agent
// joins them (stdout, "\n", stderr), where its docker environment merges them in write order. Driven through
// the eval loop on the fake Daytona SDK (test/support/daytonaFake.ts), against the reference functions.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { runEpisode } from "../../../src/agent/chatProtocol.js";
import { mergesStderr } from "../../../src/agent/loop.js";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { createModelClient, modelConfigFromOptions } from "../../../src/model/client.js";
import { withSandbox } from "../../support/daytonaFake.js";
import { ROOT } from "../../support/env.js";
import { startFakeVllm, type FakeContext, type FakeReply } from "../../support/fake-vllm.js";

const REFERENCE = path.join(ROOT, "test/fixtures/observation/reference.py");

test("stream rule per profile and backend: eval merges on docker (and local), keeps apart on daytona; train never merges", () => {
  assert.equal(mergesStderr("eval", "docker"), true);
  assert.equal(mergesStderr("eval", "local"), true);
  assert.equal(mergesStderr("eval", "daytona"), false);
  for (const backend of ["docker", "daytona", "local"] as const) assert.equal(mergesStderr("train", backend), false);
});

test("eval on daytona: stdout, then a newline and stderr, as Vanillux2Agent joins Daytona's two streams", async (t) => {
  const { sandbox } = await withSandbox(t);
  const steps: FakeReply[] = [
    { text: "THOUGHT", commands: ["echo a; echo b >&2; echo c; printf '\\357\\273\\277bom' >&2; exit 4"] },
    { text: "THOUGHT", commands: ["echo only-err >&2"] },
    { text: "THOUGHT", commands: [`echo ${SUBMIT_MARKER}`] },
  ];
  const server = await startFakeVllm({ reply: (ctx: FakeContext) => steps[Math.min(ctx.turn, steps.length - 1)]! });
  t.after(() => server.close());
  const model = createModelClient(modelConfigFromOptions({ baseUrl: server.baseUrl, profile: "eval", maxRetries: 0 }));
  const trajectory = await runEpisode({ taskName: "t", instruction: "x", model, sandbox, profile: "eval" });
  assert.equal(trajectory.exitStatus, "submitted", trajectory.error);
  const observations = trajectory.steps.flatMap((s) => s.executions ?? []).map((e) => e.observation);
  // the reference functions on the same streams (Harbor's Daytona environment: stdout and stderr apart)
  const py = spawnSync("python3", [REFERENCE], {
    input: JSON.stringify([
      { profile: "daytona", stdout: Buffer.from("a\nc\n").toString("base64"), stderr: Buffer.from("b\n\ufeffbom").toString("base64"), exit_code: 4, timeout_sec: 120, obs: {} },
      { profile: "daytona", stdout: "", stderr: Buffer.from("only-err\n").toString("base64"), exit_code: 0, timeout_sec: 120, obs: {} },
    ]),
  });
  assert.equal(py.status, 0, py.stderr.toString());
  const expected = JSON.parse(py.stdout.toString()) as string[];
  assert.deepEqual(observations.slice(0, 2), expected);
  assert.equal(observations[0], "a\nc\n\nb\n\ufeffbom\n\n(exit_code=4)");
});
