// A task as the runner sees it, whatever format it came from (Harbor task.toml or TB 1.x task.yaml).
// A leaf: it imports no other file, so every reader (harbor.ts, tb1.ts, compose.ts, files.ts) can import it.

/** A docker-compose environment as read by compose.ts. */
export type DependsCondition = "service_started" | "service_healthy" | "service_completed_successfully";

export interface ComposeHealthcheck {
  /** argv to exec in the container; exit 0 = healthy. */
  test: string[];
  intervalSec: number;
  timeoutSec: number;
  retries: number;
  startPeriodSec: number;
}

export interface ComposeService {
  name: string;
  /** Absolute build context and Dockerfile (relative to it). */
  build?: { contextDir: string; dockerfile: string };
  image?: string;
  command?: string[];
  entrypoint?: string[];
  env: Record<string, string>;
  workdir?: string;
  user?: string;
  dependsOn: Array<{ service: string; condition: DependsCondition }>;
  healthcheck?: ComposeHealthcheck;
  cpus?: number;
  memoryMb?: number;
}

export interface ComposeSpec {
  /** The compose file, relative to the task dir (for messages). */
  file: string;
  /** The service the agent and verifier run in (Harbor: `main`; TB1: `client`). */
  main: string;
  /** Every service, main included, in start order (dependencies first). */
  services: ComposeService[];
}

export interface TaskConfig {
  /** Agent wall-clock limit in seconds (before --timeout-multiplier). */
  agentTimeoutSec: number;
  verifierTimeoutSec: number;
  buildTimeoutSec: number;
  cpus?: number;
  memoryMb?: number;
  storageMb?: number;
  gpus?: number;
  /** false when the task says no-network / allow_internet=false. */
  allowInternet: boolean;
  /** Harbor's network policy as written or implied (allow_internet=false → "no-network"); allowlist counts as no internet above. */
  networkMode?: "public" | "no-network" | "allowlist";
  /** Hosts reachable under network_mode = "allowlist". */
  allowedHosts?: string[];
  /** Prebuilt image named by the task ([environment] docker_image); the Dockerfile is used when absent. */
  dockerImage?: string;
  workdir?: string;
  /** Container env for the whole trial ([environment] env). Values may hold ${VAR} / ${VAR:-default} templates (see resolveEnvTemplates). */
  env: Record<string, string>;
  /** Extra env for the verifier only ([verifier] env). */
  verifierEnv?: Record<string, string>;
  /** Extra env for the oracle's solve.sh ([solution] env). */
  solutionEnv?: Record<string, string>;
  /** [task] description, when given. */
  description?: string;
  difficulty?: string;
  category?: string;
  tags: string[];
  /** The parsed file as written, unknown keys included. */
  raw: Record<string, unknown>;
}

export interface Task {
  name: string;
  /** Absolute task directory. */
  dir: string;
  format: "harbor" | "tb1";
  instruction: string;
  config: TaskConfig;
  /** Build context (absolute) and Dockerfile path relative to it. */
  environment: { contextDir: string; dockerfile: string; compose?: ComposeSpec };
  /** Directory whose contents go to /tests for the verifier. For TB1 a temp dir assembled in memory→disk. */
  testsDir: string;
  /** Directory whose contents go to /solution for the oracle; absent when the task ships none. */
  solutionDir?: string;
  /** sha256 over every file of the task dir (stable order), for caching and resume checks. */
  checksum: string;
  /** Harbor [[steps]]: run in order in one environment, each with its own instruction, verifier and reward. */
  steps?: TaskStep[];
  /** multi_step_reward_strategy: trial reward = per-key mean over steps (default) or the last step's rewards. */
  rewardStrategy?: "mean" | "final";
}

/** One step of a multi-step task (steps/<name>/ of the task dir). */
export interface TaskStep {
  name: string;
  instruction: string;
  /** The step's tests merged over the task's shared tests/ (step files win); holds test.sh. */
  testsDir: string;
  /** steps/<name>/solution (oracle), when present. */
  solutionDir?: string;
  agentTimeoutSec: number;
  verifierTimeoutSec: number;
  verifierEnv?: Record<string, string>;
  /** Abort the remaining steps when the rewards fall below: a number gates `reward`, a table gates each key. */
  minReward?: number | Record<string, number>;
}

/** One problem found while loading or checking a task: file and field so users can fix it. */
export interface TaskProblem {
  task: string;
  file: string;
  field?: string;
  message: string;
  severity: "error" | "warning";
}

export class TaskError extends Error {
  constructor(readonly problems: TaskProblem[]) {
    super(problems.map((p) => `${p.task}: ${p.file}${p.field ? ` [${p.field}]` : ""}: ${p.message}`).join("; "));
    this.name = "TaskError";
  }
}
