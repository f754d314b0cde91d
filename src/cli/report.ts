// `tmax report`: the scores of job dirs (markdown, --json, --html), several side by side, or two --diff'ed.
import path from "node:path";
import type { Command } from "commander";
import { collect } from "./options.js";
import { UsageError } from "./exitCodes.js";

interface ReportOptions {
  json?: boolean;
  html?: string;
  label?: string[];
  diff?: boolean;
}

export function registerReport(program: Command): void {
  program
    .command("report <job-dirs...>")
    .description("scores of job dirs: per-run means, mean, sample std and SEM, pass@k, per-task table, errors; several dirs side by side")
    .option("--json", "print JSON instead of markdown")
    .option("--html <file>", "also write a self-contained HTML report with plots")
    .option("--label <name>", "row label of the next job dir in the model card (repeatable, in the order of the dirs)", collect)
    .option("--diff", "two job dirs task by task: which tasks flipped solved→failed and back")
    .action(reportCommand);
}

async function reportCommand(dirs: string[], o: ReportOptions): Promise<void> {
  if (o.label && o.label.length > dirs.length) throw new UsageError(`${o.label.length} --label for ${dirs.length} job dir(s)`);
  if (o.diff && dirs.length !== 2) throw new UsageError(`--diff compares two job dirs (got ${dirs.length})`);
  const { reportJob, renderMarkdown, diffJobs, renderDiffMarkdown, reportJson, modelCard } = await import("../results/report.js");
  const reports = dirs.map((d, i) => reportJob(d, o.label?.[i]));
  const diff = o.diff ? diffJobs(reports[0]!, reports[1]!) : undefined;
  if (o.json) console.log(JSON.stringify(reportJson(reports, diff), null, 2));
  else console.log(diff ? renderDiffMarkdown(diff, reports[0]!, reports[1]!) : renderMarkdown(reports));
  if (o.html) {
    const { writeReportHtml } = await import("../explore/report.js");
    await writeReportHtml(dirs, o.html, { card: modelCard(reports), diff });
    console.error(`html report: ${path.resolve(o.html)}`);
  }
}
