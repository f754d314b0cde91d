// Which tasks a job runs: the dataset's tasks after the filters and --n-tasks, less the invalid ones. An invalid
// task (a loader error, or a check error such as a Dockerfile without FROM) is never run and never scored: the job
// is refused before it starts, one line per task, or with --skip-invalid the task is left out and recorded in
// config.json (`invalid_tasks`). On resume, a left-out task that is valid now joins the job with --retry-errors.
import { formatProblem, invalidTasks } from "../tasks/check.js";
import type { Dataset } from "../tasks/load.js";
import type { JobConfig } from "../results/schema.js";

export class InvalidTasksError extends Error {
  constructor(
    readonly lines: string[],
    count: number,
  ) {
    super(`${count} invalid task(s), refused before the job starts: fix them (tmax tasks check <dir>) or pass --skip-invalid to leave them out`);
    this.name = "InvalidTasksError";
  }
}

export interface TaskSelection {
  /** The tasks the job runs, sorted by name. */
  names: string[];
  /** Left out (recorded in config.json as invalid_tasks), by name, each with its one-line notice. */
  leftOut: Map<string, string>;
  /** Left out by an earlier run of the job and valid now: they join the job (with --retry-errors). */
  joined: string[];
  /** Left out by an earlier run, valid now, still left out (no --retry-errors). */
  validNow: string[];
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The job's tasks. `stored`: the config of the job being resumed (its left-out tasks, and, for jobs of an older tmax,
 * the tasks it recorded with checksum "invalid").
 */
export async function selectTasks(
  dataset: Dataset,
  o: { nTasks?: number; skipInvalid?: boolean; retryErrors?: unknown; stored?: JobConfig | null },
): Promise<TaskSelection> {
  let names = [...dataset.tasks.map((t) => t.name), ...dataset.broken.map((b) => b.name)].sort(byName);
  if (o.nTasks !== undefined) names = names.slice(0, o.nTasks);
  const invalid = await invalidTasks(dataset);
  const storedLeftOut = new Set([...(o.stored?.invalid_tasks ?? []), ...Object.entries(o.stored?.task_checksums ?? {}).filter(([, c]) => c === "invalid").map(([n]) => n)]);
  const refused = names.filter((n) => invalid.has(n) && !o.skipInvalid && !storedLeftOut.has(n));
  if (refused.length) throw new InvalidTasksError(refused.flatMap((n) => invalid.get(n)!.map(formatProblem)), refused.length);
  const leftOut = new Map<string, string>();
  const joined: string[] = [];
  const validNow: string[] = [];
  for (const n of names) {
    if (invalid.has(n)) leftOut.set(n, `left out (invalid, never scored): ${invalid.get(n)!.map(formatProblem).join("; ")}`);
    else if (storedLeftOut.has(n)) (o.retryErrors ? joined : validNow).push(n);
  }
  for (const n of validNow) leftOut.set(n, `left out: ${n} is valid now; --resume with --retry-errors adds it to the job`);
  const sorted = new Map([...leftOut].sort(([a], [b]) => byName(a, b))); // config.json's invalid_tasks, in name order
  return { names: names.filter((n) => !leftOut.has(n)), leftOut: sorted, joined, validNow };
}

/**
 * The stored config as this run would have written it, given the tasks that joined: their checksums added, the
 * left-out list without them (tasks an older tmax recorded as "invalid" become left-out tasks). Every other field,
 * a task that turned invalid included, is compared unchanged.
 */
export function withJoined(stored: JobConfig, joined: Record<string, string>): JobConfig {
  const oldStyle = Object.entries(stored.task_checksums).filter(([, c]) => c === "invalid").map(([n]) => n);
  const checksums = Object.fromEntries(Object.entries(stored.task_checksums).filter(([, c]) => c !== "invalid"));
  const leftOut = [...new Set([...(stored.invalid_tasks ?? []), ...oldStyle])].filter((n) => !(n in joined)).sort(byName);
  const { invalid_tasks: _, ...rest } = stored;
  // in name order, as a new config lists them (the comparison is of JSON texts)
  const merged = Object.fromEntries(Object.entries({ ...checksums, ...joined }).sort(([a], [b]) => byName(a, b)));
  return { ...rest, task_checksums: merged, ...(leftOut.length ? { invalid_tasks: leftOut } : {}) };
}
