// `tmax serve` latency, one run: reset-to-ready and step latency over the protocol (WebSocket, loopback) vs the
// same operations in-process, the loopback round trip itself, and the fixed per-trial cost (create → ready →
// tamper report → verify → remove, phase by phase, per verifier isolation) vs a bare `podman run --rm … true`.
// Usage: npx tsx bench/serve-latency.ts [rounds]   (default 8; examples/tasks/hello-file)
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { openShell } from "../src/agent/shell.js";
import { verify, type VerifierIsolation } from "../src/trial/verifier.js";
import { createTaskSandbox, newTrialDir } from "../src/serve/env.js";
import { Tb2Episode } from "../src/serve/tb2.js";
import { startTestServe, WsSession } from "../test/support/serve.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const rounds = Number(process.argv[2] ?? 8);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const ms = (x: number) => `${x.toFixed(0).padStart(6)} ms`;
const time = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
  const t = performance.now();
  const v = await f();
  return [v, performance.now() - t];
};

const serve = await startTestServe({ dataset: path.join(root, "examples/tasks"), maxSessions: 4 });
const task = serve.env.tasks.get("hello-file")!;
const results: Record<string, number[]> = {};
const add = (k: string, v: number) => (results[k] ??= []).push(v);

try {
  // warm: the task image is built once and cached
  {
    const s = await WsSession.open(serve.wsUrl);
    await s.reset({ task_id: "hello-file" });
    s.close();
  }
  for (let i = 0; i < rounds; i++) {
    // over the protocol
    const s = await WsSession.open(serve.wsUrl);
    const [, rtt] = await time(() => s.request({ type: "state" }));
    add("loopback round trip (state)", rtt);
    const [r, reset] = await time(() => s.reset({ task_id: "hello-file" }));
    if (r.type !== "observation") throw new Error(JSON.stringify(r.data));
    add("reset-to-ready, protocol", reset);
    const [, step] = await time(() => s.step({ action_type: "exec", command: "true" }));
    add("step (exec true), protocol", step);
    s.close();

    // the same operations in-process
    const [started, resetIn] = await time(() => Tb2Episode.start(serve.env, task, {}));
    add("reset-to-ready, in-process", resetIn);
    const [, stepIn] = await time(() => started.episode.step({ action_type: "exec", command: "true" }));
    add("step (exec true), in-process", stepIn);
    await started.episode.close();

    // the fixed cost of a trial, phase by phase, for each verifier isolation
    const isolation: VerifierIsolation = (["snapshot", "kill", "shared"] as const)[i % 3]!;
    const { trialDir } = newTrialDir(serve.env, task);
    const t0 = performance.now();
    const [sandbox, create] = await time(() => createTaskSandbox(serve.env, task, trialDir));
    const [, ready] = await time(() => openShell(sandbox, { timeoutSec: 30, maxOutputBytes: 1 << 20, mergeStderr: true }));
    // the change scan (tamper report) runs inside verify (frozen), so it is part of the verifier's time
    const [, verifyMs] = await time(() => verify({ task, sandbox, trialDir, mult: 1, isolation, harden: true, integrity: "flag" }));
    const [, remove] = await time(() => sandbox.remove());
    add("trial: create (+ /logs)", create);
    add("trial: shell ready", ready);
    add(`trial: verify (${isolation})`, verifyMs);
    add("trial: remove", remove);
    add(`trial: total (${isolation})`, performance.now() - t0);

    // the bare primitive, in the same run
    const [, bare] = await time(async () => spawnSync("podman", ["run", "--rm", "--network", "none", "localhost/tmax-base:bookworm", "true"]));
    add("bare `podman run --rm … true`", bare);
  }
} finally {
  await serve.close();
}

console.log(`tmax serve latency, ${rounds} rounds, medians (examples/tasks/hello-file, ${process.env.DOCKER_HOST ?? "default engine"})`);
for (const [k, v] of Object.entries(results)) console.log(`  ${k.padEnd(36)} ${ms(median(v))}   (n=${v.length}, min ${median([Math.min(...v)]).toFixed(0)}, max ${Math.max(...v).toFixed(0)})`);
const rtt = median(results["loopback round trip (state)"]!);
for (const op of ["reset-to-ready", "step (exec true)"]) {
  const p = median(results[`${op}, protocol`]!);
  const inp = median(results[`${op}, in-process`]!);
  console.log(`  ${op}: protocol/in-process = ${(p / inp).toFixed(2)}×; (protocol − rtt)/in-process = ${((p - rtt) / inp).toFixed(2)}× (goal ≤ 1.2× + one round trip)`);
}
const bare = median(results["bare `podman run --rm … true`"]!);
for (const iso of ["snapshot", "kill", "shared"]) {
  const total = results[`trial: total (${iso})`];
  if (total) console.log(`  fixed per-trial cost (${iso}) = ${(median(total) / bare).toFixed(2)}× the bare run (goal ≤ 2×)`);
}
console.log(`containers left: ${serve.containers().length}`);
