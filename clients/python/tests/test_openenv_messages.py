"""Episodes driven with exactly OpenEnv's EnvClient/Tbench2Env messages (see openenv_client.py): the shipped
example tasks and the real Terminal-Bench 2 tasks — the reference solution run through exec actions scores 1,
doing nothing scores 0."""

import asyncio
from pathlib import Path

import pytest

from conftest import EXAMPLES, SHARED_TASKS
from openenv_client import OpenEnvTbench2Client, Tbench2Action


async def oracle_episode(url: str, task_dir: Path) -> float:
    """Uploads the task's solution with write_file actions and runs it with an exec action, then evaluates."""
    client = OpenEnvTbench2Client(url, message_timeout_s=1800)
    try:
        r = await client.reset(task_id=task_dir.name)
        assert r.observation.action_type == "reset" and r.observation.instruction and r.reward == 0.0 and not r.done
        for f in sorted((task_dir / "solution").rglob("*")):
            if f.is_file():
                rel = f.relative_to(task_dir / "solution")
                r = await client.step(Tbench2Action(action_type="write_file", file_path=f"/solution/{rel}", content=f.read_text()))
                assert r.observation.success, r.observation.error
        r = await client.step(Tbench2Action(command="bash /solution/solve.sh > /tmp/oracle.log 2>&1; echo exit=$?"))
        assert r.observation.output.strip().endswith("exit=0"), r.observation.output
        state = await client.state()
        assert state["task_id"] == task_dir.name and state["last_action_type"] == "exec" and state["terminal_ready"] is True
        r = await client.step(Tbench2Action(action_type="evaluate"))
        assert r.done and r.observation.done and r.observation.action_type == "evaluate"
        return r.reward
    finally:
        await client.disconnect()


async def nothing_episode(url: str, task_id: str) -> float:
    client = OpenEnvTbench2Client(url, message_timeout_s=1800)
    try:
        await client.reset(task_id=task_id)
        r = await client.step(Tbench2Action(action_type="evaluate"))
        assert r.done
        return r.reward
    finally:
        await client.disconnect()


@pytest.mark.parametrize("task", ["hello-file", "word-count", "fix-script"])
def test_examples_oracle_1_nothing_0(examples_server, task):
    assert asyncio.run(oracle_episode(examples_server.url, EXAMPLES / task)) == 1.0
    assert asyncio.run(nothing_episode(examples_server.url, task)) == 0.0


@pytest.mark.parametrize("task", sorted(p.name for p in SHARED_TASKS.iterdir() if (p / "solution").is_dir()) if SHARED_TASKS.is_dir() else ["(absent)"])
def test_tb2_offline_oracle_1_nothing_0(shared_server, task):
    assert asyncio.run(oracle_episode(shared_server.url, SHARED_TASKS / task)) == 1.0
    assert asyncio.run(nothing_episode(shared_server.url, task)) == 0.0


def test_errors_are_openenv_runtime_errors(examples_server):
    async def main():
        client = OpenEnvTbench2Client(examples_server.url)
        try:
            with pytest.raises(RuntimeError, match=r"^Server error: .*\(code: EXECUTION_ERROR\)$"):
                await client.step(Tbench2Action(command="true"))
            with pytest.raises(RuntimeError, match=r"\(code: UNKNOWN_TYPE\)$"):
                await client._send_and_receive({"type": "mcp", "data": {}})
            with pytest.raises(RuntimeError, match=r"\(code: VALIDATION_ERROR\)$"):
                await client._send_and_receive({"type": "state", "data": {}})
        finally:
            await client.disconnect()

    asyncio.run(main())
