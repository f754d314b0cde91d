// The tiny-rl loop end to end (examples/tiny-rl/train.py): SFT warm start on the oracle replies, then DPPO steps
// through `tmax rollout` in podman sandboxes, with a held-out evaluation (fixed seeds) of every policy version.
// Prints the mean reward per step and the rise from the SFT start; the run dir opens in `tmax explore`.
// Usage: npx tsx bench/tiny-rl.ts [out-dir] [-- extra train.py flags]   (default out: runs/tiny-rl-bench-<time>)
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const dash = args.indexOf("--");
const extra = dash >= 0 ? args.slice(dash + 1) : [];
const out = path.resolve((dash === 0 ? undefined : args[0]) ?? path.join(root, "runs", `tiny-rl-bench-${new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19)}`));
const python = spawnSync("/usr/bin/python3", ["-c", "import torch"]).status === 0 ? "/usr/bin/python3" : "python3";
const tmax = `${process.execPath} --import tsx ${path.join(root, "src", "cli", "main.ts")}`;

const flags = ["--out", out, "--steps", "10", "--tmax", tmax, ...extra];
console.log(`${python} examples/tiny-rl/train.py ${flags.join(" ")}`);
const t0 = performance.now();
const run = spawnSync(python, [path.join(root, "examples", "tiny-rl", "train.py"), ...flags], { stdio: "inherit", cwd: root });
if (run.status !== 0) process.exit(run.status ?? 1);

type Line = { step: number; eval_policy_version: number; eval: { mean: number; episodes: number; by_task: Record<string, number> } | null; rollout: Record<string, number>; learner: Record<string, number> | null; policy_version: number };
const lines: Line[] = readFileSync(path.join(out, "curve.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
const final = JSON.parse(readFileSync(path.join(out, "final.json"), "utf8"));
console.log("\npolicy  eval reward  (held-out seeds)   train groups kept/drawn  loss        masked  mean|π−μ|");
for (const l of lines) {
  console.log(
    `${String(l.eval_policy_version).padStart(6)}  ${l.eval ? l.eval.mean.toFixed(3) : "  -  "}        ${l.eval ? JSON.stringify(l.eval.by_task) : ""}  ${l.rollout.groups_kept}/${l.rollout.groups_drawn}  ${l.learner ? l.learner.loss.toFixed(5) : "-"}  ${l.learner ? `${l.learner.masked_tokens}/${l.learner.model_tokens}` : "-"}  ${l.learner ? l.learner.mean_abs_pi_mu.toExponential(1) : "-"}`,
  );
}
if (final.eval) console.log(`${String(final.policy_version).padStart(6)}  ${final.eval.mean.toFixed(3)}        ${JSON.stringify(final.eval.by_task)}`);
const start = lines[0]?.eval?.mean;
const best = Math.max(...lines.map((l) => l.eval?.mean ?? -1), final.eval?.mean ?? -1);
if (start !== undefined) console.log(`\nSFT start ${start.toFixed(3)} → final ${final.eval?.mean.toFixed(3)} (best ${best.toFixed(3)}): rise ${(final.eval.mean - start).toFixed(3)}; goal ≥ 0.3 within 10 steps · ${((performance.now() - t0) / 60000).toFixed(1)} min · run dir ${out} (tmax explore ${out})`);
