"""Client of `tmax serve`: Terminal-Bench tasks as an RL environment on OpenEnv's wire protocol."""

from .client import AsyncTmaxEnv, StepResult, TmaxEnv, TmaxEnvError, basic_auth_url, capacity, list_tasks, run_episodes, ws_url
from .gym import TmaxGymEnv
from .open_instruct import EnvCall, TmaxOpenInstructEnv

__all__ = [
    "AsyncTmaxEnv",
    "EnvCall",
    "StepResult",
    "TmaxEnv",
    "TmaxEnvError",
    "TmaxGymEnv",
    "TmaxOpenInstructEnv",
    "basic_auth_url",
    "capacity",
    "list_tasks",
    "run_episodes",
    "ws_url",
]
