"""Reward and cost model trainers: plain Python + torch + transformers, no Django.

The job system (and a notebook, or `accelerate launch`) uses:

- `TrainerConfig` (config.py): the validated recipe; `from_dict`, `to_dict`, `hash()`, `check_paths()`.
- `train()` / `TrainResult` (run.py): train, evaluate, save; progress and cancel hooks.
- `launch_command()` (run.py): the subprocess argv, `accelerate launch` for several GPUs.
- `Scorer` (modeling.py): score (prompt, response) pairs with a trained model directory.

Heavy imports (torch, transformers) happen on first use of those names, so the web side can import
`training.trainers.config` to validate a submitted config without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from training.trainers.config import DEFAULT_TEMPLATE, TrainerConfig

if TYPE_CHECKING:
    from training.trainers.modeling import Scorer
    from training.trainers.run import TrainResult, launch_command, train

__all__ = ["DEFAULT_TEMPLATE", "Scorer", "TrainResult", "TrainerConfig", "launch_command", "train"]


def __getattr__(name: str) -> Any:
    if name in ("TrainResult", "train", "launch_command"):
        from training.trainers import run

        return getattr(run, name)
    if name == "Scorer":
        from training.trainers.modeling import Scorer

        return Scorer
    raise AttributeError(name)
