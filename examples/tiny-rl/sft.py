#!/usr/bin/env python3
"""Warm start of the tiny policy: supervised fine-tuning on the oracle trajectories that `tmax traces export`
wrote (OpenAI messages JSONL). Each line becomes the token stream the train profile would build: the chat
template's prompt (system + user + tools, via tokenizer.mjs) then, per assistant message, its text's ids and
<|im_end|> (trained) and the observation wrapper after it (not trained). Cross-entropy on the trained ids,
Adam, a fixed number of epochs; saved as policy version 0.

By default the context rows (tinylm.TinyLM.ctx) stay frozen at zero: the warm start learns the reply format and
the four candidate commands (each about as likely as the others, as in the data) but not which command fits
which task, so its reward starts near 1/4 and the DPPO steps have that choice to learn. `--train-context`
trains them too (the warm start then solves the tasks by itself).

Usage: sft.py SFT.jsonl --out policy.pt [--epochs 100] [--lr 3e-3] [--seed 0] [--train-context]
"""
import argparse
import json
import os
import random
import sys

import torch

import tinylm
from serve import Tokenizer


def observation_wrapper(text):
    # src/agent/tokenLoop.ts observationWrapper: the text the harness appends after each executed call
    return f"<|im_start|>user\n<tool_response>\n{text}\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>\n"


def stream_of(line, tok, vocab):
    """(ids, positions of trained ids) of one SFT line."""
    messages = line["messages"]
    first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    ids = tok.ask(op="chat", messages=messages[:first], tools=line.get("tools"), add_generation_prompt=True)["ids"]
    trained = []
    for m in messages[first:]:
        if m["role"] == "assistant":
            reply = tok.ask(op="encode", text=m["content"])["ids"] + [vocab["im_end"]]
            outside = [i for i in reply if i not in vocab["ids"]]
            if outside:
                sys.exit(f"reply has ids outside vocab.json ({outside[:5]}); run make_vocab.mjs")
            trained += range(len(ids), len(ids) + len(reply))
            ids += reply
        elif m["role"] == "tool" and m is not messages[-1]:
            ids += tok.ask(op="encode", text=observation_wrapper(m["content"]))["ids"]
    return ids, trained


def warm_start(model, data, epochs, lr, seed, train_context=False, log=None):
    """Cross-entropy on [(ids, trained positions)], Adam, one line per update; the mean NLL of each epoch."""
    frozen = set() if train_context else {id(q) for q in model.context_parameters()}
    opt = torch.optim.Adam([q for q in model.parameters() if id(q) not in frozen], lr=lr)
    order = random.Random(seed)
    data = list(data)
    history = []
    for epoch in range(epochs):
        order.shuffle(data)
        total, count = 0.0, 0
        for ids, pos in data:
            opt.zero_grad(set_to_none=True)
            loss = -model.logprobs_at(ids, pos).mean()
            loss.backward()
            opt.step()
            total += float(loss) * len(pos)
            count += len(pos)
        history.append(total / count)
        if log:
            log(f"sft epoch {epoch + 1}: mean NLL per reply token {total / count:.4f}", flush=True)
    return history


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sft")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-context", action="store_true", help="train the context rows too (default: frozen at zero)")
    args = ap.parse_args()

    tinylm.setup_torch()
    vocab = tinylm.load_vocab()
    with open(args.sft, encoding="utf-8") as f:
        lines = [json.loads(l) for l in f if l.strip()]
    if not lines:
        sys.exit(f"{args.sft}: no trajectories")
    tok = Tokenizer()
    try:
        data = [stream_of(l, tok, vocab) for l in lines]
    finally:
        tok.close()
    model = tinylm.new_model(vocab, args.seed)
    history = warm_start(model, data, args.epochs, args.lr, args.seed, args.train_context, log=print)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tinylm.save(model, args.out, 0, {"sft": {"file": os.path.abspath(args.sft), "lines": len(lines), "epochs": args.epochs, "nll": history, "train_context": args.train_context}})
    print(json.dumps({"out": args.out, "lines": len(lines), "epochs": args.epochs, "final_nll": history[-1]}))


if __name__ == "__main__":
    main()
