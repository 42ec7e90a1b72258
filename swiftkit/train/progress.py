"""One progress line for a training run, instead of every rank's tqdm interleaved: ms-swift's log dicts
(``{'loss': ..., 'global_step/max_steps': '12/440', ...}``, printed by rank 0) move a single bar; swiftkit's own
messages are shown above it; everything else stays in the run's train.log only."""
from __future__ import annotations

import re
import sys
from typing import IO, Optional

STEP = re.compile(r"'global_step/max_steps': '(\d+)/(\d+)'")
LOSS = re.compile(r"'loss': '?([-+0-9.eE]+|nan|inf)")


class TrainProgress:
    """An ``on_output`` callback for the launcher; call :meth:`close` when training ends.

    One bar is one training phase, and its ``loss first -> last`` is that phase's own: :meth:`phase` starts the next
    (the GRPO smoke's SFT warm-up, then GRPO), and a step counter that starts again (a lower step or another total)
    opens a new bar too. The GRPO bar once showed the warm-up's first loss ("11.9267 -> 0.0002").
    """

    def __init__(self, desc: str = "train", file: Optional[IO[str]] = None) -> None:
        self.desc = desc
        self.file = file or sys.stderr
        self.bar = None
        self.first_loss: Optional[float] = None
        self.last_loss: Optional[float] = None

    def __call__(self, line: str) -> None:
        from tqdm import tqdm

        if line.startswith("swiftkit:"):
            (self.bar.write if self.bar else print)(line, file=self.file)
            return
        step = STEP.search(line)
        if not step:
            return
        done, total = int(step.group(1)), int(step.group(2))
        if self.bar is not None and (total != self.bar.total or done < self.bar.n):
            self.close()  # another training started under this callback: its own bar, its own losses
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit="step", file=self.file, dynamic_ncols=True)
        loss = LOSS.search(line)
        if loss:
            self.last_loss = float(loss.group(1))
            self.first_loss = self.first_loss if self.first_loss is not None else self.last_loss
            self.bar.set_postfix_str(f"loss {self.first_loss:.4f} -> {self.last_loss:.4f}", refresh=False)
        self.bar.update(max(done - self.bar.n, 0))

    def phase(self, desc: str) -> None:
        """End the current bar; the next training's bar is called ``desc``."""
        self.close()
        self.desc = desc

    def close(self) -> None:
        """End the bar and forget its phase's losses."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.first_loss = self.last_loss = None
