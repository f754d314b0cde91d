// `tmax eval` (= `harbor run`), `tmax jobs start|resume|init`: the options, grouped as in Harbor's --help, and the
// step from a parsed command line (+ -c file, --env-file) to evalCommand.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Command, type Option } from "commander";
import { formatJobFile, readJobFile } from "../results/jobFile.js";
import { registerSecret } from "../util/redact.js";
import { jobFileOf, resolveEval } from "./evalSettings.js";
import { UsageError } from "./exitCodes.js";
import { addHarborOptions, addRefusedOptions, readDotenv, refusal, RESUME_REFUSED } from "./harborFlags.js";
import { addAgentOptions, addEvalOptions, addModelOptions, addSandboxOptions, collect } from "./options.js";
import { yellow } from "./render.js";

/** The commented starter of `tmax jobs init`. */
export const JOB_INIT_TEMPLATE = new URL("../../assets/job-init.yaml", import.meta.url);

type Run = (work: () => Promise<number>) => Promise<void>;

/** Harbor's help panels (rich_help_panel) for each option; the rest are tmax's own. */
const GROUPS: Record<string, string[]> = {
  "Config:": ["config", "printConfig"],
  "Job Settings:": ["jobName", "jobsDir", "jobDir", "nAttempts", "timeoutMultiplier", "agentTimeoutMultiplier", "verifierTimeoutMultiplier", "agentSetupTimeoutMultiplier", "environmentBuildTimeoutMultiplier", "quiet", "debug", "nConcurrent", "nConcurrentAgents", "maxRetries", "r", "retryInclude", "retryExclude", "artifact", "yes", "envFile", "resume", "retryErrors", "infraRetries", "pauseAfter", "maxPause", "verbose"],
  "Agent:": ["agent", "model", "agentKwarg", "agentEnv", "maxSteps", "maxTotalTokens", "commandTimeout", "maxFormatErrors", "prompts", "toolDescription"],
  "Environment:": ["backend", "forceBuild", "delete", "cpus", "memory", "overrideCpus", "overrideMemoryMb", "unsafe", "network", "pull", "imageMap", "passEnv"],
  "Verifier:": ["disableVerification", "verifierEnv", "integrity", "verifierIsolation", "verifierHardening"],
  "Dataset:": ["path", "dataset", "registryUrl", "registryPath", "registry", "includeTaskName", "excludeTaskName", "include", "exclude", "nTasks", "category", "difficulty", "skipInvalid", "extraInstructionPath", "extraInstruction"],
  "Model (tmax):": ["baseUrl", "apiKey", "maxTokens", "requestTimeout", "modelMaxRetries", "profile", "temperature", "topP", "logprobs"],
};
const GROUP_OF = new Map(Object.entries(GROUPS).flatMap(([g, keys]) => keys.map((k) => [k, g] as const)));

const EXAMPLES = `
Examples (Harbor's \`harbor run\` flags work as they are):
  tmax eval -p examples/tasks -a oracle                        # every task of a dir, Harbor's oracle agent
  tmax eval -d terminal-bench@2.0 -m hosted_vllm/tmax-9b --ak api_base=http://gpu:8000/v1 -k 5 -n 8
  tmax eval -c examples/jobs/tmax-9b-card.yaml                 # the model card's settings (a job config file)
  tmax eval -c job.yaml -i 'hello-*' -l 2 --print-config       # flags override the file; print and exit
  tmax jobs init job.yaml                                      # a commented starter config
  tmax jobs resume -p jobs/2026-01-01__12-00-00                # continue a job (= tmax eval --resume DIR)
Harbor options tied to Harbor's own services (Hub upload and launch, plugins, import paths, bridges, MCP) are
refused with one line; the table is in docs/eval-and-harbor.md.`;

/** The options of `tmax eval`, grouped. */
export function evalOptions(cmd: Command): Command {
  addSandboxOptions(addAgentOptions(addModelOptions(addEvalOptions(addHarborOptions(cmd)), { harbor: true })));
  for (const opt of cmd.options as Option[]) if (!opt.hidden) opt.helpGroup(GROUP_OF.get(opt.attributeName()) ?? "tmax:");
  return cmd.addHelpText("after", EXAMPLES);
}

/** A .env file into tmax's environment (as Harbor's load_dotenv(override=True)); values of secret-looking names are masked in output. */
function loadEnvFile(file: string): void {
  for (const [k, v] of Object.entries(readDotenv(file))) {
    process.env[k] = v;
    if (/KEY|TOKEN|SECRET|PASSWORD/i.test(k)) registerSecret(v);
  }
}

/** What `tmax eval` does with its parsed options: -c and --env-file first, then the settings, then the job (or --print-config). */
export async function evalAction(o: Record<string, unknown>, cmd: Command, run: Run): Promise<void> {
  if (typeof o.envFile === "string") loadEnvFile(o.envFile);
  // a -c file that cannot be read, a refused Harbor option, flags that disagree: the command line is wrong (exit 2)
  const { options, given, notices } = asUsageError(() => {
    const file = typeof o.config === "string" ? readJobFile(o.config) : undefined;
    return resolveEval(o, (k) => cmd.getOptionValueSource(k), file);
  });
  for (const line of notices) console.error(yellow(line));
  if (options.debug) process.env.TMAX_DEBUG = "1";
  if (o.printConfig) {
    process.stdout.write(formatJobFile(jobFileOf(options), "json")); // JSON escapes control characters
    return;
  }
  const { evalCommand } = await import("./eval.js");
  await run(() => evalCommand(options, given));
}

export function registerEval(program: Command, run: Run): void {
  evalOptions(program.command("eval").description("run an agent on every task of a dataset, k times, n at a time; resumable (= harbor run)")).action((o, cmd: Command) => evalAction(o, cmd, run));

  const jobs = program.command("jobs").description("Harbor's `harbor jobs`: start, resume, init");
  evalOptions(jobs.command("start").description("= tmax eval (Harbor's `harbor jobs start`)")).action((o, cmd: Command) => evalAction(o, cmd, run));
  addRefusedOptions(
    jobs
      .command("resume")
      .description("continue a job from its dir with its stored config (Harbor's `harbor jobs resume`; = tmax eval --resume DIR)")
      .requiredOption("-p, --job-path <dir>", "the job directory (holds config.json)")
      .option("-f, --filter-error-type <type>", "re-run the job's finished trials that ended in this exception type (repeatable; Harbor's default CancelledError: tmax keeps no cancelled trial)", collect)
      .option("--base-url <url>", "the model endpoint, when it moved (else $TMAX_BASE_URL, else the stored one)")
      .option("-n, --n-concurrent <n>", "trials at a time (default: the job's)")
      .option("--unsafe", "needed again for a job on the local backend")
      .option("-q, --quiet", "no per-trial progress")
      .option("--debug", "print the stack of an error"),
    RESUME_REFUSED,
  ).action(async (o: Record<string, unknown>) => {
    const why = refusal(o, RESUME_REFUSED);
    if (why) throw new UsageError(why);
    const args = ["--resume", String(o.jobPath)];
    const types = (o.filterErrorType as string[] | undefined)?.filter((t) => t !== "CancelledError");
    if (types?.length) args.push("--retry-errors", types.join(","));
    if (o.baseUrl) args.push("--base-url", String(o.baseUrl));
    if (o.nConcurrent) args.push("-n", String(o.nConcurrent));
    for (const flag of ["unsafe", "quiet", "debug"]) if (o[flag]) args.push(`--${flag}`);
    const evalCmd = evalOptions(new Command("eval")).action((p, c: Command) => evalAction(p, c, run));
    await evalCmd.parseAsync(args, { from: "user" });
  });

  jobs
    .command("init [file]")
    .description("write a commented starter job config (Harbor's JobConfig + tmax:) for tmax eval -c (default job.yaml)")
    .option("--force", "overwrite an existing file")
    .action((file: string | undefined, o: { force?: boolean }) => {
      const out = path.resolve(file ?? "job.yaml");
      if (existsSync(out) && !o.force) throw new Error(`${out} exists: pass --force to overwrite it`);
      writeFileSync(out, readFileSync(JOB_INIT_TEMPLATE, "utf8"));
      const rel = path.relative(process.cwd(), out);
      console.log(`wrote ${out}: edit it, then  tmax eval -c ${rel.startsWith("..") ? out : rel}`);
    });
}

function asUsageError<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw e instanceof Error && !(e instanceof UsageError) ? Object.assign(new UsageError(e.message), { lines: (e as { lines?: unknown }).lines }) : e;
  }
}
