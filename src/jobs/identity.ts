// The unique id of a job or rollout run: a UUID stored in its dir, used to label its containers (the dir's
// basename is not unique: two `jobs/run1` dirs in different places would otherwise share containers).
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import path from "node:path";

export const JOB_ID_FILE = ".tmax-job-id";
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The id stored in `dir`, or undefined when there is none (or it is not a UUID). */
export function readJobId(dir: string): string | undefined {
  const file = path.join(dir, JOB_ID_FILE);
  if (!existsSync(file)) return undefined;
  const id = readFileSync(file, "utf8").trim();
  return UUID_RE.test(id) ? id : undefined;
}

/** The id stored in `dir` (which must exist), created on first use (as `preferred` when given, e.g. the job config's job_id). */
export async function ensureJobId(dir: string, preferred?: string): Promise<string> {
  const existing = readJobId(dir);
  if (existing) return existing;
  const id = preferred && UUID_RE.test(preferred) ? preferred : randomUUID();
  await writeFile(path.join(dir, JOB_ID_FILE), `${id}\n`);
  return id;
}

/**
 * `--job DIR|ID`: a dir holding a job id (a job, rollout or run dir), or the id itself. A run dir of an older
 * tmax has no id file: its trial's config.json (Harbor's TrialConfig) names the id.
 */
export function resolveJobRef(ref: string): string {
  if (UUID_RE.test(ref)) return ref;
  if (existsSync(ref)) {
    const id = readJobId(ref) ?? trialJobId(ref);
    if (!id) throw new Error(`${ref} holds no job id (${JOB_ID_FILE}); pass the job id instead`);
    return id;
  }
  throw new Error(`--job ${ref}: neither a job dir nor a job id (a UUID)`);
}

/** The one job id the trial configs directly under `dir` name, if they agree. */
function trialJobId(dir: string): string | undefined {
  const ids = new Set<string>();
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    try {
      const id = JSON.parse(readFileSync(path.join(dir, entry.name, "config.json"), "utf8")).job_id;
      if (typeof id === "string" && UUID_RE.test(id)) ids.add(id);
    } catch {
      // not a trial dir
    }
  }
  return ids.size === 1 ? [...ids][0] : undefined;
}
