// Harbor's retry rule (TrialQueue._should_retry_exception) and tmax's infrastructure-only default, as pure functions;
// the runner applying them to real trials is in test/e2e/jobs/eval.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_RETRY_POLICY, INFRA_RETRY_POLICY, retriesException, retriesTrial, retryConfigOf, retryPolicyOf, retryPolicyOfConfig } from "../../../src/jobs/retryPolicy.js";
import { HARBOR_RETRY_EXCLUDE } from "../../../src/results/harbor.js";

test("Harbor's default: every type but its exclude list", () => {
  for (const t of HARBOR_RETRY_EXCLUDE) assert.equal(retriesException(t), false, t);
  for (const t of ["AgentError", "BuildError", "EnvironmentError", "ModelError", "VerifierError", "CancelledError"]) assert.equal(retriesException(t), true, t);
});

test("include narrows, exclude wins over include, empty lists count as none", () => {
  assert.equal(retriesException("BuildError", { include: ["BuildError"], exclude: null }), true);
  assert.equal(retriesException("AgentError", { include: ["BuildError"], exclude: null }), false);
  assert.equal(retriesException("BuildError", { include: ["BuildError"], exclude: ["BuildError"] }), false);
  assert.equal(retriesException("AgentTimeoutError", { include: [], exclude: [] }), true);
  assert.equal(retriesException("AgentTimeoutError", { include: null, exclude: null }), true, "exclude_exceptions: null");
});

test("retryPolicyOf: given lists replace the defaults; names are checked; duplicates and blanks dropped", () => {
  assert.deepEqual(retryPolicyOf(), DEFAULT_RETRY_POLICY);
  assert.deepEqual(retryPolicyOf(["A", "A", " B "], ["C"]), { include: ["A", "B"], exclude: ["C"] });
  assert.deepEqual(retryPolicyOf(undefined, null), { include: null, exclude: null });
  assert.throws(() => retryPolicyOf(["a b"]), /^Error: --retry-include "a b": expected an exception type name/);
  assert.throws(() => retryPolicyOf(undefined, ["x;y"]), /^Error: --retry-exclude/);
});

test("tmax's default retries infrastructure failures only, whatever their type", () => {
  assert.equal(retriesTrial({ exception_type: "AgentError", infrastructure: false }, INFRA_RETRY_POLICY), false);
  assert.equal(retriesTrial({ exception_type: "AgentError", infrastructure: true }, INFRA_RETRY_POLICY), true);
  assert.equal(retriesTrial({ exception_type: "AgentError", infrastructure: false }, DEFAULT_RETRY_POLICY), true);
});

test("the job config's retry section round-trips; a job from before the lists is read as infrastructure only", () => {
  for (const p of [INFRA_RETRY_POLICY, DEFAULT_RETRY_POLICY, { include: ["X"], exclude: null }]) {
    const back = retryPolicyOfConfig(retryConfigOf(2, p));
    assert.deepEqual({ ...back, infrastructureOnly: Boolean(back.infrastructureOnly) }, { ...p, infrastructureOnly: Boolean(p.infrastructureOnly) });
  }
  assert.equal(retryPolicyOfConfig({}).infrastructureOnly, true);
});
