"""Every test file and source path the README cites exists (a renamed or removed one would
leave the README's "what is verified how" promising tests nobody runs)."""

from __future__ import annotations

import re

from tests.conftest import ROOT

CITED = re.compile(r"`((?:tests|src|docs|examples|bench|scripts)/[\w./-]+)`")


def test_every_path_the_readme_cites_exists() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    cited = set(CITED.findall(text))
    assert len(cited) > 20  # the pattern still finds the README's citations
    missing = sorted(p for p in cited if not (ROOT / p.rstrip("/")).exists())
    assert missing == []
