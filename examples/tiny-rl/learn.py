#!/usr/bin/env python3
"""One DPPO step of the tiny policy on a tmax learner batch (`tmax rl batch`), then the new weights.

The loss is examples/learner/dppo_step.py's (imported: dppo_terms, load_packs), i.e. docs/learner-handoff.md:
r = exp(logpi - logmu), M = 0 where |pi - mu| > delta and the update would push further out, loss = sum(-A r M) / N
over the step's N model tokens; grad-norm clip 1.0; AdamW with weight decay 0 and one optimizer step (Tmax's
recipe; `--updates N` takes N steps on the batch, each against the sampler's mu, so the mask acts from the
second). The lr is the tiny model's (default 1e-2; 1e-1 for the gated context rows,
`--context-lr`), not Tmax's 1e-6. Before the update it writes the learner's logprobs in
open-instruct's trainer-logprobs format (one line per micro-batch, arrays shifted by one) so `tmax rl analyze`
and the explorer recompute the mask and the loss from them. Then it saves the weights with version + 1 and
the optimizer state next to them (Adam's moments carry over from step to step, as in a real run).

Usage: learn.py BATCH.jsonl --weights policy.pt --trainer-dir DIR [--run NAME] [--lr 1e-2] [--context-lr 1e-1] [--updates 1] [--delta 0.1]
The last line printed is a JSON summary.
"""
import argparse
import json
import math
import os
import re
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "learner"))
import tinylm  # noqa: E402
from dppo_step import dppo_terms, load_packs  # noqa: E402


def sample_spans(p):
    """(start, end, advantage, sample_idx, prompt tokens) of each sample of a pack (an unpacked line is a pack of one)."""
    cu = p["cu_seqlens"]
    return [(cu[k], cu[k + 1], p["advantages"][k], p["sample_idxs"][k], p["num_prompt_tokens"][k]) for k in range(len(cu) - 1)]


def dppo_update(model, opt, samples, delta, max_grad_norm, updates):
    """`updates` optimizer steps on one batch: samples = [(ids, model positions, logmu, A)]. Each step is the DPPO loss
    over the whole batch (global token mean, grad-norm clip), against the sampler's mu; from the second step on pi has
    moved away from mu and the binary-TV mask keeps tokens from being pushed further out of the trust region.
    Returns (per-step stats, the first pass's logpi per sample: the learner's logprobs before any update)."""
    n_model = sum(len(pos) for _, pos, _, _ in samples)
    passes, first = [], None
    for _ in range(updates):
        opt.zero_grad(set_to_none=True)
        loss_total, masked, abs_diff, logpis = 0.0, 0, 0.0, []
        for ids, pos, logmu, adv in samples:
            logpi = model.logprobs_at(ids, pos)
            A = torch.full((len(pos),), adv, dtype=torch.float32)
            terms, keep = dppo_terms(logpi, logmu, A, torch.ones(len(pos), dtype=torch.bool), delta)
            loss = terms.sum() / n_model
            loss.backward()
            loss_total += float(loss)
            masked += int((keep == 0).sum())
            abs_diff += float((logpi.detach().exp() - logmu.exp()).abs().sum())
            logpis.append(logpi.detach().tolist())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm))
        opt.step()
        passes.append({"loss": loss_total, "masked_tokens": masked, "mean_abs_pi_mu": abs_diff / n_model, "grad_norm": grad_norm})
        first = logpis if first is None else first
    return passes, first


def make_optimizer(model, name, lr, context_lr=None):
    """AdamW (weight decay 0) or SGD; the context rows (tinylm.TinyLM.context_parameters) at context_lr when given."""
    ctx = {id(q) for q in model.context_parameters()}
    groups = [{"params": [q for q in model.parameters() if id(q) not in ctx], "lr": lr},
              {"params": model.context_parameters(), "lr": lr if context_lr is None else context_lr}]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=0.0) if name == "adamw" else torch.optim.SGD(groups, lr=lr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("batch")
    ap.add_argument("--weights", required=True, help="the checkpoint that is updated in place (version + 1)")
    ap.add_argument("--trainer-dir", required=True)
    ap.add_argument("--run")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--context-lr", type=float, default=1e-1, help="learning rate of the context rows (tinylm's task-word logit bias)")
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    ap.add_argument("--updates", type=int, default=1, help="optimizer steps on the batch (DPPO epochs; 1 = Tmax's recipe)")
    args = ap.parse_args()

    tinylm.setup_torch()
    model, version = tinylm.load(args.weights)
    model.train()
    opt = make_optimizer(model, args.optimizer, args.lr, args.context_lr)
    opt_file = args.weights + ".optim"
    if os.path.exists(opt_file):
        opt.load_state_dict(torch.load(opt_file))
    step, packs = load_packs(args.batch)
    m = re.match(r"^(.+)_learner_batch_step\d+\.jsonl$", os.path.basename(args.batch))
    run = args.run or (m.group(1) if m else "tmax")

    n_model = sum(sum(1 for x in p["response_mask"] if x) for p in packs)
    if n_model == 0:
        sys.exit(f"{args.batch}: no model tokens to train on")
    samples, where = [], []  # (ids, positions, logmu, A) of every sample with model tokens; (pack, start, positions)
    lines = []
    for micro, p in enumerate(packs):
        n = len(p["input_ids"])
        sample_of, prompt_mask, seq = [-1] * (n - 1), [False] * (n - 1), [0] * (n - 1)
        for k, (a, b, adv, sample_idx, n_prompt) in enumerate(sample_spans(p)):
            pos = [t for t in range(1, b - a) if p["response_mask"][a + t]]
            for t in range(a, b):
                if t > 0:
                    sample_of[t - 1], seq[t - 1], prompt_mask[t - 1] = sample_idx, k + 1, t - a < n_prompt
            if pos:
                samples.append((p["input_ids"][a:b], pos, torch.tensor([p["vllm_logprobs"][a + t] for t in pos], dtype=torch.float32), float(adv)))
                where.append((micro, a, pos))
        response = [bool(x) for x in p["response_mask"][1:]]
        vllm = [float("nan") if prompt_mask[t] else float(p["vllm_logprobs"][t + 1]) for t in range(n - 1)]
        lines.append({
            "step": step, "sample_idx": micro, "sp_size": 1,
            "trainer_logprobs_shape": [1, n - 1], "trainer_logprobs": [float("nan")] * (n - 1),  # shifted by one: entry t scores input_ids[t + 1]
            "response_mask_shape": [1, n - 1], "response_mask": response,
            "logprob_token_offset": 1, "trainer_model_step": version, "rank": 0, "world_size": 1, "dp_rank": 0, "sp_rank": 0,
            "input_token_ids_shape": [1, n], "input_token_ids": p["input_ids"],
            "token_ids_shape": [1, n - 1], "token_ids": p["input_ids"][1:],
            "rollout_sample_ids_shape": [1, n - 1], "rollout_sample_ids": sample_of,
            "model_steps_shape": [1, n - 1], "model_steps": [-1] * (n - 1),
            "vllm_logprobs_shape": [1, n - 1], "vllm_logprobs": vllm,
            "prompt_mask_shape": [1, n - 1], "prompt_mask": prompt_mask,
            "attention_mask_shape": [1, n - 1], "attention_mask": seq,
        })

    passes, first_logpi = dppo_update(model, opt, samples, args.delta, args.max_grad_norm, args.updates)
    for (micro, a, pos), logpi in zip(where, first_logpi):
        for t, lp in zip(pos, logpi):
            lines[micro]["trainer_logprobs"][a + t - 1] = lp

    os.makedirs(args.trainer_dir, exist_ok=True)
    out = os.path.join(args.trainer_dir, f"{run}_trainer_logprobs_step{step:06d}.jsonl")
    with open(out + ".partial", "w", encoding="utf-8") as f:
        for rec in lines:
            f.write(json.dumps(rec) + "\n")
    os.replace(out + ".partial", out)

    tinylm.save(model, args.weights, version + 1)
    torch.save(opt.state_dict(), opt_file + ".partial")
    os.replace(opt_file + ".partial", opt_file)
    print(json.dumps({
        "step": step, "version": version + 1, "packs": len(packs), "model_tokens": n_model, "masked_tokens": passes[0]["masked_tokens"],
        "loss": passes[0]["loss"], "mean_abs_pi_mu": passes[0]["mean_abs_pi_mu"], "grad_norm": passes[0]["grad_norm"], "updates": passes,
        "trainer_logprobs": out, "finite": all(math.isfinite(q["loss"]) for q in passes),
    }))


if __name__ == "__main__":
    main()
