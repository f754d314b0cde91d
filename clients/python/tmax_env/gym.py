"""A Gym-style wrapper (``reset(seed, options) -> (obs, info)``, ``step(action) -> (obs, reward, terminated,
truncated, info)``) over a `tmax serve` harness session. Observations are the harness's text; an action is a
bash command (str) or a harness action dict."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

from .client import TmaxEnv

#: Episode endings that are a limit, not the agent's own end (Gymnasium's "truncated").
TRUNCATING = {"step_limit", "token_limit", "timeout"}


class TmaxGymEnv:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", token: Optional[str] = None, task_id: Optional[str] = None, profile: str = "eval", **client_kwargs: Any):
        self.task_id = task_id
        self.profile = profile
        self._env = TmaxEnv(base_url, token=token, **client_kwargs)

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None) -> Tuple[str, Dict[str, Any]]:
        options = dict(options or {})
        task_id = options.pop("task_id", self.task_id)
        kwargs: Dict[str, Any] = {"action_set": "harness", "profile": self.profile, **options}
        if task_id is not None:
            kwargs["task_id"] = task_id
        if seed is not None:
            kwargs["seed"] = seed
        r = self._env.reset(**kwargs)
        return r.observation.get("observation", ""), r.observation

    def step(self, action: Union[str, Dict[str, Any]]) -> Tuple[str, float, bool, bool, Dict[str, Any]]:
        r = self._env.step({"command": action} if isinstance(action, str) else action)
        status = r.observation.get("exit_status")
        truncated = bool(r.done and status in TRUNCATING)
        return r.observation.get("observation", ""), float(r.reward or 0.0), bool(r.done and not truncated), truncated, r.observation

    def close(self) -> None:
        self._env.close()
