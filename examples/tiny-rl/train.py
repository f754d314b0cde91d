#!/usr/bin/env python3
"""The whole tiny-rl loop, driven through tmax's CLI:

  1. SFT data: serve.py --teacher answers each task's oracle reply; `tmax eval --agent tmax` runs the tasks in
     podman sandboxes (verified); `tmax traces export` writes the successful trajectories as messages JSONL.
  2. Warm start: sft.py on that file -> policy.pt (policy version 0).
  3. serve.py serves policy.pt; per step k = 1..K:
       eval    `tmax rollout` on every task with the held-out seeds (records unused): mean reward of policy k-1
       sample  `tmax rollout --continue --steps 1` (U tasks x G samples, its own seeds, staleness limit)
       batch   `tmax rl batch --step k`
       learn   learn.py: one DPPO step -> policy.pt (version k), trainer logprobs for `tmax rl analyze`
       reload  POST /reload: the server loads policy.pt and writes the version file tmax reads
  4. a last eval of policy K. curve.jsonl has one line per step; the run dir opens in `tmax explore`.

Usage: train.py --out runs/tiny-rl [--steps 10] [-G 4] [--eval-samples 4] [--tmax "node dist/cli/main.js"]
"""
import argparse
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
PY = sys.executable


def default_tmax():
    built = os.path.join(ROOT, "dist", "cli", "main.js")
    if os.path.exists(built):
        return f"node {built}"
    return f"node --import tsx {os.path.join(ROOT, 'src', 'cli', 'main.ts')}"


class Server:
    """serve.py as a child process; stopped (by its pid) on every path."""

    def __init__(self, out, *extra):
        self.ready = os.path.join(out, "server.port")
        if os.path.exists(self.ready):
            os.remove(self.ready)
        self.log = open(os.path.join(out, "server.log"), "a")
        self.proc = subprocess.Popen([PY, os.path.join(HERE, "serve.py"), "--port", "0", "--ready-file", self.ready, *extra], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                sys.exit(f"serve.py did not start; see {self.log.name}")
            time.sleep(0.2)
        with open(self.ready) as f:
            self.base = f"http://127.0.0.1:{int(f.read())}"

    def post(self, path, body):
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read())

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=60) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run(cmd, log=None, check=True):
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    for attempt in range(8):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        if log:
            with open(log, "a") as f:
                f.write(r.stdout)
        # tmax refuses to start when a loaded engine does not answer its preflight in time: nothing ran, try again
        if r.returncode == 0 or "cannot reach the container engine" not in r.stdout or attempt == 7:
            break
        print(f"  the engine did not answer tmax's preflight; again in {min(180, 30 * (attempt + 1))} s", flush=True)
        time.sleep(min(180, 30 * (attempt + 1)))
    if check and r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-3000:]}")
    return r


def episode_rewards(trials_dir):
    """Reward of every episode under a rollout's trial dir, as `tmax rollout` counts it (verifier reward of a
    submitted episode without exception, else 0)."""
    out = []
    for result in sorted(glob.glob(os.path.join(trials_dir, "*", "result.json"))):
        with open(result) as f:
            r = json.load(f)
        traj = os.path.join(os.path.dirname(result), "agent", "tmax-trajectory.json")
        submitted = False
        if os.path.exists(traj):
            with open(traj) as f:
                submitted = json.load(f).get("exitStatus") == "submitted"
        ok = r.get("verifier_result") and not r.get("exception_info") and submitted
        out.append({"task": r.get("task_name"), "reward": float(r.get("reward") or 0) if ok else 0.0})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tasks", default=os.path.join(HERE, "tasks"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("-G", "--samples", type=int, default=4)
    ap.add_argument("--eval-samples", type=int, default=4, help="held-out seeds per task in each evaluation")
    ap.add_argument("--eval-seed", type=int, default=7, help="evaluation uses vLLM seeds eval-seed .. eval-seed + eval-samples - 1")
    ap.add_argument("--train-seed", type=int, default=1000, help="step k samples with seeds train-seed*k + i")
    ap.add_argument("--sft-epochs", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--context-lr", type=float, default=1e-1, help="learning rate of the policy's context rows (learn.py --context-lr)")
    ap.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    ap.add_argument("--updates", type=int, default=1, help="optimizer steps per rollout batch (learn.py --updates)")
    ap.add_argument("--max-staleness", type=int, default=0)
    ap.add_argument("-n", "--concurrency", type=int, default=4)
    ap.add_argument("--tmax", default=default_tmax(), help="how to run tmax (default: dist/cli/main.js, else tsx)")
    ap.add_argument("--no-eval", action="store_true", help="skip the held-out evaluations")
    args = ap.parse_args()

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    tmax = shlex.split(args.tmax)
    log = os.path.join(out, "tmax.log")
    prompts = os.path.join(HERE, "prompts.yaml")
    n_tasks = len([d for d in os.listdir(args.tasks) if os.path.isdir(os.path.join(args.tasks, d))])
    common = ["--prompts", prompts, "--model", "tiny-rl", "--verifier-isolation", "shared", "-n", str(args.concurrency)]

    # 1. SFT data from the oracle replies, through tmax (skipped when already there)
    sft_file = os.path.join(out, "sft.jsonl")
    if not os.path.exists(sft_file):
        teacher = Server(out, "--teacher", args.tasks)
        try:
            job = os.path.join(out, "sft-job")
            shutil.rmtree(job, ignore_errors=True)
            run(tmax + ["eval", "--dataset", args.tasks, "--agent", "tmax", "--base-url", teacher.base + "/v1", "--job-dir", job, "-k", "2", *common], log)
        finally:
            teacher.stop()
        run(tmax + ["traces", "export", job, "--format", "sft", "-o", sft_file], log)
    weights = os.path.join(out, "policy.pt")
    if not os.path.exists(weights):
        run([PY, os.path.join(HERE, "sft.py"), sft_file, "--out", weights, "--epochs", str(args.sft_epochs)], log)

    version_file = os.path.join(out, "policy_version")
    server = Server(out, "--weights", weights, "--version-file", version_file)
    curve_file = os.path.join(out, "curve.jsonl")
    rollout = os.path.join(out, "rollout")

    def evaluate(version):
        if args.no_eval:
            return None
        eval_dir = os.path.join(out, "eval", f"policy_{version:03d}")
        shutil.rmtree(eval_dir, ignore_errors=True)
        run(tmax + ["rollout", "--dataset", args.tasks, "--out", eval_dir, "--run-name", "eval", "-U", str(n_tasks), "--max-groups-per-step", str(n_tasks),
                    "-G", str(args.eval_samples), "--seed", str(args.eval_seed), "--base-url", server.base + "/v1", "--no-learner-batch",
                    "--policy-version-file", version_file, *common], log)
        rewards = episode_rewards(os.path.join(eval_dir, "trials", "step_000001"))
        return {"mean": sum(r["reward"] for r in rewards) / len(rewards), "episodes": len(rewards),
                "by_task": {t: sum(r["reward"] for r in rewards if r["task"] == t) / max(1, sum(1 for r in rewards if r["task"] == t)) for t in sorted({r["task"] for r in rewards})}}

    try:
        version = server.get("/policy")["version"]
        start = 1
        if os.path.exists(curve_file):
            with open(curve_file) as f:
                done = [json.loads(l) for l in f if l.strip()]
            start = done[-1]["step"] + 1 if done else 1
        for step in range(start, args.steps + 1):
            t0 = time.time()
            ev = evaluate(version)
            run(tmax + ["rollout", "--dataset", args.tasks, "--out", rollout, "--run-name", "tiny", "--continue", "--steps", "1", "--start-step", str(step),
                        "-U", str(n_tasks), "--max-groups-per-step", str(n_tasks), "-G", str(args.samples), "--seed", str(args.train_seed * step),
                        "--max-staleness", str(args.max_staleness), "--policy-version-file", version_file, "--base-url", server.base + "/v1",
                        "--no-learner-batch", *common], log)
            with open(os.path.join(rollout, "steps", f"step_{step:06d}.json")) as f:
                summary = json.load(f)
            learner = None
            if summary["samples"] > 0:
                run(tmax + ["rl", "batch", rollout, "--step", str(step), "--run", "tiny"], log)
                batch = os.path.join(rollout, "learner", f"tiny_learner_batch_step{step:06d}.jsonl")
                r = run([PY, os.path.join(HERE, "learn.py"), batch, "--weights", weights, "--trainer-dir", os.path.join(rollout, "trainer"),
                         "--run", "tiny", "--lr", str(args.lr), "--context-lr", str(args.context_lr), "--optimizer", args.optimizer, "--updates", str(args.updates)], log)
                learner = json.loads(r.stdout.strip().splitlines()[-1])
                version = server.post("/reload", {"path": weights})["version"]
            line = {"step": step, "eval_policy_version": None if ev is None else version - (1 if learner else 0), "eval": ev,
                    "rollout": {k: summary[k] for k in ("groups_drawn", "groups_kept", "groups_dropped_uniform", "groups_dropped_stale", "samples", "mean_reward", "policy_version")},
                    "learner": learner, "policy_version": version, "seconds": round(time.time() - t0, 1)}
            with open(curve_file, "a") as f:
                f.write(json.dumps(line) + "\n")
            shown = "-" if ev is None else "%.3f" % ev["mean"]
            update = "no update (no informative group)" if not learner else "loss %.4f, masked %d/%d" % (learner["loss"], learner["masked_tokens"], learner["model_tokens"])
            print(f"step {step}: eval reward {shown} (policy {line['eval_policy_version']}) · kept {summary['groups_kept']}/{summary['groups_drawn']} groups · {update} · now policy {version}", flush=True)
        final = evaluate(version)
        with open(os.path.join(out, "final.json"), "w") as f:
            json.dump({"policy_version": version, "eval": final}, f)
        print(f"final: eval reward {'-' if final is None else '%.3f' % final['mean']} (policy {version})", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
