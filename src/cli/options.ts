// Options shared by several commands.
import { passedEnv } from "../tasks/harbor.js";
import { existsSync, readFileSync } from "node:fs";
import { Option, type Command } from "commander";
import { DEFAULT_BASE_URL, DEFAULT_MODEL, type ModelConfig, type Profile } from "../model/types.js";
import { modelConfigFromOptions } from "../model/client.js";
import { DEFAULT_LIMITS, type AgentLimits } from "../agent/loop.js";
import { registerSecret } from "../util/redact.js";
import type { TokenClientConfig } from "../model/tokens.js";
import { resolvePrompts } from "../agent/promptFile.js";
import type { TrialSettings } from "../trial/trial.js";
import { parseImageMap } from "../sandbox/docker/build.js";
import { defaultPullPolicy, type PullPolicy } from "../sandbox/docker/images.js";

export const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `tmax eval`'s own options (the model, agent and sandbox ones are added next to them). */
export function addEvalOptions(cmd: Command): Command {
  return cmd
    .option("-d, --dataset <dir|name@version>", "a directory of tasks (or one task), or a registry dataset like terminal-bench@2.0")
    .option("--registry <url|file>", "dataset registry in Harbor's format (env TMAX_REGISTRY; default Harbor's public registry)")
    // the choices are shown (help, shell completion) but not enforced by commander: Harbor's agent names get tmax's
    // own one-line refusal (evalSettings.ts)
    .addOption(Object.assign(new Option("-a, --agent <agent>", "tmax (the model), oracle (the task's solution) or nop (does nothing)").default("tmax"), { argChoices: ["tmax", "oracle", "nop"] }))
    .option("-k, --n-attempts <k>", "trials per task (alias --attempts)", toInt, 1)
    .addOption(new Option("--attempts <k>").argParser(toInt).hideHelp())
    .option("-n, --n-concurrent <n>", "trials at a time (alias --concurrency; Harbor's default 4)", toInt, 4)
    .addOption(new Option("--concurrency <n>").argParser(toInt).hideHelp())
    .option("-l, --n-tasks <n>", "only the first n tasks (by name) after the filters", toInt)
    .option("--job-dir <dir>", "where the job goes (default jobs/<time>)")
    .option("--resume <job-dir>", "continue a job with its stored config; a repeated flag must match it (the endpoint may change)")
    .option("--retry-errors [types]", "with --resume: re-run trials that ended in infrastructure errors, or in these exception types (comma-separated)")
    .option("--timeout-multiplier <x>", "scale every task timeout", Number.parseFloat, 1)
    .option("--agent-timeout-multiplier <x>", "scale the agent timeout (replaces --timeout-multiplier for it)", Number.parseFloat)
    .option("--verifier-timeout-multiplier <x>", "scale the verifier timeout", Number.parseFloat)
    .option("--include <name|glob>", "only these tasks (repeatable)", collect)
    .option("--exclude <name|glob>", "skip these tasks (repeatable)", collect)
    .option("--category <c>", "only tasks of this category")
    .option("--difficulty <d>", "only tasks of this difficulty")
    .option("--skip-invalid", "leave invalid tasks out (reported, never scored) instead of refusing the job")
    .option("--infra-retries <n>", "re-runs of a trial that failed on infrastructure (engine, model server, build), with exponential backoff; -r/--max-retries is Harbor's rule instead", toInt, 2)
    .option("--pause-after <n>", "consecutive infrastructure failures that pause the job until the model server and engine answer again", toInt, 3)
    .option("--max-pause <sec>", "longest such pause before the job stops (resume it later with --resume)", toInt, 1800)
    .option("--price-table <file>", "JSON/YAML of model prices in USD per million tokens, {\"<model>\": {\"input\": 2, \"output\": 8, \"cached_input\": 0.5}}: trials get cost_usd")
    .option("--price-input <usd>", "USD per million prompt tokens of the model (with --price-output; overrides --price-table)", Number.parseFloat)
    .option("--price-output <usd>", "USD per million completion tokens of the model", Number.parseFloat)
    .option("--price-cached-input <usd>", "USD per million prompt tokens the server reports as cached (default: --price-input)", Number.parseFloat)
    .option("--max-cost <usd>", "start no trial once the job's cost reaches this (needs a price; the job stays resumable)", Number.parseFloat)
    .option("-v, --verbose", "print every step of every trial", false);
}

/** `harbor`: `tmax eval`, where -r/--max-retries is Harbor's (trial retries) and model retries are --model-max-retries only. */
export function addModelOptions(cmd: Command, o: { harbor?: boolean } = {}): Command {
  let given = false; // the first --base-url replaces the default, later ones add servers
  let model: string | undefined;
  const oneModel = (v: string) => {
    if (model !== undefined && model !== v) throw new Error(`-m/--model given twice (${model}, ${v}): tmax runs one model a job; start one job per model`);
    return (model = v);
  };
  const baseUrls = (v: string, prev: string) => {
    const next = given ? `${prev},${v}` : v;
    given = true;
    return next;
  };
  cmd
    .option(
      "--base-url <url>",
      "OpenAI-compatible endpoint (env TMAX_BASE_URL); repeat it, or give a file of URLs (one a line), for several servers of the model",
      baseUrls,
      process.env.TMAX_BASE_URL ?? DEFAULT_BASE_URL,
    )
    .option("-m, --model <name>", "served model name (env TMAX_MODEL); a LiteLLM provider prefix (openai/, hosted_vllm/, …) is recorded and left out of requests", oneModel, process.env.TMAX_MODEL ?? DEFAULT_MODEL)
    .addOption(new Option("--api-key <key>", "API key (prefer env TMAX_API_KEY or OPENAI_API_KEY; never written to files)").hideHelp(false))
    .option("--max-tokens <n>", "max tokens per model turn", toInt, 16_384)
    .option("--request-timeout <sec>", "timeout of one model request (a 16k-token turn on a busy server can take long)", toInt, 3600)
    .option("--model-max-retries <n>", "retries of a model request on 429/5xx/connection errors, with backoff", toInt, 5);
  if (!o.harbor) cmd.addOption(new Option("--max-retries <n>", "old name of --model-max-retries").argParser(toInt).hideHelp());
  return cmd;
}

export function addAgentOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--profile <profile>", "eval (temp 0.7, reprompt on format errors) or train (temp 1.0, end on format error)").choices(["eval", "train"]).default("eval"))
    .option("--max-steps <n>", "model turns per episode", toInt, DEFAULT_LIMITS.maxSteps)
    .option("--max-total-tokens <n>", "context budget of an episode (prompt + completion)", toInt, DEFAULT_LIMITS.maxTotalTokens)
    .option("--command-timeout <sec>", "timeout of one bash command", toInt, DEFAULT_LIMITS.commandTimeoutSec)
    .option("--max-format-errors <n>", "consecutive format errors before the episode ends (eval)", toInt, DEFAULT_LIMITS.maxFormatErrors)
    .option("--temperature <t>", "override the profile's temperature", Number.parseFloat)
    .option("--top-p <p>", "override the profile's top_p", Number.parseFloat)
    .option("--logprobs", "request per-token logprobs and token ids and keep them in trajectories", false)
    .option("--prompts <file>", "YAML prompt file (system_template, instance_template with {{task}}, observation, format_error_template with {{error}})")
    .option("--tool-description <text>", "description of the bash tool (overrides the prompt file's tool_description)");
}

export function addSandboxOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("-e, --backend <name>", "sandbox backend: docker (podman or Docker), daytona (experimental, needs @daytonaio/sdk and DAYTONA_API_KEY), local (--unsafe); alias --env").choices(["docker", "daytona", "local"]).default("docker"))
    .addOption(new Option("--env <name>").choices(["docker", "daytona", "local"]).hideHelp())
    .option("--unsafe", "allow the local backend (runs commands on this machine, no isolation)", false)
    .option("--image-map <from=to...>", "rewrite FROM lines before building (repeatable), or a file with a {from: to} map")
    .addOption(new Option("--network <mode>", "container network: task (follow task.toml), none, bridge").choices(["task", "none", "bridge"]).default("task"))
    .addOption(new Option("--pull <when>", "pull a task's prebuilt docker_image: always, missing (default; env TMAX_PULL), never; a failed pull falls back to the task's Dockerfile").choices(["always", "missing", "never"]).default(defaultPullPolicy()))
    .option("--force-build", "build the task's Dockerfile even when it names a prebuilt docker_image", false)
    .addOption(new Option("--prefer-prebuilt", "(default now; kept for old scripts)").hideHelp())
    .option("--pass-env <NAME>", "let ${NAME} templates in task.toml env / [verifier.env] / [solution.env] expand to this host variable (repeatable; tmax's own keys never)", (v: string, prev: string[] = []) => [...prev, v])
    .addOption(new Option("--integrity <mode>", "tamper report and forged-reward watch: strict (flagged → reward 0; rollout default), flag (flagged recorded, reward kept; eval default), off (neither; a forged reward is refused in strict and flag)").choices(["strict", "flag", "off"]))
    .addOption(new Option("--verifier-isolation <mode>", "where the verifier runs: shared (the agent's container, its processes alive, as Harbor; eval/run default), snapshot (fresh container from a frozen commit, agent services reachable on localhost; rollout default on docker), kill (agent processes killed)").choices(["snapshot", "kill", "shared"]))
    .option("--no-verifier-hardening", "do not confine pytest to /tests nor disable the Python user site in TB-style test.sh");
}

export interface ModelCliOptions {
  baseUrl: string;
  model: string;
  apiKey?: string;
  maxTokens: number;
  requestTimeout: number;
  modelMaxRetries: number;
  /** Old name of modelMaxRetries (tmax run, rollout, doctor); on `tmax eval` -r/--max-retries is Harbor's trial retries. */
  maxRetries?: number;
  profile: Profile;
  temperature?: number;
  topP?: number;
  logprobs?: boolean;
}

/** Agent limits as the CLI takes them (see addAgentOptions). */
export interface AgentCliOptions {
  maxSteps: number;
  maxTotalTokens: number;
  commandTimeout: number;
  maxFormatErrors: number;
  prompts?: string;
  toolDescription?: string;
}

/** Sandbox choices as the CLI takes them (see addSandboxOptions). */
export interface SandboxCliOptions {
  backend: "docker" | "daytona" | "local";
  unsafe: boolean;
  imageMap?: string[];
  network: "task" | "none" | "bridge";
  preferPrebuilt?: boolean;
  pull: PullPolicy;
  forceBuild: boolean;
  passEnv?: string[];
  integrity?: "strict" | "flag" | "off";
  verifierIsolation?: "snapshot" | "kill" | "shared";
  verifierHardening?: boolean;
}

export function modelConfig(o: ModelCliOptions, extra: Partial<ModelConfig> = {}): ModelConfig {
  const apiKey = o.apiKey ?? process.env.TMAX_API_KEY ?? process.env.OPENAI_API_KEY;
  registerSecret(apiKey);
  const urls = expandBaseUrls(o.baseUrl);
  return modelConfigFromOptions({
    profile: o.profile,
    baseUrl: urls[0],
    ...(urls.length > 1 ? { baseUrls: urls } : {}),
    model: o.model,
    ...(apiKey ? { apiKey } : {}),
    maxTokens: o.maxTokens,
    timeoutMs: o.requestTimeout * 1000,
    maxRetries: o.modelMaxRetries ?? o.maxRetries ?? 5,
    logprobs: Boolean(o.logprobs),
    tokenIds: Boolean(o.logprobs),
    ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
    ...(o.topP !== undefined ? { topP: o.topP } : {}),
    ...extra,
  });
}

/** The token endpoints of the train profile, from the same model options (pinned sampling, overrides kept). */
/** open-instruct's --seed of the Tmax runs: sample k of a group samples with seed + k (one episode is sample 0). */
export const TRAIN_SEED = 42;

export function tokenClientConfig(config: ModelConfig): TokenClientConfig {
  return {
    baseUrl: config.baseUrl,
    model: config.model,
    apiKey: config.apiKey,
    timeoutMs: config.timeoutMs,
    maxRetries: config.maxRetries,
    temperature: config.temperature,
    topP: config.topP,
  };
}

/** `--base-url` values (comma-joined repeats): URLs, or files holding one URL a line (# comments). */
export function expandBaseUrls(value: string): string[] {
  const urls: string[] = [];
  for (const part of value.split(",").map((p) => p.trim()).filter(Boolean)) {
    if (/^https?:\/\//.test(part)) urls.push(part);
    else if (existsSync(part)) {
      const lines = readFileSync(part, "utf8").split("\n").map((l) => l.replace(/#.*/, "").trim()).filter(Boolean);
      if (lines.length === 0) throw new Error(`--base-url ${part}: the file holds no URL`);
      urls.push(...lines);
    } else throw new Error(`--base-url ${part}: neither an http(s) URL nor a file of URLs`);
  }
  return [...new Set(urls)];
}

export function agentLimits(o: AgentCliOptions): Partial<AgentLimits> {
  return { maxSteps: o.maxSteps, maxTotalTokens: o.maxTotalTokens, commandTimeoutSec: o.commandTimeout, maxFormatErrors: o.maxFormatErrors };
}

/** The trial settings from the CLI's agent and sandbox options. */
export function trialSettings(o: AgentCliOptions & SandboxCliOptions & { timeoutMultiplier?: number }): TrialSettings {
  return {
    agentLimits: agentLimits(o),
    prompts: resolvePrompts(o),
    timeoutMultiplier: o.timeoutMultiplier ?? 1,
    imageMap: parseImageMap(o.imageMap ?? []),
    backend: o.backend,
    unsafe: o.unsafe,
    network: o.network,
    pull: o.pull,
    forceBuild: o.forceBuild,
    passEnv: checkedPassEnv(o.passEnv),
    integrity: o.integrity,
    verifierIsolation: o.verifierIsolation,
    verifierHardening: o.verifierHardening,
  };
}

/** --pass-env names, checked up front (a bad name or one of tmax's own keys is one clear line). */
export function checkedPassEnv(names: string[] = []): string[] {
  for (const name of names) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`--pass-env ${JSON.stringify(name)}: not a variable name`);
  }
  passedEnv(names); // throws for tmax's own keys
  return names;
}

export function toInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}

const ENGINE_COMMANDS = new Set(["run", "eval", "rollout", "serve", "prune", "setup"]);

/**
 * Whether a command must find the container engine before it runs: only the commands that make or prune
 * containers, only when DOCKER_HOST does not already name the engine, and never for `--backend daytona|local`
 * (those talk to no local engine, so no socket is pinged).
 */
export function needsEngineDiscovery(command: string, opts: { backend?: unknown; env?: unknown }, env: NodeJS.ProcessEnv): boolean {
  if (!ENGINE_COMMANDS.has(command) || env.DOCKER_HOST?.trim()) return false;
  const backend = opts.env ?? opts.backend; // --env (Harbor's name) has no default; --backend defaults to docker
  return backend !== "daytona" && backend !== "local";
}
