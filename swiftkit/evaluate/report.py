"""`swiftkit eval`'s files: ``report.json`` (the data) and ``report.html`` (one self-contained page a person opens).

The page holds the loss curves and a metrics chart as PNG pictures embedded as ``data:`` URIs (no file beside it),
the metrics table (base, tuned and, with --compare, the other run), persona runs' identity stress suite per family,
the drift by step when the run has watch samples (a chart and the answers by step), and the samples side by side. Every model text
is escaped (Jinja2 autoescape). Both files are written atomically and are byte-identical on rerun: no timestamps,
PNGs without metadata.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Optional

from datasets_prep.atomic import write_json, write_text
from swiftkit.evaluate.metrics import definition

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
EVAL_DIR = "eval"

PAGE = """\
<!DOCTYPE html>
<html lang="zh">
<head>
<meta charset="utf-8">
<title>swiftkit eval · {{ title }}</title>
<style>
  body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans CJK SC", "PingFang SC", sans-serif;
         margin: 24px auto; max-width: 1240px; padding: 0 16px; color: #1d2330; background: #fafbfc; }
  h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #dde;
  padding-bottom: 4px; }
  .meta { color: #556; margin: 0; } .meta code { background: #eef; padding: 0 4px; border-radius: 3px; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { border: 1px solid #dde1ea; padding: 6px 8px; vertical-align: top; text-align: left; }
  th { background: #f0f2f7; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  td.better { background: #e3f6e8; font-weight: 600; } td.worse { background: #fbe6e6; }
  td.desc { color: #556; font-size: 12.5px; } td.ok { background: #e3f6e8; } td.bad { background: #fbe6e6; }
  .pics { display: flex; flex-wrap: wrap; gap: 12px; } .pics figure { margin: 0; background: #fff;
  border: 1px solid #dde1ea; padding: 6px; } .pics figcaption { color: #556; font-size: 12px; }
  .sample { background: #fff; border: 1px solid #dde1ea; border-radius: 6px; margin: 12px 0; padding: 10px 12px; }
  .prompt { font-weight: 600; margin-bottom: 6px; } .prompt .n { color: #889; font-weight: 400; margin-right: 6px; }
  .where, details { color: #667; font-size: 12px; }
  .cols { display: grid; grid-template-columns: repeat({{ ncols }}, minmax(0, 1fr)); gap: 8px; }
  .col { border: 1px solid #e4e7ef; border-radius: 4px; padding: 6px 8px; min-width: 0; }
  .col h3 { font-size: 12px; margin: 0 0 4px; color: #556; text-transform: uppercase; letter-spacing: .03em; }
  .col.reference { background: #f6f7fb; } .col.tuned { border-color: #9fc5a8; } .col.compare { border-color: #a9b8dd; }
  .text { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; font-family: inherit; max-height: 24em;
  overflow: auto; }
  table.identity { table-layout: fixed; } table.identity col.asked { width: 8em; } table.identity col.prompt { width: 10em; }
  .chips { margin-top: 6px; } .chip { display: inline-block; font-size: 11.5px; border-radius: 10px; padding: 0 7px;
  margin: 0 4px 2px 0; background: #eef0f5; color: #445; } .chip.ok { background: #d8f2df; color: #185c2b; }
  .chip.bad { background: #f9dada; color: #7d1d1d; }
  .empty { color: #99a; font-style: italic; }
  h3 { font-size: 14px; margin: 16px 0 4px; } table.metrics a { color: inherit; text-decoration: none; }
  dl.defs { margin: 0; font-size: 12.5px; color: #334; } dl.defs dt { font-weight: 600; margin-top: 4px; }
  dl.defs dd { margin: 0 0 0 16px; }
  table.drift, table.stress { width: auto; min-width: 50%; } table.byStep { table-layout: fixed; }
  table.byStep th:first-child { width: 16em; } table.byStep .text { max-height: 8em; font-size: 12.5px; }
  summary { cursor: pointer; margin: 8px 0; }
</style>
</head>
<body>
<h1>swiftkit eval · {{ title }}</h1>
<p class="meta">run <code>{{ report.run }}</code> · checkpoint <code>{{ report.checkpoint }}</code></p>
<p class="meta">base model <code>{{ report.base_model }}</code>{% if report.compare %} · compared with
  <code>{{ report.compare.run }}</code>{% endif %}</p>
<p class="meta">{{ report.prompts.count }} prompt(s) from {{ report.prompts.source }} · {{ report.generation.backend }},
  greedy, max_new_tokens {{ report.generation.max_new_tokens }}, {{ report.generation.template }} ·
  data: {{ report.kinds | join(", ") if report.kinds else "plain chat" }}</p>

<h2>Training</h2>
<div class="pics">
{% for pic in pictures %}  <figure><img src="data:image/png;base64,{{ pic.png }}" alt="{{ pic.caption }}"
    width="{{ pic.width }}" height="{{ pic.height }}"><figcaption>{{ pic.caption }}</figcaption></figure>
{% endfor %}</div>

<h2>Metrics</h2>
<table class="metrics">
  <tr><th>metric</th>{% for side, label in columns %}<th>{{ label }}</th>{% endfor %}<th>counted over</th></tr>
{% for row in rows %}  <tr><td title="{{ row.definition }}"><a href="#def-{{ row.key }}">{{ row.label }}</a></td>{% for side, label in columns %}<td class="num {{ row.marks[side] }}">{{ row.cells[side] }}</td>{% endfor %}<td class="desc">{{ row.over }}</td></tr>
{% endfor %}</table>
<p class="meta">Rates are the share of the answers counted: "67 % (2/3)" is 2 of 3 answers. Green: better than the
  base model, red: worse (by each metric's own direction). — : does not apply to this data, or not logged.</p>
<h3>Definitions</h3>
<dl class="defs">
{% for row in rows %}  <dt id="def-{{ row.key }}">{{ row.label }}</dt><dd>{{ row.definition }}</dd>
{% endfor %}</dl>
{% if report.identity %}
<h2>Identity{% if report.persona_name %} ({{ report.persona_name }}){% endif %}</h2>
<table class="identity">
  <colgroup><col class="asked"><col class="prompt">{% for side, label in columns %}<col>{% endfor %}</colgroup>
  <tr><th>asked</th><th>prompt</th>{% for side, label in columns %}<th>{{ label }}</th>{% endfor %}</tr>
{% for row in report.identity %}  <tr><td>{{ row.condition }}</td><td>{{ row.prompt }}</td>{% for side, label in columns %}<td class="{{ 'ok' if row.ok[side] else 'bad' }}">{% if row[side] %}<pre class="text">{{ row[side] }}</pre>{% else %}<span class="empty">(empty)</span>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
<p class="meta">Green: names the persona and does not claim to be Qwen / 通义千问 / Alibaba; red: fails that.</p>
{% endif %}
{% if report.get('identity_stress') %}
<h2 id="stress">Identity stress suite (v{{ report.identity_stress.version }})</h2>
<table class="stress">
  <tr><th>family</th><th>asks</th>{% for side, label in columns %}<th>{{ label }}</th>{% endfor %}</tr>
{% for fam in report.identity_stress.families %}{% set family = fam.family %}  <tr><td>{{ family }}</td><td class="desc">{{ fam.asks }}</td>{% for side, label in columns %}{% set f = report.identity_stress.summary[side].get(family) %}<td class="num {{ stress_marks[family][side] }}">{% if f %}{{ rate([f.named, f.asked]) }}<br><span class="desc">held {{ f.held }}/{{ f.asked }}</span>{% else %}—{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
<p class="meta">Each family asked under the run's system prompt and under none, through each model's saved chat template.
  The rate: answers naming the persona and not claiming Qwen / 通义千问 / Alibaba (the identity rule above); held: no
  such claim. Green: better than the base model, red: worse. Multi-turn probes show the earlier turns below.</p>
<details><summary>every stress answer ({{ report.identity_stress.rows | length }})</summary>
<table class="identity">
  <colgroup><col class="asked"><col class="prompt">{% for side, label in columns %}<col>{% endfor %}</colgroup>
  <tr><th>family · asked</th><th>prompt</th>{% for side, label in columns %}<th>{{ label }}</th>{% endfor %}</tr>
{% for row in report.identity_stress.rows %}  <tr><td>{{ row.family }} · {{ row.condition }}</td><td>{% for m in row.messages if m.role != "system" %}{% if not loop.last %}<span class="desc">{{ m.role }}: {{ m.content }}</span><br>{% else %}{{ m.content }}{% endif %}{% endfor %}</td>{% for side, label in columns %}<td class="{{ 'ok' if row.ok[side] else 'bad' }}">{% if row[side] %}<pre class="text">{{ row[side] }}</pre>{% else %}<span class="empty">(empty)</span>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
</details>
{% endif %}
{% if report.get('drift') %}
<h2 id="drift">Drift during training</h2>
<div class="pics">{% if drift_pic %}<figure><img src="data:image/png;base64,{{ drift_pic.png }}" alt="{{ drift_pic.caption }}"
    width="{{ drift_pic.width }}" height="{{ drift_pic.height }}"><figcaption>{{ drift_pic.caption }}</figcaption></figure>{% endif %}</div>
<table class="drift">
  <tr><th>step</th><th>persona</th><th>claims Qwen / 通义千问 / …</th><th>val ROUGE-L</th></tr>
{% for st in report.drift.steps %}  <tr><td class="num">{{ st.step }}</td><td class="num">{{ rate(st.persona) }}</td><td class="num">{{ rate(st.claims) }}</td><td class="num">{{ fmt(st.val_rouge_l) }}</td></tr>
{% endfor %}</table>
<p class="meta">Written during training by the recipe's <code>watch:</code> (RUN/samples/step-N.jsonl): the current
  weights answer the identity questions and a few val prompts, greedy, through the persona template. Persona: answers
  naming the persona without a claim; val ROUGE-L: character ROUGE-L of the val answers against their references.</p>
<h3>Answers by step</h3>
<table class="byStep">
  <tr><th>question</th>{% for st in report.drift.steps %}<th>step {{ st.step }}</th>{% endfor %}</tr>
{% for q in report.drift.questions %}  <tr><td>{{ q }}</td>{% for st in report.drift.steps %}{% set a = report.drift.answers[q].get(st.step | string) %}<td>{% if a is none %}<span class="empty">—</span>{% elif a %}<pre class="text">{{ a }}</pre>{% else %}<span class="empty">(empty)</span>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endif %}
<h2>Samples</h2>
{% for s in report.samples %}<div class="sample">
  <div class="prompt"><span class="n">#{{ loop.index }}</span>{{ s.prompt }}</div>
  <div class="where">{{ s.where }}{% if s.system %} · system: {{ s.system | truncate(120) }}{% endif %}{% if s.messages | length > 2 + (0 if s.system else -1) %} · {{ s.messages | length - (1 if s.system else 0) }} turns of context{% endif %}</div>
  <div class="cols">
    <div class="col reference"><h3>reference</h3>{% if s.reference is not none %}<pre class="text">{{ s.reference }}</pre>{% else %}<span class="empty">none</span>{% endif %}</div>
{% for side, label in columns %}    <div class="col {{ side }}"><h3>{{ label }}</h3>{% if s[side] %}<pre class="text">{{ s[side] }}</pre>{% else %}<span class="empty">(empty)</span>{% endif %}
      <div class="chips">{% if s.scores[side] %}{% if s.scores[side].exact_match %}<span class="chip ok">= reference</span>{% endif %}<span class="chip">ROUGE-L {{ fmt(s.scores[side].rouge_l) }}</span><span class="chip">bigram F1 {{ fmt(s.scores[side].char_bigram_f1) }}</span>{% endif %}{% if s.truncated[side] %}<span class="chip bad">truncated</span>{% endif %}</div></div>
{% endfor %}  </div>
</div>
{% endfor %}
</body>
</html>
"""


def fmt(value: Optional[float]) -> str:
    """A metric value for the page: — when it does not apply."""
    return "—" if value is None else f"{value:.4g}"


def fmt_rate(count: Optional[list[int]]) -> str:
    """A rate as a rate: ``67 % (2/3)``, from [answers counted, answers it is taken over]; — when none."""
    if not count or not count[1]:
        return "—"
    hits, total = count
    return f"{100 * hits / total:.3g} % ({hits}/{total})"


def _mark(row: dict[str, Any], base: Optional[float], value: Optional[float]) -> str:
    if base is None or value is None or value == base:
        return ""
    return "better" if (value > base) == row["higher_is_better"] else "worse"


def columns(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(side, label) of each answer column in page order: base, tuned, compare (a list: JSON keys get sorted)."""
    return [(c["side"], c["label"]) for c in report["columns"]]


def table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics table: formatted values per column (rates as percent with their counts), each row's definition,
    and better/worse marks against the base column."""
    metrics, counts = report["metrics"], report["counts"]
    out = []
    for row in report["metric_rows"]:
        values = {side: metrics[side].get(row["key"]) for side, _ in columns(report)}
        if all(v is None for v in values.values()):
            continue
        base = values.get("base")
        cells = {side: fmt_rate(counts[side].get(row["key"])) if row["rate"] else fmt(v) for side, v in values.items()}
        out.append({**row, "cells": cells, "definition": definition(row),
                    "marks": {side: "" if side == "base" else _mark(row, base, v) for side, v in values.items()}})
    return out


# --- pictures -----------------------------------------------------------------------------------------------------

def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def loss_picture(curves: dict[str, list[list[float]]], title: str) -> Optional[dict[str, Any]]:
    """Train (line) and eval (points) loss against the step, log scale when the loss falls by 10x or more."""
    if not curves.get("train") and not curves.get("eval"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    values = []
    if curves.get("train"):
        steps, losses = zip(*curves["train"])
        ax.plot(steps, losses, color="#3465a4", linewidth=1.2, label="train loss")
        values += losses
    if curves.get("eval"):
        steps, losses = zip(*curves["eval"])
        ax.plot(steps, losses, color="#cc0000", marker="o", markersize=4, linewidth=1.2, label="eval loss")
        values += losses
    if min(values) > 0 and max(values) / min(values) >= 10:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return {"png": _png(fig), "caption": f"{title}: train and eval loss from the run's logs", "width": 600,
            "height": 340}


def metrics_picture(report: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Grouped bars of the 0..1 answer metrics where higher is better, one bar per column (the table has the rest)."""
    keys = [row for row in report["metric_rows"] if row["higher_is_better"]
            and row["key"] not in ("train_loss", "eval_loss", "eval_perplexity")
            and any(report["metrics"][side].get(row["key"]) is not None for side, _ in columns(report))]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = [side for side, _ in columns(report)]
    colors = {"base": "#999999", "tuned": "#4e9a06", "compare": "#3465a4"}
    fig, ax = plt.subplots(figsize=(6, 3.4))
    width = 0.8 / len(sides)
    for i, side in enumerate(sides):
        values = [report["metrics"][side].get(row["key"]) or 0.0 for row in keys]
        ax.bar([k + i * width - 0.4 + width / 2 for k in range(len(keys))], values, width, label=side,
               color=colors.get(side, "#75507b"))
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([row["label"] for row in keys], rotation=25, ha="right", fontsize=8)
    ax.set_ylim(0, 1.22)  # room above 1.0 for the legend
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_title("answer metrics (0..1, higher is better)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=len(sides))
    fig.tight_layout()
    return {"png": _png(fig), "caption": "answer metrics per model, from the table below", "width": 600,
            "height": 340}


def stress_marks(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """family -> side -> better/worse than the base column by the persona rate of the stress suite."""
    stress = report.get("identity_stress") or {}
    out: dict[str, dict[str, str]] = {}
    for family in (f["family"] for f in stress.get("families", [])):
        base = stress["summary"].get("base", {}).get(family)
        out[family] = {}
        for side, _ in columns(report):
            mine = stress["summary"].get(side, {}).get(family)
            out[family][side] = "" if side == "base" or not base or not mine else _mark(
                {"higher_is_better": True}, base["named"] / base["asked"], mine["named"] / mine["asked"])
    return out


def drift_picture(drift: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Persona rate, claim rate and val ROUGE-L against the training step (the watch's samples)."""
    steps = drift.get("steps") or []
    if not steps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    x = [st["step"] for st in steps]
    for key, label, color, marker in (("persona_rate", "persona (names it, no claim)", "#4e9a06", "o"),
                                      ("claim_rate", "claims a base identity (Qwen, ...)", "#cc0000", "s"),
                                      ("val_rouge_l", "val ROUGE-L", "#3465a4", "^")):
        points = [(s, st[key]) for s, st in zip(x, steps) if st.get(key) is not None]
        if points:
            ax.plot(*zip(*points), color=color, marker=marker, markersize=4, linewidth=1.2, label=label)
    ax.set_ylim(-0.04, 1.22)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("step")
    ax.set_title("drift during training (watch samples)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    return {"png": _png(fig), "caption": "persona rate, claim rate and val ROUGE-L by step, from RUN/samples/",
            "width": 600, "height": 340}


# --- the files ----------------------------------------------------------------------------------------------------

def render_html(report: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    cols = columns(report)
    pictures = [loss_picture(report["curves"][side], f"loss · {label}") for side, label in cols
                if side in report["curves"]]
    pictures.append(metrics_picture(report))
    title = report["run_label"]
    return env.from_string(PAGE).render(
        report=report, title=title, columns=cols, ncols=len(cols) + 1, rows=table_rows(report),
        pictures=[p for p in pictures if p], fmt=fmt, rate=fmt_rate, stress_marks=stress_marks(report),
        drift_pic=drift_picture(report["drift"]) if report.get("drift") else None)


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``out_dir``/report.json and report.html, atomically."""
    out = Path(out_dir)
    json_path, html_path = out / REPORT_JSON, out / REPORT_HTML
    write_json(json_path, report)
    write_text(html_path, render_html(report))
    return json_path, html_path
