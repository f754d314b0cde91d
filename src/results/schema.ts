// Files of a job directory. Each file is both a Harbor model and a tmax one: the Harbor fields come first
// (pydantic ignores unknown keys, so Harbor reads them), tmax's own fields are extra keys next to them.
// The Harbor shapes are checked against hand-derived JSON Schemas in test/schemas/harbor/.
import { z } from "zod";
import { TamperReport } from "./tamper.js";

export const AgentName = z.enum(["tmax", "oracle", "nop"]);
export type AgentName = z.infer<typeof AgentName>;

/** Harbor's ExceptionInfo (traceback required) + tmax's `infrastructure` flag (retried, left out of the infra-clean score). */
export const ExceptionInfo = z.object({
  exception_type: z.string(), // Harbor's names where one fits: AgentTimeoutError, VerifierTimeoutError, RewardFileNotFoundError, …
  exception_message: z.string(),
  exception_traceback: z.string(),
  occurred_at: z.string(),
  infrastructure: z.boolean().optional(),
});
export type ExceptionInfo = z.infer<typeof ExceptionInfo>;

const Phase = z.object({ started_at: z.string(), finished_at: z.string() }).nullable();

/** Harbor's RolloutDetail: per turn, the full prompt token ids, the completion token ids and their logprobs. */
export const RolloutDetail = z.object({
  prompt_token_ids: z.array(z.array(z.number())),
  completion_token_ids: z.array(z.array(z.number())),
  logprobs: z.array(z.array(z.number())).optional(),
});
export type RolloutDetail = z.infer<typeof RolloutDetail>;

/** Harbor's AgentContext (n_input_tokens, n_cache_tokens, n_output_tokens, cost_usd, rollout_details, metadata) + n_steps, exit_status. */
export const AgentResult = z.object({
  n_input_tokens: z.number().nullable(),
  n_cache_tokens: z.number().nullable().optional(),
  n_output_tokens: z.number().nullable(),
  cost_usd: z.number().nullable().optional(),
  rollout_details: z.array(RolloutDetail).nullable().optional(),
  metadata: z.record(z.string(), z.unknown()).nullable().optional(),
  n_steps: z.number(),
  exit_status: z.string(),
});
export type AgentResult = z.infer<typeof AgentResult>;

/** Harbor's TrialConfig.agent (AgentConfig). */
export const HarborAgentConfig = z.object({
  name: z.string().nullable(),
  import_path: z.string().nullable(),
  model_name: z.string().nullable(),
  kwargs: z.record(z.string(), z.unknown()),
  env: z.record(z.string(), z.string()),
});

/** Harbor's EnvironmentConfig (the fields tmax sets). */
export const HarborEnvironmentConfig = z.object({
  type: z.string().nullable(),
  import_path: z.string().nullable(),
  force_build: z.boolean(),
  delete: z.boolean(),
  kwargs: z.record(z.string(), z.unknown()),
  /** --override-cpus / --override-memory-mb: over every task's own */
  override_cpus: z.number().nullable().optional(),
  override_memory_mb: z.number().nullable().optional(),
});

/** Harbor's TrialConfig + tmax's `attempt`, `task_name`, `job_name` and `tmax_agent`. */
export const TrialConfig = z.object({
  task: z.object({ path: z.string(), source: z.string().nullable() }),
  trial_name: z.string(),
  trials_dir: z.string(),
  timeout_multiplier: z.number(),
  agent_timeout_multiplier: z.number().nullable(),
  verifier_timeout_multiplier: z.number().nullable(),
  environment_build_timeout_multiplier: z.number().nullable(),
  agent: HarborAgentConfig,
  environment: HarborEnvironmentConfig,
  verifier: z.object({ override_timeout_sec: z.number().nullable(), disable: z.boolean() }),
  job_id: z.string().nullable(),
  // tmax
  task_name: z.string(),
  attempt: z.number(),
  job_name: z.string(),
  tmax_agent: AgentName,
});
export type TrialConfig = z.infer<typeof TrialConfig>;

/** Harbor's TrialResult + tmax's `attempt` (0-based index among a task's k trials) and `reward` (the one scores use). */
export const TrialResult = z.object({
  id: z.string(), // UUID
  task_name: z.string(),
  trial_name: z.string(),
  trial_uri: z.string(),
  task_id: z.object({ path: z.string() }),
  source: z.string().nullable(), // dataset name (Harbor groups evals by it)
  task_checksum: z.string(),
  config: TrialConfig,
  attempt: z.number(),
  agent_info: z.object({
    name: z.string(),
    version: z.string(),
    model_info: z.object({ name: z.string(), provider: z.string() }).nullable(),
  }),
  agent_result: AgentResult.nullable(),
  verifier_result: z.object({ rewards: z.record(z.string(), z.number()) }).nullable(),
  /** The reward the scores use: verifier reward ("reward" key, else the mean of the dict), 0 on any failure. */
  reward: z.number(),
  exception_info: ExceptionInfo.nullable(),
  started_at: z.string(),
  finished_at: z.string(),
  environment_setup: Phase,
  agent_setup: Phase,
  agent_execution: Phase,
  verifier: Phase,
  /** tmax extra: the tamper report of the agent phase (src/trial/tamper.ts); absent with --integrity off. */
  tamper: TamperReport.optional(),
  /** The image the trial ran: name, digest, and whether it was pulled, built or already local (extra key). */
  image: z.object({ name: z.string(), digest: z.string().nullable(), source: z.enum(["pulled", "built", "local"]), note: z.string().optional() }).optional(),
  /** The registry dataset the task came from (Harbor's `source` is its name@version). */
  dataset: z.object({ name: z.string(), version: z.string(), commit: z.string().nullable() }).optional(),
  /** Multi-step tasks: one entry per step that ran, in order. */
  step_results: z
    .array(
      z.object({
        name: z.string(),
        reward: z.number(),
        verifier_result: z.object({ rewards: z.record(z.string(), z.number()) }).nullable(),
        agent_result: z.record(z.string(), z.unknown()).nullable(),
        exception_info: ExceptionInfo.nullable(),
        started_at: z.string(),
        finished_at: z.string(),
        /** tmax extra: the step verifier's tamper report (the same verify path as a single-step trial). */
        tamper: TamperReport.optional(),
      }),
    )
    .optional(),
  /** What came back from the container's /logs (under <trial>/sandbox/): counts, and why it stopped if it did. */
  downloads: z
    .object({ files: z.number(), bytes: z.number(), entries: z.number(), links: z.number(), skipped: z.number(), error: z.string().nullable() })
    .optional(),
  /** tmax: the dataset directory the task came from */
  dataset_dir: z.string().nullable().optional(),
});
export type TrialResult = z.infer<typeof TrialResult>;

/** Task filters as given on the command line (stored so that --resume selects the same tasks). */
export const TaskFilters = z.object({
  include: z.array(z.string()).optional(),
  exclude: z.array(z.string()).optional(),
  category: z.string().optional(),
  difficulty: z.string().optional(),
  n_tasks: z.number().optional(),
});

/**
 * Job directory layout (Harbor's, plus tmax's files):
 *   <job>/config.json                  JobConfig (Harbor fields + tmax's; resume refuses when a result-affecting one changed)
 *   <job>/result.json                  JobResult (Harbor) + tmax summary, rewritten as trials finish (atomically)
 *   <job>/lock.json                    JobLock (Harbor): the resolved trial list with task digests
 *   <job>/<trial_name>/config.json     TrialConfig
 *   <job>/<trial_name>/result.json     TrialResult, written last and atomically (its presence = trial done)
 *   <job>/<trial_name>/agent/trajectory.json        Harbor ATIF (tmax agent)
 *   <job>/<trial_name>/agent/tmax-trajectory.json   tmax's native trajectory (tmax agent)
 *   <job>/<trial_name>/agent/*.txt             oracle/nop agent output
 *   <job>/<trial_name>/verifier/test-stdout.txt  tail (1 MiB), redacted copy of the verifier output
 *   <job>/<trial_name>/sandbox/{agent,verifier,artifacts}/...  the container's /logs, untrusted data
 *       (plain files/dirs only, masked modes, caps); sandbox/.links.txt lists links and skipped members
 * trial_name = `${task_name}__${attempt}` (deterministic, so resume never duplicates a trial).
 */
export const JobConfig = z.object({
  // Harbor
  job_name: z.string(),
  jobs_dir: z.string(),
  n_attempts: z.number(),
  timeout_multiplier: z.number(),
  agent_timeout_multiplier: z.number().nullable(),
  verifier_timeout_multiplier: z.number().nullable(),
  environment_build_timeout_multiplier: z.number().nullable(),
  /** Recorded as given; tmax's agents have no setup phase. */
  agent_setup_timeout_multiplier: z.number().nullable().optional(),
  n_concurrent_trials: z.number(),
  /** Harbor's RetryConfig (the include/exclude lists are absent in older tmax jobs, which retried infrastructure errors only). */
  retry: z.object({
    max_retries: z.number(),
    include_exceptions: z.array(z.string()).nullable().optional(),
    exclude_exceptions: z.array(z.string()).nullable().optional(),
    /** tmax's default rule: only infrastructure failures are retried (the lists then say nothing). */
    infrastructure_only: z.boolean().optional(),
  }),
  environment: HarborEnvironmentConfig,
  agents: z.array(HarborAgentConfig),
  datasets: z.array(
    z.object({
      path: z.string(),
      task_names: z.array(z.string()).nullable(),
      exclude_task_names: z.array(z.string()).nullable(),
      n_tasks: z.number().nullable(),
    }),
  ),
  tasks: z.array(z.unknown()),
  /** Texts appended to every task's instruction (--extra-instruction, --extra-instruction-path). */
  extra_instructions: z.array(z.string()).optional(),
  /** Harbor's --disable-verification (absent: verified). */
  verifier: z.object({ disable: z.boolean() }).optional(),
  /** Harbor's --artifact: container paths collected into each trial's artifacts/ (absent: none). */
  artifacts: z.array(z.string()).optional(),
  // tmax
  /** The names of the --ve variables (their values are never written: a resume needs them again). */
  verifier_env_keys: z.array(z.string()).optional(),
  schema: z.literal("tmax.job/v2"),
  job_id: z.string(), // UUID, also JobResult.id and every TrialConfig.job_id
  dataset: z.string(), // absolute path of the dataset dir
  dataset_name: z.string(),
  task_checksums: z.record(z.string(), z.string()),
  /** Invalid tasks left out of the job (--skip-invalid): never run, never scored; absent when none. */
  invalid_tasks: z.array(z.string()).optional(),
  filters: TaskFilters,
  agent: AgentName,
  k: z.number(), // attempts per task
  model: z
    .object({
      name: z.string(),
      base_url: z.string(), // may change on resume
      profile: z.enum(["eval", "train"]),
      max_tokens: z.number().optional(),
      temperature: z.number().nullable().optional(),
      top_p: z.number().nullable().optional(),
      logprobs: z.boolean().optional(),
    })
    .nullable(),
  agent_limits: z.record(z.string(), z.number()).optional(),
  /** The `--prompts` file the agent's texts came from (absent: tmax's own texts). */
  prompts: z.object({ path: z.string(), sha256: z.string() }).optional(),
  image_map: z.record(z.string(), z.string()),
  backend: z.string(),
  network: z.string(),
  prefer_prebuilt: z.boolean(),
  /** Image and verifier choices (tmax): restored by `--resume DIR`, like every other result-affecting option. */
  pull: z.enum(["always", "missing", "never"]).nullable().optional(),
  force_build: z.boolean().optional(),
  pass_env: z.array(z.string()).optional(),
  integrity: z.enum(["strict", "flag", "off"]).nullable().optional(),
  verifier_isolation: z.enum(["snapshot", "kill", "shared"]).nullable().optional(),
  verifier_hardening: z.boolean().optional(),
  /** The model's price (USD per million tokens) and the job's cost cap: run-time settings, kept for a resume that names none. */
  price: z.object({ input: z.number(), output: z.number(), cached_input: z.number().optional() }).nullable().optional(),
  max_cost_usd: z.number().nullable().optional(),
  created_at: z.string(),
  /** Set when the dataset came from a registry by name@version. */
  dataset_source: z.object({ name: z.string(), version: z.string(), commit: z.string().nullable(), registry: z.string() }).optional(),
});
export type JobConfig = z.infer<typeof JobConfig>;

/** Harbor's AgentDatasetStats: one entry of JobStats.evals, keyed `<agent>__<model>__<dataset>`. */
export const EvalStats = z.object({
  n_trials: z.number(),
  n_errors: z.number(),
  metrics: z.array(z.record(z.string(), z.unknown())),
  pass_at_k: z.record(z.string(), z.number()),
  reward_stats: z.record(z.string(), z.record(z.string(), z.array(z.string()))),
  exception_stats: z.record(z.string(), z.array(z.string())),
});
export type EvalStats = z.infer<typeof EvalStats>;

/** Harbor's JobResult (id, started_at, updated_at, finished_at, n_total_trials, stats) + tmax's summary fields. */
export const JobResult = z.object({
  id: z.string(),
  started_at: z.string(),
  updated_at: z.string(),
  finished_at: z.string().nullable(),
  n_total_trials: z.number(),
  stats: z.object({
    n_completed_trials: z.number(),
    n_errored_trials: z.number(),
    n_running_trials: z.number(),
    n_pending_trials: z.number(),
    n_cancelled_trials: z.number(),
    n_retries: z.number(),
    evals: z.record(z.string(), EvalStats),
    n_input_tokens: z.number().nullable(),
    n_cache_tokens: z.number().nullable(),
    n_output_tokens: z.number().nullable(),
    cost_usd: z.number().nullable(),
  }),
  // tmax
  job_name: z.string(),
  mean_reward: z.number().nullable(),
  /** Of the errored trials, those on infrastructure (model server, engine); resume runs these trials again. */
  n_infra_errors: z.number().optional(),
});
export type JobResult = z.infer<typeof JobResult>;

/** The fields of a trial result that tmax's readers rely on (met by every tmax version; Harbor's lack attempt and reward). */
export const TrialResultCore = z.object({
  task_name: z.string(),
  trial_name: z.string(),
  attempt: z.number(),
  reward: z.number(),
  agent_info: TrialResult.shape.agent_info,
  agent_result: z.object({ n_steps: z.number(), exit_status: z.string() }).passthrough().nullable(),
  exception_info: z.object({ exception_type: z.string(), exception_message: z.string() }).passthrough().nullable(),
  started_at: z.string(),
  finished_at: z.string(),
});
