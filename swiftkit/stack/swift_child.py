"""``python -m swiftkit.stack.swift_child ENTRY ARGS``: one of ms-swift's entry points (``infer_main``,
``export_main``) with swiftkit's shims and guards in place first.

swiftkit runs ms-swift's inference and export on a run directory through this module rather than ``swift infer``
so that the checkpoint's args.json cannot make ms-swift import code (:mod:`swiftkit.stack.guards`) and the same
compatibility shims as training apply. The deploy server has its own child (:mod:`swiftkit.deploy.deploy_child`).
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

ENTRIES = ("infer_main", "export_main")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ENTRIES:
        print(f"usage: python -m swiftkit.stack.swift_child {{{','.join(ENTRIES)}}} ARGS", file=sys.stderr)
        return 2
    from swiftkit.stack import shims
    from swiftkit.stack.dialect import installed_entry
    from swiftkit.stack.guards import guard_checkpoint_args

    shims.apply_all()
    guard_checkpoint_args()
    installed_entry(args[0])(args[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
