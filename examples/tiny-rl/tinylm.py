"""The tiny policy: a causal transformer over Qwen3 token ids with a restricted output vocabulary.

Inputs are any Qwen3 ids (hashed into BUCKETS embedding rows); outputs are the ~40 ids of vocab.json (the tokens
that spell the toy tasks' replies and the tool-call wrapper), so log pi(token) is a log-softmax over those ids and
every other id has probability 0. The sampler (serve.py) and the learner (learn.py, sft.py) score tokens with the
same `token_logprobs`, in float32, on one CPU thread.
"""
import json
import math
import os

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
BUCKETS = 8191  # prime: input id -> id % BUCKETS


def load_vocab(path=os.path.join(HERE, "vocab.json")):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Block(nn.Module):
    """Pre-norm causal self-attention + MLP, written out (no fused fast paths: the same arithmetic every call)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x, causal):
        t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).view(t, 3, h, d // h).permute(1, 2, 0, 3)  # 3 x [h, t, d/h]
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // h)
        att = att.masked_fill(~causal[:t, :t], float("-inf")).softmax(-1)
        x = x + self.out((att @ v).transpose(0, 1).reshape(t, d))
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    def __init__(self, out_ids, dim=32, layers=2, heads=2, max_positions=1024):
        super().__init__()
        self.out_ids = list(out_ids)
        self.config = {"dim": dim, "layers": layers, "heads": heads, "max_positions": max_positions}
        self.embed = nn.Embedding(BUCKETS, dim)
        self.pos = nn.Embedding(max_positions, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, len(self.out_ids))
        self.register_buffer("causal", torch.ones(max_positions, max_positions, dtype=torch.bool).tril(), persistent=False)
        self.index = {tok: i for i, tok in enumerate(self.out_ids)}

    def forward(self, ids):
        """ids: LongTensor [t] of Qwen3 ids -> logits [t, len(out_ids)] for the next token at each position."""
        if ids.shape[0] > self.causal.shape[0]:
            raise ValueError(f"sequence of {ids.shape[0]} tokens is longer than max_positions {self.causal.shape[0]}")
        x = self.embed(ids % BUCKETS) + self.pos(torch.arange(ids.shape[0]))
        for block in self.blocks:
            x = block(x, self.causal)
        return self.head(self.norm(x)).float()

    def logprobs_at(self, ids, positions):
        """log pi of ids[p] given ids[:p], for each p in positions (all >= 1, all output ids); float32, with gradient."""
        ids_t = torch.as_tensor(ids, dtype=torch.long)
        logp = torch.log_softmax(self(ids_t[: max(positions)]), dim=-1)
        rows = torch.tensor([p - 1 for p in positions], dtype=torch.long)
        targets = torch.tensor([self.index[ids[p]] for p in positions], dtype=torch.long)
        return logp[rows, targets]


def new_model(vocab, seed=0):
    torch.manual_seed(seed)
    return TinyLM(vocab["ids"])


def save(model, path, version, extra=None):
    """Weights + policy version, written whole (tmp + rename) so a reader never sees half a file."""
    tmp = path + ".partial"
    torch.save({"state": model.state_dict(), "out_ids": model.out_ids, "config": model.config, "version": version, **(extra or {})}, tmp)
    os.replace(tmp, path)


def load(path):
    ck = torch.load(path)
    model = TinyLM(ck["out_ids"], **ck["config"])
    model.load_state_dict(ck["state"])
    return model, ck["version"]


def setup_torch():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
