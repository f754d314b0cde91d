// `tmax eval --resume DIR` restores every setting the job stored in its config.json: the command line is parsed by
// the real option definitions, the job config written, `--resume DIR` alone parsed again, and the config it stands
// for compared field by field (concurrency and retries included).
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { Command } from "commander";
import { jobOptionsOf, modelConfigOf, resolveResume, type EvalOptions } from "../../../src/cli/eval.js";
import { harborAliases } from "../../../src/cli/evalSettings.js";
import { evalOptions } from "../../../src/cli/evalCli.js";
import { jobConfigOf } from "../../../src/jobs/jobDir.js";
import { EXAMPLES, ROOT } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-resume-settings-"));
after(() => rm(tmp, { recursive: true, force: true }));

/** Parses an eval command line as `tmax eval` does (the same option definitions and Harbor aliases). */
function parse(argv: string[]): { options: EvalOptions; given: Set<string> } {
  const cmd = evalOptions(new Command("eval")).exitOverride();
  cmd.parse(argv, { from: "user" });
  return harborAliases(cmd.opts(), (key) => cmd.getOptionValueSource(key));
}

const configOf = (o: EvalOptions, jobDir: string) => {
  const job = jobOptionsOf(o, { datasetDir: path.resolve(o.dataset!), jobDir, model: modelConfigOf(o) });
  return jobConfigOf(job, { jobName: path.basename(jobDir), datasetDir: path.resolve(o.dataset!), checksums: { "hello-file": "abc" } });
};

const FULL = [
  ["--dataset", EXAMPLES],
  ["-k", "3"],
  ["-n", "2"],
  ["--infra-retries", "4"],
  ["--model", "m-9b"],
  ["--base-url", "http://127.0.0.1:9/v1"],
  ["--profile", "train"],
  ["--max-tokens", "1234"],
  ["--temperature", "0.3"],
  ["--top-p", "0.9"],
  ["--logprobs"],
  ["--max-steps", "7"],
  ["--max-total-tokens", "9999"],
  ["--command-timeout", "33"],
  ["--max-format-errors", "2"],
  ["--prompts", path.relative(process.cwd(), path.join(ROOT, "test/fixtures/prompts-authors-schema.yaml"))],
  ["--timeout-multiplier", "1.5"],
  ["--agent-timeout-multiplier", "2"],
  ["--verifier-timeout-multiplier", "3"],
  ["--build-timeout-multiplier", "4"],
  ["--include", "hello-*"],
  ["--exclude", "word-count"],
  ["--category", "files"],
  ["--difficulty", "easy"],
  ["--n-tasks", "1"],
  ["--network", "none"],
  ["--image-map", "a:1=b:2"],
  ["--pull", "never"],
  ["--force-build"],
  ["--pass-env", "HOME"],
  ["--integrity", "strict"],
  ["--verifier-isolation", "kill"],
  ["--no-verifier-hardening"],
].flat();

test("--resume DIR alone restores every setting stored in config.json, concurrency and retries included", async () => {
  const jobDir = path.join(tmp, "job");
  const first = parse([...FULL, "--job-dir", jobDir]).options;
  const stored = { ...configOf(first, jobDir), job_id: "00000000-0000-4000-8000-000000000000" };
  await mkdir(jobDir, { recursive: true });
  await writeFile(path.join(jobDir, "config.json"), JSON.stringify(stored));

  const typed = parse(["--resume", jobDir]);
  const resumed = resolveResume(typed.options, typed.given);
  const again = { ...configOf(resumed, jobDir), job_id: stored.job_id };
  const { created_at: _a, ...want } = stored;
  const { created_at: _b, ...got } = again;
  assert.deepEqual(got, want);
  assert.equal(resumed.n, 2, "the stored concurrency, not the default -n 1");
  assert.equal(resumed.infraRetries, 4);
});

test("a run-time knob given again on --resume (-n, --infra-retries) wins over the stored one; a result-affecting flag must match", async () => {
  const jobDir = path.join(tmp, "job2");
  const first = parse([...FULL, "--job-dir", jobDir]).options;
  await mkdir(jobDir, { recursive: true });
  await writeFile(path.join(jobDir, "config.json"), JSON.stringify({ ...configOf(first, jobDir), job_id: "00000000-0000-4000-8000-000000000001" }));
  const typed = parse(["--resume", jobDir, "-n", "5", "--infra-retries", "0"]);
  const resumed = resolveResume(typed.options, typed.given);
  assert.equal(resumed.n, 5);
  assert.equal(resumed.infraRetries, 0);
  const other = parse(["--resume", jobDir, "-k", "4"]);
  assert.throws(() => resolveResume(other.options, other.given), /-k\/--n-attempts \(stored 3, given 4\)/);
});
