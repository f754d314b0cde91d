// `tmax tasks check`: every problem of every task (loader errors plus lint warnings), one line each.
import path from "node:path";
import { KNOWN_TOML_KEYS } from "./harbor.js";
import { dockerfileRefusal } from "../sandbox/docker/build.js";
import { parseDockerfile } from "../sandbox/dockerfile.js";
import { readTextIfFile } from "./files.js";
import { loadDataset, type Dataset } from "./load.js";
import type { Task, TaskProblem } from "./types.js";

/** All problems of a dataset (or of one task dir), errors first within each task, tasks by name. */
export async function checkDataset(dir: string): Promise<TaskProblem[]> {
  const dataset = await loadDataset(dir);
  const problems = [...dataset.problems];
  for (const task of dataset.tasks) problems.push(...(await lintTask(task)));
  for (const broken of dataset.broken) {
    if (broken.format === "harbor") problems.push(...(await lintHarborFiles(broken.name, broken.dir)));
  }
  const order = (p: TaskProblem) => (p.severity === "error" ? 0 : 1);
  // Stable sort: within a task and severity the loader's order (file by file) is kept.
  return problems.sort((a, b) => (a.task < b.task ? -1 : a.task > b.task ? 1 : order(a) - order(b)));
}

/**
 * The tasks of a loaded dataset that cannot run, each with its errors: the loader's (bad task.toml, missing
 * files …) and the checks' (a Dockerfile without FROM). Warnings do not make a task invalid.
 */
export async function invalidTasks(dataset: Dataset): Promise<Map<string, TaskProblem[]>> {
  const out = new Map<string, TaskProblem[]>();
  for (const broken of dataset.broken) out.set(broken.name, broken.problems.filter((p) => p.severity === "error"));
  for (const task of dataset.tasks) {
    const errors = (await lintTask(task)).filter((p) => p.severity === "error");
    if (errors.length) out.set(task.name, errors);
  }
  return out;
}

/** Lints beyond what loading requires: things that make a task score 0 or fail offline. */
export async function lintTask(task: Task): Promise<TaskProblem[]> {
  const out: TaskProblem[] = [];
  const warn = (file: string, message: string, field?: string) =>
    out.push(field === undefined ? { task: task.name, file, message, severity: "warning" } : { task: task.name, file, field, message, severity: "warning" });

  if (!task.solutionDir) {
    warn(task.format === "tb1" ? "solution.sh" : "solution/solve.sh", "no solution: the oracle agent cannot check that this task is solvable");
  }
  if (task.format === "harbor") {
    out.push(...(await lintHarborFiles(task.name, task.dir)));
    for (const key of Object.keys(task.config.raw)) {
      if (!KNOWN_TOML_KEYS.includes(key)) warn("task.toml", "unknown key (kept, not used by tmax)", key);
    }
  }
  return out;
}

/** Checks on test.sh and the Dockerfile that need only the files (so they also run on broken tasks). */
async function lintHarborFiles(taskName: string, dir: string): Promise<TaskProblem[]> {
  const out: TaskProblem[] = [];
  const warn = (file: string, message: string) => out.push({ task: taskName, file, message, severity: "warning" });

  const testSh = await readTextIfFile(path.join(dir, "tests", "test.sh"));
  if (testSh !== null) {
    if (!/reward\.(txt|json)/.test(testSh)) {
      warn("tests/test.sh", "never mentions /logs/verifier/reward.txt or reward.json: without a reward file every trial scores 0");
    }
    const commands = testSh.split("\n").filter((line) => !line.trimStart().startsWith("#")).join("\n");
    if (/\b(curl|wget)\b[^\n]*https?:\/\/|\bpip3? install\b|\buvx\s|\buv\s+(pip|run|sync|tool)\b/.test(commands)) {
      warn("tests/test.sh", "downloads at test time (curl/wget/pip/uv): the verifier fails without network");
    }
  }
  const dockerfile = await readTextIfFile(path.join(dir, "environment", "Dockerfile"));
  if (dockerfile !== null) {
    // read by the same parser as the build (continuations, directives, heredocs)
    const file = "environment/Dockerfile";
    if (!parseDockerfile(dockerfile).instructions.some((i) => i.keyword === "FROM" && i.args.trim())) {
      out.push({ task: taskName, file, message: "has no FROM line", severity: "error" });
    }
    const refused = dockerfileRefusal(dockerfile, "Dockerfile");
    if (refused) out.push({ task: taskName, file, message: `a local build refuses it: ${refused}`, severity: "error" });
  }
  return out;
}

/** `error: regex-log: task.toml [verifier.timeout_sec]: expected a number, got "abc"` */
export function formatProblem(p: TaskProblem): string {
  return `${p.severity}: ${p.task}: ${p.file}${p.field ? ` [${p.field}]` : ""}: ${p.message}`;
}

/** One line per problem (no trailing newline); "" for none. */
export function formatProblems(problems: TaskProblem[]): string {
  return problems.map(formatProblem).join("\n");
}
