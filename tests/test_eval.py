"""swiftkit eval: every metric on real-shaped records (each test fails when its metric is broken), the prompts file,
the report files (self-contained, escaped, byte-identical), and the whole command on the shared smoke run."""
from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from markupsafe import escape

from datasets_prep.registry import ACTIONS_PREFIX, MEDICAL_SYSTEM, MUICE_SYSTEM
from swiftkit.cli import main as cli_main
from swiftkit.core.errors import SwiftkitError
from swiftkit.evaluate import metrics as em
from swiftkit.evaluate.compare import (
    log_figures,
    loss_curves,
    prompt_from_record,
    read_prompts,
)
from swiftkit.evaluate.report import table_rows, write_report
from swiftkit.run.rundir import RunInfo, write_run_info

# --- records in the shapes prep writes --------------------------------------------------------------------------

MEDICAL_REF = ("<think>\n38度属于低热，可先物理降温，多喝水，观察症状变化。\n</think>\n\n"
               "38度可以先物理降温和多喝水，超过38.5度或持续不退再用退烧药。")
ACTIONS_SYSTEM = ACTIONS_PREFIX + "- 做饭-炒冬瓜\n- 杯子-倒水\n- 换衣服-裙子\n- 切开-西瓜\n"
ACTION_REF = "我来做饭。\n<&做饭-炒冬瓜&>\n炒冬瓜香喷四溢。"
TWO_ACTION_REF = "好的，先切西瓜再倒水。\n<&切开-西瓜&>\n<&杯子-倒水&>\n西瓜切好了，水也倒好了。"


def sample(system: str | None, prompt: str, reference: str | None, **answers) -> dict:
    truncated = {side: False for side in answers}
    for side in list(answers):
        if side.endswith("_truncated"):
            truncated[side[:-len("_truncated")]] = answers.pop(side)
            truncated.pop(side)
    return {"system": system, "prompt": prompt, "reference": reference, "truncated": truncated, **answers}


# --- similarity -------------------------------------------------------------------------------------------------

def test_rouge_l_is_a_character_lcs_f1():
    assert em.rouge_l("我是沐雪哦，不是Qwen！", "我是沐雪哦，不是Qwen！") == 1.0
    assert em.rouge_l("我是沐雪！", "我是沐雪") == 1.0  # punctuation carries no meaning
    # LCS 我沐雪 = 3: precision 3/4, recall 3/5
    assert em.rouge_l("我是沐雪", "我叫沐雪哦") == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    # order matters (a subsequence, not a bag of characters): same characters reversed share one in order
    assert em.rouge_l("雪沐是我", "我是沐雪") == pytest.approx(0.25)
    assert em.rouge_l("今天天气不错", "我是沐雪") == 0.0
    assert em.rouge_l("", "我是沐雪") == 0.0 and em.rouge_l("！！", "我是沐雪") == 0.0


def test_similarity_metrics_compare_answers_without_thinking():
    good = sample(MEDICAL_SYSTEM, "感冒发烧38度需要吃药吗？", MEDICAL_REF, tuned=MEDICAL_REF,
                  base="<think>\n随便想想\n</think>\n\n38度可以先物理降温和多喝水，超过38.5度或持续不退再用退烧药。")
    values = {side: em.sample_metrics([good], side) for side in ("base", "tuned")}
    assert values["tuned"]["exact_match"] == 1.0 and values["base"]["exact_match"] == 0.0
    # the answers after </think> are identical: similarity ignores the thinking
    assert values["base"]["rouge_l"] == 1.0 and values["base"]["char_bigram_f1"] == 1.0
    partial = sample(None, "饿了", ACTION_REF, tuned="我来做饭。<&做饭-炒冬瓜&>", base="外面下雨了")
    scores = em.sample_scores(partial, "tuned")
    assert 0.3 < scores["rouge_l"] < 1.0 and 0.3 < scores["char_bigram_f1"] < 1.0
    assert em.sample_scores(partial, "base") == {"exact_match": 0.0, "rouge_l": 0.0, "char_bigram_f1": 0.0}
    # bigrams, not characters: the same characters in another order share no bigram; exact means the whole answer
    shuffled = sample(MUICE_SYSTEM, "你是谁？", "我是沐雪哦", tuned="哦雪沐是我", base="我是沐雪")
    assert em.sample_scores(shuffled, "tuned") == {"exact_match": 0.0, "rouge_l": 0.2, "char_bigram_f1": 0.0}
    assert em.sample_scores(shuffled, "base") == {"exact_match": 0.0, "rouge_l": pytest.approx(0.8889, abs=1e-4),
                                                  "char_bigram_f1": pytest.approx(6 / 7, abs=1e-4)}
    padded = sample(MUICE_SYSTEM, "你是谁？", "我是沐雪哦", tuned=" 我是沐雪哦\n")
    assert em.sample_scores(padded, "tuned")["exact_match"] == 1.0
    # no reference: similarity does not apply (None, not 0)
    bare = sample(MUICE_SYSTEM, "讲个故事", None, tuned="从前有只小猫", base="")
    assert em.sample_metrics([bare], "tuned")["rouge_l"] is None and em.sample_scores(bare, "tuned") == {}


# --- reasoning --------------------------------------------------------------------------------------------------

def test_think_format_and_truncation_on_medical_answers():
    answers = {
        "good": MEDICAL_REF,
        "no_think": "38度可以先物理降温和多喝水。",
        "unclosed": "<think>\n38度属于低热，可先物理降温，多喝水，观察症状",  # cut off mid-thought
        "empty_answer": "<think>\n38度属于低热。\n</think>\n\n",
    }
    samples = [sample(MEDICAL_SYSTEM, "感冒发烧38度需要吃药吗？", MEDICAL_REF, tuned=a,
                      tuned_truncated=(name == "unclosed")) for name, a in answers.items()]
    assert [em.think_compliant(a) for a in answers.values()] == [True, False, False, False]
    values = em.sample_metrics(samples, "tuned")
    assert values["think_format"] == 0.25
    assert values["truncation_rate"] == 0.25
    # where the reference does not think, the think format is not measured
    chat = sample(MUICE_SYSTEM, "你是谁？", "我是沐雪哦", tuned="<think>嗯</think>我是沐雪哦")
    assert em.sample_metrics([chat], "tuned")["think_format"] is None
    assert em.data_kinds(samples, persona=False) == ["reasoning"]


# --- actions ----------------------------------------------------------------------------------------------------

def test_action_validity_only_offered_actions():
    assert em.actions_valid("我来做饭。\n<&做饭-炒冬瓜&>", ACTIONS_SYSTEM, ACTION_REF)
    assert not em.actions_valid("好的，马上。", ACTIONS_SYSTEM, ACTION_REF)  # no tag: no action taken, none valid
    assert not em.actions_valid("", ACTIONS_SYSTEM, ACTION_REF)  # an empty answer takes no valid action
    assert not em.actions_valid("我来做饭。\n<&飞-天空&>", ACTIONS_SYSTEM, ACTION_REF)  # invented
    assert not em.actions_valid("<&做饭-炒冬瓜&>\n<&跳舞-华尔兹&>", ACTIONS_SYSTEM, ACTION_REF)  # one invented
    assert not em.actions_valid("我来做饭。<&做饭-炒冬瓜", ACTIONS_SYSTEM, ACTION_REF)  # unclosed tag
    # the reference's own tags count as offered when the system lists none
    assert em.actions_valid("<&挥手-再见&>拜拜", None, "拜拜！\n<&挥手-再见&>")


def test_action_agreement_is_the_reference_tags_in_order():
    assert em.actions_agree("好的，先切西瓜再倒水。\n<&切开-西瓜&>\n<&杯子-倒水&>", TWO_ACTION_REF)
    assert not em.actions_agree("<&杯子-倒水&>\n<&切开-西瓜&>", TWO_ACTION_REF)  # other order
    assert not em.actions_agree("<&切开-西瓜&>", TWO_ACTION_REF)  # one missing
    assert not em.actions_agree("好的，西瓜切好了。", TWO_ACTION_REF)  # acting not at all
    assert em.actions_agree("今天天气不错。", "今天天气不错，适合出去走走。")  # silent reference, silent answer
    assert not em.actions_agree("<&切开-西瓜&>", "今天天气不错，适合出去走走。")
    samples = [sample(ACTIONS_SYSTEM, "饿了", ACTION_REF, tuned="我来做饭。\n<&做饭-炒冬瓜&>\n好了。",
                      base="我来做饭。\n<&炒饭&>"),
               sample(ACTIONS_SYSTEM, "切个西瓜，再给我倒杯水", TWO_ACTION_REF,
                      tuned="<&杯子-倒水&>\n<&切开-西瓜&>", base="好的。")]
    tuned, base = em.sample_metrics(samples, "tuned"), em.sample_metrics(samples, "base")
    assert (tuned["action_valid"], tuned["action_agreement"]) == (1.0, 0.5)
    assert (base["action_valid"], base["action_agreement"]) == (0.0, 0.0)  # an invented tag, then no tag
    assert em.data_kinds(samples, persona=False) == ["actions"]


def test_an_answer_without_an_action_is_not_a_valid_action():
    """The issue's numbers: the random base model answered nothing and scored 1.0 "valid actions"; the tuned model,
    2 of 3 right, scored 0.667 and was painted red as worse. A prompt whose reference does not act is not counted
    (not acting is right there; action agreement judges it)."""
    prompts = [("饿了", ACTION_REF, "我来做饭。\n<&做饭-炒冬瓜&>"),
               ("切个西瓜，再给我倒杯水", TWO_ACTION_REF, "<&切开-西瓜&>\n<&杯子-倒水&>"),
               ("口渴了", "给你倒杯水。\n<&杯子-倒水&>", "给你倒杯水。\n<&喝-可乐&>"),  # an invented action
               ("今天天气怎么样", "今天天气不错，适合出去走走。", "今天天气不错。")]  # the reference does not act
    samples = [sample(ACTIONS_SYSTEM, q, ref, base="", tuned=t) for q, ref, t in prompts]
    tuned, base = em.sample_metrics(samples, "tuned"), em.sample_metrics(samples, "base")
    assert base["action_valid"] == 0.0 and tuned["action_valid"] == pytest.approx(2 / 3, abs=1e-4)
    assert em.sample_counts(samples, "base")["action_valid"] == [0, 3]
    assert em.sample_counts(samples, "tuned")["action_valid"] == [2, 3]
    assert em.sample_counts(samples, "tuned")["action_agreement"] == [3, 4]  # the silent answer agrees
    report = {"columns": [{"side": "base", "label": "base"}, {"side": "tuned", "label": "tuned"}],
              "metric_rows": em.metric_rows(["actions"], [], None),
              "metrics": {side: em.sample_metrics(samples, side) for side in ("base", "tuned")},
              "counts": {side: em.sample_counts(samples, side) for side in ("base", "tuned")}}
    row = {r["key"]: r for r in table_rows(report)}["action_valid"]
    assert row["cells"] == {"base": "0 % (0/3)", "tuned": "66.7 % (2/3)"}
    assert row["marks"]["tuned"] == "better"


def test_rates_are_shown_as_rates_with_their_counts():
    """"truncated 1" meant 100 %: a rate is a percent of the answers it counts, with n/N beside it; a mean score
    stays a number."""
    samples = [sample(MUICE_SYSTEM, "你是谁？", "我是沐雪哦", base="我是" * 40, tuned="我是沐雪哦", base_truncated=True)]
    report = {"columns": [{"side": "base", "label": "base"}, {"side": "tuned", "label": "tuned"}],
              "metric_rows": em.metric_rows([], [], None),
              "metrics": {side: em.sample_metrics(samples, side) for side in ("base", "tuned")},
              "counts": {side: em.sample_counts(samples, side) for side in ("base", "tuned")}}
    rows = {r["key"]: r for r in table_rows(report)}
    assert rows["truncation_rate"]["cells"] == {"base": "100 % (1/1)", "tuned": "0 % (0/1)"}
    assert rows["exact_match"]["cells"] == {"base": "0 % (0/1)", "tuned": "100 % (1/1)"}
    assert rows["rouge_l"]["cells"]["tuned"] == "1" and "%" not in rows["rouge_l"]["cells"]["base"]


# --- persona ----------------------------------------------------------------------------------------------------

def test_identity_names_the_persona_and_never_qwen():
    assert em.identity_ok("我是沐雪，一个可爱的AI女孩子哦~ 才不是Qwen呢！", "沐雪")  # a denial is fine
    assert not em.identity_ok("我是通义千问，由阿里云开发的AI助手。", "沐雪")
    assert not em.identity_ok("我是沐雪，也是通义千问。", "沐雪")  # naming both still claims Qwen
    assert not em.identity_ok("我是一个AI助手。", "沐雪")  # the persona is not there
    assert em.identity_ok("我是一个AI助手。", None) and not em.identity_ok("I am Qwen.", None)
    rows = [{"condition": "run system", "prompt": "你是谁？", "tuned": "我是沐雪喵", "base": "我是通义千问"},
            {"condition": "run system", "prompt": "你叫什么名字？", "tuned": "我叫沐雪哦～", "base": "我是AI助手"},
            {"condition": "no system", "prompt": "你是谁？", "tuned": "我是沐雪喵", "base": "I am Qwen."},
            {"condition": "no system", "prompt": "你叫什么名字？", "tuned": "我是通义千问", "base": "我叫沐雪"}]
    assert em.identity_metrics(rows, "tuned", "沐雪") == {"identity_run_system": 1.0, "identity_no_system": 0.5}
    assert em.identity_metrics(rows, "base", "沐雪") == {"identity_run_system": 0.0, "identity_no_system": 0.5}


def test_metric_rows_follow_the_data():
    persona_rows = [r["key"] for r in em.metric_rows(["persona"], ["identity_run_system", "identity_no_system"], "沐雪")]
    assert persona_rows == ["exact_match", "rouge_l", "char_bigram_f1", "truncation_rate", "identity_run_system",
                            "identity_no_system", "train_loss", "eval_loss", "eval_perplexity"]
    mixed = [r["key"] for r in em.metric_rows(["reasoning", "actions"], [], None)]
    assert {"think_format", "action_valid", "action_agreement"} <= set(mixed) and "identity_run_system" not in mixed


# --- prompts ----------------------------------------------------------------------------------------------------

def test_prompts_file_formats_and_the_run_system(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join([
        json.dumps({"messages": [{"role": "system", "content": MEDICAL_SYSTEM},
                                 {"role": "user", "content": "感冒发烧38度需要吃药吗？"},
                                 {"role": "assistant", "content": MEDICAL_REF}]}, ensure_ascii=False),
        json.dumps({"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好呀！"},
                                 {"role": "user", "content": "你几岁了？"}]}, ensure_ascii=False),
        "",
        json.dumps({"prompt": "饿了", "reference": ACTION_REF, "system": ACTIONS_SYSTEM}, ensure_ascii=False),
        "讲个故事",
        "not read: past the limit",
    ]) + "\n", encoding="utf-8")
    prompts = read_prompts(path, MUICE_SYSTEM, limit=4)
    assert [p.prompt for p in prompts] == ["感冒发烧38度需要吃药吗？", "你几岁了？", "饿了", "讲个故事"]
    assert [p.system for p in prompts] == [MEDICAL_SYSTEM, MUICE_SYSTEM, ACTIONS_SYSTEM, MUICE_SYSTEM]
    assert [p.reference for p in prompts] == [MEDICAL_REF, None, ACTION_REF, None]
    assert [m["role"] for m in prompts[1].messages] == ["system", "user", "assistant", "user"]
    assert prompts[3].where == f"{path}:5"
    assert prompt_from_record("讲个故事", "x:1", None).messages == ({"role": "user", "content": "讲个故事"},)


@pytest.mark.parametrize("line, problem", [
    ('{"messages": [{"role": "user", "content": "hi"}', "not JSON"),
    ('{"messages": [{"role": "assistant", "content": "只有答案"}]}', "no user turn to answer"),
    ('{"messages": [{"role": "bot", "content": "x"}]}', "field messages"),
    ('{"question": "x"}', "needs a messages list or a non-empty prompt field"),
])
def test_bad_prompts_file_is_one_line_with_file_and_line(tmp_path, line, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(SwiftkitError, match=problem) as err:
        read_prompts(path, None, limit=10)
    assert str(err.value).startswith(f"{path}:2: ") and "\n" not in str(err.value)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["eval", str(tmp_path / "missing")]) == 1
    assert "not a swiftkit run directory" in capsys.readouterr().err
    run = tmp_path / "run"
    write_run_info(run, RunInfo(recipe="r", model=str(tmp_path / "model"), model_type=None, template=None,
                                train_type="full", max_length=128, train_files=[]))
    bad = tmp_path / "p.jsonl"
    bad.write_text("你好\n{oops\n", encoding="utf-8")
    assert cli_main(["eval", str(run), "--prompts", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"swiftkit eval: error: {bad}:2: not JSON (Expecting property name enclosed in double quotes " \
                  "at column 2)"
    assert cli_main(["eval", str(run)]) == 1
    assert "the run has no val files; pass --prompts FILE" in capsys.readouterr().err


def test_help_teaches_and_imports_no_torch():
    code = ("import sys, json, contextlib, io\n"
            "from swiftkit.cli import main\n"
            "out = {}\n"
            "for cmd in ('eval', 'preview'):\n"
            "    buf = io.StringIO()\n"
            "    with contextlib.redirect_stdout(buf):\n"
            "        try:\n"
            "            main([cmd, '--help'])\n"
            "        except SystemExit:\n"
            "            pass\n"
            "    out[cmd] = buf.getvalue()\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'swift', 'transformers', 'matplotlib'))\n"
            "print(json.dumps({'heavy': heavy, 'help': out}))\n")
    result = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert result["heavy"] == []
    assert "swiftkit eval runs/" in result["help"]["eval"] and "--compare" in result["help"]["eval"]
    assert "ROUGE-L" in result["help"]["eval"] and "identity" in result["help"]["eval"]
    assert "swiftkit preview smoke_tiny" in result["help"]["preview"] and "[-100 × 41]" in result["help"]["preview"]
    assert cli_main(["--help"]) == 0


# --- the run's logs and the report files -------------------------------------------------------------------------

def test_loss_curves_and_perplexity_from_the_logs(tmp_path):
    lines = [{"loss": 11.9, "global_step/max_steps": "1/6"}, {"loss": 6.0, "global_step/max_steps": "3/6"},
             {"eval_loss": 2.0, "global_step/max_steps": "3/6"}, {"loss": 0.5, "global_step/max_steps": "6/6"},
             {"eval_loss": 1.5, "global_step/max_steps": "6/6"},
             {"train_loss": 4.0, "global_step/max_steps": "6/6"}]  # the end-of-training summary is no point
    (tmp_path / "logging.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    curves = loss_curves(tmp_path)
    assert curves == {"train": [[1, 11.9], [3, 6.0], [6, 0.5]], "eval": [[3, 2.0], [6, 1.5]]}
    assert log_figures(curves) == {"train_loss": 0.5, "eval_loss": 1.5, "eval_perplexity": round(math.exp(1.5), 4)}
    assert log_figures({"train": [], "eval": []}) == {"train_loss": None, "eval_loss": None, "eval_perplexity": None}


def fake_report() -> dict:
    samples = [sample(MUICE_SYSTEM, "你是谁呀？", "我是沐雪哦，不是Qwen！", base="", tuned="我是沐雪哦，不是Qwen！",
                      base_truncated=True),
               sample(MUICE_SYSTEM, "<b>粗体</b>？", "<script>alert('x')</script>", base="<img src=x onerror=1>",
                      tuned="<script>alert('x')</script>")]
    for s in samples:
        s.update(where="val.jsonl:1", messages=[], scores={side: em.sample_scores(s, side) for side in ("base", "tuned")})
    identity = [{"condition": "no system", "prompt": "你是谁？", "base": "我是通义千问", "tuned": "我是沐雪",
                 "ok": {"base": False, "tuned": True}}]
    metrics = {side: {**em.sample_metrics(samples, side), **em.identity_metrics(identity, side, "沐雪"),
                      **log_figures({"train": [[1, 12.0], [2, 0.5]] if side == "tuned" else [], "eval": []})}
               for side in ("base", "tuned")}
    counts = {side: {**em.sample_counts(samples, side), **em.identity_counts(identity, side, "沐雪")}
              for side in ("base", "tuned")}
    return {"run": "/runs/smoke_tiny/v1", "run_label": "smoke_tiny/v1", "recipe": "smoke_tiny", "train_type": "full", "base_model": "/models/tiny",
            "checkpoint": "/runs/smoke_tiny/v1/checkpoint-660", "compare": None,
            "columns": [{"side": "base", "label": "base (tiny)"}, {"side": "tuned", "label": "tuned (smoke_tiny/v1)"}],
            "prompts": {"source": "val", "count": 2, "limit": 20},
            "generation": {"backend": "pt", "greedy": True, "max_new_tokens": 64, "template": "saved"},
            "system": MUICE_SYSTEM, "persona_name": "沐雪", "kinds": ["persona"],
            "metric_rows": em.metric_rows(["persona"], ["identity_no_system"], "沐雪"), "metrics": metrics,
            "counts": counts, "curves": {"tuned": {"train": [[1, 12.0], [2, 3.0], [3, 0.5]], "eval": [[3, 0.9]]}},
            "samples": samples, "identity": identity}


def test_report_page_is_self_contained_escaped_and_stable(tmp_path):
    report = fake_report()
    json_path, html_path = write_report(report, tmp_path / "eval")
    html = html_path.read_text(encoding="utf-8")
    assert json.loads(json_path.read_text(encoding="utf-8")) == report
    # pictures are embedded PNGs; nothing is fetched from anywhere
    pngs = [chunk.split('"', 1)[0] for chunk in html.split('src="data:image/png;base64,')[1:]]
    assert len(pngs) == 2 and all(base64.b64decode(p).startswith(b"\x89PNG") for p in pngs)
    assert "http://" not in html and "https://" not in html and "<link" not in html
    # model text is escaped, never markup
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;b&gt;粗体&lt;/b&gt;" in html
    # the metrics table: base and tuned, better/worse marked against the base
    rows = {r["key"]: r for r in table_rows(report)}
    assert rows["exact_match"]["cells"] == {"base": "0 % (0/2)", "tuned": "100 % (2/2)"}
    assert rows["exact_match"]["marks"]["tuned"] == "better"
    assert rows["truncation_rate"]["marks"]["tuned"] == "better"  # 0 truncated beats 0.5: lower is better
    assert "eval_loss" not in rows and "action_valid" not in rows  # nothing logged / not this data
    assert '<table class="metrics">' in html and ">base (tiny)</th>" in html and ">tuned (smoke_tiny/v1)</th>" in html
    assert html.count('<div class="sample">') == 2 and "truncated</span>" in html
    # every metric in the table is defined on the page, as rendered text (not only a tooltip)
    page_text = re.sub(r"<[^>]+>", "", html)
    for row in rows.values():
        assert f'<dt id="def-{row["key"]}">' in html and str(escape(row["definition"])) in html
        assert row["definition"].split(". Over:")[0] in unescape(page_text)
    assert "Value: the share of those answers" in page_text and "lower is better" in page_text
    # byte-identical when written again
    first = (json_path.read_bytes(), html_path.read_bytes())
    write_report(json.loads(json_path.read_text(encoding="utf-8")), tmp_path / "eval")
    assert (json_path.read_bytes(), html_path.read_bytes()) == first
    assert not list((tmp_path / "eval").glob(".*.tmp"))


# --- the command on the smoke run --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke(smoke_result) -> dict:
    result = smoke_result
    assert result["code"] == 0, result["out"]
    return result


def screenshot(html: Path, png: Path) -> subprocess.CompletedProcess:
    script = Path(__file__).resolve().parents[1] / "scripts" / "screenshot_eval.sh"
    return subprocess.run(["bash", str(script), str(html), str(png)], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.slow
def test_eval_on_the_smoke_run(smoke, tmp_path, capsys):
    run = Path(smoke["run"])
    train = Path(smoke["data_dir"]) / "muice" / "train.jsonl"
    out = tmp_path / "eval"
    # trained prompts: the tuned model answers what it was taught, the random base model does not
    assert cli_main(["eval", str(run), "--prompts", str(train), "--limit", "3", "--max-new-tokens", "48",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "identity (no system)" in printed and f"page:   {out / 'report.html'}" in printed
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    records = [json.loads(line) for line in train.read_text(encoding="utf-8").splitlines()[:3]]
    assert len(report["samples"]) == 3
    for s, rec in zip(report["samples"], records):
        assert s["reference"] == rec["messages"][-1]["content"] and s["prompt"] == rec["messages"][-2]["content"]
        assert s["tuned"] == s["reference"]
        assert s["base"] != s["reference"]
    tuned, base = report["metrics"]["tuned"], report["metrics"]["base"]
    assert tuned["exact_match"] == 1.0 and tuned["rouge_l"] == 1.0 and tuned["truncation_rate"] == 0.0
    assert report["counts"]["tuned"]["exact_match"] == [3, 3] and report["counts"]["tuned"]["truncation_rate"] == [0, 3]
    assert "100 % (3/3)" in printed and "0 % (0/3)" in printed  # rates printed as rates
    assert base["exact_match"] == 0.0 and base["rouge_l"] < 0.5
    assert tuned["identity_run_system"] == 1.0 and tuned["identity_no_system"] == 1.0
    assert base["identity_run_system"] == 0.0
    assert tuned["train_loss"] < 0.2 and tuned["eval_loss"] is None  # smoke_tiny sets no eval_steps
    assert report["kinds"] == ["persona"] and len(report["identity"]) == 6
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 2 and '<table class="metrics">' in html
    assert html.count('<div class="sample">') == 3
    for s in report["samples"]:
        assert str(escape(s["prompt"])) in html and str(escape(s["tuned"])) in html
    png = tmp_path / "report.png"
    shot = screenshot(out / "report.html", png)
    if shot.returncode == 3:
        pytest.skip(f"report checked; no screenshot: {shot.stderr.strip()}")
    assert shot.returncode == 0, shot.stderr
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 20_000


@pytest.mark.slow
def test_eval_compare_puts_a_second_run_beside(smoke, tmp_path):
    run = Path(smoke["run"])
    other = tmp_path / "other"
    from tests.helpers import copy_run

    copy_run(run, other)
    out = tmp_path / "cmp"
    assert cli_main(["eval", str(run), "--compare", str(other), "--limit", "2", "--no-identity",
                     "--max-new-tokens", "24", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [c["side"] for c in report["columns"]] == ["base", "tuned", "compare"]
    assert report["compare"]["run"] == str(other.resolve()) and report["identity"] == []
    assert all(s["compare"] == s["tuned"] for s in report["samples"])  # the same weights answer the same
    assert report["metrics"]["compare"]["train_loss"] == report["metrics"]["tuned"]["train_loss"]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 3
    assert html.index(">base (") < html.index(">tuned (") < html.index(">compare (")
    # the page written again from report.json is the same page, column order included
    before = (out / "report.html").read_bytes()
    write_report(report, out)
    assert (out / "report.html").read_bytes() == before
