// The 200-session soak of `tmax serve`: sessions on hello-file's tbench2 actions, `concurrency` at a time,
// a share of them dropping their connection at a random point (before or after reset, during a step, during
// the verifier), the rest solving the task with three concurrent steps and evaluating. Reports rewards (every
// evaluate must have one, and each is 1), busy retries, latencies, and the containers left (must be 0).
// Usage: npx tsx bench/serve-soak.ts [sessions=200] [concurrency=8] [max-sessions=12] [disconnect-rate=0.3]
import path from "node:path";
import { fileURLToPath } from "node:url";
import { soak, startTestServe } from "../test/support/serve.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const [sessions = 200, concurrency = 8, maxSessions = 12, rate = 0.3] = process.argv.slice(2).map(Number);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.95)] ?? NaN;

const serve = await startTestServe({ dataset: path.join(root, "examples/tasks"), maxSessions });
let report;
try {
  report = await soak(serve.wsUrl, { sessions, concurrency, disconnectRate: rate, seed: 42 });
} finally {
  await serve.close();
}
const left = serve.containers();
const ones = report.rewards.filter((r) => r === 1).length;
console.log(`tmax serve soak: ${sessions} sessions, ${concurrency} at a time, max ${maxSessions} sessions, disconnect rate ${rate}`);
console.log(`  wall ${(report.wallMs / 1000).toFixed(1)} s (${(report.wallMs / sessions).toFixed(0)} ms/session); completed ${report.completed}, disconnected ${report.disconnected}, busy retries ${report.busyRetries}`);
console.log(`  rewards: ${report.rewards.length} of ${report.completed} evaluates (${ones} × 1.0); lost: ${report.lost.length}${report.lost.length ? ` — ${report.lost.slice(0, 3).join(" | ")}` : ""}`);
console.log(`  steps that failed in the sandbox: ${report.stepFailures.length}${report.stepFailures.length ? ` — ${report.stepFailures.slice(0, 3).join(" | ")}` : ""}`);
console.log(`  reset median ${median(report.resetMs).toFixed(0)} ms (p95 ${p95(report.resetMs).toFixed(0)}), step median ${median(report.stepMs).toFixed(0)} ms, evaluate median ${median(report.evaluateMs).toFixed(0)} ms (p95 ${p95(report.evaluateMs).toFixed(0)})`);
console.log(`  containers left: ${left.length}`);
process.exitCode = left.length === 0 && report.lost.length === 0 && ones === report.completed ? 0 : 1;
