"""Token-length statistics and the ``lengths.png`` histogram.

A record's length is the token count of its rendering by a :class:`~datasets_prep.token_counter.TokenCounter`: by
default the bundled Qwen tokenizer on the qwen2_5 chat rendering (``<|im_start|>role\\ncontent<|im_end|>\\n`` per
message), the same ids ms-swift's qwen2_5 template produces for training; with ``--tokenizer DIR`` that folder's
tokenizer and chat template. Texts are encoded in batches with the fast tokenizer's Rust batch encoder; only one int
per record is kept.
"""
from __future__ import annotations

import math
from array import array
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from datasets_prep.token_counter import BUNDLED, TokenCounter, render_chatml

BATCH = 512


def fit_last_answer(messages: list[dict[str, Any]], max_length: int, total: int,
                    counter: TokenCounter) -> Optional[tuple[list[dict[str, Any]], int]]:
    """``--over-length truncate``: ``messages`` (``total`` tokens, over ``max_length``) with the last assistant
    message's content cut at a token boundary of ``counter``'s tokenizer so that the record fits, and its new token
    count; ``None`` when even a one-token answer does not fit. The other messages are not touched (a cut question or
    system prompt would teach the model nonsense). Re-counted after each cut, since tokens can merge differently at
    the cut."""
    content = messages[-1]["content"]
    offsets = counter.offsets(content)
    keep = len(offsets) - (total - max_length)
    while keep > 0:
        cut = content[:offsets[keep - 1][1]]
        if not cut.strip():
            return None
        fitted = messages[:-1] + [{"role": messages[-1]["role"], "content": cut}]
        n = counter.count([counter.render(fitted)])[0]
        if n <= max_length:
            return fitted, n
        keep -= max(1, n - max_length)
    return None


class LengthCounter:
    """Collects one token count per record, encoding in batches as texts arrive."""

    def __init__(self, count: Callable[[list[str]], list[int]], batch: int = BATCH,
                 render: Callable[[Sequence[dict[str, Any]]], str] = render_chatml) -> None:
        self._count = count
        self._render = render
        self._batch = batch
        self._pending: list[str] = []
        self.lengths = array("I")

    def add(self, messages: Sequence[dict[str, Any]]) -> None:
        self._pending.append(self._render(messages))
        if len(self._pending) >= self._batch:
            self.flush()

    def add_count(self, n: int) -> None:
        """A record whose token count is already known (``--over-length drop|truncate`` counted it)."""
        self.lengths.append(n)

    def flush(self) -> None:
        if self._pending:
            self.lengths.extend(self._count(self._pending))
            self._pending = []


def summarize(lengths: Sequence[int], max_length: int) -> dict[str, Any]:
    """min, median, p95 (nearest rank), max and how many exceed ``max_length``."""
    n = len(lengths)
    if n == 0:
        return {"records": 0, "min": None, "median": None, "p95": None, "max": None,
                "max_length": max_length, "over_max_length": 0}
    ordered = sorted(lengths)
    mid = n // 2
    median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {
        "records": n,
        "min": ordered[0],
        "median": median,
        "p95": ordered[max(0, math.ceil(0.95 * n) - 1)],
        "max": ordered[-1],
        "max_length": max_length,
        "over_max_length": sum(1 for x in ordered if x > max_length),
    }


def import_plotting_in_background() -> None:
    """Start importing what :func:`write_histogram` draws with (matplotlib's Figure and Agg canvas: most of a
    histogram's cost, ~0.8 s) on another thread, while prep reads and counts; the tokenizer releases the GIL as it
    encodes, so the import mostly runs beside it. :func:`write_histogram`'s own imports then find the modules loaded,
    or wait on Python's import lock until they are. Not a daemon thread: an interpreter never exits mid-import."""
    import threading

    def load() -> None:
        try:
            import matplotlib.backends.backend_agg  # noqa: F401
            import matplotlib.figure  # noqa: F401
        except Exception:  # noqa: BLE001 - write_histogram's own import reports it, in the main thread
            pass

    threading.Thread(target=load, name="import-matplotlib").start()


def write_histogram(path: Path, lengths: Sequence[int], max_length: int, title: str,
                    writer: Optional[Callable[[Path, bytes], None]] = None, tokenizer: str = BUNDLED) -> None:
    """A histogram of token lengths with the max-length line, written as PNG bytes via ``writer``; the x axis names
    a tokenizer other than the bundled one."""
    xlabel = "tokens per record (qwen2_5 rendering)" if tokenizer == BUNDLED else f"tokens per record ({tokenizer})"
    import io

    # The Figure API with the Agg canvas directly: no pyplot, whose import (backend selection, its figure manager)
    # is most of matplotlib's start-up; nothing global to close afterwards either.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if len(lengths):
        ax.hist(list(lengths), bins=min(50, max(5, len(lengths))), color="#4c72b0")
    ax.axvline(max_length, color="#c44e52", linestyle="--", label=f"max_length {max_length}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("records")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    data = buf.getvalue()
    if writer is None:
        from datasets_prep.atomic import atomic_open

        with atomic_open(path, "wb") as fh:
            fh.write(data)
    else:
        writer(path, data)
