// `tmax tasks check --isolation`: runs each task's oracle under every verifier isolation and reports the
// tasks whose honest outcome differs between them (a service the tests need alive, a daemon checked with ps:
// 1 in `shared`, Harbor's semantics, 0 in `snapshot` or `kill`). The result is cached per task content, so
// `tmax rollout` (strong isolation by default) gives such a task Harbor's semantics instead of failing its
// honest samples silently. See docs/reward-integrity.md.
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { SandboxBackendName } from "../sandbox/types.js";
import { privateCacheDir } from "../util/cache.js";
import { writeJsonAtomic } from "../util/fs.js";
import type { Task } from "../tasks/types.js";
import type { VerifierIsolation } from "../trial/verifier.js";

const MODES: readonly VerifierIsolation[] = ["shared", "snapshot", "kill"];

/** One task's check: the oracle's reward per isolation (null: the trial failed, with its error). */
export interface IsolationCheck {
  task: string;
  checksum: string;
  rewards: Partial<Record<VerifierIsolation, number | null>>;
  errors: Partial<Record<VerifierIsolation, string>>;
  /** The honest outcome is not the same in every mode. */
  differs: boolean;
  /** Modes where the oracle's reward was refused as forged (a test.sh that rewrites its own files, …): reported too. */
  refused: VerifierIsolation[];
  checked_at: string;
}

function cacheFile(checksum: string): string {
  return path.join(privateCacheDir("isolation"), `${checksum.replace(/[^A-Za-z0-9_.-]/g, "_")}.json`);
}

/** The cached check of a task (by its content hash), or null when it was never checked. */
export function cachedIsolationCheck(task: Task): IsolationCheck | null {
  const file = cacheFile(task.checksum);
  if (!existsSync(file)) return null;
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as IsolationCheck;
    return parsed.checksum === task.checksum ? parsed : null;
  } catch {
    return null;
  }
}

/**
 * Whether `mode` would change the task's honest outcome against Harbor's semantics (`shared`), by the cached
 * check: the oracle scored less there than in shared. Unknown (never checked) is false.
 */
export function cachedIncompatible(task: Task, mode: VerifierIsolation): boolean {
  const check = cachedIsolationCheck(task);
  if (!check || mode === "shared") return false;
  const shared = check.rewards.shared;
  const other = check.rewards[mode];
  return typeof shared === "number" && (other === null || other === undefined || other < shared);
}

export interface IsolationCheckOptions {
  backend?: SandboxBackendName;
  concurrency?: number;
  /** One line per task whose outcome differs, as it is known. */
  onLine?: (line: string) => void;
  /** Where the oracle jobs run (removed after); default a temp dir. */
  workDir?: string;
}

/** Runs the oracle of every task of `datasetDir` under each isolation, caches and returns the checks. */
export async function checkIsolation(datasetDir: string, opts: IsolationCheckOptions = {}): Promise<IsolationCheck[]> {
  const { runJob } = await import("./runner.js");
  const { loadDataset } = await import("../tasks/load.js");
  const { tasks } = await loadDataset(datasetDir);
  const work = await mkdtemp(path.join(opts.workDir ?? os.tmpdir(), "tmax-isolation-check-"));
  const byTask = new Map<string, IsolationCheck>(
    tasks.map((t) => [t.name, { task: t.name, checksum: t.checksum, rewards: {}, errors: {}, differs: false, refused: [], checked_at: "" }]),
  );
  const modes = opts.backend === "local" ? (["shared"] as VerifierIsolation[]) : MODES;
  try {
    for (const mode of modes) {
      const results = await runJob({
        datasetDir,
        jobDir: path.join(work, mode),
        agent: "oracle",
        k: 1,
        concurrency: opts.concurrency ?? 2,
        profile: "eval",
        timeoutMultiplier: 1,
        imageMap: {},
        backend: opts.backend ?? "docker",
        network: "task",
        infraRetries: 0,
        resume: false,
        integrity: "flag",
        verifierIsolation: mode,
      });
      for (const r of results) {
        const check = byTask.get(r.task_name);
        if (!check) continue;
        const failed = r.exception_info && !r.verifier_result;
        check.rewards[mode] = failed ? null : r.reward;
        if (r.exception_info) check.errors[mode] = r.exception_info.exception_message;
        if (r.tamper?.forged) {
          check.refused.push(mode);
          check.errors[mode] = `refused: ${[...new Set((r.tamper.signals ?? []).filter((s) => s.severity === "refuse").map((s) => s.signal))].join(", ")}`;
        }
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const out: IsolationCheck[] = [];
  for (const check of byTask.values()) {
    const values = modes.map((m) => check.rewards[m]);
    check.differs = values.some((v) => v !== values[0]);
    check.checked_at = new Date().toISOString();
    await writeJsonAtomic(cacheFile(check.checksum), check);
    if (check.differs || check.refused.length) opts.onLine?.(formatIsolationCheck(check));
    out.push(check);
  }
  return out;
}

/** `service-logging: oracle scores shared 1, snapshot 0, kill 0: rollout gives it Harbor's semantics (shared)` */
export function formatIsolationCheck(c: IsolationCheck): string {
  const scores = MODES.filter((m) => m in c.rewards).map((m) => `${m} ${c.rewards[m] === null ? `error (${c.errors[m] ?? "no reward"})` : c.rewards[m]}`);
  const shared = c.rewards.shared;
  const worse = MODES.filter((m) => m !== "shared" && typeof shared === "number" && (c.rewards[m] ?? -1) < shared);
  const advice = worse.length ? `: rollout gives it Harbor's semantics (shared) instead of ${worse.join("/")}` : "";
  const refused = c.refused?.length ? `; the oracle's reward was refused under ${c.refused.map((m) => `${m} (${c.errors[m]})`).join(", ")}` : "";
  return `${c.task}: oracle scores ${scores.join(", ")}${advice}${refused}`;
}
