"""Benchmark: the cost of redaction per KB of text, with ~10 secrets configured.

Redaction runs on every tool result, every chat render (each streamed edit
re-renders the whole reply) and every model request, so it must stay cheap.
Texts: the project's own Python source (code: identifiers, URLs, the word
``token`` everywhere), a ``git log``/``ls -l``-like tool output, and prose;
plus a "hit" text with secrets (plain, hex, base64, pieces) inside, which
takes the slow path. Secrets: Slack bot/app tokens, a signing secret (hex),
a Matrix password, a web token, an Ollama key, a DSN and a few random extras,
as the runtime would hold them.

Figures: median µs per KB over many runs, for the redactor with no secrets
(shapes only), with the secrets, and for the previous design (one regex
alternation of the plain values plus one regex per shape) as a reference.

Run: ``.venv/bin/python bench/redaction.py [--runs 200]``.
"""

from __future__ import annotations

import argparse
import base64
import re
import secrets
import statistics
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.policy.redaction import Redactor  # noqa: E402
from bot.policy.redaction_shapes import SHAPES  # noqa: E402


def _random(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def held_secrets() -> list[str]:
    return [
        f"xoxb-{_random(12, string.digits)}-{_random(13, string.digits)}-{_random(24)}",
        f"xapp-1-A{_random(10)}-{_random(13, string.digits)}-{_random(64, '0123456789abcdef')}",
        secrets.token_hex(16),  # Slack signing secret
        "correct-horse-battery-9",  # a human Matrix password
        secrets.token_urlsafe(32),  # web token
        secrets.token_hex(24),  # Ollama API key
        f"postgres://app:{_random(20)}@db.internal:5432/app",
        _random(40),
        secrets.token_urlsafe(24),
        "s3cr3t-pw!",
    ]


def texts() -> dict[str, str]:
    code = "".join(p.read_text() for p in sorted((ROOT / "bot").rglob("*.py")))[:64_000]
    log_lines = []
    for i in range(400):
        log_lines.append(
            f"commit {secrets.token_hex(20)}\nAuthor: Dev {i} <dev{i}@example.com>\n"
            f"Date:   Mon Jan {i % 28 + 1} 10:{i % 60:02d}:00 2024 +0000\n\n"
            f"    fix: handle case {i} in https://github.com/org/repo/issues/{i}\n"
            f"-rw-r--r-- 1 dev dev {i * 37} Jan 1 10:00 module_{i}.py\n"
        )
    prose = (
        "The agent reads the repository, runs the tests and explains what it found. "
        "When a command needs approval it asks in the thread and waits for an answer. "
    ) * 400
    return {"code": code, "tool output": "".join(log_lines)[:64_000], "prose": prose[:64_000]}


def hit_text(held: list[str]) -> str:
    s = held[7]
    parts = [
        f"token={s}",
        s.encode().hex(),
        base64.b64encode(b"x" + s.encode()).decode(),
        s[:12],
        s[12:24],
        f"https://user:{held[7]}@example.com/repo.git",
    ]
    return (texts()["prose"][:4000] + "\n".join(parts) + "\n") * 4


def old_design(held: list[str]) -> Callable[[str], str]:
    """The previous redactor: an alternation of the plain values, then each shape's regex."""
    exact = re.compile("|".join(re.escape(s) for s in sorted(held, key=len, reverse=True)))
    patterns = [shape.pattern for shape in SHAPES]

    def redact(text: str) -> str:
        text = exact.sub("[REDACTED]", text)
        for pattern in patterns:
            text = pattern.sub("[REDACTED]", text)
        return text

    return redact


def per_kb(redact: Callable[[str], str], text: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        redact(text)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) / (len(text.encode()) / 1024) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    held = held_secrets()
    start = time.perf_counter()
    redactor = Redactor(held)
    built_ms = (time.perf_counter() - start) * 1e3
    bare = Redactor()
    old = old_design(held)
    cases = {**texts(), "with secrets (hits)": hit_text(held)}
    print(f"{len(held)} secrets; Redactor built in {built_ms:.1f} ms")
    print(f"{'text':22} {'KB':>5} {'shapes only':>12} {'10 secrets':>11} {'old design':>11}  µs/KB")
    for name, text in cases.items():
        kb = len(text.encode()) / 1024
        figures = [per_kb(f, text, args.runs) for f in (bare.redact, redactor.redact, old)]
        print(f"{name:22} {kb:5.0f} " + " ".join(f"{x:11.1f}" for x in figures))
    chunk = texts()["prose"][:1024]
    print(f"one 1 KB chat render, 10 secrets: {per_kb(redactor.redact, chunk, args.runs):.1f} µs")


if __name__ == "__main__":
    main()
