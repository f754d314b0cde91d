#!/usr/bin/env python3
"""Read a tmax learner batch (one JSONL file per rollout step) into numpy arrays.

This is the data-loading half of a learner: it turns each line of
`[{run}_]learner_batch_step{NNNNNN}.jsonl` into flat arrays plus pack boundaries,
the shape a varlen (flash-attention style) training step consumes. Given the
learner's own logprobs for the same tokens (a trainer-logprobs file), it also
computes the DPPO loss exactly as tmax defines it, so a learner can check its
numbers against `tmax`'s analysis.

Needs only numpy. tmax's unit tests run this script on a generated batch and
compare the loss with the TypeScript implementation (test/unit/rl/records.test.ts).

Usage:
  python3 read_batch.py BATCH.jsonl [--trainer-logprobs RUN_trainer_logprobs_stepNNNNNN.jsonl] [--delta 0.1]
The last line printed is a JSON summary.
"""
import argparse
import json
import sys

import numpy as np


def load_batch(path):
    """Return a list of packs; an unpacked line becomes a pack of one sample."""
    packs = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                sys.exit(f"{path}:{line_no}: not JSON ({err}); a torn last line means the writer was interrupted")
            if rec["kind"] == "sample":
                n = len(rec["input_ids"])
                rec = {
                    **rec,
                    "sample_idxs": [rec["sample_idx"]],
                    "cu_seqlens": [0, n],
                    "num_prompt_tokens": [rec["num_prompt_tokens"]],
                    "advantages": [rec["advantage"]],
                    "rewards": [rec["reward"]],
                }
            cu = np.asarray(rec["cu_seqlens"], dtype=np.int64)
            lengths = np.diff(cu)
            # Positions restart at 0 for every sample in a pack.
            position_ids = np.arange(cu[-1], dtype=np.int64) - np.repeat(cu[:-1], lengths)
            packs.append({
                "step": rec["step"],
                "sample_idxs": rec["sample_idxs"],
                "cu_seqlens": cu,
                "num_prompt_tokens": np.asarray(rec["num_prompt_tokens"], dtype=np.int64),
                "input_ids": np.asarray(rec["input_ids"], dtype=np.int64),
                "position_ids": position_ids,
                "response_mask": np.asarray(rec["response_mask"], dtype=np.int64) == 1,
                "vllm_logprobs": np.asarray(rec["vllm_logprobs"], dtype=np.float64),
                # One advantage per sample, broadcast over its tokens.
                "advantages": np.repeat(np.asarray(rec["advantages"], dtype=np.float64), lengths),
            })
    return packs


def load_trainer_logprobs(path):
    """sample_idx -> learner logprobs aligned with the sample's response tokens."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)  # Python's json reads bare NaN, as open-instruct writes it
                out[rec["sample_idx"]] = np.asarray(rec["trainer_logprobs"], dtype=np.float64)
    return out


def place_trainer_logprobs(pack, trainer):
    """Scatter per-sample response logprobs into the pack's token layout (0 on prompt tokens)."""
    logpi = np.zeros_like(pack["vllm_logprobs"])
    for k, idx in enumerate(pack["sample_idxs"]):
        start = pack["cu_seqlens"][k] + pack["num_prompt_tokens"][k]
        end = pack["cu_seqlens"][k + 1]
        logpi[start:end] = trainer[idx]
    return logpi


def dppo_terms(logpi, logmu, adv, response_mask, delta=0.1):
    """Per-token DPPO loss terms and mask, as open-instruct computes them (float32, dppo.md):
    r = exp(logpi - logmu) from the unclamped logprobs, D = |exp(clamp(logpi)) - exp(clamp(logmu))|
    with clamp to [-30, 0], D compared with delta as a float32; a NaN logmu counts as 1.0
    (open-instruct's INVALID_LOGPROB)."""
    f32 = np.float32
    lp = np.asarray(logpi, dtype=f32)
    lm = np.nan_to_num(np.asarray(logmu, dtype=f32), nan=f32(1.0))
    a = np.asarray(adv, dtype=f32)
    with np.errstate(over="ignore"):
        ratio = np.exp(lp - lm)
    pi = np.exp(np.clip(lp, f32(-30.0), f32(0.0)))
    mu = np.exp(np.clip(lm, f32(-30.0), f32(0.0)))
    diff = np.abs(mu - pi)
    pushed_out = (diff > f32(delta)) & (((a > 0) & (ratio > 1)) | ((a < 0) & (ratio < 1)))
    keep = response_mask & ~pushed_out
    # In a learner: loss = -(A * r * M).sum() / num_model_tokens with r = exp(logpi_with_grad - logmu),
    # whose gradient is -A * M * r * grad(log pi).
    terms = np.where(keep, -(a * ratio), f32(0.0)).astype(np.float64)
    return terms, keep, pushed_out & response_mask


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch")
    parser.add_argument("--trainer-logprobs")
    parser.add_argument("--delta", type=float, default=0.1)
    args = parser.parse_args()

    packs = load_batch(args.batch)
    samples = sum(len(p["sample_idxs"]) for p in packs)
    tokens = sum(len(p["input_ids"]) for p in packs)
    # The loss is a global token mean over the whole step: count model tokens up front so every
    # micro-batch (pack) divides by the same number.
    model_tokens = int(sum(p["response_mask"].sum() for p in packs))
    summary = {"packs": len(packs), "samples": samples, "tokens": tokens, "model_tokens": model_tokens}

    if args.trainer_logprobs:
        trainer = load_trainer_logprobs(args.trainer_logprobs)
        total, masked = 0.0, 0
        for p in packs:
            logpi = place_trainer_logprobs(p, trainer)
            terms, _, pushed = dppo_terms(logpi, p["vllm_logprobs"], p["advantages"], p["response_mask"], args.delta)
            total += float(terms.sum())
            masked += int(pushed.sum())
        summary.update({"masked_tokens": masked, "loss": total / model_tokens if model_tokens else 0.0})

    print(json.dumps(summary))


if __name__ == "__main__":
    main()
