"""Where the bundled sample sources live (package data: found wherever swiftkit is installed, whatever the cwd)."""
from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
"""One subfolder per source (muice, fortune, medical_r1, actions, general, generic), in the real shapes."""
