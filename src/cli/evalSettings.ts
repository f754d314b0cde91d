// From a parsed `tmax eval` / `harbor run` command line (and a -c job file) to tmax's settings: one pure function,
// so that each Harbor option's effect is testable without running a job. Precedence: defaults < -c file < flags.
import { existsSync } from "node:fs";
import path from "node:path";
import type { JobFile } from "../results/jobFile.js";
import { retryPolicyOf } from "../jobs/retryPolicy.js";
import { checkArtifactPath } from "../trial/collectLogs.js";
import type { EvalOptions } from "./eval.js";
import { AGENT_ENV, AGENT_KWARGS, extraInstructionsOf, harborJobName, keyOf, parseEnvPairs, parseKwargs, refusal, splitModel } from "./harborFlags.js";

export interface ResolvedEval {
  options: EvalOptions;
  /** The tmax option keys the user set (typed, or from the -c file): a resume compares them with the stored job. */
  given: Set<string>;
  /** Deprecations and notes, one line each, for stderr. */
  notices: string[];
}

type Raw = Record<string, unknown>;
const AGENTS = ["tmax", "oracle", "nop"];
const BACKENDS = ["docker", "daytona", "local"];


/** A Harbor alias and the tmax option it sets; `old` = a tmax name kept one release with a deprecation line. */
const ALIASES: { to: string; from: string[]; flags: string; old?: Record<string, string> }[] = [
  { to: "k", from: ["nAttempts", "attempts"], flags: "-k/--n-attempts" },
  { to: "n", from: ["nConcurrent", "concurrency"], flags: "-n/--n-concurrent" },
  { to: "backend", from: ["backend", "env"], flags: "-e/--env" },
  { to: "dataset", from: ["dataset", "path"], flags: "-d/--dataset and -p/--path" },
  { to: "registry", from: ["registry", "registryUrl", "registryPath"], flags: "--registry-url/--registry-path" },
  { to: "buildTimeoutMultiplier", from: ["environmentBuildTimeoutMultiplier", "buildTimeoutMultiplier"], flags: "--environment-build-timeout-multiplier", old: { buildTimeoutMultiplier: "--build-timeout-multiplier is now --environment-build-timeout-multiplier (Harbor's name); the old name goes in the next release" } },
  { to: "infraRetries", from: ["r", "maxRetries", "infraRetries"], flags: "-r/--max-retries and --infra-retries" },
  { to: "quiet", from: ["quiet", "silent"], flags: "-q/--quiet" },
];

const kebab = (k: string) => (k.length === 1 ? `-${k}` : `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);

/**
 * The settings a command line stands for. `source(key)` is commander's getOptionValueSource ("cli" when typed);
 * `file` is a -c job file already read; `env` the environment (for $TMAX_* defaults after --env-file).
 */
export function resolveEval(raw: Raw, source: (key: string) => string | undefined, file?: JobFile, env: NodeJS.ProcessEnv = process.env): ResolvedEval {
  const notices: string[] = [];
  const typed = new Set(Object.keys(raw).filter((k) => source(k) === "cli"));
  const cli = canonical(raw, typed, notices);
  if (typed.has("maxRetries")) notices.push("note: --max-retries is now Harbor's -r/--max-retries (re-runs of a failed trial); model request retries are --model-max-retries (this note goes in the next release)");
  const fromFile = file ? optionsOfJobFile(file) : {};
  const fileCanon = canonical(fromFile, new Set(Object.keys(fromFile)), []);
  const why = refusal({ ...fromFile, ...Object.fromEntries([...typed].map((k) => [k, raw[k]])) });
  if (why) throw new Error(why);
  const given = new Set([...cli.given, ...fileCanon.given]);
  // defaults < file < typed
  const o: Raw = { ...cli.values };
  for (const k of fileCanon.given) if (!cli.given.has(k)) o[k] = fileCanon.values[k];
  // $TMAX_BASE_URL / $TMAX_MODEL read again: --env-file may have set them after the defaults were taken
  if (!given.has("baseUrl") && env.TMAX_BASE_URL) o.baseUrl = env.TMAX_BASE_URL;
  if (!given.has("model") && env.TMAX_MODEL) o.model = env.TMAX_MODEL;

  // the agent: Harbor's names for other agents and import paths are one line
  const agent = String(o.agent);
  if (agent.includes(":")) throw new Error(`-a/--agent ${agent}: a Harbor agent import path (module:Class) is Harbor's Python plugin system: not in tmax; agents are tmax, oracle, nop`);
  if (!AGENTS.includes(agent)) throw new Error(`-a/--agent ${agent}: tmax runs tmax (its model), oracle or nop; Harbor's installed agents (terminus-2, claude-code, …) are not in tmax`);
  const backend = String(o.backend);
  if (backend.includes(":")) throw new Error(`-e/--env ${backend}: a Harbor environment import path (module:Class) is Harbor's Python plugin system: not in tmax; environments are ${BACKENDS.join(", ")}`);
  if (!BACKENDS.includes(backend)) throw new Error(`-e/--env ${backend}: tmax's environments are ${BACKENDS.join(", ")} (Harbor's ${backend} is not in tmax)`);

  // --ak: Harbor's agent kwargs, each one a tmax option (a flag typed too must agree)
  const kwargs = parseKwargs(o.agentKwarg as string[] | undefined);
  for (const [key, value] of Object.entries(kwargs)) {
    const to = AGENT_KWARGS[key];
    if (!to) throw new Error(`--ak ${key}: not a setting of tmax's agent (known: ${Object.keys(AGENT_KWARGS).join(", ")})`);
    const v = to === "baseUrl" || to === "profile" || to === "prompts" ? String(value) : to === "logprobs" ? Boolean(value) : Number(value);
    if (typeof v === "number" && !Number.isFinite(v)) throw new Error(`--ak ${key}=${JSON.stringify(value)}: expected a number`);
    if (cli.given.has("agentKwarg") && typed.has(to) && o[to] !== v) throw new Error(`--ak ${key}=${JSON.stringify(value)} and ${kebab(to)} ${JSON.stringify(o[to])} disagree`);
    if (!typed.has(to)) o[to] = v;
    given.add(to);
  }
  // --ae: the agent's environment, as LiteLLM reads it: only the model endpoint and key mean something to tmax's agent
  const agentEnv = parseEnvPairs(o.agentEnv as string[] | undefined, "--ae");
  for (const [name, value] of Object.entries(agentEnv)) {
    const to = AGENT_ENV[name];
    if (!to) throw new Error(`--ae ${name}: tmax's agent runs in tmax, not in the container; --ae takes its model endpoint and key only (${Object.keys(AGENT_ENV).join(", ")}); for the task's commands see --pass-env`);
    if (!typed.has(to)) o[to] = value;
    if (to === "baseUrl") given.add(to);
  }

  // -m provider/model: the served name without LiteLLM's provider prefix; both recorded
  const model = splitModel(String(o.model));
  if (model.provider) {
    o.model = model.served;
    o.modelName = model.asGiven;
  }

  // the job dir: tmax's --job-dir, or Harbor's <jobs-dir>/<job-name> (neither: jobs/<time>, when the job starts)
  if (typed.has("jobDir") && (typed.has("jobName") || typed.has("jobsDir"))) throw new Error("--job-dir and -o/--jobs-dir or --job-name both given: pick one (the job dir is <jobs-dir>/<job-name>)");
  if (!typed.has("jobDir") && (o.jobName !== undefined || o.jobsDir !== undefined)) {
    if (o.jobName !== undefined && (/[/\\]/.test(String(o.jobName)) || o.jobName === "." || o.jobName === "..")) throw new Error(`--job-name ${JSON.stringify(o.jobName)}: a name, not a path (use -o/--jobs-dir for where)`);
    o.jobDir = path.join(String(o.jobsDir ?? "jobs"), String(o.jobName ?? harborJobName()));
  }

  if (o.nConcurrentAgents !== undefined) o.n = Math.min(Number(o.n), Number(o.nConcurrentAgents));
  if (o.agentSetupTimeoutMultiplier !== undefined) {
    const x = Number(o.agentSetupTimeoutMultiplier);
    if (!(Number.isFinite(x) && x > 0)) throw new Error(`--agent-setup-timeout-multiplier must be a finite number > 0 (got ${o.agentSetupTimeoutMultiplier})`);
    notices.push("note: --agent-setup-timeout-multiplier is recorded; tmax's agents have no setup phase");
  }
  for (const key of ["cpus", "memory"]) {
    const mode = o[key];
    if (mode !== undefined && mode !== "auto" && mode !== "limit") throw new Error(`--${key} ${mode}: tmax applies a task's ${key} as a limit (auto or limit); Harbor's ${mode} is not in tmax`);
  }
  if (o.overrideCpus !== undefined || o.overrideMemoryMb !== undefined) {
    o.resources = { ...(o.overrideCpus !== undefined ? { cpus: Number(o.overrideCpus) } : {}), ...(o.overrideMemoryMb !== undefined ? { memoryMb: Number(o.overrideMemoryMb) } : {}) };
    given.add("resources");
  }
  const extra = extraInstructionsOf(o.extraInstructionPath as string[] | undefined, o.extraInstruction as string[] | undefined);
  if (extra.length) {
    o.extraInstructions = extra;
    given.add("extraInstructions");
  }
  if (o.enableVerification && typed.has("disableVerification")) throw new Error("--disable-verification and --enable-verification both given: pick one");
  if (o.enableVerification) o.disableVerification = undefined;
  if (o.artifact !== undefined) o.artifact = (o.artifact as unknown[]).map((a) => checkArtifactPath(artifactSource(a)));
  if (o.delete === false) notices.push("note: --no-delete is recorded; tmax removes each trial's container (as Harbor's docker environment does) and keeps built task images as its cache either way (tmax sandbox prune removes them)");
  if (o.disableVerification) notices.push("note: --disable-verification: the tests do not run; every trial's reward is 0, and the job's mean is not a score");
  // Harbor's retry rule when one of its retry options is given (typed or in the file); else tmax's: infrastructure
  // failures only. Checked here (a bad type name is a usage error), applied by the runner.
  if (["r", "maxRetries", "retryInclude", "retryExclude"].some((k) => typed.has(k) || fromFile[k] !== undefined)) {
    o.retryHarbor = true;
    given.add("retryHarbor");
  }
  retryPolicyOf(o.retryInclude as string[] | undefined, o.retryExclude as string[] | null | undefined);
  const verifierEnv = parseEnvPairs(o.verifierEnv as string[] | undefined, "--ve");
  o.verifierEnv = Object.keys(verifierEnv).length ? verifierEnv : undefined;
  return { options: o as unknown as EvalOptions, given, notices };
}

/** An `artifacts:` entry of a job file (a path, or Harbor's object form with `source`) or an --artifact value. */
function artifactSource(a: unknown): string {
  if (typeof a === "string") return a;
  if (a && typeof a === "object" && typeof (a as { source?: unknown }).source === "string") {
    const { source, destination, service } = a as { source: string; destination?: unknown; service?: unknown };
    if (destination != null) throw new Error(`artifacts: ${source}: a destination is Harbor's; tmax keeps each artifact at its container path under <trial>/artifacts/`);
    if (service != null && service !== "main") throw new Error(`artifacts: ${source}: service ${JSON.stringify(service)}: tmax collects from the task's main container only`);
    return source;
  }
  throw new Error(`artifacts: ${JSON.stringify(a)}: expected a container path or {source: path}`);
}

/** Harbor's aliases folded into tmax's option keys; conflicting values of one setting are refused. */
function canonical(raw: Raw, typed: Set<string>, notices: string[]): { values: Raw; given: Set<string> } {
  const values: Raw = { ...raw };
  const given = new Set(typed);
  for (const a of ALIASES) {
    const set = a.from.filter((k) => typed.has(k));
    if (set.length > 1 && new Set(set.map((k) => JSON.stringify(raw[k]))).size > 1) throw new Error(`${set.map(kebab).join(" and ")} disagree (${a.flags})`);
    const pick = set[0] ?? a.from.find((k) => raw[k] !== undefined);
    for (const k of a.from) given.delete(k);
    if (set.length) given.add(a.to);
    if (pick !== undefined) values[a.to] = raw[pick];
    for (const k of set) if (a.old?.[k]) notices.push(`note: ${a.old[k]}`);
  }
  // -i/-x add to --include/--exclude
  for (const [to, from] of [["include", "includeTaskName"], ["exclude", "excludeTaskName"]] as const) {
    const all = [...((raw[to] as string[]) ?? []), ...((raw[from] as string[]) ?? [])];
    given.delete(from);
    if (typed.has(to) || typed.has(from)) given.add(to);
    values[to] = all.length ? all : undefined;
  }
  return { values, given };
}

/** A -c job file as the option keys the command line would have set (Harbor's fields, then `tmax:`). */
export function optionsOfJobFile(f: JobFile): Raw {
  const o: Raw = {};
  const put = (key: string, v: unknown) => {
    if (v !== undefined && v !== null) o[key] = v;
  };
  put("jobName", f.job_name);
  put("jobsDir", f.jobs_dir);
  put("nAttempts", f.n_attempts);
  if (f.install_only) o.installOnly = true;
  put("timeoutMultiplier", f.timeout_multiplier);
  put("agentTimeoutMultiplier", f.agent_timeout_multiplier);
  put("verifierTimeoutMultiplier", f.verifier_timeout_multiplier);
  put("agentSetupTimeoutMultiplier", f.agent_setup_timeout_multiplier);
  put("environmentBuildTimeoutMultiplier", f.environment_build_timeout_multiplier);
  if (f.debug) o.debug = true;
  put("nConcurrent", f.n_concurrent_trials);
  if (f.quiet) o.quiet = true;
  put("maxRetries", f.retry?.max_retries);
  if (f.retry?.include_exceptions?.length) o.retryInclude = f.retry.include_exceptions;
  if (f.retry?.exclude_exceptions !== undefined) o.retryExclude = f.retry.exclude_exceptions; // null: nothing excluded
  const e = f.environment ?? {};
  put("env", e.type);
  put("environmentImportPath", e.import_path);
  put("forceBuild", e.force_build);
  if (e.delete === false) o.delete = false;
  put("overrideCpus", e.override_cpus);
  put("overrideMemoryMb", e.override_memory_mb);
  put("overrideStorageMb", e.override_storage_mb);
  put("overrideGpus", e.override_gpus);
  put(keyOf("--mounts, --mounts-json <json>"), e.mounts ?? undefined);
  if (e.extra_docker_compose?.length) o.extraDockerCompose = e.extra_docker_compose;
  if (e.kwargs && Object.keys(e.kwargs).length) o.environmentKwarg = Object.keys(e.kwargs);
  if (e.env && Object.keys(e.env).length) throw new Error("environment.env sets Harbor's container environment: not in tmax (task.toml [environment] env with --pass-env)");
  const v = f.verifier ?? {};
  if (v.disable) o.disableVerification = true;
  if (v.env && Object.keys(v.env).length) o.verifierEnv = Object.entries(v.env).map(([k, x]) => `${k}=${x}`);
  put("verifier", v.import_path);
  if (v.kwargs && Object.keys(v.kwargs).length) o.verifierKwarg = Object.keys(v.kwargs);
  if (f.metrics?.length) throw new Error("metrics are Harbor's metric classes: not in tmax (tmax report computes mean, SEM and pass@k)");
  if (f.source_jobs?.length) throw new Error("source_jobs is Harbor's regrade: not in tmax");
  if (f.user_agent) o.userAgent = "user_agent";
  if ((f.agents?.length ?? 0) > 1) throw new Error(`agents: ${f.agents!.length} agents; tmax runs one agent a job (start one job per agent)`);
  const a = f.agents?.[0];
  if (a) {
    put("agent", a.name);
    put("agentImportPath", a.import_path);
    put("model", a.model_name);
    if (a.kwargs && Object.keys(a.kwargs).length) o.agentKwarg = Object.entries(a.kwargs).map(([k, x]) => `${k}=${JSON.stringify(x)}`);
    if (a.env && Object.keys(a.env).length) o.agentEnv = Object.entries(a.env).map(([k, x]) => `${k}=${x}`);
  }
  if ((f.datasets?.length ?? 0) + (f.tasks?.length ?? 0) > 1) throw new Error("datasets/tasks: tmax runs one dataset (or one task) a job");
  const d = f.datasets?.[0];
  if (d) {
    if (d.repo || d.ref) o.repo = d.repo ?? d.ref;
    put("dataset", d.path ?? (d.name ? `${d.name}${d.version ? `@${d.version}` : ""}` : undefined));
    put("registry", d.registry_url ?? d.registry_path);
    if (d.task_names?.length) o.include = d.task_names;
    if (d.exclude_task_names?.length) o.exclude = d.exclude_task_names;
    put("nTasks", d.n_tasks);
  }
  const t = f.tasks?.[0];
  if (t) {
    if (!t.path) throw new Error("tasks: a task without a path is a Harbor Hub or git task: not in tmax (give its dir as path)");
    o.dataset = t.path;
  }
  if (f.artifacts?.length) o.artifact = f.artifacts;
  if (f.extra_instruction_paths?.length) o.extraInstructionPath = f.extra_instruction_paths;
  if (f.extra_instructions?.length) o.extraInstruction = f.extra_instructions;
  for (const [k, x] of Object.entries(f.tmax ?? {})) o[k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())] = x;
  return o;
}

/** The effective settings as a -c job file (what --print-config writes): read back with -c, it gives the same. */
export function jobFileOf(o: EvalOptions): JobFile {
  const jobDir = o.jobDir ? path.normalize(o.jobDir) : undefined;
  const dataset = o.dataset;
  const [name, version] = (dataset ?? "").split("@");
  const num = <T>(v: T | undefined) => (v === undefined ? undefined : v);
  return strip({
    ...(jobDir ? { job_name: path.basename(jobDir), jobs_dir: path.dirname(jobDir) } : {}),
    n_attempts: o.k,
    timeout_multiplier: o.timeoutMultiplier,
    agent_timeout_multiplier: num(o.agentTimeoutMultiplier),
    verifier_timeout_multiplier: num(o.verifierTimeoutMultiplier),
    agent_setup_timeout_multiplier: num(o.agentSetupTimeoutMultiplier),
    environment_build_timeout_multiplier: num(o.buildTimeoutMultiplier),
    debug: Boolean(o.debug),
    n_concurrent_trials: o.n,
    quiet: Boolean(o.quiet),
    // Harbor's rule as Harbor's retry section; tmax's infrastructure-only rule as tmax's --infra-retries
    ...(o.retryHarbor ? { retry: { max_retries: o.infraRetries, ...(o.retryInclude?.length ? { include_exceptions: o.retryInclude } : {}), ...(o.retryExclude !== undefined ? { exclude_exceptions: o.retryExclude } : {}) } } : {}),
    environment: strip({ type: o.backend, force_build: Boolean(o.forceBuild), delete: o.delete !== false, override_cpus: o.resources?.cpus, override_memory_mb: o.resources?.memoryMb }),
    ...(o.verifierEnv || o.disableVerification ? { verifier: strip({ env: o.verifierEnv, disable: o.disableVerification ? true : undefined }) } : {}),
    ...(o.artifact?.length ? { artifacts: o.artifact } : {}),
    agents: [strip({ name: o.agent, model_name: o.agent === "tmax" ? (o.modelName ?? o.model) : undefined })],
    datasets: dataset
      ? [strip({
          ...(existsSync(dataset) ? { path: dataset } : { name, version }),
          ...(o.registry ? (/^https?:/.test(o.registry) ? { registry_url: o.registry } : { registry_path: o.registry }) : {}),
          task_names: o.include?.length ? o.include : undefined,
          exclude_task_names: o.exclude?.length ? o.exclude : undefined,
          n_tasks: o.nTasks,
        })]
      : [],
    ...(o.extraInstructions?.length ? { extra_instructions: o.extraInstructions } : {}),
    tmax: strip({
      infra_retries: o.retryHarbor ? undefined : o.infraRetries,
      profile: o.profile,
      base_url: o.baseUrl,
      max_tokens: o.maxTokens,
      temperature: o.temperature,
      top_p: o.topP,
      logprobs: Boolean(o.logprobs),
      request_timeout: o.requestTimeout,
      model_max_retries: o.modelMaxRetries,
      max_steps: o.maxSteps,
      max_total_tokens: o.maxTotalTokens,
      command_timeout: o.commandTimeout,
      max_format_errors: o.maxFormatErrors,
      prompts: o.prompts,
      tool_description: o.toolDescription,
      category: o.category,
      difficulty: o.difficulty,
      skip_invalid: Boolean(o.skipInvalid),
      pause_after: o.pauseAfter,
      max_pause: o.maxPause,
      network: o.network,
      image_map: o.imageMap?.length ? o.imageMap : undefined,
      pull: o.pull,
      pass_env: o.passEnv?.length ? o.passEnv : undefined,
      integrity: o.integrity,
      verifier_isolation: o.verifierIsolation,
      verifier_hardening: o.verifierHardening,
      verbose: Boolean(o.verbose),
    }),
  }) as JobFile;
}

const strip = <T extends Record<string, unknown>>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

/** The options and the typed keys of a parsed `tmax eval` without a -c file (the resume tests' entry). */
export function harborAliases(o: Raw, source: (key: string) => string | undefined): { options: EvalOptions; given: Set<string> } {
  const { options, given } = resolveEval(o, source);
  return { options, given };
}
