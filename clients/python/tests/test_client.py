"""TmaxEnv (sync and async) on the tbench2 action set, against a real `tmax serve` of the example tasks."""

import asyncio

import pytest

from tmax_env import AsyncTmaxEnv, TmaxEnv, TmaxEnvError, capacity, list_tasks


def test_tb2_episode_solved_by_actions_scores_1(examples_server):
    with TmaxEnv(examples_server.url) as env:
        r = env.reset(task_id="hello-file")
        assert (r.reward, r.done) == (0.0, False)
        assert r.observation["action_type"] == "reset" and "Hello, tmax!" in r.observation["instruction"]
        r = env.step({"action_type": "exec", "command": "cd /app && pwd; echo to-stderr >&2"})
        assert r.observation["output"] == "/app\nto-stderr\n" and r.observation["success"] is True
        r = env.step({"action_type": "write_file", "file_path": "hello.txt", "content": "Hello, tmax!\n"})
        assert r.observation["success"] is True
        state = env.state()
        assert state["step_count"] == 2 and state["last_action_type"] == "write_file" and state["task_id"] == "hello-file"
        r = env.step({"action_type": "evaluate"})
        assert (r.reward, r.done) == (1.0, True)
        assert r.observation["info"]["tests_passed"] is True
        assert "PASS" in r.observation["output"]
        # the tests were copied in for the verifier: the episode is over, nothing more runs in that sandbox
        with pytest.raises(TmaxEnvError) as e:
            env.step({"action_type": "exec", "command": "cat /tests/test.sh"})
        assert e.value.code == "EXECUTION_ERROR" and "episode is over" in e.value.message


def test_do_nothing_scores_0_and_a_failed_command_is_an_observation(examples_server):
    with TmaxEnv(examples_server.url) as env:
        env.reset(task_id="hello-file")
        r = env.step({"action_type": "exec", "command": "exit 3"})
        assert r.observation["success"] is False and r.observation["info"]["exit_code"] == 3
        r = env.step({"action_type": "view", "session_id": "s"})
        assert r.observation["success"] is False and "Unsupported action_type" in r.observation["error"]
        r = env.step({"action_type": "evaluate"})
        assert (r.reward, r.done) == (0.0, True)


def test_async_client_and_async_variants(examples_server):
    async def main():
        async with AsyncTmaxEnv(examples_server.url) as env:
            r = await env.reset(seed=3)
            assert r.observation["task_id"] in list_tasks(examples_server.url)
            r = await env.step({"action_type": "close"})
            assert r.done and r.observation["output"] == "Closed TB2 environment."
        env = TmaxEnv(examples_server.url)
        try:
            r = await env.reset_async(task_id="word-count")
            assert r.observation["task_id"] == "word-count"
            assert (await env.state_async())["step_count"] == 0
            r = await env.step_async({"action_type": "exec", "command": "echo $((6*7))"})
            assert r.observation["output"] == "42\n"
        finally:
            await env.close_async()
            env.close()

    asyncio.run(main())


def test_validation_errors_keep_the_session(examples_server):
    with TmaxEnv(examples_server.url) as env:
        with pytest.raises(TmaxEnvError) as e:
            env.step({"action_type": "exec"})
        assert e.value.code == "EXECUTION_ERROR"  # no episode yet
        env.reset(task_id="word-count")
        with pytest.raises(TmaxEnvError) as e:
            env.step({"action_type": "exec", "bogus": 1})
        assert e.value.code == "VALIDATION_ERROR"
        with pytest.raises(TmaxEnvError) as e:
            env.reset(task_id="no-such-task")
        assert e.value.code == "EXECUTION_ERROR" and "not a task of the served dataset" in e.value.message
    assert capacity(examples_server.url)["max_sessions"] == 4
