"""Run by the node test (test/e2e/serve/python.test.ts), not collected on its own (no test_ prefix):
a trainer loop with open-instruct's interface whose model is the scripted vLLM stand-in that `tmax run` used;
every observation it gets must be byte for byte the tool message `tmax run` gave the model."""

import asyncio
import json
import os
import urllib.request

from tmax_env import EnvCall, TmaxOpenInstructEnv


def chat(base_url: str, messages: list, tools: list) -> dict:
    body = json.dumps({"model": "tmax-9b", "messages": messages, "tools": tools, "temperature": 0.7}).encode()
    req = urllib.request.Request(base_url + "/chat/completions", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["choices"][0]["message"]


def test_adapter_observations_equal_tmax_run():
    expected = json.load(open(os.environ["EXPECTED_JSON"]))

    async def main():
        env = TmaxOpenInstructEnv(os.environ["TMAX_SERVE_URL"])
        first, tools = await env.reset("hello-file")
        assert first.result == expected["prompt"]
        messages = first.metadata["messages"]
        seen = []
        while True:
            message = chat(os.environ["FAKE_VLLM_URL"], messages, tools)
            call = message["tool_calls"][0]
            r = await env.step(EnvCall(id=call["id"], name=call["function"]["name"], args=json.loads(call["function"]["arguments"])))
            seen.append(r.result)
            messages = messages + [message, {"role": "tool", "tool_call_id": call["id"], "content": r.result}]
            if r.done:
                break
        await env.close()
        assert seen == expected["observations"]
        assert r.reward == 1.0 and r.metadata["exit_status"] == "submitted"

    asyncio.run(main())
