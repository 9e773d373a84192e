"""The processes of a distributed ``accel tune`` (``accelerate launch``): which one is main, how they
wait for each other and agree on a decision. One process alone needs no accelerate state."""

from __future__ import annotations

import os
from typing import Any

import torch


class Processes:
    """accelerate's ``PartialState`` (or nothing, for one process) as the tune uses it."""

    def __init__(self, state: Any = None) -> None:
        self.state = state

    @property
    def is_main(self) -> bool:
        return self.state is None or self.state.is_main_process

    @property
    def rank(self) -> int:
        return 0 if self.state is None else self.state.process_index

    @property
    def world(self) -> int:
        return 1 if self.state is None else self.state.num_processes

    def barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()

    def agree(self, flag: bool) -> bool:
        """The main process's decision, on every process (time budgets differ by a few ms per rank)."""
        if self.world == 1:
            return flag
        from accelerate.utils import broadcast_object_list

        box = [flag]
        broadcast_object_list(box, from_process=0)
        return bool(box[0])


def process_state() -> Any:
    """accelerate's ``PartialState`` when launched with several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
