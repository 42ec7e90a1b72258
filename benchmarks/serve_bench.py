"""`swiftkit serve` under a mixed load: latency (p50/p95) and requests/s, every answer checked.

One burst of concurrent clients (default 40, released together by a barrier) against a server on 127.0.0.1: good
chats (plain and streamed through the official openai client) beside over-long prompts (plain and streamed),
malformed bodies, wrong keys and oversized bodies. :func:`failures` names every request whose answer was not the
expected one (good: HTTP 200 and a non-empty answer; bad: refused with its status); tests/test_serve.py runs
the same burst in the test suite and asserts there are none. The bench runs smoke_tiny for one epoch at a learning
rate of 1e-9 (1 process): the model stays random, so every good answer is ``max_tokens`` tokens long (a briefly
trained one answers with an immediate end of text) and the latency measures a fixed amount of work. It serves the
run with the pt backend, fires :data:`ROUNDS` bursts and prints one line, e.g.

  serve: tiny-qwen2 pt cpu, 3 bursts x 40 concurrent (28 good, 12 bad): good p50 6.1 s p95 6.4 s, ...

  python -m benchmarks.serve_bench            # alone
  python -m benchmarks.run serve              # as a `make bench` section (make bench ARGS=serve)
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

ROUNDS = 3
OVERLONG = "沐雪今天很开心。" * 700
"""About 3000 tokens with the chat template: over the tiny model's 2048."""
PROMPTS = ("你是谁？", "今天天气怎么样？", "你喜欢吃什么？", "晚安", "一加一等于几？", "你叫什么名字？", "介绍一下你自己")
GOOD = ("chat", "stream")
MIX = {"chat": 20, "stream": 8, "overlong": 4, "overlong_stream": 2, "malformed_json": 1, "no_messages": 1,
       "bad_key": 1, "bad_key_openai": 1, "oversized": 2}
"""40 requests: 28 good, 12 bad."""
EXPECTED = {"chat": 200, "stream": 200, "overlong": 400, "overlong_stream": 400, "malformed_json": 400,
            "no_messages": 400, "bad_key": 401, "bad_key_openai": 401, "oversized": 413}


@dataclass
class Target:
    base_url: str
    model: str
    api_key: str
    max_request_bytes: int
    max_tokens: int = 32


@dataclass
class Outcome:
    kind: str
    status: Optional[int]
    answer: str
    seconds: float

    @property
    def ok(self) -> bool:
        if self.status != EXPECTED[self.kind]:
            return False
        if self.kind in GOOD:  # any text (the bench's random model answers whitespace, tokens all the same)
            return bool(self.answer)
        if self.kind == "oversized":
            return "limit" in self.answer
        if self.kind.startswith("overlong"):
            return "max_length" in self.answer
        return True


class Client:
    """One client's connections, built before the burst starts so that the timing is the server's: a plain HTTP
    client and the official openai client (with ``key``, default the server's)."""

    def __init__(self, target: Target, key: Optional[str] = None) -> None:
        import httpx
        import openai

        self.target = target
        self.http = httpx.Client(timeout=600)
        self.openai = openai.OpenAI(base_url=target.base_url + "/v1", api_key=key or target.api_key, max_retries=0,
                                    timeout=600, http_client=httpx.Client(timeout=600))

    def close(self) -> None:
        self.http.close()
        self.openai.close()

    def post(self, body: bytes, key: Optional[str]) -> tuple[int, str]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        resp = self.http.post(self.target.base_url + "/v1/chat/completions", content=body, headers=headers)
        return resp.status_code, resp.text

    def body(self, content: str) -> bytes:
        return json.dumps({"model": self.target.model, "messages": [{"role": "user", "content": content}],
                           "max_tokens": self.target.max_tokens, "temperature": 0}, ensure_ascii=False).encode()

    def plain(self, content: str, key: Optional[str] = None) -> tuple[Optional[int], str]:
        status, text = self.post(self.body(content), key or self.target.api_key)
        if status != 200:
            return status, text
        return status, json.loads(text)["choices"][0]["message"]["content"] or ""

    def stream(self, content: str) -> tuple[Optional[int], str]:
        """Streamed through the official client: (200, the answer), or (status, message) of the error it raised."""
        import openai

        try:
            stream = self.openai.chat.completions.create(
                model=self.target.model, max_tokens=self.target.max_tokens, temperature=0,
                messages=[{"role": "user", "content": content}], stream=True)
            return 200, "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        except openai.APIStatusError as exc:
            return exc.status_code, str(exc)
        except openai.APIError as exc:  # an SSE error event in a stream that had started: not a refusal
            return None, f"error event: {exc}"

    def models(self) -> tuple[Optional[int], str]:
        import openai

        try:
            return 200, ",".join(m.id for m in self.openai.models.list())
        except openai.AuthenticationError as exc:  # the right type, not a BadRequestError
            return exc.status_code, str(exc)
        except openai.APIStatusError as exc:
            return None, f"{type(exc).__name__} {exc.status_code}: {exc}"


WRONG_KEY = "sk-not-the-key"


def request_for(kind: str, i: int, target: Target) -> tuple[Client, Callable[[], tuple[Optional[int], str]]]:
    """A ready client for request ``i`` of ``kind`` and the call that sends it."""
    c = Client(target, WRONG_KEY if kind == "bad_key_openai" else None)
    prompt = PROMPTS[i % len(PROMPTS)]
    oversized = c.body("长" * (target.max_request_bytes // 3 + 10))
    return c, {
        "chat": lambda: c.plain(prompt),
        "stream": lambda: c.stream(prompt),
        "overlong": lambda: c.plain(OVERLONG),
        "overlong_stream": lambda: c.stream(OVERLONG),
        "malformed_json": lambda: c.post(b'{"model": "x", "messages": [', target.api_key),
        "no_messages": lambda: c.post(json.dumps({"model": target.model}).encode(), target.api_key),
        "bad_key": lambda: c.plain(prompt, key=WRONG_KEY),
        "bad_key_openai": c.models,
        "oversized": lambda: c.post(oversized, target.api_key),
    }[kind]


def burst(target: Target, mix: dict[str, int] = MIX) -> tuple[list[Outcome], float]:
    """Every request of ``mix`` at once (one thread each, released together): their outcomes and the wall time."""
    kinds = [kind for kind, n in mix.items() for _ in range(n)]
    outcomes: list[Optional[Outcome]] = [None] * len(kinds)
    gate = threading.Barrier(len(kinds) + 1)

    def client(slot: int, kind: str) -> None:
        session, call = request_for(kind, slot, target)
        try:
            gate.wait()
            start = time.perf_counter()
            try:
                status, answer = call()
            except Exception as exc:  # noqa: BLE001 - a transport failure is an outcome to report, not a crash
                status, answer = None, f"{type(exc).__name__}: {exc}"
            outcomes[slot] = Outcome(kind, status, answer, time.perf_counter() - start)
        finally:
            session.close()

    threads = [threading.Thread(target=client, args=(i, kind), daemon=True) for i, kind in enumerate(kinds)]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return [o for o in outcomes if o is not None], time.perf_counter() - start


def failures(outcomes: list[Outcome]) -> list[str]:
    """One line per request answered otherwise than expected."""
    return [f"{o.kind}: expected {EXPECTED[o.kind]}, got {o.status}: {o.answer[:160]!r}" for o in outcomes if not o.ok]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(outcomes: list[Outcome], wall_s: float, rounds: int) -> str:
    good = [o.seconds for o in outcomes if o.kind in GOOD]
    bad = [o.seconds for o in outcomes if o.kind not in GOOD]
    per_burst = len(outcomes) // max(rounds, 1)
    text = f"{rounds} bursts x {per_burst} concurrent ({len(good) // rounds} good, {len(bad) // rounds} bad): "
    if good:
        text += f"good p50 {statistics.median(good):.2f} s p95 {percentile(good, 0.95):.2f} s, "
    if bad:
        text += f"refusals p50 {statistics.median(bad) * 1000:.0f} ms p95 {percentile(bad, 0.95) * 1000:.0f} ms, "
    return text + f"{len(outcomes) / wall_s:.1f} requests/s ({len(good) / wall_s:.1f} good answers/s)"


def measure(rounds: int = ROUNDS, workdir: Path | None = None) -> str:
    import socket

    from benchmarks.tinyrun import tiny_run
    from swiftkit.deploy import serve
    from swiftkit.deploy.serve_guard import GuardSettings

    with tempfile.TemporaryDirectory(prefix="swiftkit-serve-bench-") as tmp:
        root = Path(workdir or tmp)
        run = tiny_run(root, "num_train_epochs=1", "learning_rate=1.0e-9", "launch.nproc_per_node=1")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        key = "sk-bench-" + str(time.time_ns())
        with open(root / "deploy.log", "w", encoding="utf-8") as log:
            server = serve.start_server(run, port=port, api_key=key, backend="pt", log=log)
            try:
                server.wait_ready(timeout=600)
                target = Target(server.base_url, server.model_name, key, GuardSettings().max_request_bytes)
                outcomes: list[Outcome] = []
                wall = 0.0
                for _ in range(rounds):
                    got, seconds = burst(target)
                    outcomes += got
                    wall += seconds
                wrong = failures(outcomes)
                status, _ = server.chat([{"role": "user", "content": PROMPTS[0]}], api_key=key)
            finally:
                server.stop()
        if wrong or status != 200:
            raise RuntimeError(f"{len(wrong)} wrong answers (first: {wrong[:1]}); after the load: HTTP {status}")
        return "tiny-qwen2 pt cpu, " + summary(outcomes, wall, rounds)


def run() -> None:
    print(f"serve: {measure()}", flush=True)


if __name__ == "__main__":
    try:
        run()
    except Exception as exc:  # one line, like the other sections
        print(f"serve: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
