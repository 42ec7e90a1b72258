"""Token statistics with the recipe's tokenizer (`--tokenizer DIR|RECIPE`): the bundled Qwen tokenizer by default, a
local folder (the tiny model's real Qwen tokenizer, or a character-level one whose counts are known exactly), a recipe
name resolved to its model, and --over-length truncate cutting with the same tokenizer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from datasets_prep.errors import SwiftkitError
from datasets_prep.options import PrepOptions
from datasets_prep.pipeline import prep
from datasets_prep.stats import summarize
from datasets_prep.token_counter import BUNDLED, CHATML, FOLDER_TEMPLATE, render_chatml
from swiftkit.cli import main as swiftkit_main

ROOT = Path(__file__).resolve().parents[1]
MUICE = ROOT / "datasets_prep" / "samples" / "muice"
FAST = dict(histogram=False)


def char_tokenizer(folder: Path, chat_template: Optional[str] = None, **config: object) -> Path:
    """A tokenizer whose every character is one token (so a text's count is its length), built offline with the
    `tokenizers` library and saved as transformers' PreTrainedTokenizerFast; ``config`` goes into
    tokenizer_config.json."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(str(folder))
    if config:
        path = folder / "tokenizer_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **config}), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def chars(tmp_path_factory) -> Path:
    return char_tokenizer(tmp_path_factory.mktemp("tok") / "chars")


def records(out: Path) -> list[dict]:
    return [json.loads(line) for name in ("train.jsonl", "val.jsonl")
            for line in (out / name).read_text(encoding="utf-8").splitlines()]


def stats(manifest: dict) -> dict:
    return {k: v for k, v in manifest["token_lengths"].items() if k not in ("tokenizer", "rendering")}


def test_default_is_the_bundled_qwen_tokenizer_and_the_manifest_says_so(tmp_path):
    m = prep("muice", MUICE, tmp_path / "o", PrepOptions(**FAST))
    assert (m["token_lengths"]["tokenizer"], m["token_lengths"]["rendering"]) == (BUNDLED, CHATML)
    assert m["options"]["tokenizer"] is None


def test_the_tiny_models_folder_counts_like_the_bundled_qwen(tmp_path, tiny_model_dir):
    """tiny-qwen2 carries the real Qwen tokenizer and a chat template that renders prep's records as ChatML."""
    folder = tiny_model_dir
    bundled = prep("muice", MUICE, tmp_path / "q", PrepOptions(**FAST))
    tiny = prep("muice", MUICE, tmp_path / "t", PrepOptions(tokenizer=str(folder), **FAST))
    assert stats(tiny) == stats(bundled) and tiny["token_lengths"]["records"] == 27
    assert (tiny["token_lengths"]["tokenizer"], tiny["token_lengths"]["rendering"]) == (str(folder), FOLDER_TEMPLATE)
    assert tiny["options"]["tokenizer"] == str(folder)
    for name in ("train.jsonl", "val.jsonl"):  # the tokenizer changes the statistics only, never the data
        assert (tmp_path / "t" / name).read_bytes() == (tmp_path / "q" / name).read_bytes()


def test_another_tokenizer_gives_its_own_counts(tmp_path, chars):
    m = prep("muice", MUICE, tmp_path / "o", PrepOptions(tokenizer=str(chars), **FAST))
    expected = summarize([len(render_chatml(r["messages"])) for r in records(tmp_path / "o")], 2048)
    assert stats(m) == expected  # one token per character of the ChatML rendering (no chat template here)
    assert (m["token_lengths"]["tokenizer"], m["token_lengths"]["rendering"]) == (str(chars), CHATML)
    qwen = prep("muice", MUICE, tmp_path / "q", PrepOptions(**FAST))
    assert m["token_lengths"]["max"] > 2 * qwen["token_lengths"]["max"]  # visibly not Qwen's counts


def test_the_folders_chat_template_renders_the_records(tmp_path):
    folder = char_tokenizer(tmp_path / "tpl", "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}\n{% endfor %}")
    m = prep("muice", MUICE, tmp_path / "o", PrepOptions(tokenizer=str(folder), **FAST))
    rendered = ["".join(f"[{x['role']}]{x['content']}\n" for x in r["messages"]) for r in records(tmp_path / "o")]
    assert stats(m) == summarize([len(text) for text in rendered], 2048)
    assert m["token_lengths"]["rendering"] == FOLDER_TEMPLATE


def test_truncate_cuts_with_the_same_tokenizer(tmp_path, chars):
    """120 characters is far more than 120 Qwen tokens: only the tokenizer that counts can say where to cut."""
    m = prep("muice", MUICE, tmp_path / "o", PrepOptions(tokenizer=str(chars), max_length=120, over_length="truncate",
                                                         **FAST))
    lengths = [len(render_chatml(r["messages"])) for r in records(tmp_path / "o")]
    assert m["over_length"]["tokenizer"] == str(chars) and m["over_length"]["truncated"] > 10
    assert max(lengths) == 120 and lengths.count(120) >= m["over_length"]["truncated"]
    assert m["token_lengths"]["over_max_length"] == 0
    qwen = prep("muice", MUICE, tmp_path / "q", PrepOptions(max_length=120, over_length="truncate", **FAST))
    assert qwen["over_length"] == {"policy": "truncate", "over": 0, "truncated": 0, "dropped": 0,
                                   "tokenizer": BUNDLED}


def test_a_tokenizer_that_needs_remote_code_is_refused(tmp_path, capsys):
    folder = char_tokenizer(tmp_path / "remote", auto_map={"AutoTokenizer": ["tok.MyTokenizer", None]})
    with pytest.raises(SwiftkitError) as caught:
        prep("muice", MUICE, tmp_path / "o", PrepOptions(tokenizer=str(folder)))
    assert str(caught.value) == (f"--tokenizer {folder}: {folder / 'tokenizer_config.json'} field auto_map: the "
                                 "tokenizer needs its own code, which prep never runs (trust_remote_code is off); "
                                 "give a folder transformers loads without it")
    assert not (tmp_path / "o").exists()  # refused before the output folder is touched
    code = swiftkit_main(["prep", "muice", "--src", str(MUICE), "--out", str(tmp_path / "o"), "--no-progress",
                          "--tokenizer", str(folder)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "field auto_map" in err


def test_unusable_folders_fail_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    broken = char_tokenizer(tmp_path / "no-system", "{{ raise_exception('System role not supported') }}")
    cases = {tmp_path / "empty": "transformers cannot load a tokenizer from it",
             broken: "its chat template cannot render a system/user/assistant conversation",
             tmp_path / "missing": "no such folder"}
    for folder, message in cases.items():
        with pytest.raises(SwiftkitError) as caught:
            prep("muice", MUICE, tmp_path / "o", PrepOptions(tokenizer=str(folder)))
        text = str(caught.value)
        assert text.startswith(f"--tokenizer {folder}: {message}") and "\n" not in text


def test_cli_summary_names_the_tokenizer_and_a_recipe_resolves_to_its_model(tmp_path, tiny_model_dir, capsys,
                                                                             monkeypatch):
    folder = tiny_model_dir
    recipe = (ROOT / "recipes" / "smoke_tiny.yaml").read_text(encoding="utf-8")
    assert "model: models/tiny-qwen2\n" in recipe
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "my_tiny.yaml").write_text(recipe.replace("model: models/tiny-qwen2\n",
                                                                      f"model: {folder}\n"), encoding="utf-8")
    monkeypatch.setenv("SWIFTKIT_RECIPES", str(tmp_path / "recipes"))
    base = ["prep", "muice", "--src", str(MUICE), "--no-progress"]
    assert swiftkit_main([*base, "--out", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("0 over 2048 (tokenizer: qwen (bundled))")
    assert swiftkit_main([*base, "--out", str(tmp_path / "b"), "--tokenizer", "my_tiny"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].endswith(f"0 over 2048 (tokenizer: {folder})") and captured.err == ""
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["token_lengths"]["tokenizer"] == str(folder)
    assert swiftkit_main([*base, "--out", str(tmp_path / "c"), "--tokenizer", "my_tiyn"]) == 1
    assert capsys.readouterr().err.strip() == ("swiftkit prep: error: --tokenizer my_tiyn: no such folder, and unknown "
                                               "recipe 'my_tiyn' (did you mean 'my_tiny'?); known: my_tiny")


def _prep_subprocess(env_extra: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    """modelscope reads its cache folder from the environment at import, hence a subprocess per case."""
    env = {**os.environ, "MODELSCOPE_OFFLINE": "1", "HF_HUB_OFFLINE": "1", **env_extra}
    env.pop("USE_HF", None)
    return subprocess.run([sys.executable, "-m", "swiftkit.cli", "prep", "muice", "--src", str(MUICE), "--no-progress",
                           *argv], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_a_recipes_hub_model_counts_from_the_local_cache_or_falls_back_saying_so(tmp_path, chars):
    env = {"MODELSCOPE_CACHE": str(tmp_path / "ms")}
    proc = _prep_subprocess(env, "--out", str(tmp_path / "a"), "--tokenizer", "muice_full")
    assert proc.returncode == 0, proc.stderr
    assert ("swiftkit prep: --tokenizer muice_full: recipe muice_full's model Qwen/Qwen2-1.5B-Instruct is a hub id "
            "not in the local ModelScope cache (prep does not download); counting tokens with qwen (bundled)"
            ) in proc.stderr.splitlines()
    assert proc.stdout.splitlines()[0].endswith("(tokenizer: qwen (bundled))")
    cached = tmp_path / "ms" / "models" / "Qwen" / "Qwen2-1.5B-Instruct"  # ModelScope's cache layout
    char_tokenizer(cached)
    (cached / "config.json").write_text('{"model_type": "qwen2"}')  # a cached model has one (the offline lookup reads it)
    proc = _prep_subprocess(env, "--out", str(tmp_path / "b"), "--tokenizer", "muice_full")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text(encoding="utf-8"))
    assert Path(manifest["token_lengths"]["tokenizer"]).resolve() == cached.resolve()
    assert manifest["token_lengths"]["max"] == max(len(render_chatml(r["messages"])) for r in records(tmp_path / "b"))
    assert "counting tokens with" not in proc.stderr


def test_prep_all_counts_every_source_with_the_tokenizer(tmp_path, chars, capsys):
    code = swiftkit_main(["prep-all", "--src-dir", str(ROOT / "datasets_prep" / "samples"), "--out", str(tmp_path),
                          "--sources", "muice", "actions", "--no-progress", "--tokenizer", str(chars)])
    out = [line for line in capsys.readouterr().out.splitlines() if " -> " in line]  # one summary line per source
    assert code == 0 and len(out) == 2 and all(line.endswith(f"(tokenizer: {chars})") for line in out)
    for source in ("muice", "actions"):
        m = json.loads((tmp_path / source / "manifest.json").read_text(encoding="utf-8"))
        assert m["token_lengths"]["tokenizer"] == str(chars)
        assert m["token_lengths"]["max"] == max(len(render_chatml(r["messages"])) for r in records(tmp_path / source))


def test_a_folder_given_with_a_tilde_is_found(tmp_path, chars, monkeypatch):
    """`--tokenizer=~/tok` (the shell leaves that ~ alone) names the folder in the home directory."""
    import shutil

    from swiftkit.train.recipe_tokenizer import resolve_tokenizer

    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(chars, tmp_path / "tok")
    choice = resolve_tokenizer("~/tok")
    assert choice.folder == str(tmp_path / "tok") and choice.note is None
    assert prep("muice", MUICE, tmp_path / "o", PrepOptions(tokenizer=choice.folder, **FAST))["read"] > 0


def test_special_tokens_are_the_bundled_tokenizers_and_a_folders_own(tmp_path):
    """The fallback list is what the bundled tokenizer really has; a --tokenizer folder adds its own special tokens
    (not its non-special added ones, such as Qwen3's <think>) to what prep refuses."""
    from transformers import AutoTokenizer

    from datasets_prep.qwen_tokenizer import load_qwen_tokenizer
    from datasets_prep.token_counter import bundled, from_folder
    from datasets_prep.vocab import (
        SPECIAL_TOKEN_TEXTS,
        special_token_text,
        special_tokens,
    )

    qwen = load_qwen_tokenizer()
    assert sorted(t.content for t in qwen.added_tokens_decoder.values() if t.special) == sorted(SPECIAL_TOKEN_TEXTS)
    assert special_tokens(qwen) == SPECIAL_TOKEN_TEXTS == bundled().specials
    folder = char_tokenizer(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.add_special_tokens({"additional_special_tokens": ["<|eot_id|>"]})
    tok.add_tokens(["<think>"])  # added, not special: the data's own markup
    tok.save_pretrained(str(folder))
    assert from_folder(folder).specials == (*SPECIAL_TOKEN_TEXTS, "[UNK]", "<|eot_id|>")  # its unk is special too
    assert special_token_text("甲<|eot_id|>乙", from_folder(folder).specials) == "<|eot_id|>"
    assert special_token_text("甲<|eot_id|>乙") is None and special_token_text("<think>想</think>答") is None
    rows = [{"prompt": "问", "completion": "答<|eot_id|>"}, {"prompt": "想", "completion": "<think>嗯</think>好"}]
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    m = prep("muice", src, tmp_path / "o", PrepOptions(tokenizer=str(folder), val_ratio=0, **FAST))
    assert (m["train"], m["rejected"], m["special_token_rejects"]) == (1, 1, 1)
    reject = json.loads((tmp_path / "o" / "rejects.jsonl").read_text(encoding="utf-8"))
    assert "messages[2] (assistant) content holds special-token text '<|eot_id|>'" in reject["reason"]
    m = prep("muice", src, tmp_path / "o2", PrepOptions(val_ratio=0, **FAST))  # the bundled Qwen: plain text there
    assert (m["train"], m["rejected"]) == (2, 0)
