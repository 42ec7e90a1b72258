"""llama.cpp through the `llama-cpp-python` package (compiled by `make install`): k-quant a GGUF, read its chat
template, and answer a chat the way a llama.cpp user would (the GGUF's own template, greedy).

Quantizing runs as ``python -m swiftkit.deploy.llamacpp quantize SRC DST TYPE`` in a child process, so llama.cpp's C-level
output goes to a log file instead of the terminal.
"""
from __future__ import annotations

import ctypes
import importlib
import sys
from pathlib import Path
from typing import Optional, Sequence


def quantize(src: str | Path, dst: str | Path, quant: str) -> None:
    """llama.cpp's quantizer: ``src`` (an f16/f32 GGUF) -> ``dst`` in k-quant ``quant`` (e.g. q4_k_m)."""
    import llama_cpp

    from swiftkit.core.errors import SwiftkitError
    from swiftkit.deploy.export import K_QUANTS

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, K_QUANTS[quant])
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if code != 0:
        raise SwiftkitError(f"llama.cpp could not quantize {src} to {quant} (status {code})")


def _gguf():
    """gguf-py, from the converter's folder (.venv/gguf-tools) when it is not importable as is."""
    from swiftkit.deploy.export import gguf_tools_path

    tools = gguf_tools_path()
    if tools and tools not in sys.path:
        sys.path.insert(0, tools)
    return importlib.import_module("gguf")


def gguf_fields(path: str | Path) -> dict[str, object]:
    """The GGUF file's metadata as plain Python values (strings decoded, one-element arrays unwrapped)."""
    reader = _gguf().GGUFReader(str(path))
    out: dict[str, object] = {}
    for name, field in reader.fields.items():
        values = [field.parts[i] for i in field.data]
        decoded = [bytes(v).decode("utf-8", "replace") if v.dtype.name == "uint8" else v.tolist() for v in values]
        flat = [d[0] if isinstance(d, list) and len(d) == 1 else d for d in decoded]
        out[name] = flat[0] if len(flat) == 1 else flat
    return out


def gguf_chat_template(path: str | Path) -> Optional[str]:
    value = gguf_fields(path).get("tokenizer.chat_template")
    return value if isinstance(value, str) else None


def chat(path: str | Path, messages: Sequence[dict], *, max_tokens: int = 64) -> str:
    """One greedy chat completion by llama.cpp with the GGUF's own chat template (no chat_format given)."""
    from llama_cpp import Llama

    model = Llama(model_path=str(path), n_ctx=512, n_threads=2, seed=0, verbose=False)
    reply = model.create_chat_completion(messages=list(messages), temperature=0.0, top_k=1, max_tokens=max_tokens)
    return reply["choices"][0]["message"]["content"] or ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 4 or args[0] != "quantize":
        print("usage: python -m swiftkit.deploy.llamacpp quantize SRC.gguf DST.gguf TYPE", file=sys.stderr)
        return 2
    quantize(args[1], args[2], args[3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
