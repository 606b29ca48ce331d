"""qscope.data.debian on small hand-written apt lists, on the real lists if present, and the demo data."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from qscope.data import debian
from qscope.data.debian import (
    AptListsMissingError,
    format_long_description,
    load_debian_packages,
    parse_deb822,
    parse_packages,
    parse_translations,
)

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"

PACKAGES = """\
Package: fldigi
Version: 4.1.23-1
Description: digital modem program for hamradio operators
Description-md5: aaaa
Tag: hardware::hamradio, implemented-in::c++,
 interface::x11, role::program
Section: hamradio

Package: xastir
Description: X Amateur Station Tracking and Information Reporting
Description-md5: bbbb
Section: contrib/hamradio

Package: nolong
Description: package whose translation is missing
Description-md5: cccc
Section: utils

Package: inline
Description: old-style entry with the long description inline
 First line
 continues here.
Section: misc
"""

TRANSLATION = """\
Package: fldigi
Description-md5: aaaa
Description-en: digital modem program for hamradio operators
 Fldigi is a modem program which supports most of the digital modes
 used by hamradio operators today.
 .
 Features:
  * PSK31 and RTTY
  * CW decoder with a
    long wrapped line
 .
 The end.

Package: fldigi
Description-md5: stale
Description-en: an older description that no Packages entry references
 This must not be used.

Package: xastir
Description-md5: bbbb
Description-en: X Amateur Station Tracking and Information Reporting
 Xastir is a graphical APRS client.
"""

SECURITY_PACKAGES = """\
Package: fldigi
Description: digital modem program for hamradio operators
Description-md5: aaaa
Section: sound
"""


def _write_lists(d: Path, compress=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages": PACKAGES,
        "deb.debian.org_debian_dists_bookworm_main_i18n_Translation-en": TRANSLATION,
        "deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages": SECURITY_PACKAGES,
    }
    for name, text in files.items():
        if compress == "gz":
            with gzip.open(d / f"{name}.gz", "wt", encoding="utf-8") as f:
                f.write(text)
        elif compress == "lz4":
            (d / name).write_text(text, encoding="utf-8")
            subprocess.run(["lz4", "-q", "--rm", str(d / name), str(d / f"{name}.lz4")], check=True)
        else:
            (d / name).write_text(text, encoding="utf-8")
    return d


def test_parse_deb822_paragraphs_and_continuations():
    paras = list(parse_deb822(PACKAGES.splitlines(keepends=True)))
    assert [p["Package"] for p in paras] == ["fldigi", "xastir", "nolong", "inline"]
    assert paras[0]["Tag"] == "hardware::hamradio, implemented-in::c++,\n interface::x11, role::program"
    assert paras[3]["Description"].startswith("old-style entry")
    assert list(parse_deb822(["Package: a\n"])) == [{"Package": "a"}]  # no trailing blank line


def test_format_long_description_strips_debian_markup():
    raw = TRANSLATION.split("Description-en: digital modem program for hamradio operators\n")[1].split("\n\n")[0]
    assert format_long_description(raw) == (
        "Fldigi is a modem program which supports most of the digital modes used by hamradio operators today."
        "\n\nFeatures:\n* PSK31 and RTTY\n* CW decoder with a long wrapped line"
        "\n\nThe end."
    )
    # Preformatted (2+ spaces) lines that are not bullets keep their own line.
    assert format_long_description("  $ foo --bar\n  $ baz") == "$ foo --bar\n$ baz"


def test_join_on_package_and_md5():
    trans = parse_translations(TRANSLATION.splitlines(keepends=True))
    assert set(trans) == {("fldigi", "aaaa"), ("fldigi", "stale"), ("xastir", "bbbb")}
    recs = {r["package"]: r for r in parse_packages(PACKAGES.splitlines(keepends=True), trans)}
    assert "This must not be used" not in recs["fldigi"]["text"]
    assert recs["fldigi"]["tags"] == ["hardware::hamradio", "implemented-in::c++", "interface::x11", "role::program"]
    assert recs["fldigi"]["text"].startswith("digital modem program for hamradio operators\n\nFldigi is")
    assert recs["xastir"]["section"] == "hamradio"  # component prefix "contrib/" dropped
    assert recs["nolong"]["long_description"] == "" and recs["nolong"]["text"] == recs["nolong"]["short_description"]
    assert recs["inline"]["long_description"] == "First line continues here."


@pytest.mark.parametrize("compress", [None, "gz", "lz4"])
def test_load_from_list_files(tmp_path, compress):
    if compress == "lz4" and not (shutil.which("lz4") and Path(debian.APT_HELPER).exists()):
        pytest.skip("needs the lz4 CLI and apt-helper to write/read an lz4 fixture")
    recs = load_debian_packages(_write_lists(tmp_path, compress))
    assert [r["package"] for r in recs] == ["fldigi", "inline", "xastir"]  # sorted; "nolong" has no long text
    assert recs[0]["section"] == "hamradio"  # main archive wins over -security on duplicates
    assert set(recs[0]) == {"package", "section", "tags", "short_description", "long_description", "text"}
    all_recs = load_debian_packages(tmp_path, require_long=False)
    assert [r["package"] for r in all_recs] == ["fldigi", "inline", "nolong", "xastir"]


def test_missing_lists_error_says_how_to_fix(tmp_path):
    with pytest.raises(AptListsMissingError, match=r"apt-get update -o Acquire::Languages=en"):
        load_debian_packages(tmp_path)
    (tmp_path / "x_Packages").write_text(PACKAGES)
    with pytest.raises(AptListsMissingError, match=r"Translation-en.*apt-get update -o Acquire::Languages=en"):
        load_debian_packages(tmp_path)
    assert len(load_debian_packages(tmp_path, require_long=False)) == 4


def test_real_system_lists():
    if not any(debian.APT_LISTS.glob("*_Translation-en*")) or not Path(debian.APT_HELPER).exists():
        pytest.skip("system apt lists with long descriptions absent (run `apt-get update -o Acquire::Languages=en`)")
    recs = load_debian_packages()
    assert len(recs) > 1000
    assert len({r["package"] for r in recs}) == len(recs)
    sections = {r["section"] for r in recs}
    assert {"hamradio", "games", "electronics"} <= sections
    assert not any("\n .\n" in r["text"] or r["text"].startswith(" ") for r in recs)


# ---- the committed demo data --------------------------------------------------------------------


def _jsonl(name):
    return [json.loads(line) for line in (DEMO / name).read_text(encoding="utf-8").splitlines()]


def test_demo_files_schema_and_sizes():
    seeds, corpus, classify = _jsonl("seeds.jsonl"), _jsonl("corpus.jsonl"), _jsonl("classify_seeds.jsonl")
    assert all(set(r) == {"id", "text", "label"} and r["label"] == "hamradio" for r in seeds)
    assert all(set(r) == {"id", "text", "section"} for r in corpus)
    assert all(set(r) == {"id", "text", "label"} for r in classify)
    assert len(seeds) == 20 and 1400 <= len(corpus) <= 1600
    assert 50 <= sum(r["section"] == "hamradio" for r in corpus) <= 70
    assert len({r["section"] for r in corpus}) >= 30  # a broad mix, not two sections
    for rows in (seeds, corpus, classify):
        assert all(isinstance(r["text"], str) and 0 < len(r["text"]) <= 1500 for r in rows)
    labels = [r["label"] for r in classify]
    assert {lab: labels.count(lab) for lab in set(labels)} == {"hamradio": 8, "electronics": 8, "games": 8}
    assert sum(p.stat().st_size for p in DEMO.iterdir()) < 2_000_000


def test_demo_ids_unique_and_seeds_held_out():
    seeds, corpus, classify = _jsonl("seeds.jsonl"), _jsonl("corpus.jsonl"), _jsonl("classify_seeds.jsonl")
    for rows in (seeds, corpus, classify):
        assert len({r["id"] for r in rows}) == len(rows)
    corpus_ids, corpus_texts = {r["id"] for r in corpus}, {r["text"] for r in corpus}
    assert not corpus_ids & {r["id"] for r in seeds}
    assert not corpus_ids & {r["id"] for r in classify}
    assert not corpus_texts & {r["text"] for r in seeds + classify}
    assert len(corpus_texts) == len(corpus)
