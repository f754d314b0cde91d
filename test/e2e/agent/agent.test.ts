// Full episodes: the scripted vLLM-like server drives the real agent loop in real podman containers.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { runEpisode, type EpisodeInput } from "../../../src/agent/chatProtocol.js";
import { SUBMIT_MARKER, TOO_LONG_HINT } from "../../../src/agent/observation.js";
import type { Trajectory } from "../../../src/agent/schema.js";
import { createModelClient, modelConfigFromOptions } from "../../../src/model/client.js";
import type { Profile } from "../../../src/model/types.js";
import { createBackend } from "../../../src/sandbox/index.js";
import type { Sandbox } from "../../../src/sandbox/types.js";
import { startFakeVllm, type FakeReply, type FakeVllm, type FakeContext } from "../../support/fake-vllm.js";
import { BASE_IMAGE, ENGINE_SKIP } from "../../support/env.js";

const SUBMIT = `echo ${SUBMIT_MARKER}`;

/** Replies with the i-th script entry on the i-th assistant turn of a conversation. */
const scripted = (steps: FakeReply[]) => (ctx: FakeContext) => steps[Math.min(ctx.turn, steps.length - 1)];
const cmd = (command: string, thinking = "Let me do the next thing."): FakeReply => ({ thinking, text: "THOUGHT: next step.", commands: [command] });

describe("agent episodes in podman", { skip: ENGINE_SKIP }, () => {
  let sandbox: Sandbox;
  const servers: FakeVllm[] = [];
  before(async () => {
    sandbox = await createBackend("docker", {}).create({ image: BASE_IMAGE, network: "none", name: "agent-test" });
  });
  after(async () => {
    await sandbox?.remove();
    await Promise.all(servers.map((s) => s.close()));
  });

  async function episode(reply: (ctx: FakeContext) => FakeReply, opts: { profile?: Profile; toolParser?: boolean; limits?: EpisodeInput["limits"]; retryBaseMs?: number } = {}) {
    const server = await startFakeVllm({ toolParser: opts.toolParser ?? true, reply });
    servers.push(server);
    const profile = opts.profile ?? "eval";
    const model = createModelClient({ ...modelConfigFromOptions({ baseUrl: server.baseUrl, profile, maxRetries: 3 }), ...(opts.retryBaseMs ? { retryBaseMs: opts.retryBaseMs } : {}) } as never);
    const trajectory = await runEpisode({ taskName: "t", instruction: "do the thing", model, sandbox, profile, limits: opts.limits });
    return { trajectory, server };
  }
  const observations = (t: Trajectory) => t.steps.flatMap((s) => s.executions ?? []).map((e) => e.observation);

  test("cd and export persist between calls; submit via tool_calls ends the episode", async () => {
    const { trajectory, server } = await episode(
      scripted([cmd("mkdir -p /tmp/work && cd /tmp/work && export GREETING=hi"), cmd("pwd && echo $GREETING"), cmd(SUBMIT)]),
    );
    assert.equal(trajectory.exitStatus, "submitted");
    assert.equal(trajectory.steps.length, 3);
    assert.deepEqual(observations(trajectory).slice(0, 2), ["(no output)\n\n(exit_code=0)", "/tmp/work\nhi\n\n(exit_code=0)"]);
    assert.equal(trajectory.steps[0].toolCall?.source, "tool_calls");
    // thinking stays in history: the third request carries the first turn's thinking
    const third = server.requests[2].messages as { role: string; content: string }[];
    assert.ok(third.some((m) => m.role === "assistant" && m.content.includes("Let me do the next thing.</think>")));
    // role tool replies carry the call id
    const toolMsg = third.find((m) => m.role === "tool") as { tool_call_id?: string } | undefined;
    assert.ok(toolMsg?.tool_call_id?.startsWith("chatcmpl-tool-"));
    assert.equal(server.requests[0].temperature, 0.7);
    assert.equal(server.requests[0].top_p, 0.95);
    assert.equal(server.requests[0].tools.length, 1);
    assert.equal(server.requests[0].tools[0].function.name, "bash");
  });

  test("raw XML in content (parser off) is parsed, including a </think> prefix", async () => {
    const { trajectory } = await episode(scripted([cmd("echo from-xml"), cmd(SUBMIT)]), { toolParser: false });
    assert.equal(trajectory.exitStatus, "submitted");
    assert.equal(trajectory.steps[0].toolCall?.source, "xml");
    assert.equal(observations(trajectory)[0], "from-xml\n\n(exit_code=0)");
  });

  test("a command that never ends is stopped at the command timeout: eval shows the partial output, train adds the notice after it", async () => {
    const started = Date.now();
    const { trajectory } = await episode(scripted([cmd("echo before; sleep 200"), cmd(SUBMIT)]), { limits: { commandTimeoutSec: 2 } });
    const first = trajectory.steps[0].executions![0];
    assert.equal(first.timedOut, true);
    assert.equal(first.exitCode, 124);
    assert.equal(first.observation, "before\n\n(exit_code=124)");
    assert.ok(Date.now() - started < 30_000, "the timeout path returns promptly");
    assert.equal(trajectory.exitStatus, "submitted");
    const train = await episode(scripted([cmd("echo before; sleep 200"), cmd(SUBMIT)]), { profile: "train", limits: { commandTimeoutSec: 2 } });
    assert.equal(train.trajectory.steps[0].executions![0].observation, "before\n\nCommand timed out after 2s.\n\n\n(exit_code=124)");
  });

  test("a 5 MB flood: eval reads all of it (as Harbor does; 16 MiB bound), train caps at 1,000,000 bytes; head/tail exact", async () => {
    const flood = cmd("head -c 5000000 /dev/zero | tr '\\0' 'x'");
    const x = "x".repeat(5000);
    const truncated = (n: number) => `${TOO_LONG_HINT}\n\n---- HEAD (5000 chars) ----\n${x}\n---- ${n - 10_000} chars elided ----\n---- TAIL (5000 chars) ----\n${x}\n\n(exit_code=0)`;
    const evalRun = (await episode(scripted([flood, cmd(SUBMIT)]))).trajectory.steps[0].executions![0];
    assert.equal(evalRun.outputTruncated, false);
    assert.equal(evalRun.observation, truncated(5_000_000));
    const trainRun = (await episode(scripted([flood, cmd(SUBMIT)]), { profile: "train" })).trajectory.steps[0].executions![0];
    assert.equal(trainRun.outputTruncated, true);
    assert.equal(trainRun.observation, truncated(1_000_000));
  });

  test("the step cap ends an episode that never submits", async () => {
    const { trajectory } = await episode(() => cmd("true"), { limits: { maxSteps: 4 } });
    assert.equal(trajectory.exitStatus, "step_limit");
    assert.equal(trajectory.steps.length, 4);
  });

  test("eval profile reprompts after a format error and ends after N consecutive ones", async () => {
    const { trajectory, server } = await episode(scripted([{ text: "I will just talk." }, cmd("echo recovered"), { text: "no call" }]), { limits: { maxFormatErrors: 3 } });
    assert.equal(trajectory.steps[0].formatError, "your last response did not include a `bash` tool call.");
    assert.equal(observations(trajectory)[0], "recovered\n\n(exit_code=0)");
    assert.equal(trajectory.exitStatus, "format_errors");
    assert.equal(trajectory.steps.length, 5); // 1 error, 1 ok, then 3 errors in a row
    const second = server.requests[1].messages as { role: string; content: string }[];
    assert.equal(second.at(-1)!.role, "user");
    assert.match(second.at(-1)!.content, /^Format error: /);
  });

  test("train profile ends at the first turn without a valid call", async () => {
    const { trajectory, server } = await episode(scripted([cmd("echo one"), { commands: ["ls"], toolName: "python" }]), { profile: "train" });
    assert.equal(trajectory.exitStatus, "format_errors");
    assert.equal(trajectory.steps.length, 2);
    assert.equal(server.requests.length, 2);
    assert.equal(server.requests[0].temperature, 1);
    assert.equal(server.requests[0].top_p, 1);
  });

  test("eval runs the first of several calls, train runs them all", async () => {
    const two: FakeReply = { text: "THOUGHT", commands: ["echo first", "echo second"] };
    const evalRun = await episode(scripted([two, cmd(SUBMIT)]));
    assert.deepEqual(evalRun.trajectory.steps[0].executions!.map((e) => e.command), ["echo first"]);
    const trainRun = await episode(scripted([two, cmd(SUBMIT)]), { profile: "train" });
    assert.deepEqual(trainRun.trajectory.steps[0].executions!.map((e) => e.command), ["echo first", "echo second"]);
  });

  test("train keeps stdout and stderr apart and joins them: stdout, newline, stderr", async () => {
    const { trajectory } = await episode(scripted([cmd("echo a; echo b >&2; echo c"), cmd(SUBMIT)]), { profile: "train" });
    assert.equal(observations(trajectory)[0], "a\nc\n\nb\n\n\n(exit_code=0)");
  });

  test("train detects submission in the output only; eval in the command too", async () => {
    // the marker is in the command but not printed: eval submits, train does not
    const quiet = `true || echo ${SUBMIT_MARKER}`;
    const evalRun = await episode(scripted([cmd(quiet), cmd("true")]), { limits: { maxSteps: 3 } });
    assert.equal(evalRun.trajectory.exitStatus, "submitted");
    assert.equal(evalRun.trajectory.steps.length, 1);
    const trainRun = await episode(scripted([cmd(quiet), cmd(SUBMIT)]), { profile: "train", limits: { maxSteps: 3 } });
    assert.equal(trainRun.trajectory.exitStatus, "submitted");
    assert.equal(trainRun.trajectory.steps.length, 2);
  });

  test("429 and 500 from the server are retried with backoff within an episode", async () => {
    let calls = 0;
    const { trajectory } = await episode(
      () => {
        calls++;
        if (calls === 1) return { status: 429, retryAfterSec: 0 };
        if (calls === 2) return { status: 500 };
        return calls === 3 ? cmd("echo ok") : cmd(SUBMIT);
      },
      { retryBaseMs: 10 },
    );
    assert.equal(trajectory.exitStatus, "submitted");
    assert.equal(trajectory.steps[0].model.retries, 2);
  });

  test("the total-token cap ends a train episode", async () => {
    const { trajectory } = await episode(() => cmd("echo a fairly long line of output to use up tokens"), { profile: "train", limits: { maxTotalTokens: 1500 } });
    assert.equal(trajectory.exitStatus, "token_limit");
    assert.ok(trajectory.usage.contextTokens >= 1500, `context ${trajectory.usage.contextTokens}`);
  });
});
