"""The README opens with the two commands, and .ci/run runs exactly those."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_opens_with_two_one_line_commands():
    text = (ROOT / "README.md").read_text()
    first, second = _readme_commands()
    assert "\n" not in first and "\n" not in second
    assert "ads demo" in first and "pip install" in first
    assert "pytest" in second and "[test]" in second
    head = text.split("\n## ")[0]  # both come before the first section
    assert first in head and second in head


def test_ci_runs_exactly_the_readme_commands():
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.lstrip().startswith("#")]
    commands = [ln for ln in ci if not ln.startswith(("set ", "cd ", "export ", "ruff "))]
    assert commands == _readme_commands()
