// Who owns a container: every sandbox carries the id of its job and the pid, start time and host of the tmax
// process that created it, so `tmax sandbox prune` removes only containers whose owner is gone, never another
// user's running trials on a shared engine.
import os from "node:os";
import { processGone, processStartTime } from "../util/process.js";
import type { PruneCandidate } from "./types.js";

/** The job/run a container belongs to: a UUID stored in the job dir (never the dir name, which can repeat). */
export const JOB_ID_LABEL = "io.tmax.job";
/** The job dir, for display only (`podman ps`); never used to select containers. */
export const JOB_DIR_LABEL = "io.tmax.job-dir";
export const OWNER_PID_LABEL = "io.tmax.owner-pid";
export const OWNER_HOST_LABEL = "io.tmax.owner-host";
/** The owner's start time in clock ticks since boot (/proc/<pid>/stat field 22): tells a reused pid apart. */
export const OWNER_START_LABEL = "io.tmax.owner-start";
/** Set when TMAX_TEST_RUN is in the environment: lets a test suite count only its own containers. */
export const TEST_RUN_LABEL = "io.tmax.test-run";

let cached: Record<string, string> | undefined;

/** Labels naming this process as the owner (plus the test-run id when TMAX_TEST_RUN is set). */
export function ownerLabels(): Record<string, string> {
  cached ??= {
    [OWNER_PID_LABEL]: String(process.pid),
    [OWNER_HOST_LABEL]: os.hostname(),
    ...(processStartTime(process.pid) ? { [OWNER_START_LABEL]: processStartTime(process.pid)! } : {}),
  };
  const testRun = process.env.TMAX_TEST_RUN;
  return testRun ? { ...cached, [TEST_RUN_LABEL]: testRun } : { ...cached };
}

export type Ownership = "alive" | "gone" | "unknown";

/**
 * Whether the process that created a container still runs: "gone" only when it is certain (same host, and
 * the pid is not alive or now belongs to a process started at another time); another host or missing labels
 * give "unknown" and such containers are kept unless the user says `--all` or `--job`.
 */
export function ownership(labels: Record<string, string> | undefined): Ownership {
  const pid = Number(labels?.[OWNER_PID_LABEL]);
  const host = labels?.[OWNER_HOST_LABEL];
  if (!Number.isInteger(pid) || pid <= 0 || !host) return "unknown";
  if (host !== os.hostname()) return "unknown";
  return processGone(pid, labels?.[OWNER_START_LABEL]) ? "gone" : "alive";
}

/** What `prune` removes: one job's containers, every tmax container, or (default) those whose owner is gone. */
export interface PruneFilter {
  job?: string;
  all?: boolean;
}

/** True when a container with these labels is selected by `filter` (the caller already checked the tmax label). */
export function prunable(labels: Record<string, string> | undefined, filter: PruneFilter = {}): boolean {
  // A process running under a test-run id (the test suite and the CLIs it spawns) only ever touches that run's containers.
  const testRun = process.env.TMAX_TEST_RUN;
  if (testRun && labels?.[TEST_RUN_LABEL] !== testRun) return false;
  if (filter.job) return labels?.[JOB_ID_LABEL] === filter.job;
  if (filter.all) return true;
  return ownership(labels) === "gone";
}

/** The fields of a prune candidate that come from its labels. */
export function candidate(kind: PruneCandidate["kind"], id: string, name: string, labels: Record<string, string> | undefined): PruneCandidate {
  const pid = labels?.[OWNER_PID_LABEL];
  const host = labels?.[OWNER_HOST_LABEL];
  return { kind, id, name, job: labels?.[JOB_ID_LABEL] ?? null, jobDir: labels?.[JOB_DIR_LABEL] ?? null, owner: pid && host ? `${pid}@${host}` : null };
}
