"""`swiftkit export --push REPO`: stage what an export wrote, with a model card, and upload it to a model hub through
the hub's own client (huggingface_hub's HfApi, modelscope's HubApi).

The token comes from the environment only (HF_TOKEN, MODELSCOPE_API_TOKEN): never from the command line, never
printed. The staged folder (``RUN/push``) holds links to the exported files, not copies, plus ``README.md`` saying
how to run the model with Ollama and llama.cpp (GGUF) or transformers / ms-swift (weights).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

from datasets_prep.atomic import write_text
from datasets_prep.hub import HUB_ID, hub_offline
from swiftkit.core.errors import SwiftkitError

HUBS = {"hf": ("Hugging Face", "HF_TOKEN"), "modelscope": ("ModelScope", "MODELSCOPE_API_TOKEN")}
"""``--hub`` choices -> (the hub's name, the environment variable holding its write token)."""

WEIGHT_SUFFIXES = (".safetensors", ".json", ".jinja", ".txt", ".model", ".tiktoken")
"""Files of a model folder that are the model (weights, configs, tokenizer, chat template). Training state
(optimizer.pt, rng_state*.pth, trainer_state.json), ms-swift's args.json (it can hold a hub token) and code are not."""
NOT_MODEL = ("args.json", "trainer_state.json", "training_args.json")


def check_push(repo: str, hub: str) -> str:
    """One line when the push cannot happen (bad id, offline, no token); returns the token. Called before any long
    step."""
    if not HUB_ID.match(repo):
        raise SwiftkitError(f"--push {repo}: expected a repository id owner/name")
    name, token_env = HUBS[hub]
    if hub_offline(hub):
        raise SwiftkitError(f"--push {repo}: {name} is offline ({'HF_HUB_OFFLINE' if hub == 'hf' else 'MODELSCOPE_OFFLINE'}"
                            " or --offline): nothing can be uploaded")
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise SwiftkitError(f"--push {repo}: set {token_env} in the environment to a {name} write token "
                            "(swiftkit never takes a token on the command line)")
    return token


def model_files(folder: Path) -> list[Path]:
    """The files of model folder ``folder`` that make up the model (see :data:`WEIGHT_SUFFIXES`)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES
                  and p.name not in NOT_MODEL and not p.name.startswith("."))


def gguf_files(gguf_dir: Path) -> list[Path]:
    """Every finished GGUF in ``gguf_dir`` and the Modelfile beside each (partials and logs left out)."""
    from swiftkit.deploy.modelfile import modelfile_name

    out: list[Path] = []
    for gguf in sorted(gguf_dir.glob("*.gguf")):
        if gguf.name.startswith("."):
            continue
        out.append(gguf)
        modelfile = gguf.parent / modelfile_name(gguf)
        if modelfile.is_file():
            out.append(modelfile)
    return out


def model_card(repo: str, *, recipe: str, base_model: str, files: Sequence[Path], system: Optional[str],
               max_length: int) -> str:
    """README.md of the pushed folder: what it is and how to run it with Ollama and llama.cpp (or transformers)."""
    ggufs = [f.name for f in files if f.suffix == ".gguf"]
    base = f"base_model: {base_model}\n" if HUB_ID.match(base_model) else ""
    tags = "tags:\n- swiftkit\n- ms-swift\n" + ("- gguf\n" if ggufs else "")
    lines = [f"---\n{base}{tags}---", f"# {repo.split('/')[-1]}", "",
             f"Fine-tuned from `{base_model}` with the swiftkit recipe `{recipe}` (ms-swift), "
             f"trained at most {max_length} tokens per sample.", ""]
    if system:
        lines += ["The model was trained with this system prompt, which every file here uses as its default:", "",
                  "```text", system, "```", ""]
    if ggufs:
        first = ggufs[0]
        stem = first.removesuffix(".gguf")
        lines += ["## Files", "", *[f"- `{name}`" for name in ggufs], "",
                  "Each GGUF has a `<name>.Modelfile` beside it for Ollama (chat template, system prompt, context "
                  "length, stop tokens).", "",
                  "## Ollama", "", "```bash", f"# after downloading {first} and {stem}.Modelfile into one folder",
                  f"ollama create {stem} -f {stem}.Modelfile", f"ollama run {stem}", "```", "",
                  "## llama.cpp", "", "The GGUF carries its own chat template, so llama.cpp needs no options "
                  "for it:", "", "```bash", f"llama-cli -m {first} -cnv",
                  f"llama-server -m {first} --port 8080   # OpenAI-compatible /v1/chat/completions", "```", ""]
    else:
        lines += ["## Use", "", "Full weights in the Hugging Face layout, with the chat template:", "", "```bash",
                  f"swift infer --model {repo} --infer_backend pt     # ms-swift",
                  f"vllm serve {repo}                                 # vLLM", "```", "",
                  "For Ollama and llama.cpp, convert to GGUF: `swiftkit export RUN --gguf --quant q4_k_m --push "
                  "REPO` writes the GGUF with a Modelfile.", ""]
    return "\n".join(lines)


def stage(folder: Path, files: Sequence[Path], card: str) -> Path:
    """``folder`` emptied and filled with links to ``files`` (copies where links cannot be made) and README.md."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for src in files:
        dst = folder / src.name
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(src, dst)
    write_text(folder / "README.md", card)
    return folder


def upload(folder: Path, repo: str, hub: str, token: str, *, message: str) -> str:
    """Create ``repo`` if needed and upload ``folder`` to it through the hub's own client; returns the repo's URL.
    One-line SwiftkitError when the hub refuses (never the exception text: it can carry URLs)."""
    name, _ = HUBS[hub]
    try:
        if hub == "hf":
            from huggingface_hub import HfApi

            api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
            url = str(api.create_repo(repo, repo_type="model", exist_ok=True))
            api.upload_folder(repo_id=repo, repo_type="model", folder_path=str(folder), commit_message=message)
            return url
        from modelscope.hub.api import HubApi

        ms = HubApi(token=token)
        ms.create_repo(repo, repo_type="model", exist_ok=True)
        ms.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=message)
        return f"https://modelscope.cn/models/{repo}"
    except Exception as exc:  # each client raises its own family of HTTP / auth errors
        status = getattr(getattr(exc, "response", None), "status_code", None)
        raise SwiftkitError(f"--push {repo}: {name} refused the upload ({type(exc).__name__}"
                            f"{f', HTTP {status}' if status else ''}); check the token's write access and the id"
                            ) from None
