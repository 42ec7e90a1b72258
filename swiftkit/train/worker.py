"""The entry point of every training process: apply the shims, then hand the argument list to ms-swift.

Why a worker and not ``swift sft``: ``swift sft`` re-runs itself as ``python swift/cli/sft.py`` (under torchrun when
NPROC_PER_NODE/NNODES is set), so a patch applied in the launcher never reaches the ranks that train. swiftkit's
launcher therefore starts ``python -m swiftkit.train.worker METHOD <args>`` itself, directly or as torchrun's module
(``torchrun ... -m swiftkit.train.worker METHOD <args>``, the same torchrun options ms-swift would build). Each rank:

1. applies :func:`swiftkit.stack.shims.apply_all` before ms-swift or the model code is imported, and
   :func:`swiftkit.train.saving.install` (checkpoints are marked complete only after every rank's save finished; a
   failed save is one line and leaves no half checkpoint);
2. writes ``<output_dir>/swiftkit_shims/rank<RANK>.json`` (which shims it applied and that they now hold), the
   evidence that the shims are live in every training process, and installs the recipe's ``watch:`` when it has one
   (:mod:`swiftkit.train.watch`: answers by step into ``<output_dir>/samples/``);
3. runs the method's ms-swift entry point (``sft_main(argv)`` for sft) exactly as ``swift/cli/sft.py`` does;
4. on rank 0, writes ``<output_dir>/result.json``: last/best checkpoint (relative to the run directory) and the log
   history.

A sitecustomize.py on PYTHONPATH would also reach every process, but it runs in every Python process the job
starts (torchrun's agent, data workers, compilers) and shadows any sitecustomize the environment already has; an
explicit entry point is visible in ``ps`` and in the run's recorded command.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from datasets_prep.atomic import write_json
from swiftkit.core.errors import SwiftkitError
from swiftkit.run.rundir import RESULT
from swiftkit.stack import shims
from swiftkit.stack.dialect import flag_value, installed_entry, swift_api
from swiftkit.train import saving, watch

SHIM_DIR = "swiftkit_shims"


def record_shims(output_dir: str | Path, rank: int, applied: list[str]) -> Path:
    """Write this rank's shim evidence: what was applied here and whether each shim now holds."""
    path = Path(output_dir) / SHIM_DIR / f"rank{rank}.json"
    write_json(path, {
        "rank": rank,
        "applied": applied,
        "holds": {name: not needed for name, needed in shims.status().items()},
    })
    return path


def portable_result(result: dict, output_dir: str | Path) -> dict:
    """result.json: last/best checkpoint as paths relative to the run directory (so a copied or moved run uses its
    own checkpoints), and the log history."""
    out: dict = {}
    for key in ("last_model_checkpoint", "best_model_checkpoint"):
        path = result.get(key)
        if path:
            try:
                path = os.path.relpath(Path(path).resolve(), Path(output_dir).resolve())
            except ValueError:  # another drive (Windows): keep it as it is
                pass
        out[key] = path
    out["log_history"] = result.get("log_history")
    return out


def entry_point(method: str):
    """The installed ms-swift's entry point of ``method`` (``sft_main`` for sft)."""
    from swiftkit.train.methods import get_method

    return installed_entry(get_method(method).entry)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m swiftkit.train.worker METHOD ARGS...`` (METHOD from swiftkit.train.methods, e.g. sft)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print("usage: python -m swiftkit.train.worker METHOD ARGS... (started by the launcher)", file=sys.stderr)
        return 2
    method, args = args[0], args[1:]
    applied = shims.apply_all()
    saving.install()
    rank = int(os.environ.get("RANK", "0"))
    output_dir = flag_value(args, "output_dir")
    if output_dir:
        record_shims(output_dir, rank, applied)
    watch.install(output_dir)
    try:  # what swift/cli/sft.py does before sft_main (SWIFT_SINGLE_DEVICE_MODE); absent in other releases
        swift_api("try_use_single_device_mode")()
    except SwiftkitError:
        pass
    result = entry_point(method)(args)
    if rank == 0 and output_dir and isinstance(result, dict):
        write_json(Path(output_dir) / RESULT, portable_result(result, output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
