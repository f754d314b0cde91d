// `tmax tasks list|check`: what a dataset holds and what is wrong with it.
import path from "node:path";
import type { Command } from "commander";
import { z } from "zod";
import type { TaskProblem } from "../tasks/types.js";
import { stripControl } from "../util/terminal.js";
import { emitJson, red } from "./render.js";

const Problem = z.object({ task: z.string(), file: z.string(), field: z.string().nullable(), severity: z.enum(["error", "warning"]), message: z.string() });

/** `tmax tasks list --json`. */
export const TasksListJson = z.object({
  dir: z.string(),
  tasks: z.array(z.object({ name: z.string(), format: z.enum(["harbor", "tb1"]), difficulty: z.string().nullable(), category: z.string().nullable(), dir: z.string() })),
  /** The errors of the tasks that could not be loaded (they are not in `tasks`). */
  problems: z.array(Problem),
});

/** `tmax tasks check --json`. */
export const TasksCheckJson = z.object({ dir: z.string(), errors: z.number().int(), warnings: z.number().int(), problems: z.array(Problem) });

/** `tmax tasks check --isolation --json`. */
export const TasksIsolationJson = z.object({
  dir: z.string(),
  checked: z.number().int(),
  differ: z.number().int(),
  tasks: z.array(z.object({ task: z.string(), differs: z.boolean(), rewards: z.record(z.string(), z.number().nullable()), errors: z.record(z.string(), z.string()), refused: z.array(z.string()) })),
});

const problemJson = (p: TaskProblem) => ({ task: p.task, file: p.file, field: p.field ?? null, severity: p.severity, message: p.message });

export function registerTasks(program: Command): void {
  const tasks = program.command("tasks").description("inspect task directories");
  tasks
    .command("check <dir>")
    .description("validate a task or a dataset: every problem with its file and field")
    .option("--isolation", "also run each task's oracle under every verifier isolation (shared, snapshot, kill) and report, one line each, the tasks whose honest outcome differs (cached; rollout then gives them Harbor's semantics)", false)
    .option("--json", "print one JSON document (problems, or with --isolation the checks)")
    .action(async (dir: string, o: { isolation?: boolean; json?: boolean }) => {
      process.exitCode = o.isolation ? await isolationCheck(dir, o) : await tasksCheck(dir, o);
    });
  tasks
    .command("list <dir>")
    .description("list the tasks of a dataset: name, format, difficulty, category (tab-separated)")
    .option("--json", "print one JSON document")
    .action(async (dir: string, o: { json?: boolean }) => {
      process.exitCode = await tasksList(dir, o);
    });
}

async function tasksList(dir: string, o: { json?: boolean }): Promise<number> {
  const { loadDataset } = await import("../tasks/load.js");
  const { tasks, problems } = await loadDataset(path.resolve(dir));
  const errors = problems.filter((x) => x.severity === "error");
  if (o.json) {
    const list = tasks.map((t) => ({ name: t.name, format: t.format, difficulty: t.config.difficulty ?? null, category: t.config.category ?? null, dir: t.dir }));
    emitJson(TasksListJson, { dir: path.resolve(dir), tasks: list, problems: errors.map(problemJson) });
    return 0;
  }
  // task names (dir names), difficulty and category are the task author's text
  for (const t of tasks) console.log(stripControl(`${t.name}\t${t.format}\t${t.config.difficulty ?? "-"}\t${t.config.category ?? "-"}`));
  for (const p of errors) console.log(red(stripControl(`${p.task}: ${p.file}${p.field ? ` [${p.field}]` : ""}: ${p.message}`)));
  return 0;
}

async function tasksCheck(dir: string, o: { json?: boolean }): Promise<number> {
  const { checkDataset, formatProblems } = await import("../tasks/check.js");
  const problems = await checkDataset(path.resolve(dir));
  const errors = problems.filter((p) => p.severity === "error").length;
  if (o.json) emitJson(TasksCheckJson, { dir: path.resolve(dir), errors, warnings: problems.length - errors, problems: problems.map(problemJson) });
  else {
    if (problems.length) console.log(stripControl(formatProblems(problems)));
    console.log(errors ? red(`${errors} error(s)`) : `no errors${problems.length ? ` (${problems.length} warning(s))` : ""}`);
  }
  return errors ? 1 : 0;
}

async function isolationCheck(dir: string, o: { json?: boolean }): Promise<number> {
  const { checkIsolation } = await import("../jobs/isolationCheck.js");
  const checks = await checkIsolation(path.resolve(dir), { onLine: o.json ? undefined : (line) => console.log(stripControl(line)) });
  const differ = checks.filter((c) => c.differs).length;
  if (o.json) {
    const tasks = checks.map((c) => ({ task: c.task, differs: c.differs, rewards: c.rewards as Record<string, number | null>, errors: c.errors as Record<string, string>, refused: c.refused }));
    emitJson(TasksIsolationJson, { dir: path.resolve(dir), checked: checks.length, differ, tasks });
  } else console.log(`${checks.length} task(s) checked: ${differ ? `${differ} whose honest outcome depends on the verifier isolation` : "the same honest outcome in every isolation"}`);
  return 0;
}
