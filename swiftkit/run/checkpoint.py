"""Whether a checkpoint folder is complete: the one rule every consumer (resume, check, infer, serve, export, the
persona step) asks, so a save that was cut short (disk full, SIGKILL, power loss) is never taken for a good one.

**Marked checkpoints** (saved through swiftkit's worker): after ms-swift's save has returned in every rank and the
persona template is written, global rank 0 writes ``checkpoint-N/.swiftkit-complete`` atomically, last. It holds a
manifest: every file of the folder (subfolders included) and its size. A marked checkpoint is complete when every
listed file is there with its recorded size and :func:`structure_problem` finds nothing. Sizes, not hashes: a cut
write changes the size, and hashing a many-GB checkpoint at every save would cost minutes; bit rot is out of scope.
The files in :data:`REWRITTEN` are exempt from the size rule (they must still exist and parse): swiftkit rewrites them
later, always atomically (the persona template, ``check --fix``'s eos ids), so their size changes legitimately.

**Unmarked checkpoints** (saved before swiftkit marked them, or by ``swift sft`` directly) are complete when
transformers' ``trainer_state.json`` (written after the weights, optimizer, scheduler and RNG state) parses, the
weights (``model*.safetensors``/``.bin`` with its index, an adapter's, or DeepSpeed's ``global_step*``) are present,
and every file passes :func:`structure_problem`: JSON parses, a safetensors file is exactly as long as its header
says, a torch file's zip directory is readable. A cut write fails one of these; a file never started is missing.
A checkpoint saved with ms-swift's ``use_flash_ckpt`` (asynchronous, outside ``Trainer._save_checkpoint``) is not
marked and is judged by this rule.
"""
from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Optional

from datasets_prep.atomic import write_json

MARKER = ".swiftkit-complete"
"""Written last, atomically, into a checkpoint whose save finished."""
FORMAT = 1
REWRITTEN = frozenset({"chat_template.jinja", "tokenizer_config.json", "generation_config.json"})
"""Files swiftkit rewrites atomically after the marker (persona template, eos fix): present and parsable, any size."""
TRAINER_STATE = "trainer_state.json"
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin")


def _files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (relative POSIX path -> size), the marker and atomic-write temps left out."""
    out: dict[str, int] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MARKER and not (path.name.startswith(".") and path.name.endswith(".tmp")):
            out[path.relative_to(folder).as_posix()] = path.stat().st_size
    return out


def mark_complete(folder: str | Path) -> Path:
    """Record ``folder`` as complete: its manifest, written atomically as the marker. Call only after every file of
    the save is written (in every rank)."""
    root = Path(folder)
    path = root / MARKER
    write_json(path, {"format": FORMAT, "files": _files(root)})
    return path


def unmark(folder: str | Path) -> None:
    """Take the marker away (the folder is about to be rewritten)."""
    try:
        (Path(folder) / MARKER).unlink()
    except FileNotFoundError:
        pass


def is_marked(folder: str | Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def structure_problem(path: Path) -> Optional[str]:
    """Why ``path`` is not a whole file of its kind (None: it is, or its kind has no structure to check)."""
    name = path.name
    try:
        if name.endswith(".json"):
            json.loads(path.read_bytes())
        elif name.endswith(".safetensors"):
            return _safetensors_problem(path)
        elif name.endswith((".pt", ".pth", ".bin")):
            with zipfile.ZipFile(path) as archive:  # torch.save's format since 1.6; the directory is at the end
                archive.infolist()
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        return f"{name} is cut short or corrupt ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
    except zipfile.BadZipFile:
        return f"{name} is cut short or corrupt (no readable torch archive)"
    except OSError as exc:
        return f"{name} unreadable ({exc.strerror or exc})"
    return None


def _safetensors_problem(path: Path) -> Optional[str]:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{path.name} is cut short ({size} bytes)"
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            return f"{path.name} is cut short ({size} bytes, its header alone needs {8 + length})"
        header = json.loads(handle.read(length))
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if size != 8 + length + end:
        return f"{path.name} is cut short or padded ({size} bytes, its header says {8 + length + end})"
    return None


def problems(folder: str | Path) -> list[str]:
    """Why ``folder`` is not a complete checkpoint (empty list: it is). See the module docstring for the rule."""
    root = Path(folder)
    if not root.is_dir():
        return [f"{root.name}: no such folder"]
    if is_marked(root):
        return _marked_problems(root)
    return _unmarked_problems(root)


def _marked_problems(root: Path) -> list[str]:
    try:
        manifest = json.loads((root / MARKER).read_text(encoding="utf-8"))
        listed = {str(k): int(v) for k, v in manifest["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"{MARKER} unreadable ({type(exc).__name__})"]
    found = []
    for rel, size in listed.items():
        path = root / rel
        if not path.is_file():
            found.append(f"{rel} missing")
        elif rel not in REWRITTEN and path.stat().st_size != size:
            found.append(f"{rel} is {path.stat().st_size} bytes, saved as {size}")
        elif (problem := structure_problem(path)) is not None:
            found.append(problem)
    return found


def _unmarked_problems(root: Path) -> list[str]:
    found = []
    if not (root / TRAINER_STATE).is_file():
        found.append(f"no {TRAINER_STATE} (the save did not finish) and no {MARKER}")
    weights = [name for name in (*_WEIGHT_INDEXES, *_WEIGHT_FILES) if (root / name).is_file()]
    deepspeed = (root / "latest").is_file() and any(p.is_dir() for p in root.glob("global_step*"))
    if not weights and not deepspeed:  # ZeRO-3 without gathered 16-bit weights keeps them in global_step*/ only
        found.append("no weights (model.safetensors, pytorch_model.bin, an adapter's or DeepSpeed's global_step*)")
    for index in (name for name in _WEIGHT_INDEXES if name in weights):
        try:
            shards = set(json.loads((root / index).read_bytes())["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            continue  # structure_problem below names the unreadable index
        found += [f"{shard} missing (listed in {index})" for shard in sorted(shards) if not (root / shard).is_file()]
    for rel in _files(root):
        problem = structure_problem(root / rel)
        if problem is not None:
            found.append(problem)
    return found


def is_complete(folder: str | Path) -> bool:
    return not problems(folder)


def saves_training_state(folder: str | Path) -> bool:
    """Whether the checkpoint holds the optimizer and learning-rate schedule (not ``save_only_model``): the files
    transformers' Trainer restores on resume (``optimizer.pt`` + ``scheduler.pt``, or DeepSpeed's ``latest`` tag)."""
    root = Path(folder)
    plain = (root / "optimizer.pt").is_file() and (root / "scheduler.pt").is_file()
    deepspeed = (root / "latest").is_file() and any(p.is_dir() for p in root.glob("global_step*"))
    return plain or deepspeed


def size_text(folder: str | Path) -> str:
    """Free space on ``folder``'s disk, for a failed save's line (the nearest existing parent)."""
    import shutil

    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return "free space unknown"
    return f"{free / 2**20:.0f} MiB free there"

