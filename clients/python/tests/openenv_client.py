"""A test client that sends exactly the messages OpenEnv's own EnvClient and Tbench2Env send.

OpenEnv's client (meta-pytorch/OpenEnv, src/openenv/core/env_client.py) imports ``websockets.asyncio``
(websockets >= 13) and Debian 12 ships 10.4, so it cannot run here unchanged; this client reproduces its wire
behaviour line by line (our own code, the references are to OpenEnv's files at commit 685de411):

env_client.py
  __init__:      ws_url = convert_to_ws_url(base_url); self._ws_url = f"{ws_url}/ws"
  utils.py convert_to_ws_url: rstrip("/"), http:// -> ws://, https:// -> wss://, else prefix ws://
  connect:       ws_connect(self._ws_url, open_timeout=connect_timeout_s (10.0), max_size=100 MB); no headers
  _send:         ws.send(json.dumps(message))
  _receive:      json.loads(await asyncio.wait_for(ws.recv(), timeout=message_timeout_s (60.0)))
  _send_and_receive: a response of type "error" raises RuntimeError("Server error: {message} (code: {code})")
  reset(**kw):   {"type": "reset", "data": kwargs}          -> _parse_result(response["data"])
  step(action):  {"type": "step", "data": _step_payload(a)} -> _parse_result(response["data"])
  state():       {"type": "state"}                          -> _parse_state(response["data"])
  disconnect():  send {"type": "close"} (best effort), then ws.close()

envs/tbench2_env/client.py
  _step_payload: {action_type, command, session_id, block, wait_seconds, file_path, content} (all seven, always)
  _parse_result: observation = payload["observation"] fields instruction, output, success, error, task_id,
                 task_path, session_id, action_type, info (+ metadata); reward = payload["reward"];
                 done = payload["done"]
  _parse_state:  episode_id, step_count, task_id, task_path, terminal_ready, last_action_type, last_command,
                 last_output
envs/tbench2_env/models.py Tbench2Action defaults: action_type "exec", command "", session_id None,
                 block True, wait_seconds None, file_path "", content ""
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import websockets


@dataclass
class Tbench2Action:
    action_type: str = "exec"
    command: str = ""
    session_id: Optional[str] = None
    block: bool = True
    wait_seconds: Optional[float] = None
    file_path: str = ""
    content: str = ""


@dataclass
class Tbench2Observation:
    instruction: str = ""
    output: str = ""
    success: bool = True
    error: str = ""
    task_id: str = ""
    task_path: str = ""
    session_id: Optional[str] = None
    action_type: str = ""
    info: Dict[str, Any] = field(default_factory=dict)
    reward: Optional[float] = None
    done: bool = False
    metadata: Dict[str, Any] = field(default_factory=dict)


@dataclass
class StepResult:
    observation: Tbench2Observation
    reward: Optional[float] = None
    done: bool = False


def convert_to_ws_url(url: str) -> str:
    ws_url = url.rstrip("/")
    if ws_url.startswith("http://"):
        ws_url = "ws://" + ws_url[7:]
    elif ws_url.startswith("https://"):
        ws_url = "wss://" + ws_url[8:]
    elif not ws_url.startswith("ws://") and not ws_url.startswith("wss://"):
        ws_url = "ws://" + ws_url
    return ws_url


class OpenEnvTbench2Client:
    """Tbench2Env's messages over the websockets generation installed here (10.4's legacy client or 13+)."""

    def __init__(self, base_url: str, connect_timeout_s: float = 10.0, message_timeout_s: float = 60.0, max_message_size_mb: float = 100.0):
        self._ws_url = f"{convert_to_ws_url(base_url)}/ws"
        self._connect_timeout = connect_timeout_s
        self._message_timeout = message_timeout_s
        self._max_size = int(max_message_size_mb * 1024 * 1024)
        self._ws = None

    async def connect(self) -> "OpenEnvTbench2Client":
        if self._ws is None:
            try:
                self._ws = await websockets.connect(self._ws_url, open_timeout=self._connect_timeout, max_size=self._max_size)
            except Exception as e:
                raise ConnectionError(f"Failed to connect to {self._ws_url}: {e}") from e
        return self

    async def _send_and_receive(self, message: Dict[str, Any]) -> Dict[str, Any]:
        await self.connect()
        await self._ws.send(json.dumps(message))
        response = json.loads(await asyncio.wait_for(self._ws.recv(), timeout=self._message_timeout))
        if response.get("type") == "error":
            error_data = response.get("data", {})
            raise RuntimeError(f"Server error: {error_data.get('message', 'Unknown error')} (code: {error_data.get('code', 'UNKNOWN')})")
        return response

    @staticmethod
    def _step_payload(action: Tbench2Action) -> Dict[str, Any]:
        return {
            "action_type": action.action_type,
            "command": action.command,
            "session_id": action.session_id,
            "block": action.block,
            "wait_seconds": action.wait_seconds,
            "file_path": action.file_path,
            "content": action.content,
        }

    @staticmethod
    def _parse_result(payload: Dict[str, Any]) -> StepResult:
        obs = payload.get("observation", {})
        observation = Tbench2Observation(
            instruction=obs.get("instruction", ""),
            output=obs.get("output", ""),
            success=obs.get("success", True),
            error=obs.get("error", ""),
            task_id=obs.get("task_id", ""),
            task_path=obs.get("task_path", ""),
            session_id=obs.get("session_id"),
            action_type=obs.get("action_type", ""),
            info=obs.get("info", {}),
            reward=payload.get("reward"),
            done=payload.get("done", False),
            metadata=obs.get("metadata", {}),
        )
        return StepResult(observation=observation, reward=payload.get("reward"), done=payload.get("done", False))

    async def reset(self, **kwargs: Any) -> StepResult:
        response = await self._send_and_receive({"type": "reset", "data": kwargs})
        return self._parse_result(response.get("data", {}))

    async def step(self, action: Tbench2Action) -> StepResult:
        response = await self._send_and_receive({"type": "step", "data": self._step_payload(action)})
        return self._parse_result(response.get("data", {}))

    async def state(self) -> Dict[str, Any]:
        response = await self._send_and_receive({"type": "state"})
        p = response.get("data", {})
        keys = ["episode_id", "step_count", "task_id", "task_path", "terminal_ready", "last_action_type", "last_command", "last_output"]
        defaults = {"step_count": 0, "task_id": "", "task_path": "", "terminal_ready": False, "last_action_type": "", "last_command": "", "last_output": ""}
        return {k: p.get(k, defaults.get(k)) for k in keys}

    async def disconnect(self) -> None:
        if self._ws is not None:
            try:
                await self._ws.send(json.dumps({"type": "close"}))
            except Exception:
                pass
            try:
                await self._ws.close()
            except Exception:
                pass
            self._ws = None
