"""The tiny policy: a causal LM over Qwen3 token ids with a restricted output vocabulary.

Inputs are any Qwen3 ids (hashed into BUCKETS embedding rows); outputs are the ~40 ids of vocab.json (the tokens
that spell the toy tasks' replies and the tool-call wrapper), so log pi(token) is a log-softmax over those ids and
every other id has probability 0. The sampler (serve.py) and the learner (learn.py, sft.py) score tokens with the
same `token_logprobs`, in float32, on one CPU thread.
"""
import json
import os

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
BUCKETS = 8191  # prime: input id -> id % BUCKETS
GATES = ("uncertainty", "none")  # where the context bias acts: weighted by the n-gram part's doubt, or everywhere


def load_vocab(path=os.path.join(HERE, "vocab.json")):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class TinyLM(nn.Module):
    """A neural n-gram LM conditioned on its context (Bengio et al.'s MLP LM, plus a bag of the context's ids):

        h_t = tanh(E_1[x_{t-1}] + E_2[x_{t-2}] + P[t - turn start])
        l_t = W_out h_t                                   (the local, n-gram logits)
        logits_t = l_t + g_t * sum(C[context ids]),  g_t = 1 - max softmax(l_t)  (no gradient through g_t)

    The context is the last user turn before the current one (the task, or the latest observation), the turn is the
    span of sampled ids the position belongs to. C has one trainable row of output logits per (hashed) input id, zero
    at the start: the words that tell the tasks apart ("opening", "final", "reverse", "Sort") each get their own
    row, so a policy-gradient step on one task's episodes moves that task's choice of command directly (the rows of
    the words all tasks share get opposite pushes that mostly cancel). The gate g_t is the n-gram part's own doubt:
    about 0.001 on the reply's format tokens (p ~ 0.999), about 3/4 where the warm start hesitates between four
    commands. So the context acts, and its rows get gradient, where the policy is choosing, not on the format; no
    position is named, the gate is computed from the policy's state, and sampler and learner compute it alike.
    (`gate="none"` adds the bias at every position, as before.) It is causal (token t sees only ids before it)
    and cheap: one sampled token costs one small matrix product, whatever the context length.
    """

    def __init__(self, out_ids, dim=64, max_turn_positions=96, gate="uncertainty"):
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"gate {gate!r}: expected one of {', '.join(GATES)}")
        self.out_ids = list(out_ids)
        self.gate = gate
        self.config = {"dim": dim, "max_turn_positions": max_turn_positions, "gate": gate}
        self.ctx = nn.EmbeddingBag(BUCKETS, len(self.out_ids), mode="sum")
        nn.init.zeros_(self.ctx.weight)  # context-blind until trained: the warm start can leave the choice to RL
        self.prev1 = nn.Embedding(BUCKETS, dim)
        self.prev2 = nn.Embedding(BUCKETS, dim)
        self.pos = nn.Embedding(max_turn_positions, dim)
        self.head = nn.Linear(dim, len(self.out_ids))
        self.index = {tok: i for i, tok in enumerate(self.out_ids)}

    def context_parameters(self):
        return [self.ctx.weight]

    def forward(self, ids, turn_start, positions):
        """Logits [len(positions), n_out] of the next id at each position p (predicting ids[p] from ids[:p]);
        turn_start[k] is where the sampled span containing positions[k] begins (its context is ids[:turn_start])."""
        raw = ids
        ids = torch.as_tensor(ids, dtype=torch.long) % BUCKETS
        starts = sorted(set(turn_start))
        bags = [ids[last_user(raw, s):s] for s in starts]
        offsets = torch.tensor([0] + [len(b) for b in bags[:-1]], dtype=torch.long).cumsum(0)
        vec = self.ctx(torch.cat(bags), offsets)
        row = {s: k for k, s in enumerate(starts)}
        ctx = vec[torch.tensor([row[s] for s in turn_start], dtype=torch.long)]
        p = torch.as_tensor(positions, dtype=torch.long)
        st = torch.as_tensor(turn_start, dtype=torch.long)
        h = torch.tanh(self.prev1(ids[p - 1]) + self.prev2(ids[p - 2]) + self.pos((p - st).clamp(max=self.pos.num_embeddings - 1)))
        local = self.head(h)
        if self.gate == "uncertainty":
            # the context speaks where the n-gram part is unsure: weight 1 - max p_local (detached), ~0 on the format
            # tokens (p ~ 0.999), ~3/4 where the warm start hesitates between four commands
            ctx = ctx * (1 - torch.softmax(local.detach(), dim=-1).max(dim=-1).values)[:, None]
        return (local + ctx).float()

    def logprobs_at(self, ids, positions, turn_start=None):
        """log pi of ids[p] given ids[:p] for each p in positions (output ids; float32, with gradient). The turn of p
        is the run of consecutive positions it belongs to unless turn_start says otherwise."""
        if turn_start is None:
            turn_start = spans_of(positions)
        logp = torch.log_softmax(self(ids, turn_start, positions), dim=-1)
        targets = torch.tensor([self.index[ids[p]] for p in positions], dtype=torch.long)
        return logp.gather(-1, targets[:, None]).squeeze(-1)


IM_START, USER = 151644, 872  # "<|im_start|>", "user"


def last_user(ids, end):
    """Where the last user turn before `end` begins (its ids after `<|im_start|>user`); 0 when there is none."""
    for i in range(end - 2, -1, -1):
        if ids[i] == IM_START and ids[i + 1] == USER:
            return i + 2
    return 0


def spans_of(positions):
    """The start of the run of consecutive positions each position belongs to (a sampled turn)."""
    out, start = [], None
    for i, p in enumerate(positions):
        if i == 0 or p != positions[i - 1] + 1:
            start = p
        out.append(start)
    return out


@torch.no_grad()
def sample(model, prompt, max_tokens, gen, stop_id):
    """Sample a reply to `prompt` token by token at temperature 1 from `gen` (a torch.Generator); (ids, logprobs,
    finish reason). The logprob of each id is the float32 log-softmax that learn.py recomputes for it."""
    ids, out, logprobs = list(prompt), [], []
    for _ in range(max_tokens):
        logp = torch.log_softmax(model(ids, [len(prompt)], [len(ids)])[0], dim=-1)
        k = int(torch.multinomial(logp.exp(), 1, generator=gen))
        ids.append(model.out_ids[k])
        out.append(model.out_ids[k])
        logprobs.append(float(logp[k]))
        if model.out_ids[k] == stop_id:
            return out, logprobs, "stop"
    return out, logprobs, "length"


def new_model(vocab, seed=0, gate="uncertainty"):
    torch.manual_seed(seed)
    return TinyLM(vocab["ids"], gate=gate)


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
