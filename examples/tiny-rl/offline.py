#!/usr/bin/env python3
"""The tiny-rl loop without sandboxes, to choose its settings: the same warm start (sft.py's warm_start), sampler
(tinylm.sample with per-sample seeds), DPPO update (learn.py's dppo_update) and seeds as train.py, with the
verifier simulated: an episode earns 1 when its first reply is the task's oracle reply (vocab.json) token for
token, else 0 (the real verifier accepts a little more, e.g. other spellings of the same command; never less).
It prints, per step, the held-out reward (sampled with the evaluation seeds, as train.py's evaluation does) and
the mean probability of the oracle reply (exact: the policy's probability of those tokens, no sampling noise).

Usage: offline.py SFT.jsonl [--steps 10] [-G 4] [--lr 1e-2] [--context-lr 1e-1] [--gate uncertainty|none] [--updates 1] [--train-context] [--sft-epochs 100] ...
SFT.jsonl is what `tmax traces export --format sft` wrote for the teacher's job (train.py keeps it as OUT/sft.jsonl).
"""
import argparse
import json
import sys

import torch

import tinylm
from learn import dppo_update, make_optimizer
from serve import Tokenizer
from sft import stream_of, warm_start


def episode(model, prompt, seed, stop_id):
    gen = torch.Generator()
    gen.manual_seed(seed)
    reply, logprobs, _ = tinylm.sample(model, prompt, 128, gen, stop_id)
    return reply, torch.tensor(logprobs, dtype=torch.float32)


def oracle_prob(model, prompt, oracle):
    with torch.no_grad():
        ids = prompt + oracle
        return float(model.logprobs_at(ids, list(range(len(prompt), len(ids)))).sum().exp())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sft")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("-G", "--samples", type=int, default=4)
    ap.add_argument("--eval-samples", type=int, default=4)
    ap.add_argument("--eval-seed", type=int, default=7)
    ap.add_argument("--train-seed", type=int, default=1000)
    ap.add_argument("--sft-epochs", type=int, default=100)
    ap.add_argument("--sft-seed", type=int, default=0)
    ap.add_argument("--train-context", action="store_true")
    ap.add_argument("--gate", choices=tinylm.GATES, default="uncertainty")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--context-lr", type=float, default=1e-1)
    ap.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    ap.add_argument("--updates", type=int, default=1)
    ap.add_argument("--delta", type=float, default=0.1)
    args = ap.parse_args()

    tinylm.setup_torch()
    vocab = tinylm.load_vocab()
    stop = vocab["im_end"]
    with open(args.sft, encoding="utf-8") as f:
        lines = [json.loads(l) for l in f if l.strip()]
    tok = Tokenizer()
    try:
        data = [stream_of(l, tok, vocab) for l in lines]
        oracle = {t: tok.ask(op="encode", text=r)["ids"] + [stop] for t, r in vocab["replies"].items()}
    finally:
        tok.close()
    prompts = {}
    for line, (ids, pos) in zip(lines, data):
        prompts[line["metadata"]["task"]] = ids[: pos[0]]
    tasks = sorted(prompts)

    model = tinylm.new_model(vocab, args.sft_seed, args.gate)
    warm_start(model, data, args.sft_epochs, 3e-3, args.sft_seed, args.train_context)
    opt = make_optimizer(model, args.optimizer, args.lr, args.context_lr)

    def evaluate():
        rewards = [float(episode(model, prompts[t], args.eval_seed + i, stop)[0] == oracle[t]) for t in tasks for i in range(args.eval_samples)]
        return sum(rewards) / len(rewards), sum(oracle_prob(model, prompts[t], oracle[t]) for t in tasks) / len(tasks)

    print("step  eval reward  p(oracle)  train reward  kept  loss        masked (per update)  |pi-mu| first/last")
    for step in range(1, args.steps + 1):
        ev, p = evaluate()
        batch, rewards, kept = [], [], 0
        for t in tasks:
            group = [episode(model, prompts[t], args.train_seed * step + i, stop) for i in range(args.samples)]
            r = [float(reply == oracle[t]) for reply, _ in group]
            rewards += r
            if min(r) == max(r):
                continue  # all-equal group: dropped, as DPPO's active sampling does
            kept += 1
            mean = sum(r) / len(r)
            for (reply, logmu), ri in zip(group, r):
                ids = prompts[t] + reply
                batch.append((ids, list(range(len(prompts[t]), len(ids))), logmu, ri - mean))
        line = f"{step:4d}  {ev:11.3f}  {p:9.3f}  {sum(rewards) / len(rewards):12.3f}  {kept}/{len(tasks)}"
        if batch:
            passes, _ = dppo_update(model, opt, batch, args.delta, 1.0, args.updates)
            line += f"  {passes[0]['loss']:+.5f}  {','.join(str(q['masked_tokens']) for q in passes):>19}  {passes[0]['mean_abs_pi_mu']:.1e}/{passes[-1]['mean_abs_pi_mu']:.1e}"
        print(line, flush=True)
    ev, p = evaluate()
    print(f"{'end':>4}  {ev:11.3f}  {p:9.3f}")


if __name__ == "__main__":
    sys.exit(main())
