"""Qualification formulas through the CEL worker pool, as a ratio to evaluating in-process.

Grades the issue's example formula over N generated chat-scenario submissions (a transcript
of 2-10 turns, metrics, the member's fields) two ways in the same run:

- **in-process**: the program compiled once, evaluated on this process's thread, one
  submission after another (what a gateway would do if it trusted every formula);
- **pool**: ``people.cel.CelRunner`` with one worker per core (each compiles the program
  once), every submission in flight at once, as a busy gateway would send them.

Both convert the activation to CEL values each time. Prints evaluations per second and
the pool's share of the in-process rate, then checks both agree on every submission.

    .venv/bin/python benchmarks/grading.py [--submissions 1000] [--workers N]

Target: the pool keeps >= 0.5 of the in-process rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import celpy
from celpy.adapter import json_to_cel

from people import cel

FORMULA = (
    "size(transcript) >= 4 && metrics.first_reply_seconds < 60 && "
    'transcript.exists(t, t.author == "member" && t.text.contains("refund"))'
)
WORDS = "sorry charge account refund card check twice month help today please".split()  # noqa: SIM905


def _submissions(count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    made = []
    for _ in range(count):
        turns = rng.randint(2, 10)
        transcript = [
            {"author": "customer" if i % 2 == 0 else "member",
             "text": " ".join(rng.choices(WORDS, k=rng.randint(4, 16))), "at": 1_700_000_000 + i}
            for i in range(turns)
        ]  # fmt: skip
        made.append({
            "answer": "\n".join(t["text"] for t in transcript if t["author"] == "member"),
            "choices": [], "transcript": transcript,
            "metrics": {"words": 40, "turns": turns // 2, "duration_seconds": 300,
                        "first_reply_seconds": rng.randint(5, 120)},
            "member": {"name": "Ann", "role": "operator", "labels": ["billing"]},
        })  # fmt: skip
    return made


def in_process(submissions: list[dict[str, Any]]) -> tuple[float, list[Any]]:
    env = celpy.Environment()
    program = env.program(cel.parse(FORMULA))
    started = time.perf_counter()
    results = []
    for activation in submissions:
        value = program.evaluate({k: json_to_cel(v) for k, v in activation.items()})
        results.append(bool(value))
    return time.perf_counter() - started, results


async def pooled(submissions: list[dict[str, Any]], workers: int) -> tuple[float, list[Any]]:
    runner = cel.CelRunner(deadline=5.0, workers=workers)
    try:
        await runner.warm_up()
        await asyncio.gather(*(runner.evaluate(FORMULA, s) for s in submissions[:workers]))
        started = time.perf_counter()
        results = await asyncio.gather(*(runner.evaluate(FORMULA, s) for s in submissions))
        return time.perf_counter() - started, list(results)
    finally:
        await runner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    submissions = _submissions(args.submissions)
    local_seconds, local = in_process(submissions)
    pool_seconds, pool = asyncio.run(pooled(submissions, args.workers))
    if local != pool:
        raise SystemExit("the pool and the in-process program disagree")
    local_rate, pool_rate = len(local) / local_seconds, len(pool) / pool_seconds
    print(f"{args.submissions} submissions, {sum(local)} pass, formula: {FORMULA}")
    print(f"in-process      {local_rate:9.0f} evaluations/s")
    print(f"pool of {args.workers:<2}      {pool_rate:9.0f} evaluations/s")
    ratio = pool_rate / local_rate
    print(f"pool / in-process: {ratio:.2f} (target >= 0.5: {'met' if ratio >= 0.5 else 'MISSED'})")


if __name__ == "__main__":
    main()
