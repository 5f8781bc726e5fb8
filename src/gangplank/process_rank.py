"""Which process of a multi-process training run this one is (torchrun's ``RANK``, JAX's process index).

Example:
    >>> current_process({"RANK": "1", "WORLD_SIZE": "4"})
    ProcessRank(rank=1, world_size=4)
    >>> current_process({}) is None  # one process, and JAX not in use
    True
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessRank:
    """This process's ``rank`` among ``world_size`` processes of one training run."""

    rank: int
    world_size: int


def current_process(environment: Mapping[str, str] | None = None) -> ProcessRank | None:
    """This process's rank in a multi-process run, or ``None`` when it runs alone.

    Read from ``RANK`` and ``WORLD_SIZE`` (set by ``torchrun`` and the other
    torch.distributed launchers), else from ``jax.process_index()`` and
    ``jax.process_count()`` after ``jax.distributed.initialize`` (or
    ``keras.distribution.initialize``). JAX is asked only when it is imported
    already and Keras runs on it: asking starts JAX's devices, which must not
    happen beside another framework's training.
    """
    environment = os.environ if environment is None else environment
    if "WORLD_SIZE" in environment:
        world_size = _integer(environment, "WORLD_SIZE")
        if world_size > 1:
            if "RANK" not in environment:
                raise ValueError(f"WORLD_SIZE is {world_size} but RANK is not set: which process is this?")
            rank = _integer(environment, "RANK")
            if not 0 <= rank < world_size:
                raise ValueError(f"RANK must be in [0, WORLD_SIZE={world_size}), got {rank}")
            return ProcessRank(rank, world_size)
    jax = sys.modules.get("jax")
    keras = sys.modules.get("keras")
    if jax is None or keras is None or keras.config.backend() != "jax":
        return None
    world_size = int(jax.process_count())
    return ProcessRank(int(jax.process_index()), world_size) if world_size > 1 else None


def _integer(environment: Mapping[str, str], name: str) -> int:
    try:
        return int(environment[name])
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {environment[name]!r}") from None
