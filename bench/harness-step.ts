// Harness overhead per step: a full agent step (instant scripted model over HTTP, persistent-shell wrapper,
// observation formatting, bookkeeping) running `true`, against a bare dockerode exec of `true` in the same
// container, interleaved in the same run. Usage: npx tsx bench/harness-step.ts [steps=200]
import Docker from "dockerode";
import { runEpisode } from "../src/agent/chatProtocol.js";
import { SUBMIT_MARKER } from "../src/agent/observation.js";
import { openShell } from "../src/agent/shell.js";
import { createModelClient, modelConfigFromOptions } from "../src/model/client.js";
import { createBackend } from "../src/sandbox/index.js";
import { startFakeVllm } from "../test/support/fake-vllm.js";

const steps = Number(process.argv[2] ?? 200);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)];

const socketPath = (process.env.DOCKER_HOST ?? "unix:///run/podman/podman.sock").replace(/^unix:\/\//, "");
const docker = new Docker({ socketPath });
const sandbox = await createBackend("docker", {}).create({ image: "localhost/tmax-base:bookworm", network: "none", name: "bench" });
const container = docker.getContainer(sandbox.id);

async function bareExec(): Promise<number> {
  const t0 = performance.now();
  const exec = await container.exec({ Cmd: ["true"], AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  await new Promise<void>((resolve, reject) => {
    stream.on("end", resolve);
    stream.on("error", reject);
    stream.resume();
  });
  await exec.inspect();
  return performance.now() - t0;
}

try {
  // warm-up
  for (let i = 0; i < 10; i++) await bareExec();
  const shell = await openShell(sandbox, { timeoutSec: 120, maxOutputBytes: 1 << 20 });

  // 1) bare exec vs the harness's exec path (wrapper + timeout + caps), interleaved
  const bare: number[] = [];
  const shellRun: number[] = [];
  for (let i = 0; i < steps; i++) {
    bare.push(await bareExec());
    const t0 = performance.now();
    await shell.run("true");
    shellRun.push(performance.now() - t0);
  }

  // 2) whole agent steps: instant model over HTTP + exec + formatting + bookkeeping
  let turn = 0;
  const server = await startFakeVllm({ reply: () => ({ text: "THOUGHT: go", commands: [++turn > steps ? `echo ${SUBMIT_MARKER}` : "true"] }) });
  const model = createModelClient(modelConfigFromOptions({ baseUrl: server.baseUrl }));
  const perStep: number[] = [];
  const modelMs: number[] = [];
  const execMs: number[] = [];
  let last = performance.now();
  await runEpisode({
    taskName: "bench",
    instruction: "bench",
    model,
    sandbox,
    profile: "eval",
    limits: { maxSteps: steps + 1, maxTotalTokens: 10_000_000 },
    onEvent: (e) => {
      if (e.type === "turn") modelMs.push(e.turn.latencyMs);
      if (e.type === "exec") {
        execMs.push(e.durationMs);
        const now = performance.now();
        perStep.push(now - last);
        last = now;
      }
    },
  });
  await server.close();

  const b = median(bare);
  const s = median(shellRun);
  const a = median(perStep);
  const m = median(modelMs);
  console.log(`steps: ${steps}`);
  console.log(`bare dockerode exec of \`true\`:        median ${b.toFixed(2)} ms  p90 ${p90(bare).toFixed(2)} ms`);
  console.log(`harness exec path (persistent shell): median ${s.toFixed(2)} ms  p90 ${p90(shellRun).toFixed(2)} ms  ratio ${(s / b).toFixed(3)}  overhead ${(s - b).toFixed(2)} ms`);
  console.log(`full agent step (model+exec+format):  median ${a.toFixed(2)} ms  (model HTTP round trip median ${m.toFixed(2)} ms)`);
  console.log(`full step minus model round trip:     ${(a - m).toFixed(2)} ms  ratio ${((a - m) / b).toFixed(3)}  overhead ${(a - m - b).toFixed(2)} ms`);
  // the loop's own work per step: everything that is neither the model call nor the container exec
  const own = perStep.map((t, i) => t - modelMs[i] - execMs[i]);
  console.log(`loop's own time per step (step − model − exec): median ${median(own).toFixed(2)} ms  p90 ${p90(own).toFixed(2)} ms`);
} finally {
  await sandbox.remove();
}
