"""The CLI-side progress bar (library code only takes a callback)."""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator


@contextlib.contextmanager
def record_bar(desc: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar counting input records; yields the ``progress`` callback ``prep`` takes."""
    from tqdm import tqdm

    with tqdm(desc=desc, unit=" rec", file=sys.stderr, disable=None, leave=True) as bar:
        yield bar.update
