#!/usr/bin/env python3
"""A stand-in for `vllm serve` that serves the tiny policy (tinylm.py) on 127.0.0.1: the part of vLLM's API that
tmax's train profile uses, plus a weight reload and a policy version.

  GET  /v1/models            the served model (id, max_model_len) and its policy version
  POST /tokenize             {messages, tools, add_generation_prompt} or {prompt}: Qwen3 ids (via tokenizer.mjs)
  POST /detokenize           {tokens} -> {prompt}
  POST /v1/completions       prompt = token ids; n=1, max_tokens, seed (per request), logprobs, return_token_ids;
                             sampling at temperature 1, top_p 1 (training's pinned parameters; others refused)
  POST /v1/chat/completions  --teacher only: answers each task's oracle reply (vocab.json) to make SFT data
  GET  /policy               {"version": v}
  POST /reload               {"path"?: weights, "after_completions"?: n}: load the weights (now, or right after the
                             n-th next completion, as an asynchronous learner's push would land mid-step), then
                             write the checkpoint's version to --version-file (what `tmax rollout` reads)

Sampling draws from torch.Generator(seed) token by token; the logprob of each sampled id is the log-softmax of
the policy's logits over its output ids (float32): exactly what learn.py computes for the same tokens.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

import tinylm

HERE = os.path.dirname(os.path.abspath(__file__))
PINNED = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


class Tokenizer:
    """tokenizer.mjs as a child process, one request at a time."""

    def __init__(self):
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "tokenizer.mjs")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE)
        self.lock = threading.Lock()
        if json.loads(self.proc.stdout.readline()).get("ready") is not True:
            sys.exit("tokenizer.mjs did not start (run `npm ci` at the repository root)")

    def ask(self, **req):
        with self.lock:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            out = json.loads(self.proc.stdout.readline())
        if "error" in out:
            raise ValueError(out["error"])
        return out

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class Policy:
    def __init__(self, args, vocab):
        self.args = args
        self.vocab = vocab
        self.lock = threading.Lock()
        self.pending_reload = None  # (completions left, path)
        self.completions = 0
        if args.weights and os.path.exists(args.weights):
            self.model, self.version = tinylm.load(args.weights)
        else:
            self.model, self.version = tinylm.new_model(vocab, args.init_seed), 0
        self.model.eval()
        self.write_version()

    def write_version(self):
        if self.args.version_file:
            tmp = self.args.version_file + ".partial"
            with open(tmp, "w") as f:
                f.write(f"{self.version}\n")
            os.replace(tmp, self.args.version_file)

    def reload(self, path):
        model, version = tinylm.load(path)
        model.eval()
        with self.lock:
            self.model, self.version = model, version
        self.write_version()
        return version

    @torch.no_grad()
    def sample(self, prompt, max_tokens, seed):
        gen = torch.Generator()
        gen.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(4), "little"))
        with self.lock:
            model, version = self.model, self.version
        out, logprobs, finish = tinylm.sample(model, prompt, max_tokens, gen, self.vocab["im_end"])
        return out, logprobs, finish, version

    def completed(self):
        """Count a completion; run a scheduled reload when its turn has come."""
        self.completions += 1
        if self.pending_reload:
            left, path = self.pending_reload
            self.pending_reload = (left - 1, path) if left > 1 else None
            if left <= 1:
                self.reload(path)


def make_handler(args, policy, tok, teacher):
    name = args.model

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            if args.verbose:
                sys.stderr.write("serve: " + fmt % a + "\n")

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, status, message):
            self.reply(status, {"error": {"message": message, "type": "BadRequestError", "param": None, "code": status}})

        def do_GET(self):
            if self.path == "/v1/models":
                return self.reply(200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "tiny-rl", "root": name, "max_model_len": args.max_model_len, "policy_version": policy.version}]})
            if self.path == "/policy":
                return self.reply(200, {"version": policy.version, "completions": policy.completions})
            self.reply(404, {"detail": "Not Found"})

        def do_POST(self):
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            except json.JSONDecodeError:
                return self.error(400, "invalid JSON")
            try:
                if self.path == "/tokenize":
                    if isinstance(body.get("messages"), list):
                        ids = tok.ask(op="chat", messages=body["messages"], tools=body.get("tools"), add_generation_prompt=body.get("add_generation_prompt", True))["ids"]
                    else:
                        ids = tok.ask(op="encode", text=str(body.get("prompt", "")))["ids"]
                    return self.reply(200, {"count": len(ids), "max_model_len": args.max_model_len, "tokens": ids, "token_strs": None})
                if self.path == "/detokenize":
                    return self.reply(200, {"prompt": tok.ask(op="decode", ids=body.get("tokens", []))["text"]})
                if self.path == "/v1/completions":
                    return self.completion(body)
                if self.path == "/v1/chat/completions":
                    return self.chat(body)
                if self.path == "/reload":
                    path = body.get("path", args.weights)
                    if not path or not os.path.exists(path):
                        return self.error(400, f"no weights at {path}")
                    after = int(body.get("after_completions", 0))
                    if after > 0:
                        policy.pending_reload = (after, path)
                        return self.reply(200, {"version": policy.version, "scheduled_after_completions": after})
                    return self.reply(200, {"version": policy.reload(path)})
            except ValueError as e:
                return self.error(400, str(e))
            self.reply(404, {"detail": "Not Found"})

        def completion(self, body):
            if body.get("model") != name:
                return self.error(404, f"The model `{body.get('model')}` does not exist.")
            prompt = body.get("prompt")
            if not isinstance(prompt, list) or not all(isinstance(i, int) for i in prompt):
                return self.error(400, "prompt must be a list of token ids here")
            if body.get("n", 1) != 1:
                return self.error(400, "n must be 1")
            for key, value in PINNED.items():
                if key in body and body[key] is not None and float(body[key]) != value:
                    return self.error(400, f"{key}={body[key]}: this stand-in samples only with {key}={value}")
            max_tokens = int(body.get("max_tokens") or 16)
            if len(prompt) + max_tokens > args.max_model_len:
                return self.error(400, f"This model's maximum context length is {args.max_model_len} tokens. However, you requested {len(prompt) + max_tokens} tokens ({len(prompt)} in the messages, {max_tokens} in the completion).")
            ids, logprobs, finish, version = policy.sample(prompt, max_tokens, body.get("seed"))
            text = tok.ask(op="decode", ids=ids)["text"]
            policy.completed()  # a scheduled reload lands before this answer leaves: the client sees the new version file
            self.reply(200, {
                "id": f"cmpl-{uuid.uuid4().hex[:16]}", "object": "text_completion", "created": int(time.time()), "model": name,
                "choices": [{
                    "index": 0, "text": text,
                    "logprobs": {"text_offset": [], "token_logprobs": logprobs, "tokens": [f"token_id:{i}" for i in ids], "top_logprobs": []},
                    "finish_reason": finish, "stop_reason": None, "token_ids": ids, "prompt_token_ids": prompt,
                }],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(ids), "total_tokens": len(prompt) + len(ids)},
                "policy_version": version,
            })

        def chat(self, body):
            if teacher is None:
                return self.error(400, "this server samples through /v1/completions (train profile); /v1/chat/completions needs --teacher")
            if body.get("model") != name:
                return self.error(404, f"The model `{body.get('model')}` does not exist.")
            user = next((m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"), "")
            match = [reply for instruction, reply in teacher if instruction in user]
            if len(match) != 1:
                return self.error(400, "teacher: the user message names no task of --teacher (or several)")
            self.reply(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion", "created": int(time.time()), "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": match[0], "tool_calls": []}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            })

    return Handler


def teacher_replies(tasks_dir, vocab):
    """(instruction, oracle reply) per task of tasks_dir that vocab.json has a reply for."""
    out = []
    for task, reply in sorted(vocab["replies"].items()):
        with open(os.path.join(tasks_dir, task, "instruction.md"), encoding="utf-8") as f:
            out.append((f.read().strip(), reply))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8008)
    ap.add_argument("--model", default="tiny-rl")
    ap.add_argument("--weights", help="checkpoint to serve (and the default of /reload); absent file = a fresh model")
    ap.add_argument("--init-seed", type=int, default=0)
    ap.add_argument("--version-file", help="written with the served policy version at start and after every reload")
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--teacher", help="tasks dir: answer /v1/chat/completions with each task's oracle reply")
    ap.add_argument("--ready-file", help="written with the port once the server listens")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    # SIGTERM and SIGINT both end the server (and its tokenizer child) cleanly; a shell's background job ignores
    # SIGINT unless it is set back here
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tinylm.setup_torch()
    vocab = tinylm.load_vocab()
    tok = Tokenizer()
    policy = Policy(args, vocab)
    teacher = teacher_replies(args.teacher, vocab) if args.teacher else None
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args, policy, tok, teacher))
    server.daemon_threads = True
    port = server.server_address[1]
    if args.ready_file:
        with open(args.ready_file + ".partial", "w") as f:
            f.write(f"{port}\n")
        os.replace(args.ready_file + ".partial", args.ready_file)
    print(f"tiny-rl serving {args.model} (policy version {policy.version}) on http://127.0.0.1:{port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        tok.close()


if __name__ == "__main__":
    main()
