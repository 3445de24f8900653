"""What an import did, entry by entry: converted, skipped (why), changed (renamed, notes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Report:
    converted: list[tuple[str, str]] = field(default_factory=list)  # (source name, kind/name)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source name, reason)
    changed: list[tuple[str, str]] = field(default_factory=list)  # (source name, what)

    def write(self, out: TextIO) -> None:
        out.write(
            f"import: {len(self.converted)} converted, {len(self.skipped)} skipped, "
            f"{len(self.changed)} changed\n"
        )
        for source, target in self.converted:
            out.write(f"  converted {source!r} -> {target}\n")
        for source, reason in self.skipped:
            out.write(f"  skipped {source!r}: {reason}\n")
        for source, what in self.changed:
            out.write(f"  changed {source!r}: {what}\n")
