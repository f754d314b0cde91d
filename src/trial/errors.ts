// How a trial's errors are recorded: Harbor's exception_info plus tmax's `infrastructure` flag. The flag is a
// fact of the error type (`readonly infrastructure` on SandboxError, ModelError, TrialPhaseError), never a rule
// kept here: infrastructure errors are retried by the runner and left out of the infra-clean score.
import { ModelError } from "../model/types.js";
import { SandboxError } from "../sandbox/types.js";
import { harborExceptionType } from "../results/harbor.js";
import type { ExceptionInfo } from "../results/schema.js";

export class TrialPhaseError extends Error {
  constructor(readonly type: string, message: string, readonly infrastructure = false) {
    super(message);
    this.name = type;
  }
}

/**
 * Whether an episode's recorded error kind (`model:<kind>`, `sandbox:<kind>`, as the agent loop writes it into the
 * trajectory) is infrastructure: the same answer the error type itself gives.
 */
export function isInfrastructureKind(errorKind: string): boolean {
  const [layer, kind] = errorKind.split(":", 2);
  if (layer === "model") return ModelError.isInfrastructure(kind);
  if (layer === "sandbox") return SandboxError.isInfrastructure(kind);
  return false;
}

export function exceptionInfo(e: unknown): ExceptionInfo {
  const err = e instanceof Error ? e : new Error(String(e));
  let type = err.name || "Error";
  if (e instanceof TrialPhaseError) type = e.type;
  else if (e instanceof SandboxError) type = e.kind === "build_failed" || e.kind === "build_timeout" ? "BuildError" : e.kind === "image_not_found" ? "ImageNotFoundError" : "EnvironmentError";
  else if (e instanceof ModelError) type = "ModelError";
  const infrastructure = e instanceof TrialPhaseError || e instanceof SandboxError || e instanceof ModelError ? e.infrastructure : false;
  return {
    exception_type: harborExceptionType(type),
    exception_message: err.message.split("\n")[0],
    exception_traceback: err.stack ?? `${type}: ${err.message}`,
    occurred_at: new Date().toISOString(),
    infrastructure,
  };
}
