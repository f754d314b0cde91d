"""Client of `tmax serve` on OpenEnv's wire protocol.

One WebSocket session per client (``/ws``): ``reset`` starts an episode on a fresh sandbox, ``step`` sends one
action, ``state`` reads the episode's state, ``close`` ends the session (its sandbox is removed). Works with
the ``websockets`` Debian 12 ships (10.4) and with current releases (13+, the new asyncio client).
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional
from urllib.parse import urlsplit, urlunsplit

import websockets

__all__ = ["AsyncTmaxEnv", "StepResult", "TmaxEnv", "TmaxEnvError", "basic_auth_url", "capacity", "list_tasks", "run_episodes", "ws_url"]


class TmaxEnvError(RuntimeError):
    """An error message of the server: ``code`` is OpenEnv's (CAPACITY_REACHED when the server is busy)."""

    def __init__(self, code: str, message: str, data: Optional[Dict[str, Any]] = None):
        super().__init__(f"{message} (code: {code})")
        self.code = code
        self.message = message
        self.data = data or {}


@dataclass
class StepResult:
    """OpenEnv's StepResult: the observation's fields, the reward (None before the end), done."""

    observation: Dict[str, Any]
    reward: Optional[float] = None
    done: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


def ws_url(base_url: str) -> str:
    """``http://host:port`` -> ``ws://host:port/ws`` (OpenEnv's convert_to_ws_url plus ``/ws``)."""
    url = base_url.rstrip("/")
    if url.startswith("http://"):
        url = "ws://" + url[len("http://") :]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://") :]
    elif not url.startswith(("ws://", "wss://")):
        url = "ws://" + url
    return url + "/ws"


def _http_url(base_url: str) -> str:
    parts = urlsplit(base_url if "://" in base_url else "http://" + base_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def _auth_headers(token: Optional[str]) -> Dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _connect(url: str, headers: Dict[str, str], open_timeout: float, max_size: int):
    """Opens a WebSocket with either generation of the `websockets` API."""
    try:  # websockets >= 13: the new asyncio implementation (additional_headers)
        from websockets.asyncio.client import connect as new_connect  # type: ignore

        return await new_connect(url, additional_headers=headers or None, open_timeout=open_timeout, max_size=max_size)
    except ImportError:  # websockets 10-12: the legacy client (extra_headers)
        return await websockets.connect(url, extra_headers=headers or None, open_timeout=open_timeout, max_size=max_size)


class AsyncTmaxEnv:
    """Async client: ``async with AsyncTmaxEnv(url) as env: r = await env.reset(task_id=...)``."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        token: Optional[str] = None,
        connect_timeout_s: float = 10.0,
        message_timeout_s: float = 3600.0,
        max_message_size_mb: float = 100.0,
    ):
        self.base_url = base_url
        self.token = token
        self._ws_url = ws_url(base_url)
        self._connect_timeout = connect_timeout_s
        self._message_timeout = message_timeout_s
        self._max_size = int(max_message_size_mb * 1024 * 1024)
        self._ws = None

    async def connect(self) -> "AsyncTmaxEnv":
        if self._ws is None:
            self._ws = await _connect(self._ws_url, _auth_headers(self.token), self._connect_timeout, self._max_size)
        return self

    async def _request(self, message: Dict[str, Any]) -> Dict[str, Any]:
        await self.connect()
        try:
            await self._ws.send(json.dumps(message))
        except websockets.ConnectionClosed:
            pass  # the server closed first (busy, idle, shutting down): its reason is the message it sent
        try:
            raw = await asyncio.wait_for(self._ws.recv(), timeout=self._message_timeout)
        except websockets.ConnectionClosed as e:
            raise TmaxEnvError("SESSION_ERROR", f"connection closed by the server ({e})") from e
        response = json.loads(raw)
        if response.get("type") == "error":
            data = response.get("data", {})
            raise TmaxEnvError(data.get("code", "UNKNOWN"), data.get("message", "unknown error"), data)
        return response

    @staticmethod
    def _result(response: Dict[str, Any]) -> StepResult:
        data = response.get("data", {})
        return StepResult(observation=data.get("observation", {}), reward=data.get("reward"), done=bool(data.get("done", False)), raw=data)

    async def reset(self, **kwargs: Any) -> StepResult:
        """Starts an episode on a fresh sandbox: task_id=..., or seed=... to draw one; action_set/profile for the harness."""
        return self._result(await self._request({"type": "reset", "data": kwargs}))

    async def step(self, action: Dict[str, Any]) -> StepResult:
        """One action: tbench2's {action_type, command, ...} or the harness's {command} / {message} / {text, token_ids}."""
        return self._result(await self._request({"type": "step", "data": action}))

    async def state(self) -> Dict[str, Any]:
        return (await self._request({"type": "state"})).get("data", {})

    async def close(self) -> None:
        """Ends the session: the server removes its sandbox."""
        if self._ws is None:
            return
        try:
            await self._ws.send(json.dumps({"type": "close"}))
        except Exception:
            pass
        try:
            await self._ws.close()
        except Exception:
            pass
        self._ws = None

    async def __aenter__(self) -> "AsyncTmaxEnv":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class TmaxEnv:
    """Synchronous client (its own event loop on a background thread), with ``*_async`` variants."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", token: Optional[str] = None, **kwargs: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tmax-env", daemon=True)
        self._thread.start()
        self._env = AsyncTmaxEnv(base_url, token=token, **kwargs)

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _wrap(self, coro):
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def reset(self, **kwargs: Any) -> StepResult:
        return self._run(self._env.reset(**kwargs))

    def step(self, action: Dict[str, Any]) -> StepResult:
        return self._run(self._env.step(action))

    def state(self) -> Dict[str, Any]:
        return self._run(self._env.state())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._env.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    async def reset_async(self, **kwargs: Any) -> StepResult:
        return await self._wrap(self._env.reset(**kwargs))

    async def step_async(self, action: Dict[str, Any]) -> StepResult:
        return await self._wrap(self._env.step(action))

    async def state_async(self) -> Dict[str, Any]:
        return await self._wrap(self._env.state())

    async def close_async(self) -> None:
        await self._wrap(self._env.close())

    def __enter__(self) -> "TmaxEnv":
        self._run(self._env.connect())
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _get_json(base_url: str, path: str, token: Optional[str]) -> Any:
    req = urllib.request.Request(_http_url(base_url) + path, headers=_auth_headers(token))
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def list_tasks(base_url: str, token: Optional[str] = None) -> List[str]:
    """The task ids a server serves."""
    return [t["task_id"] for t in _get_json(base_url, "/tasks", token)["tasks"]]


def capacity(base_url: str, token: Optional[str] = None) -> Dict[str, Any]:
    """{active_sessions, max_sessions, available_slots, is_at_capacity}."""
    return _get_json(base_url, "/capacity", token)


def run_episodes(base_url: str, request: Dict[str, Any], token: Optional[str] = None, timeout_s: float = 24 * 3600) -> Iterator[Dict[str, Any]]:
    """POST /episodes: G samples of each task against a policy endpoint; yields the NDJSON lines as they come
    (sample, group, record — the records `tmax rollout` writes —, summary, done; or error)."""
    body = json.dumps(request).encode()
    headers = {"content-type": "application/json", **_auth_headers(token)}
    req = urllib.request.Request(_http_url(base_url) + "/episodes", data=body, headers=headers, method="POST")
    try:
        response = urllib.request.urlopen(req, timeout=timeout_s)
    except urllib.error.HTTPError as e:  # busy (503), bad request (4xx): one line from the server
        detail = json.loads(e.read() or b"{}").get("detail", str(e))
        raise TmaxEnvError("CAPACITY_REACHED" if e.code == 503 else "EXECUTION_ERROR", detail) from e
    with response:
        for line in response:
            if line.strip():
                yield json.loads(line)


def basic_auth_url(base_url: str, token: str, user: str = "tmax") -> str:
    """``http://host:port`` -> ``http://tmax:TOKEN@host:port``: how OpenEnv's EnvClient (which sets no headers) carries a token."""
    parts = urlsplit(base_url)
    netloc = f"{user}:{token}@{parts.netloc.split('@')[-1]}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

