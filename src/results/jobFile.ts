// The job config file of `tmax eval -c FILE` (YAML or JSON): Harbor's JobConfig (what `harbor run -c` reads, field
// names of harbor/models/job/config.py, v0.22) with tmax's own settings under a `tmax:` key. Every field is optional,
// as in Harbor (a missing one keeps its default). Harbor's fields that tmax cannot honour are read here and refused by
// the CLI when set to anything but their default; a key neither tool knows is refused here (a typo loses nothing).
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml, stringify as stringifyYaml, YAMLParseError } from "yaml";
import { z } from "zod";

const strings = z.array(z.string());
const num = z.number();

/** Harbor's DatasetConfig. */
export const JobFileDataset = z.looseObject({
  path: z.string().nullish(),
  name: z.string().nullish(),
  version: z.string().nullish(),
  ref: z.string().nullish(),
  registry_url: z.string().nullish(),
  registry_path: z.string().nullish(),
  repo: z.string().nullish(),
  task_names: strings.nullish(),
  exclude_task_names: strings.nullish(),
  n_tasks: num.nullish(),
});

/** Harbor's AgentConfig (the fields a job file sets). */
export const JobFileAgent = z.looseObject({
  name: z.string().nullish(),
  import_path: z.string().nullish(),
  model_name: z.string().nullish(),
  kwargs: z.record(z.string(), z.unknown()).nullish(),
  env: z.record(z.string(), z.string()).nullish(),
});

/** tmax's settings: one key per `tmax eval` option, its flag with `_` for `-` (`--max-steps` → max_steps). */
export const JobFileTmax = z.strictObject({
  profile: z.enum(["eval", "train"]).optional(),
  base_url: z.string().optional(),
  max_tokens: num.optional(),
  temperature: num.optional(),
  top_p: num.optional(),
  logprobs: z.boolean().optional(),
  request_timeout: num.optional(),
  model_max_retries: num.optional(),
  max_steps: num.optional(),
  max_total_tokens: num.optional(),
  command_timeout: num.optional(),
  max_format_errors: num.optional(),
  prompts: z.string().optional(),
  tool_description: z.string().optional(),
  category: z.string().optional(),
  difficulty: z.string().optional(),
  skip_invalid: z.boolean().optional(),
  infra_retries: num.optional(),
  pause_after: num.optional(),
  max_pause: num.optional(),
  network: z.enum(["task", "none", "bridge"]).optional(),
  image_map: strings.optional(),
  pull: z.enum(["always", "missing", "never"]).optional(),
  pass_env: strings.optional(),
  integrity: z.enum(["strict", "flag", "off"]).optional(),
  verifier_isolation: z.enum(["snapshot", "kill", "shared"]).optional(),
  verifier_hardening: z.boolean().optional(),
  verbose: z.boolean().optional(),
});
export type JobFileTmax = z.infer<typeof JobFileTmax>;

/** Harbor's JobConfig + `tmax:`. */
export const JobFile = z.strictObject({
  job_name: z.string().nullish(),
  jobs_dir: z.string().nullish(),
  n_attempts: num.nullish(),
  install_only: z.boolean().nullish(),
  timeout_multiplier: num.nullish(),
  agent_timeout_multiplier: num.nullish(),
  verifier_timeout_multiplier: num.nullish(),
  agent_setup_timeout_multiplier: num.nullish(),
  environment_build_timeout_multiplier: num.nullish(),
  debug: z.boolean().nullish(),
  n_concurrent_trials: num.nullish(),
  quiet: z.boolean().nullish(),
  retry: z
    .looseObject({ max_retries: num.nullish(), include_exceptions: strings.nullish(), exclude_exceptions: strings.nullish() })
    .nullish(),
  environment: z
    .looseObject({
      type: z.string().nullish(),
      import_path: z.string().nullish(),
      force_build: z.boolean().nullish(),
      delete: z.boolean().nullish(),
      override_cpus: num.nullish(),
      override_memory_mb: num.nullish(),
      override_storage_mb: num.nullish(),
      override_gpus: num.nullish(),
      mounts: z.array(z.unknown()).nullish(),
      extra_docker_compose: strings.nullish(),
      env: z.record(z.string(), z.string()).nullish(),
      kwargs: z.record(z.string(), z.unknown()).nullish(),
    })
    .nullish(),
  verifier: z
    .looseObject({ disable: z.boolean().nullish(), env: z.record(z.string(), z.string()).nullish(), import_path: z.string().nullish(), kwargs: z.record(z.string(), z.unknown()).nullish() })
    .nullish(),
  metrics: z.array(z.unknown()).nullish(),
  agents: z.array(JobFileAgent).nullish(),
  user_agent: z.unknown().nullish(),
  datasets: z.array(JobFileDataset).nullish(),
  tasks: z.array(z.looseObject({ path: z.string().nullish() })).nullish(),
  artifacts: z.array(z.unknown()).nullish(),
  extra_instruction_paths: strings.nullish(),
  extra_instructions: strings.nullish(),
  source_jobs: z.array(z.unknown()).nullish(),
  tmax: JobFileTmax.optional(),
});
export type JobFile = z.infer<typeof JobFile>;

/** Reads a job config file: JSON when it parses as JSON (or ends in .json), YAML otherwise. One line on any problem. */
export function readJobFile(file: string): JobFile {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`-c ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseJobFile(text, file);
}

export function parseJobFile(text: string, name = "job config"): JobFile {
  let raw: unknown;
  try {
    raw = path.extname(name) === ".json" ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    const why = e instanceof YAMLParseError ? e.message.split("\n")[0] : (e as Error).message;
    throw new Error(`${name}: not valid ${path.extname(name) === ".json" ? "JSON" : "YAML"} (${why})`);
  }
  const parsed = JobFile.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.join(".") || "(top level)";
    const what = issue.code === "unrecognized_keys" ? `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")} (neither Harbor's JobConfig nor tmax's)` : issue.message;
    throw new Error(`${name}: ${where}: ${what}`);
  }
  return parsed.data;
}

/** The file's text: YAML (default) or JSON, keys in the order given. */
export function formatJobFile(file: JobFile, format: "yaml" | "json" = "yaml"): string {
  return format === "json" ? `${JSON.stringify(file, null, 2)}\n` : stringifyYaml(file);
}
