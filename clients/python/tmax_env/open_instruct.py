"""open-instruct's environment interface over `tmax serve`'s harness action set.

Shapes as in open-instruct's ``open_instruct/environments/base.py`` (RLEnvironment): ``reset(task_id) ->
(StepResult, tools)``, ``step(EnvCall) -> StepResult``, ``state()``. The sandbox, the observations (the Tmax
harness's, byte for byte as ``tmax run`` shows them), the submit marker and the verifier's reward are tmax's;
the training loop stays open-instruct's. When open-instruct is importable its own EnvCall/StepResult classes are
used, otherwise small stand-ins with the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .client import AsyncTmaxEnv, StepResult as WireResult

try:  # the real types when open-instruct (and openenv-core) are installed
    from open_instruct.environments.base import EnvCall, StepResult  # type: ignore
except Exception:  # pragma: no cover - exercised where open-instruct is absent

    @dataclass
    class EnvCall:  # type: ignore[no-redef]
        """Parsed action call from model output (open-instruct's EnvCall fields)."""

        id: str
        name: str
        args: Dict[str, Any] = field(default_factory=dict)

    @dataclass
    class StepResult:  # type: ignore[no-redef]
        """Result of an environment step (open-instruct's StepResult fields)."""

        result: str = ""
        reward: float = 0.0
        done: bool = False
        metadata: Dict[str, Any] = field(default_factory=dict)


@dataclass
class EpisodeState:
    """open-instruct's State fields (episode_id, step_count)."""

    episode_id: Optional[str] = None
    step_count: int = 0


class TmaxOpenInstructEnv:
    """An RLEnvironment whose episodes are `tmax serve` harness sessions (one per instance)."""

    config_name = "tmax"
    response_role = "tool"

    def __init__(self, base_url: str = "http://127.0.0.1:8000", token: Optional[str] = None, profile: str = "eval", **client_kwargs: Any):
        self.profile = profile
        self._env = AsyncTmaxEnv(base_url, token=token, **client_kwargs)
        self._state = EpisodeState()
        self._tools: List[dict] = []

    def get_response_role(self) -> str:
        return self.response_role

    def get_tool_call_format_error_message(self) -> Optional[str]:
        return None

    async def setup(self) -> None:
        await self._env.connect()

    def get_metrics(self) -> Dict[str, float]:
        return {"step_count": float(self._state.step_count)}

    async def reset(self, task_id: Optional[str] = None, **kwargs: Any) -> Tuple[StepResult, List[dict]]:
        """A fresh sandbox for ``task_id`` (or one drawn with ``seed=``): the task prompt and the bash tool's schema."""
        r = await self._env.reset(task_id=task_id, action_set="harness", profile=self.profile, **kwargs)
        obs = r.observation
        self._state = EpisodeState(episode_id=obs.get("episode_id"), step_count=0)
        self._tools = list(obs.get("tools", []))
        meta = {"task_id": obs.get("task_id"), "messages": obs.get("messages", []), "backend": "tmax"}
        if "prompt_ids" in obs:
            meta["prompt_ids"] = obs["prompt_ids"]
        return StepResult(result=obs.get("observation", ""), metadata=meta), self._tools

    async def step(self, call: EnvCall) -> StepResult:
        """One tool call as one model turn: the harness's observation, and at the end the verifier's reward."""
        r = await self._env.step({"tool_call": {"id": call.id, "name": call.name, "arguments": dict(call.args)}})
        self._state.step_count += 1
        return _to_step_result(r)

    def state(self) -> EpisodeState:
        return self._state

    @classmethod
    def get_tool_definitions(cls) -> List[dict]:
        return []  # the schema comes with reset (it carries the server's tool description)

    async def close(self) -> None:
        await self._env.close()

    async def shutdown(self) -> None:
        await self.close()


def _to_step_result(r: WireResult) -> StepResult:
    obs = r.observation
    meta = {k: obs[k] for k in ("exit_status", "rewards", "tamper", "error", "messages", "wrapper_text", "wrapper_ids") if k in obs}
    return StepResult(result=obs.get("observation", ""), reward=float(r.reward or 0.0), done=r.done, metadata=meta)
