"""Packaging: one distribution, operators/ and pipelines/ import as qscope.operators / qscope.pipelines."""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = {v: k for k, v in cfg["package-dir"].items()}  # folder -> import name
    found = set()
    for init in ROOT.glob("**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts[0] not in mapping:
            continue  # tests, bench, scripts are not shipped
        found.add(".".join([mapping[rel.parts[0]], *rel.parts[1:]]))
    assert found - listed == set(), f"folders with __init__.py missing from pyproject packages: {found - listed}"


def test_test_modules_have_unique_basenames():
    # Test folders are not packages, so pytest imports each module by its basename: two `test_x.py` in different
    # folders stop the whole collection ("import file mismatch") on a clean checkout.
    seen: dict[str, Path] = {}
    clashes = []
    for f in sorted((ROOT / "tests").rglob("test_*.py")):
        if f.name in seen:
            clashes.append(f"{seen[f.name].relative_to(ROOT)} and {f.relative_to(ROOT)}")
        seen.setdefault(f.name, f)
    assert not clashes, f"test modules sharing a basename: {clashes}"


@pytest.mark.slow
def test_non_editable_install_imports_all_three(tmp_path, fresh_install):
    """`pip install .` (no -e) into a fresh venv: qscope, qscope.operators and qscope.pipelines import from it,
    and no generic top-level `operators` / `pipelines` lands in site-packages."""
    py, site = fresh_install.python, fresh_install.site
    assert (site / "qscope" / "operators" / "__init__.py").exists()
    assert (site / "qscope" / "pipelines" / "__init__.py").exists()
    assert not (site / "operators").exists() and not (site / "pipelines").exists()
    # Dependencies come from the project venv (appended after the fresh site-packages), qscope from the fresh one.
    deps = sysconfig.get_paths()["purelib"]
    code = (
        f"import sys; sys.path.append({deps!r}); import qscope, qscope.operators, qscope.pipelines, qscope.sae, "
        "qscope.models; print(qscope.__file__); print(qscope.operators.__file__); print(qscope.pipelines.__file__)"
    )
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    for line in out.split():
        assert line.startswith(str(site)), f"imported from {line}, not from the non-editable install"
    assert (site / "qscope" / "assets").exists() or not (ROOT / "qscope" / "assets").exists()
