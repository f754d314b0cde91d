"""Token auth (header, OpenEnv-style user info, query), a full server's busy answer, and a session's sandbox
going away on disconnect and on idle timeout — against a server with a token and room for one session."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
import websockets

from conftest import wait_until
from openenv_client import OpenEnvTbench2Client
from tmax_env import AsyncTmaxEnv, TmaxEnv, TmaxEnvError, basic_auth_url, capacity


def http_status(url: str, headers=None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_token_required_everywhere_but_health(guarded_server):
    s = guarded_server
    assert http_status(s.url + "/health") == 200
    assert http_status(s.url + "/tasks") == 401
    assert http_status(s.url + "/tasks", {"Authorization": "Bearer " + "x" * 32}) == 401
    assert http_status(s.url + "/tasks", {"Authorization": f"Bearer {s.token}"}) == 200
    assert http_status(s.url + f"/tasks?token={s.token}") == 200

    async def rejected(url, **kw):
        with pytest.raises(Exception) as e:
            async with AsyncTmaxEnv(url, **kw) as env:
                await env.reset(task_id="hello-file")
        assert "401" in str(e.value)

    asyncio.run(rejected(s.url))
    asyncio.run(rejected(s.url, token="wrong-token-wrong-token"))


@pytest.mark.parametrize("how", ["bearer", "userinfo", "query"])
def test_each_way_of_presenting_the_token(guarded_server, how):
    s = guarded_server

    async def main():
        if how == "bearer":
            env = AsyncTmaxEnv(s.url, token=s.token)
        elif how == "userinfo":  # OpenEnv's EnvClient sets no header: the token rides in the URL's user info
            env = OpenEnvTbench2Client(basic_auth_url(s.url, s.token))
        else:
            env = None
        if env is None:
            async with websockets.connect(f"ws://127.0.0.1:{s.port}/ws?token={s.token}") as ws:
                await ws.send(json.dumps({"type": "state"}))
                assert json.loads(await ws.recv()) == {"type": "state", "data": {"episode_id": None, "step_count": 0}}
            return
        try:
            assert (await env.state())["step_count"] == 0
        finally:
            await (env.disconnect() if hasattr(env, "disconnect") else env.close())

    asyncio.run(main())
    assert wait_until(lambda: capacity(s.url, s.token)["active_sessions"] == 0, 10)


def test_busy_server_answers_at_once(guarded_server):
    s = guarded_server
    with TmaxEnv(s.url, token=s.token) as first:
        first.state()
        started = time.monotonic()
        with pytest.raises(TmaxEnvError) as e:
            with TmaxEnv(s.url, token=s.token) as second:
                second.state()
        assert time.monotonic() - started < 2.0
        assert e.value.code == "CAPACITY_REACHED" and e.value.data == {"message": e.value.message, "code": "CAPACITY_REACHED", "active_sessions": 1, "max_sessions": 1}
        assert "Server at capacity: 1/1" in e.value.message
    assert wait_until(lambda: capacity(s.url, s.token)["active_sessions"] == 0, 10)


def test_disconnect_without_close_removes_the_container(guarded_server):
    s = guarded_server

    async def main():
        env = AsyncTmaxEnv(s.url, token=s.token)
        await env.reset(task_id="hello-file")
        assert len(s.containers()) == 1
        await env._ws.close()  # the connection drops: no close message

    asyncio.run(main())
    assert wait_until(lambda: s.containers() == [], 30), s.containers()
    assert wait_until(lambda: capacity(s.url, s.token)["active_sessions"] == 0, 10)


def test_idle_session_is_closed_and_its_container_removed(guarded_server):
    s = guarded_server

    async def main():
        async with AsyncTmaxEnv(s.url, token=s.token) as env:
            await env.reset(task_id="hello-file")
            assert len(s.containers()) == 1
            # no message for longer than --idle-timeout 3: the server says why and closes
            raw = await asyncio.wait_for(env._ws.recv(), timeout=30)
            msg = json.loads(raw)
            assert msg["type"] == "error" and msg["data"]["code"] == "SESSION_ERROR" and "idle" in msg["data"]["message"]

    asyncio.run(main())
    assert wait_until(lambda: s.containers() == [], 30)
