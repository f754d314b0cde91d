// OpenEnv's wire protocol (meta-pytorch/OpenEnv, src/openenv/core/env_server/types.py and http_server.py), as
// zod schemas: the WebSocket session messages on /ws, the stateless HTTP bodies, the error codes. The file
// format is the type; field names and shapes are OpenEnv's, so its EnvClient talks to tmax unchanged.
import { z } from "zod";

/** OpenEnv's WSErrorCode. A full server answers CAPACITY_REACHED at once (its "busy"). */
export const WS_ERROR_CODES = [
  "INVALID_JSON",
  "UNKNOWN_TYPE",
  "VALIDATION_ERROR",
  "EXECUTION_ERROR",
  "CAPACITY_REACHED",
  "FACTORY_ERROR",
  "SESSION_ERROR",
] as const;
export type WsErrorCode = (typeof WS_ERROR_CODES)[number];

/** An error with an OpenEnv code, sent as `{type: "error", data: {message, code, ...extra}}`. */
export class ProtocolError extends Error {
  constructor(readonly code: WsErrorCode, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** The server is full (OpenEnv's SessionCapacityError, same message). */
export class BusyError extends ProtocolError {
  constructor(readonly active: number, readonly max: number, what = "sessions") {
    super("CAPACITY_REACHED", `Server at capacity: ${active}/${max} ${what} active. Cannot accept new connections.`, { active_sessions: active, max_sessions: max });
  }
}

// ---- messages a client sends on /ws (BaseMessage: extra fields forbidden) ----------------------------------

/** Reset parameters: OpenEnv's ResetRequest (seed, episode_id; extra allowed) plus the ones tmax reads. */
export const ResetParams = z.looseObject({
  seed: z.number().int().min(0).nullish(),
  episode_id: z.string().max(255).nullish(),
  /** The task (its name in the dataset); tbench2_env also accepts task_name. Absent: drawn with `seed`. */
  task_id: z.string().min(1).nullish(),
  task_name: z.string().min(1).nullish(),
  /** tbench2_env's path form: accepted only inside the served dataset. */
  task_path: z.string().min(1).nullish(),
  /** Which action set the session speaks (default: the server's `--action-set`). */
  action_set: z.enum(["tb2", "harness"]).nullish(),
  /** Harness sessions: eval (chat turns) or train (token-in/token-out); default the server's `--profile`. */
  profile: z.enum(["eval", "train"]).nullish(),
});
export type ResetParams = z.infer<typeof ResetParams>;

export const WsReset = z.strictObject({ type: z.literal("reset"), data: z.record(z.string(), z.unknown()).default({}) });
export const WsStep = z.strictObject({ type: z.literal("step"), data: z.record(z.string(), z.unknown()) });
export const WsState = z.strictObject({ type: z.literal("state") });
export const WsClose = z.strictObject({ type: z.literal("close") });
export const WsIncoming = z.discriminatedUnion("type", [WsReset, WsStep, WsState, WsClose]);
export type WsIncoming = z.infer<typeof WsIncoming>;

// ---- what the server sends ---------------------------------------------------------------------------------

/** OpenEnv's serialize_observation: the observation's own fields, with reward and done lifted out. */
export interface StepPayload {
  observation: Record<string, unknown>;
  reward: number | null;
  done: boolean;
}

export const wsObservation = (data: StepPayload) => ({ type: "observation" as const, data });
export const wsState = (data: Record<string, unknown>) => ({ type: "state" as const, data });
export const wsError = (e: ProtocolError) => ({ type: "error" as const, data: { message: e.message, code: e.code, ...e.extra } });

// ---- stateless HTTP ---------------------------------------------------------------------------------------

/** POST /step: OpenEnv's StepRequest (extra allowed). */
export const StepRequest = z.looseObject({
  action: z.record(z.string(), z.unknown()),
  timeout_s: z.number().gt(0).nullish(),
  request_id: z.string().max(255).nullish(),
});

/** OpenEnv's EnvironmentMetadata. */
export interface EnvironmentMetadata {
  name: string;
  description: string;
  readme_content: string | null;
  version: string | null;
  author: string | null;
  documentation_url: string | null;
}

/** OpenEnv's State base: every environment's state has these two, plus its own fields. */
export const BaseState = z.looseObject({ episode_id: z.string().nullable().default(null), step_count: z.number().int().min(0).default(0) });

/** Validation issues in the shape of pydantic's `errors()` (type, loc, msg), as OpenEnv sends them. */
export function validationErrors(error: z.ZodError): { type: string; loc: (string | number)[]; msg: string }[] {
  return error.issues.map((i) => ({ type: i.code, loc: i.path.map((p) => (typeof p === "symbol" ? String(p) : p)), msg: i.message }));
}

/** Parses `value` or throws OpenEnv's VALIDATION_ERROR with the issues. */
export function parseOr<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const first = r.error.issues[0]!;
  const where = first.path.length ? ` at ${first.path.join(".")}` : "";
  throw new ProtocolError("VALIDATION_ERROR", `Invalid ${what}: ${first.message}${where}`, { errors: validationErrors(r.error) });
}
