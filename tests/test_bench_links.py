"""Source docstrings cite measured numbers by linking to a section of bench/README.md: every cited section exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `bench/README.md, "Section"`, the quote possibly continued on the next line (after a comment's `#`)
CITE = re.compile(r'bench/README\.md,\s*(?:#\s*)?"([^"]+)"')


def test_cited_bench_sections_exist():
    headings = [
        line.lstrip("#").strip()
        for line in (ROOT / "bench" / "README.md").read_text().splitlines()
        if line.startswith("#")
    ]
    missing = []
    for folder in ("qscope", "operators", "pipelines"):
        for path in (ROOT / folder).rglob("*.py"):
            for section in CITE.findall(path.read_text()):
                section = " ".join(section.replace("#", " ").split())
                if not any(h.startswith(section) for h in headings):
                    missing.append(f"{path.relative_to(ROOT)}: {section!r}")
    assert not missing, f"bench/README.md has no such section: {missing}"
