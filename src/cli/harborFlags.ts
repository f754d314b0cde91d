// `harbor run` / `harbor jobs resume` as `tmax eval` / `tmax jobs resume` take them (Harbor v0.22's option names,
// short flags, defaults and meanings; docs/eval-and-harbor.md has the table). Two parts: the options (registered on
// the command, grouped in --help) and one pure function from what was parsed (and a -c file) to tmax's settings.
import { readFileSync } from "node:fs";
import { Option, type Command } from "commander";
import { collect, toInt } from "./options.js";

const float = Number.parseFloat;

/**
 * Harbor's options that depend on Harbor's own services or Python plugin system, or that tmax does not have: each is
 * parsed (so the line names it rather than "unknown option") and refused with one line naming the Harbor feature.
 */
export const REFUSED: { flags: string; why: string; value?: boolean }[] = [
  // Harbor Hub and integrations
  { flags: "--upload", value: true, why: "uploads the job to Harbor Hub; tmax keeps it in the job dir (tmax report, tmax explore)" },
  { flags: "--launch", value: true, why: "runs on Harbor-managed infrastructure (Harbor Hub)" },
  { flags: "--dry-run", value: true, why: "validates a Harbor Hub launch" },
  { flags: "--credential-mode <mode>", why: "is a Harbor Hub launch setting" },
  { flags: "--one-off-secret <name>", why: "is a Harbor Hub launch secret" },
  { flags: "--stored-secret <name>", why: "is a Harbor Hub launch secret" },
  { flags: "--registry-secret <host=name>", why: "is a Harbor Hub launch pull secret" },
  { flags: "--public", value: true, why: "sets the visibility of a Harbor Hub upload" },
  { flags: "--private", value: true, why: "sets the visibility of a Harbor Hub upload" },
  { flags: "--share-org <org>", why: "shares a Harbor Hub upload" },
  { flags: "--share-user <user>", why: "shares a Harbor Hub upload" },
  { flags: "--org <org>", why: "names the Harbor Hub organization of an upload" },
  { flags: "--plugin <import-path>", why: "loads a Harbor job plugin (Python import path)" },
  { flags: "--pk, --plugin-kwarg <k=v>", why: "configures a Harbor job plugin" },
  // Python import paths and Harbor's agent features
  { flags: "--agent-import-path <path>", why: "loads a Harbor agent class (Python import path); tmax runs its own agent, oracle or nop" },
  { flags: "--environment-import-path <path>", why: "loads a Harbor environment class (Python import path); tmax has docker, daytona, local" },
  { flags: "--verifier <import-path>", why: "loads a Harbor verifier class (Python import path); tmax runs the task's tests/test.sh" },
  { flags: "--verifier-import-path <path>", why: "loads a Harbor verifier class (Python import path)" },
  { flags: "--verifier-kwarg <k=v>", why: "configures a Harbor verifier class" },
  { flags: "--mcp-config <file>", why: "gives Harbor's installed agents MCP servers; tmax's agent has one bash tool" },
  { flags: "--skill, --skills <source>", why: "gives Harbor's installed agents skill directories" },
  { flags: "--resume-trajectory", value: true, why: "resumes a Harbor installed agent's native session" },
  { flags: "--load-trajectory <file>", why: "loads a Harbor installed agent's native session" },
  { flags: "--install-only", value: true, why: "checks a Harbor agent's install; tmax's agents install nothing" },
  { flags: "--agent-include-logs <glob>", why: "filters Harbor's log download; tmax keeps every file of /logs (with size caps)" },
  { flags: "--agent-exclude-logs <glob>", why: "filters Harbor's log download; tmax keeps every file of /logs (with size caps)" },
  { flags: "--verifier-include-logs <glob>", why: "filters Harbor's log download; tmax keeps every file of /logs (with size caps)" },
  { flags: "--verifier-exclude-logs <glob>", why: "filters Harbor's log download; tmax keeps every file of /logs (with size caps)" },
  // simulated user and bridges
  { flags: "--user-agent <agent>", why: "starts Harbor's simulated user (bridges)" },
  { flags: "--user-model <model>", why: "is the model of Harbor's simulated user" },
  { flags: "--uk, --user-agent-kwarg <k=v>", why: "configures Harbor's simulated user" },
  { flags: "--user-persona-path <file>", why: "configures Harbor's simulated user" },
  { flags: "--user-prompt-template-path <file>", why: "configures Harbor's simulated user" },
  { flags: "--bridge <kind>", why: "is Harbor's simulated-user protocol bridge" },
  { flags: "--bridge-prompt-path <file>", why: "configures Harbor's simulated-user bridge" },
  { flags: "--bk, --bridge-kwarg <k=v>", why: "configures Harbor's simulated-user bridge" },
  // environment features tmax leaves out on purpose
  { flags: "--mounts, --mounts-json <json>", why: "mounts host paths into Harbor's containers; tmax never gives a task's container host paths" },
  { flags: "--extra-docker-compose <file>", why: "overlays Harbor's compose file; tmax runs a task's own compose file only" },
  { flags: "--ek, --environment-kwarg <k=v>", why: "configures a Harbor environment class" },
  { flags: "--allow-agent-host <host>", why: "is Harbor's network allowlist; tmax has --network task|none|bridge" },
  { flags: "--allow-environment-host <host>", why: "is Harbor's network allowlist; tmax has --network task|none|bridge" },
  { flags: "--override-storage-mb <mb>", why: "sets Harbor's storage quota; tmax's containers have none" },
  { flags: "--override-gpus <n>", why: "asks Harbor for GPUs; tmax's sandboxes have none" },
  { flags: "--override-tpu <spec>", why: "asks Harbor for TPUs" },
  // task sources Harbor resolves through its hub or git
  { flags: "-t, --task <org/name>", why: "runs a Harbor Hub package task; give a task dir with -p (or tmax run --task DIR)" },
  { flags: "--repo <org/name>", why: "resolves datasets from a Harbor git registry; use -d name@version with --registry-url/--registry-path" },
  { flags: "--task-git-url <url>", why: "clones a Harbor task from git; clone it and pass -p DIR" },
  { flags: "--task-git-commit <id>", why: "clones a Harbor task from git; clone it and pass -p DIR" },
  { flags: "--export-traces", value: true, why: "exports Harbor traces after the job; use tmax traces export JOB_DIR" },
  { flags: "--export-sharegpt", value: true, why: "exports Harbor traces after the job; use tmax traces export JOB_DIR" },
  { flags: "--export-episodes <which>", why: "exports Harbor traces after the job; use tmax traces export JOB_DIR" },
  { flags: "--export-push", value: true, why: "pushes Harbor traces to the Hugging Face Hub" },
  { flags: "--export-repo <repo>", why: "pushes Harbor traces to the Hugging Face Hub" },
];

/** The option key commander gives these flags (`--mounts, --mounts-json <json>` → mountsJson, `--no-delete` → delete). */
export const keyOf = (flags: string): string => new Option(flags).attributeName();
/** How a line names the flags: `-t/--task`. */
export const flagName = (flags: string): string => flags.split(/[ ,]+/).filter((f) => f.startsWith("-")).join("/");

/** The options of `harbor jobs resume` that only Harbor Hub and plugins use. */
export const RESUME_REFUSED = REFUSED.filter((r) => ["upload", "public", "private", "shareOrg", "shareUser", "org", "plugin", "pluginKwarg"].includes(keyOf(r.flags)));


const isSet = (v: unknown) => v !== undefined && v !== false && !(Array.isArray(v) && v.length === 0);

/** One line for the first refused option that was given (a flag or its key in a -c file). */
export function refusal(o: Record<string, unknown>, list = REFUSED): string | undefined {
  for (const r of list) {
    const v = o[keyOf(r.flags)];
    if (r.value !== undefined ? v === r.value : isSet(v)) return `${flagName(r.flags)} ${r.why}: not in tmax`;
  }
  return undefined;
}

export function addRefusedOptions(cmd: Command, list = REFUSED): Command {
  for (const r of list) {
    const takesValue = r.flags.includes("<");
    const opt = new Option(r.flags).hideHelp();
    if (takesValue) opt.argParser(collect);
    cmd.addOption(opt);
  }
  return cmd;
}

/** Harbor's options that tmax honours, beyond those tmax had already (see options.ts), grouped as in Harbor's --help. */
export function addHarborOptions(cmd: Command): Command {
  cmd.optionsGroup("Config:");
  cmd.option("-c, --config <file>", "a job config file (YAML or JSON): Harbor's JobConfig, tmax's own settings under `tmax:`; flags override it");
  cmd.option("--print-config", "print the effective job config (as a -c file) and exit");
  cmd.optionsGroup("Job Settings:");
  cmd.option("--job-name <name>", "name of the job (default: the time, Harbor's YYYY-MM-DD__HH-MM-SS)");
  cmd.option("-o, --jobs-dir <dir>", "where jobs go: the job is <jobs-dir>/<job-name> (default: jobs)");
  cmd.option("--agent-setup-timeout-multiplier <x>", "Harbor's agent setup timeout: recorded; tmax's agents have no setup phase", float);
  cmd.option("--environment-build-timeout-multiplier <x>", "scale the environment build timeout (overrides --timeout-multiplier)", float);
  cmd.addOption(new Option("--build-timeout-multiplier <x>", "old name of --environment-build-timeout-multiplier").argParser(float).hideHelp());
  cmd.option("-q, --quiet", "no per-trial progress, only notices and the summary (alias --silent)");
  cmd.addOption(new Option("--silent").hideHelp());
  cmd.option("--debug", "print the stack of an error (as TMAX_DEBUG=1)");
  cmd.option("--n-concurrent-agents <n>", "Harbor's per-agent cap: with tmax's one agent a job, it lowers -n", toInt);
  cmd.option("--max-retries <n>", "(-r) Harbor's retries: re-runs of a trial that ended in an error of a type the retry lists allow (without -r: --infra-retries)", toInt);
  cmd.option("--retry-include <type>", "retry only these exception types (repeatable; default: every type not excluded)", collect);
  cmd.option("--retry-exclude <type>", "never retry these exception types (repeatable; replaces Harbor's default: timeouts, reward-file errors, refused requests)", collect);
  cmd.addOption(new Option("-r <n>").argParser(toInt).hideHelp()); // apart, so that only the long name (tmax's old meaning) gets the note
  cmd.option("-y, --yes", "accepted for Harbor's scripts (tmax never asks)");
  cmd.option("--env-file <file>", "a .env file loaded into tmax's environment first (TMAX_*, OPENAI_API_KEY, DAYTONA_API_KEY, --pass-env names)");
  cmd.optionsGroup("Agent:");
  cmd.option("--ak, --agent-kwarg <key=value>", "an agent setting in Harbor's kwarg form: temperature, top_p, max_tokens, max_turns, api_base, … (repeatable)", collect);
  cmd.option("--ae, --agent-env <KEY=VALUE>", "the agent's model endpoint and key as LiteLLM reads them: OPENAI_API_KEY, OPENAI_API_BASE, HOSTED_VLLM_API_BASE, … (repeatable)", collect);
  cmd.optionsGroup("Dataset:");
  cmd.option("-p, --path <dir>", "a local task or dataset directory (Harbor's name for --dataset DIR)");
  cmd.option("-i, --include-task-name <glob>", "only these tasks (repeatable; = --include)", collect);
  cmd.option("-x, --exclude-task-name <glob>", "skip these tasks (repeatable; = --exclude)", collect);
  cmd.option("--registry-url <url>", "registry of -d name@version (= --registry)");
  cmd.option("--registry-path <file>", "a registry.json file (or its dir) for -d name@version (= --registry)");
  cmd.option("--extra-instruction <text>", "text appended to every task's instruction (repeatable)", collect);
  cmd.option("--extra-instruction-path <file>", "a file appended to every task's instruction, before --extra-instruction (repeatable)", collect);
  cmd.optionsGroup("Environment:");
  cmd.option("--no-force-build", "use a task's prebuilt docker_image when it names one (the default)");
  cmd.addOption(new Option("--delete", "Harbor's default: remove the environment after the trial").hideHelp());
  cmd.option("--no-delete", "Harbor's keep-the-environment: recorded; tmax removes each trial's container and keeps built task images either way");
  cmd.option("--cpus <mode>", "how task CPUs apply: auto or limit (tmax: a limit)");
  cmd.option("--memory <mode>", "how task memory applies: auto or limit (tmax: a limit)");
  cmd.option("--override-cpus <n>", "CPUs of every container, over the task's", toInt);
  cmd.option("--override-memory-mb <mb>", "memory of every container in MB, over the task's", toInt);
  cmd.option("--artifact <path>", "a container path collected after each trial into <trial>/artifacts/<path>, with Harbor's manifest.json (repeatable)", collect);
  cmd.optionsGroup("Verifier:");
  cmd.option("--disable-verification", "do not run the tests (trajectories only): no verifier result, every reward 0 and not a score");
  cmd.addOption(new Option("--enable-verification", "Harbor's default: run the tests").hideHelp());
  cmd.option("--ve, --verifier-env <KEY=VALUE>", "a variable for the verifier, over the task's [verifier.env] (repeatable; the value is never written to the job dir)", collect);
  cmd.optionsGroup("");
  return addRefusedOptions(cmd);
}

/** LiteLLM's provider prefixes (Harbor's -m provider/model): the served name is what follows the first `/`. */
export const PROVIDERS = new Set([
  "openai", "hosted_vllm", "vllm", "openrouter", "together_ai", "fireworks_ai", "deepinfra", "groq", "mistral", "deepseek", "xai",
  "anthropic", "gemini", "azure", "azure_ai", "bedrock", "vertex_ai", "ollama", "ollama_chat", "lm_studio", "huggingface",
  "litellm_proxy", "custom_openai", "text-completion-openai", "cerebras", "sambanova", "nebius", "novita", "perplexity", "nvidia_nim",
]);

/** `-m hosted_vllm/Qwen/Qwen3-8B` → served `Qwen/Qwen3-8B`, provider `hosted_vllm`; a name without a known prefix is served as is. */
export function splitModel(spec: string): { served: string; provider?: string; asGiven: string } {
  const slash = spec.indexOf("/");
  const head = slash > 0 ? spec.slice(0, slash) : "";
  if (head && PROVIDERS.has(head) && slash < spec.length - 1) return { served: spec.slice(slash + 1), provider: head, asGiven: spec };
  return { served: spec, asGiven: spec };
}

/** Harbor's parse_kwargs: `key=value`, the value read as JSON when it is JSON (numbers, true/True, lists), else text. */
export function parseKwargs(list: string[] = [], flag = "--ak"): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const item of list) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new Error(`${flag} ${JSON.stringify(item)}: expected key=value`);
    const key = item.slice(0, eq).trim();
    const text = item.slice(eq + 1).trim();
    let value: unknown = text;
    if (/^(True|False|None)$/.test(text)) value = text === "None" ? null : text === "True";
    else {
      try {
        value = JSON.parse(text);
      } catch {
        /* text */
      }
    }
    out[key] = value;
  }
  return out;
}

/** `KEY=VALUE` pairs, values kept as text (Harbor's parse_env_vars). */
export function parseEnvPairs(list: string[] = [], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf("=");
    if (eq <= 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(item.slice(0, eq).trim())) throw new Error(`${flag} ${JSON.stringify(item.split("=")[0])}: expected KEY=VALUE with a variable name`);
    out[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return out;
}

/** Harbor's agent kwargs (terminus-2 and LiteLLM spelling) → the tmax option they set. */
export const AGENT_KWARGS: Record<string, string> = {
  temperature: "temperature",
  top_p: "topP",
  max_tokens: "maxTokens",
  max_turns: "maxSteps",
  max_steps: "maxSteps",
  max_episodes: "maxSteps",
  api_base: "baseUrl",
  base_url: "baseUrl",
  profile: "profile",
  max_total_tokens: "maxTotalTokens",
  command_timeout: "commandTimeout",
  max_format_errors: "maxFormatErrors",
  logprobs: "logprobs",
  collect_rollout_details: "logprobs",
  prompts: "prompts",
  request_timeout: "requestTimeout",
  max_retries: "modelMaxRetries",
};

/** LiteLLM's variables for the model endpoint and key (--ae): which tmax setting each one is. */
export const AGENT_ENV: Record<string, "baseUrl" | "apiKey"> = {
  OPENAI_API_BASE: "baseUrl",
  OPENAI_BASE_URL: "baseUrl",
  HOSTED_VLLM_API_BASE: "baseUrl",
  TMAX_BASE_URL: "baseUrl",
  OPENAI_API_KEY: "apiKey",
  HOSTED_VLLM_API_KEY: "apiKey",
  TMAX_API_KEY: "apiKey",
};

/** A .env file (KEY=VALUE, `export ` and quotes allowed, # comments). */
export function parseDotenv(text: string, file: string): Record<string, string> {
  const out: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new Error(`--env-file ${file}:${i + 1}: expected KEY=VALUE`);
    let v = m[2]!;
    if (/^(["']).*\1$/.test(v)) v = v.slice(1, -1);
    else v = v.replace(/\s+#.*$/, "");
    out[m[1]!] = v;
  });
  return out;
}

export function readDotenv(file: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`--env-file ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseDotenv(text, file);
}

/** Harbor's default job name: the local time as YYYY-MM-DD__HH-MM-SS. */
export function harborJobName(now = new Date()): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${p(now.getMonth() + 1)}-${p(now.getDate())}__${p(now.getHours())}-${p(now.getMinutes())}-${p(now.getSeconds())}`;
}

export const extraInstructionsOf = (paths: string[] = [], texts: string[] = []): string[] => [
  ...paths.map((p) => {
    try {
      return readFileSync(p, "utf8");
    } catch (e) {
      throw new Error(`--extra-instruction-path ${p}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }),
  ...texts,
];
