// Which failed trials a job runs again (Harbor's RetryConfig): a trial that ended in an exception is retried, up to
// -r/--max-retries times, unless its exception type is excluded, or an include list is given and does not name it.
// The exclude list wins over the include list. Harbor's default excludes the failures a second run would repeat
// (timeouts, a missing or unreadable reward, a refused request).
import { HARBOR_RETRY_EXCLUDE } from "../results/harbor.js";

export interface RetryPolicy {
  /** Only these exception types are retried; null: any type not excluded. */
  include: string[] | null;
  /** Never retried; null (Harbor's `exclude_exceptions: null`): nothing excluded. */
  exclude: string[] | null;
  /**
   * tmax's rule without Harbor's flags (and of --infra-retries): only failures of the infrastructure (engine, model
   * server, build), which never depend on the agent, are run again.
   */
  infrastructureOnly?: boolean;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { include: null, exclude: [...HARBOR_RETRY_EXCLUDE] };
/** tmax's default: infrastructure failures only. */
export const INFRA_RETRY_POLICY: RetryPolicy = { ...DEFAULT_RETRY_POLICY, infrastructureOnly: true };

/** Whether a trial that ended in `e` is run again under `policy` (the retry budget aside). */
export function retriesTrial(e: { exception_type: string; infrastructure?: boolean }, policy: RetryPolicy): boolean {
  return policy.infrastructureOnly ? Boolean(e.infrastructure) : retriesException(e.exception_type, policy);
}

/** Harbor's TrialQueue._should_retry_exception: exclude first, then include (an empty list counts as none given). */
export function retriesException(type: string, policy: RetryPolicy = DEFAULT_RETRY_POLICY): boolean {
  if (policy.exclude?.length && policy.exclude.includes(type)) return false;
  if (policy.include?.length && !policy.include.includes(type)) return false;
  return true;
}

/** The policy of --retry-include / --retry-exclude (each repeatable): given lists replace Harbor's defaults, as in Harbor. */
export function retryPolicyOf(include?: string[] | null, exclude?: string[] | null): RetryPolicy {
  const clean = (l: string[]) => [...new Set(l.map((s) => s.trim()).filter(Boolean))];
  for (const [flag, list] of [["--retry-include", include], ["--retry-exclude", exclude]] as const) {
    const bad = (list ?? []).find((s) => !/^[A-Za-z_][A-Za-z0-9_.]*$/.test(s.trim()));
    if (bad !== undefined) throw new Error(`${flag} ${JSON.stringify(bad)}: expected an exception type name (e.g. AgentTimeoutError)`);
  }
  return {
    include: include?.length ? clean(include) : null,
    exclude: exclude === null ? null : exclude?.length ? clean(exclude) : [...HARBOR_RETRY_EXCLUDE],
  };
}

/** The job config's `retry` (Harbor's RetryConfig fields; `infrastructure_only` is tmax's default rule). */
export function retryConfigOf(maxRetries: number, policy: RetryPolicy) {
  return { max_retries: maxRetries, include_exceptions: policy.include, exclude_exceptions: policy.exclude, ...(policy.infrastructureOnly ? { infrastructure_only: true } : {}) };
}

/** The policy a stored job config's `retry` stands for (a job from before the lists: infrastructure only). */
export function retryPolicyOfConfig(retry: { include_exceptions?: string[] | null; exclude_exceptions?: string[] | null; infrastructure_only?: boolean }): RetryPolicy {
  if (retry.infrastructure_only || (retry.include_exceptions === undefined && retry.exclude_exceptions === undefined)) return INFRA_RETRY_POLICY;
  return { include: retry.include_exceptions ?? null, exclude: retry.exclude_exceptions === undefined ? [...HARBOR_RETRY_EXCLUDE] : retry.exclude_exceptions };
}
