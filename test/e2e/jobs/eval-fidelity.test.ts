// The eval profile as the released Tmax eval runs behaved (Vanillux2Agent), driven by the scripted vLLM in
// real podman containers: the prompt file's texts byte for byte, constant max_tokens, the server's
// context-length error as the end, the format-error history and the first-call-only rule.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { runEpisode, type EpisodeInput } from "../../../src/agent/chatProtocol.js";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { loadPromptFile } from "../../../src/agent/promptFile.js";
import { DEFAULT_PROMPTS } from "../../../src/agent/prompts.js";
import type { Trajectory } from "../../../src/agent/schema.js";
import { BASH_TOOL, createModelClient, modelConfigFromOptions } from "../../../src/model/client.js";
import { createBackend } from "../../../src/sandbox/index.js";
import type { Sandbox } from "../../../src/sandbox/types.js";
import { renderPrompt, startFakeVllm, tokenize, type FakeContext, type FakeReply, type FakeVllm } from "../../support/fake-vllm.js";
import { BASE_IMAGE, ENGINE_SKIP, ROOT } from "../../support/env.js";

const SUBMIT = `echo ${SUBMIT_MARKER}`;
const FIXTURE = path.join(ROOT, "test/fixtures/prompts-authors-schema.yaml");
const scripted = (steps: FakeReply[]) => (ctx: FakeContext) => steps[Math.min(ctx.turn, steps.length - 1)];
const cmd = (command: string): FakeReply => ({ thinking: "Next.", text: "THOUGHT: next step.", commands: [command] });
const call = (name: string, command: string) => `<tool_call>\n<function=${name}>\n<parameter=command>\n${command}\n</parameter>\n</function>\n</tool_call>`;

describe("eval profile fidelity in podman", { skip: ENGINE_SKIP }, () => {
  let sandbox: Sandbox;
  const servers: FakeVllm[] = [];
  before(async () => {
    sandbox = await createBackend("docker", {}).create({ image: BASE_IMAGE, network: "none", name: "eval-fidelity-test" });
  });
  after(async () => {
    await sandbox?.remove();
    await Promise.all(servers.map((s) => s.close()));
  });

  async function episode(reply: (ctx: FakeContext) => FakeReply, opts: { maxModelLen?: number; limits?: EpisodeInput["limits"]; prompts?: EpisodeInput["prompts"]; instruction?: string } = {}) {
    const server = await startFakeVllm({ reply, ...(opts.maxModelLen ? { maxModelLen: opts.maxModelLen } : {}) });
    servers.push(server);
    const model = createModelClient(modelConfigFromOptions({ baseUrl: server.baseUrl, profile: "eval", maxRetries: 0 }));
    const trajectory = await runEpisode({
      taskName: "t",
      instruction: opts.instruction ?? "do the thing",
      model,
      sandbox,
      profile: "eval",
      limits: opts.limits,
      ...(opts.prompts ? { prompts: opts.prompts } : {}),
    });
    return { trajectory, server };
  }
  const observations = (t: Trajectory) => t.steps.flatMap((s) => s.executions ?? []).map((e) => e.observation);

  test("with a prompt file, the messages sent are exactly its texts; format-error turns drop tool_calls", async () => {
    const prompts = loadPromptFile(FIXTURE);
    const { trajectory, server } = await episode(
      scripted([{ text: "Just chatting." }, { text: "THOUGHT", commands: ["ls"], toolName: "python" }, cmd("seq 1 200"), cmd(SUBMIT)]),
      { prompts, instruction: "\n  Write hi to /tmp/x.\n\n" },
    );
    assert.equal(trajectory.exitStatus, "submitted");
    // first request: system and instance exactly as the file specifies, the task (stripped) inserted as given
    assert.deepEqual(server.requests[0].messages, [
      { role: "system", content: "You drive a Linux box through one tool, `bash`.\n\nThink first (a THOUGHT paragraph), then make exactly one `bash` call.\n" },
      {
        role: "user",
        content:
          "Task for you:\n\nWrite hi to /tmp/x.\n\nWhen finished, run `echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT` alone.\n" +
          "Jinja-looking text that is not the task stays as written: {{ task }} {% raw %}\n",
      },
    ]);
    assert.equal(server.requests[0].tools[0].function.description, "Runs one bash command; cwd and exports persist.");
    assert.deepEqual(server.requests[0].tools[0].function.parameters, {
      type: "object",
      properties: { command: { type: "string", description: "Shell text to run." } },
      required: ["command"],
    });
    // no call at all: the reply goes back as is, the error as a user message with the file's template
    const second = server.requests[1].messages;
    assert.deepEqual(second.slice(2), [
      { role: "assistant", content: "Just chatting." },
      { role: "user", content: "Format problem: No usable bash call was found in your reply.\n\nCall `bash` exactly once.\n" },
    ]);
    // a call to another tool: the reply goes back WITHOUT its tool_calls, the error as a tool message with the call's id
    const third = server.requests[2].messages;
    assert.deepEqual(Object.keys(third[4]).sort(), ["content", "role"]);
    assert.equal(third[4].role, "assistant");
    assert.equal(third[5].role, "tool");
    assert.match(third[5].tool_call_id, /^chatcmpl-tool-[0-9a-f]+$/);
    assert.equal(third[5].content, "Format problem: No usable bash call was found in your reply.\n\nCall `bash` exactly once.\n");
    assert.deepEqual(trajectory.steps.map((s) => s.formatError !== undefined), [true, true, false, false]);
    // the observation cut follows the file: max 300, head 100, tail 50, its hint (ending in a newline) then two more
    const out = Array.from({ length: 200 }, (_, i) => String(i + 1)).join("\n");
    assert.equal(
      observations(trajectory)[0],
      `Too much output.\nNarrow it down.\n\n\n---- HEAD (100 chars) ----\n${out.slice(0, 100)}\n---- ${out.length - 150} chars elided ----\n---- TAIL (50 chars) ----\n${out.slice(-50)}\n\n(exit_code=0)`,
    );
    assert.deepEqual(server.requests.map((r) => r.max_tokens), [16384, 16384, 16384, 16384]);
    assert.deepEqual(trajectory.agent.prompts, prompts.source);
  });

  test("max_tokens stays 16,384 every turn and the server's context-length error ends the episode as token_limit", async () => {
    const firstPrompt = tokenize(renderPrompt(
      [{ role: "system", content: DEFAULT_PROMPTS.system }, { role: "user", content: DEFAULT_PROMPTS.instance("do the thing") }],
      [BASH_TOOL],
    )).length;
    // room for the first prompt, a few turns of output, and one 16,384-token reply
    const { trajectory, server } = await episode(() => cmd("seq 1 150"), { maxModelLen: 16_384 + firstPrompt + 1_200, limits: { maxSteps: 40 } });
    assert.equal(trajectory.exitStatus, "token_limit");
    assert.match(trajectory.error ?? "", /maximum context length/);
    assert.ok(trajectory.steps.length >= 2, `turns before the limit: ${trajectory.steps.length}`);
    assert.equal(server.requests.length, trajectory.steps.length + 1); // the last request was refused
    assert.ok(server.requests.every((r) => r.max_tokens === 16384), JSON.stringify(server.requests.map((r) => r.max_tokens)));
  });

  test("only the first call counts: a non-bash first call is a format error even with a bash call after it", async () => {
    const { trajectory, server } = await episode(scripted([{ raw: `THOUGHT\n${call("python", "ls")}\n${call("bash", "echo second")}` }, cmd(SUBMIT)]));
    assert.equal(trajectory.steps[0].formatError, "there is no tool named `python`; the only tool is `bash`.");
    assert.equal(trajectory.steps[0].executions, undefined);
    assert.equal(server.requests[1].messages.at(-1).role, "tool");
    assert.equal(trajectory.exitStatus, "submitted");
  });

  test("an empty command is run (as the reference does), not a format error; commands are stripped", async () => {
    const { trajectory } = await episode(scripted([cmd(""), cmd("  echo padded  \n"), cmd(SUBMIT)]));
    assert.equal(trajectory.steps[0].formatError, undefined);
    assert.equal(trajectory.steps[0].toolCall?.command, "");
    assert.equal(trajectory.steps[1].toolCall?.command, "echo padded");
    assert.deepEqual(observations(trajectory).slice(0, 2), ["(no output)\n\n(exit_code=0)", "padded\n\n(exit_code=0)"]);
  });

  test("eval sees stdout and stderr as one stream in the order written (Harbor's exec merges them); train joins stdout then stderr", async () => {
    const script = "echo a; echo b >&2; echo c; ls /nonexistent-dir; echo d";
    const { trajectory } = await episode(scripted([cmd(script), cmd(SUBMIT)]));
    assert.equal(observations(trajectory)[0], "a\nb\nc\nls: cannot access '/nonexistent-dir': No such file or directory\nd\n\n(exit_code=0)");
    // a redirect inside the command still works
    const quiet = await episode(scripted([cmd("ls /nonexistent-dir 2>/dev/null; echo $?"), cmd(SUBMIT)]));
    assert.equal(observations(quiet.trajectory)[0], "2\n\n(exit_code=0)");
  });

  test("submission is seen in the command or the observation text: a marker in the elided middle is not", async () => {
    const flood = (marker: string) => `printf 'x%.0s' $(seq 1 6000); echo; M=COMPLETE_TASK_AND_SUBMIT; echo \${M}${marker}; printf 'y%.0s' $(seq 1 6000)`;
    const hidden = await episode(scripted([cmd(flood("_FINAL_OUTPUT")), cmd("true")]), { limits: { maxSteps: 2 } });
    assert.ok(hidden.trajectory.steps[0].executions![0].observation.includes("chars elided"));
    assert.equal(hidden.trajectory.exitStatus, "step_limit");
    const shown = await episode(scripted([cmd(`M=COMPLETE_TASK_AND_SUBMIT; echo \${M}_FINAL_OUTPUT`), cmd("true")]), { limits: { maxSteps: 2 } });
    assert.equal(shown.trajectory.exitStatus, "submitted");
    assert.equal(shown.trajectory.steps.length, 1);
  });
});
