"""The one writer of the script-made sections of docs/benchmarks.md (each between a pair of markers)."""

from __future__ import annotations

from pathlib import Path


def write_docs_section(doc: Path, marker: str, section: str) -> None:
    """Put ``section`` (which starts and ends with ``marker``) in place of the one between the markers,
    or append it when the doc has none."""
    text = doc.read_text(encoding="utf-8")
    if text.count(marker) >= 2:
        head, _, rest = text.partition(marker)
        _, _, tail = rest.partition(marker)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text, encoding="utf-8")
