"""The open-instruct adapter and the Gym-style wrapper on harness sessions (eval profile)."""

import asyncio

from tmax_env import EnvCall, TmaxGymEnv, TmaxOpenInstructEnv

SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"


def test_open_instruct_adapter_episode(examples_server):
    async def main():
        env = TmaxOpenInstructEnv(examples_server.url)
        first, tools = await env.reset("hello-file")
        assert tools[0]["function"]["name"] == "bash" and tools[0]["function"]["parameters"]["required"] == ["command"]
        assert "<task>" in first.result and "Hello, tmax!" in first.result and first.done is False
        assert [m["role"] for m in first.metadata["messages"]] == ["system", "user"]
        r = await env.step(EnvCall(id="c1", name="bash", args={"command": "printf 'Hello, tmax!\\n' > /app/hello.txt; cat /app/hello.txt"}))
        assert r.result == "Hello, tmax!\n\n(exit_code=0)" and not r.done and r.reward == 0.0
        r = await env.step(EnvCall(id="c2", name="python", args={"code": "1"}))
        assert r.result.startswith("Format error:") and "`python`" in r.result and not r.done
        r = await env.step(EnvCall(id="c3", name="bash", args={"command": SUBMIT}))
        assert r.done and r.reward == 1.0 and r.metadata["exit_status"] == "submitted"
        assert env.state().step_count == 3
        await env.close()

    asyncio.run(main())


def test_gym_wrapper_terminated_and_truncated(examples_server):
    env = TmaxGymEnv(examples_server.url, task_id="word-count")
    try:
        obs, info = env.reset()
        assert "<task>" in obs and info["task_id"] == "word-count"
        obs, reward, terminated, truncated, info = env.step("ls /nonexistent")
        assert obs.endswith("(exit_code=2)") and (reward, terminated, truncated) == (0.0, False, False)
        obs, reward, terminated, truncated, info = env.step(SUBMIT)
        assert (reward, terminated, truncated) == (0.0, True, False) and info["exit_status"] == "submitted"
        obs, info = env.reset(seed=1)
        assert info["task_id"] in {"fix-script", "hello-file", "word-count"}
    finally:
        env.close()


def test_gym_wrapper_step_limit_is_truncated(guarded_server):
    # the guarded server allows one model turn per episode (--max-steps 1)
    env = TmaxGymEnv(guarded_server.url, token=guarded_server.token, task_id="hello-file")
    try:
        env.reset()
        obs, reward, terminated, truncated, info = env.step("true")
        assert (reward, terminated, truncated) == (0.0, False, True) and info["exit_status"] == "step_limit"
    finally:
        env.close()
