// The trajectory file: one JSON per episode. The file format is the type.
import { z } from "zod";

export const EXIT_STATUSES = ["submitted", "step_limit", "token_limit", "format_errors", "timeout", "error"] as const;
export const ExitStatus = z.enum(EXIT_STATUSES);
export type ExitStatus = z.infer<typeof ExitStatus>;

const Usage = z.object({ promptTokens: z.number(), completionTokens: z.number(), cachedTokens: z.number().optional() });

export const TrajectoryStep = z.object({
  index: z.number(), // 0-based model turn
  startedAt: z.string(),
  model: z.object({
    content: z.string(),
    reasoning: z.string().optional(),
    finishReason: z.string(),
    usage: Usage,
    latencyMs: z.number(),
    retries: z.number(),
    logprobs: z.array(z.object({ token: z.string(), logprob: z.number() })).optional(),
    promptTokenIds: z.array(z.number()).optional(),
    completionTokenIds: z.array(z.number()).optional(),
  }),
  /** The call that was executed (eval: the turn's first call; train: the first of all, see `extraCalls`). */
  toolCall: z.object({ id: z.string(), command: z.string(), source: z.enum(["tool_calls", "xml"]) }).optional(),
  /** Further calls of the same turn (train profile executes them all). */
  extraCalls: z.array(z.object({ id: z.string(), command: z.string(), source: z.enum(["tool_calls", "xml"]) })).optional(),
  executions: z
    .array(
      z.object({
        command: z.string(),
        exitCode: z.number(),
        timedOut: z.boolean(),
        outputTruncated: z.boolean(),
        durationMs: z.number(),
        observation: z.string(),
      }),
    )
    .optional(),
  formatError: z.string().optional(),
});
export type TrajectoryStep = z.infer<typeof TrajectoryStep>;

export const Trajectory = z.object({
  schema: z.literal("tmax.trajectory/v1"),
  task: z.object({ name: z.string(), instruction: z.string() }),
  agent: z.object({
    name: z.literal("tmax"),
    version: z.string(),
    profile: z.enum(["eval", "train"]),
    /** The `--prompts` file the texts came from (absent: tmax's own). */
    prompts: z.object({ path: z.string(), sha256: z.string() }).optional(),
    toolDescription: z.string().optional(),
  }),
  model: z.object({ name: z.string(), baseUrl: z.string(), temperature: z.number(), topP: z.number(), maxTokens: z.number() }),
  sandbox: z.object({ backend: z.string(), image: z.string(), id: z.string() }),
  limits: z.object({
    maxSteps: z.number(),
    maxTotalTokens: z.number(),
    commandTimeoutSec: z.number(),
    maxFormatErrors: z.number(),
  }),
  /** Every message exactly as sent to / received from the model, in order. */
  messages: z.array(z.record(z.string(), z.unknown())),
  steps: z.array(TrajectoryStep),
  exitStatus: ExitStatus,
  error: z.string().optional(),
  /** For exitStatus "error": where it came from, e.g. "model:unreachable", "sandbox:engine_unreachable", "other". */
  errorKind: z.string().optional(),
  usage: z.object({
    promptTokens: z.number(), // summed over turns
    completionTokens: z.number(), // summed over turns
    cachedTokens: z.number().optional(), // summed over the turns whose server reported it
    contextTokens: z.number(), // length of the final context (prompt + completion of the last turn)
  }),
  startedAt: z.string(),
  finishedAt: z.string(),
  durationMs: z.number(),
});
export type Trajectory = z.infer<typeof Trajectory>;
