// Verifier isolation overhead on real tasks: oracle and nop trials under each --verifier-isolation mode
// (shared = Harbor's behaviour, kill, snapshot), with the pytest hardening on; the verifier phase's wall time
// per trial (median, mean) and the scores (oracle must stay 1.0, nop 0).
// Usage: npx tsx bench/verifier-isolation.ts [dataset] [k]   (default ../shared/tasks/tb2-offline, k=2; -n 1)
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runJob } from "../src/jobs/runner.js";
import type { TrialResult } from "../src/results/schema.js";
import type { VerifierIsolation } from "../src/trial/verifier.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const shared = path.resolve(root, "../shared/tasks/tb2-offline");
const dataset = process.argv[2] ?? (existsSync(shared) ? shared : path.join(root, "examples/tasks"));
const k = Number(process.argv[3] ?? 2);
const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-bench-iso-"));

const phaseSec = (r: TrialResult) => (r.verifier ? (Date.parse(r.verifier.finished_at) - Date.parse(r.verifier.started_at)) / 1000 : NaN);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

const job = (agent: "oracle" | "nop", isolation: VerifierIsolation, i: number) =>
  runJob({
    datasetDir: dataset, jobDir: path.join(tmp, `${agent}-${isolation}-${i}`), agent, k, concurrency: 1, profile: "eval",
    timeoutMultiplier: 1, imageMap: {}, backend: "docker", network: "task", infraRetries: 0, resume: false, verifierIsolation: isolation,
  });

try {
  console.log(`dataset ${dataset}, k=${k}, -n 1; images are built by a warm-up job first`);
  await job("nop", "shared", 0);
  const modes: VerifierIsolation[] = ["shared", "kill", "snapshot"];
  for (const mode of modes) {
    const oracle = await job("oracle", mode, 1);
    const nop = await job("nop", mode, 1);
    const secs = oracle.map(phaseSec);
    const mean = (rs: TrialResult[]) => rs.reduce((s, r) => s + r.reward, 0) / rs.length;
    const errors = [...oracle, ...nop].filter((r) => r.exception_info && r.exception_info.exception_type !== "RewardFileNotFoundError").length;
    console.log(
      `${mode.padEnd(8)} oracle ${mean(oracle).toFixed(3)} nop ${mean(nop).toFixed(3)} · verifier phase median ${median(secs).toFixed(2)} s, mean ${(secs.reduce((a, b) => a + b, 0) / secs.length).toFixed(2)} s over ${secs.length} oracle trials · errors ${errors}`,
    );
  }
} finally {
  await rm(tmp, { recursive: true, force: true });
}
