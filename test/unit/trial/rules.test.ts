// One rule each: the reward of a result, and whether an error is infrastructure (the error types say so; the
// trial's exception_info and an episode's recorded error kind give the same answer).
import assert from "node:assert/strict";
import { test } from "node:test";
import { rewardOf, rewardOfResult } from "../../../src/results/reward.js";
import { exceptionInfo, isInfrastructureKind, TrialPhaseError } from "../../../src/trial/errors.js";
import { ModelError } from "../../../src/model/types.js";
import { SandboxError } from "../../../src/sandbox/types.js";

test("reward: the 'reward' entry, else the mean of numeric entries, else 0; a result's top-level reward first", () => {
  assert.equal(rewardOf({ reward: 0.25, other: 1 }), 0.25);
  assert.equal(rewardOf({ a: 1, b: 0 }), 0.5);
  assert.equal(rewardOf({ a: 1, b: "x", c: Number.NaN }), 1);
  assert.equal(rewardOf({}), 0);
  assert.equal(rewardOfResult({ reward: 0, verifier_result: { rewards: { reward: 1 } } }), 0);
  assert.equal(rewardOfResult({ verifier_result: { rewards: { a: 1, b: 0 } } }), 0.5);
  assert.equal(rewardOfResult({ verifier_result: null }), 0);
  assert.equal(rewardOfResult({ reward: "1" }), 0);
});

test("infrastructure: the error type's flag, the same for exception_info and an episode's error kind", () => {
  const sandboxKinds = ["engine_unreachable", "image_not_found", "build_failed", "build_timeout", "create_failed", "exec_failed"] as const;
  for (const kind of sandboxKinds) {
    const e = new SandboxError("x", kind);
    assert.equal(exceptionInfo(e).infrastructure, e.infrastructure, kind);
    assert.equal(isInfrastructureKind(`sandbox:${kind}`), e.infrastructure, kind);
  }
  // the two rules used to disagree on create_failed (infra at start-up, not infra in the agent phase)
  assert.equal(new SandboxError("x", "create_failed").infrastructure, true);
  assert.equal(isInfrastructureKind("sandbox:create_failed"), true);
  assert.equal(new SandboxError("x", "build_failed").infrastructure, false);
  const modelKinds = ["unreachable", "model_not_found", "http", "timeout", "context_length", "bad_response"] as const;
  for (const kind of modelKinds) {
    const e = new ModelError("x", kind);
    assert.equal(exceptionInfo(e).infrastructure, e.infrastructure, kind);
    assert.equal(isInfrastructureKind(`model:${kind}`), e.infrastructure, kind);
  }
  assert.equal(new ModelError("x", "timeout").infrastructure, true);
  assert.equal(new ModelError("x", "context_length").infrastructure, false);
  assert.equal(isInfrastructureKind("other"), false);
  assert.equal(exceptionInfo(new TrialPhaseError("EnvironmentError", "x", true)).infrastructure, true);
  assert.equal(exceptionInfo(new Error("x")).infrastructure, false);
});
