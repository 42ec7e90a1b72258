"""ms-swift plugin: ``swift rlhf --rlhf_type grpo --external_plugins /abs/path/swiftkit/train/grpo/swiftkit_plugin.py
--reward_funcs swiftkit_action swiftkit_reference ...`` imports this file in every training process and so
registers every reward of :data:`swiftkit.train.grpo.rewards.REWARDS` (options: ``SWIFTKIT_REWARD_OPTIONS``).

ms-swift imports it by path (``import_external_file``: this folder goes first on ``sys.path``, the module is
imported as ``swiftkit_plugin``: a name nothing else uses), hence absolute imports only. The logic lives in :mod:`swiftkit.train.grpo.rewards`.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from swiftkit.train.grpo.rewards import REWARDS


def reward_table() -> dict[str, Any]:
    """ms-swift's name -> reward class table, wherever the installed major keeps it (swiftkit.stack.dialect)."""
    from swiftkit.stack.dialect import swift_api

    return swift_api("orms")


def register(table: dict[str, Any] | None = None) -> list[str]:
    """Put every swiftkit reward into ``table`` (ms-swift's by default); the names registered."""
    table = reward_table() if table is None else table
    table.update(REWARDS)
    return list(REWARDS)


def _leave_sys_path() -> None:
    # import_external_file put this folder (swiftkit/train/grpo/) first on sys.path; left there, its modules (plugin,
    # preflight, rewards) would shadow any top-level module of the same name for the rest of the process.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if not p or os.path.abspath(p) != here]


_leave_sys_path()
register()
