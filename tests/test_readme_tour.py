"""The README's tour shows what ``coral-node start`` really prints, line for line."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.nodeproc import NodeProcess

ROOT = Path(__file__).resolve().parent.parent
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def readme_tour_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    tour = text[text.index("## A short tour") :]
    return tour.split("```\n", 2)[1].splitlines()


def as_pattern(line: str) -> re.Pattern[str]:
    """The README line with its machine-specific parts (did, path, ports) as wildcards."""
    pattern = re.escape(line)
    pattern = pattern.replace(re.escape("did:key:z6Mk..."), r"did:key:z6Mk\w+")
    pattern = pattern.replace(re.escape("/home/you/.local/share/coral-node"), r"\S+")
    pattern = re.sub(r"742[01]", r"\\d+", pattern)
    return re.compile(pattern + "$")


def test_start_prints_the_readme_tour_then_stops_cleanly(tmp_path):
    node = NodeProcess(tmp_path / "node").start()
    try:
        assert node.terminate() == 0
    finally:
        node.kill()
    printed = [line for line in node.output().splitlines() if not LOG_LINE.match(line)]
    expected = readme_tour_block()
    assert len(printed) >= len(expected), printed
    for want, got in zip(expected, printed, strict=False):
        assert as_pattern(want).match(got), (want, got)
    assert printed[len(expected) :] == ["stopping...", "stopped cleanly"]
    readme = (ROOT / "README.md").read_text()
    assert "`stopping...`" in readme and "`stopped cleanly`" in readme
