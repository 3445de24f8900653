"""Summarise a py-spy `--format raw` profile (collapsed stacks): where the time goes.

    python -m bench.profile <profile.txt> [--top 25] [--match celery_operator]

Prints the functions with the largest inclusive share of samples (a function counted
once per stack) and the largest self share (the leaf frame).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r"\s*\(([^()]*?)(?::\d+)?\)$")


def _frame(frame: str) -> str:
    """"func (path/file.py:123)" -> "func (path/file.py)": one row per function."""
    return _LINE.sub(lambda m: f" ({m.group(1)})", frame.strip())


def load(path: Path) -> tuple[Counter[str], Counter[str], int]:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f]
        total += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            leaf[frames[-1]] += count
    return inclusive, leaf, total


def top(path: Path, n: int = 25, match: str = "") -> dict[str, Any]:
    inclusive, leaf, total = load(path)

    def rows(counter: Counter[str]) -> list[tuple[str, float]]:
        items = [(k, v) for k, v in counter.most_common() if match in k]
        return [(k, 100.0 * v / total) for k, v in items[:n]] if total else []

    return {"samples": total, "inclusive": rows(inclusive), "self": rows(leaf)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only frames containing this text")
    args = parser.parse_args(argv)
    result = top(args.profile, args.top, args.match)
    print(f"{result['samples']} samples")
    for title in ("inclusive", "self"):
        print(f"\n{title} %:")
        for name, share in result[title]:
            print(f"  {share:5.1f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
