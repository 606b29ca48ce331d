"""Debian package descriptions from the local apt lists, as labeled real-world text.

`*_Packages*` gives Package, Section, Tag and the one-line description; the long description lives
only in `*_i18n_Translation-en*` (written by `apt-get update -o Acquire::Languages=en`). The two
are joined on (Package, Description-md5), which is how apt itself matches them.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from qscope.errors import QscopeError

APT_LISTS = Path("/var/lib/apt/lists")
APT_HELPER = "/usr/lib/apt/apt-helper"
UPDATE_HINT = "run `apt-get update -o Acquire::Languages=en` (as root) to fetch them"


class AptListsMissingError(QscopeError, FileNotFoundError):
    """The apt Packages / Translation-en lists are not on this machine."""


def _open_text(path: Path) -> Iterator[str]:
    """Yield the lines of one apt list, whatever apt compressed it with."""
    openers = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
    if path.suffix in openers:
        with openers[path.suffix](path, "rt", encoding="utf-8", errors="replace") as f:
            yield from f
    elif path.suffix in (".lz4", ".zst"):
        # apt stores its lists lz4-compressed by default; the stdlib has no lz4, but apt-helper
        # (always next to apt) decompresses any format apt wrote, so we need no extra dependency.
        proc = subprocess.Popen(
            [APT_HELPER, "cat-file", str(path)], stdout=subprocess.PIPE, encoding="utf-8", errors="replace"
        )
        assert proc.stdout is not None
        yield from proc.stdout
        if proc.wait() != 0:
            raise QscopeError(f"{APT_HELPER} cat-file {path} failed with exit code {proc.returncode}")
    else:
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from f


def parse_deb822(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """Split deb822 text into paragraphs of {field: value}; continuation lines keep their '\\n '."""
    para: dict[str, str] = {}
    key = None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if para:
                yield para
            para, key = {}, None
        elif line[0] in " \t" and key is not None:
            para[key] += "\n" + line
        elif ":" in line:
            key, _, value = line.partition(":")
            para[key] = value.strip()
    if para:
        yield para


def format_long_description(raw: str) -> str:
    """Debian's extended-description markup → readable prose.

    One leading space = word-wrapped text (joined into one line per paragraph); " ." = paragraph
    break; deeper indentation = preformatted lines such as bullet lists (kept on their own lines,
    with a bullet's wrapped continuation joined back onto it).
    """
    paragraphs: list[list[str]] = [[]]
    mode = None  # what the last line was: "prose" / "bullet" join their continuations, None never
    for line in raw.split("\n"):
        if not line.strip():
            continue
        body = line[1:] if line[0] in " \t" else line
        text = body.strip()
        is_bullet = text[:2] in ("* ", "- ", "+ ", "o ")
        is_verbatim = body[:1] in " \t"
        if text == ".":
            paragraphs.append([])
            mode = None
        elif is_bullet:
            paragraphs[-1].append(text)
            mode = "bullet"
        elif (mode == "bullet" and is_verbatim) or (mode == "prose" and not is_verbatim):
            paragraphs[-1][-1] += " " + text
        else:
            paragraphs[-1].append(text)
            mode = None if is_verbatim else "prose"
    return "\n\n".join("\n".join(p) for p in paragraphs if p)


def _split_description(value: str) -> tuple[str, str]:
    short, _, rest = value.partition("\n")
    return short.strip(), format_long_description(rest) if rest else ""


def parse_translations(lines: Iterable[str]) -> dict[tuple[str, str], str]:
    """Translation-en text → {(package, description-md5): formatted long description}."""
    out = {}
    for para in parse_deb822(lines):
        desc = para.get("Description-en")
        if "Package" in para and desc is not None:
            out[(para["Package"], para.get("Description-md5", ""))] = _split_description(desc)[1]
    return out


def parse_packages(lines: Iterable[str], translations: dict[tuple[str, str], str]) -> Iterator[dict]:
    """Packages text (+ translations from `parse_translations`) → one record per paragraph."""
    for para in parse_deb822(lines):
        if "Package" not in para or "Description" not in para:
            continue
        short, long = _split_description(para["Description"])
        # Older/other archives inline the long description in Packages; prefer Translation-en when present.
        long = translations.get((para["Package"], para.get("Description-md5", "")), long)
        tags = [t.strip() for t in para.get("Tag", "").replace("\n", " ").split(",") if t.strip()]
        yield {
            "package": para["Package"],
            # "contrib/hamradio" and "hamradio" are the same topic; the component is licensing, not content.
            "section": para.get("Section", "unknown").rsplit("/", 1)[-1],
            "tags": tags,
            "short_description": short,
            "long_description": long,
            "text": f"{short}\n\n{long}" if long else short,
        }


def _lists(lists_dir: Path, kind: str) -> list[Path]:
    # The main suite before -updates / -security, so that on duplicates the base archive's entry wins
    # (descriptions rarely differ; the order only needs to be deterministic).
    found = [p for p in lists_dir.glob(f"*_{kind}*") if ".diff_Index" not in p.name]
    return sorted(found, key=lambda p: ("-updates_" in p.name or "-security_" in p.name, p.name))


def load_debian_packages(lists_dir: str | Path = APT_LISTS, require_long: bool = True) -> list[dict]:
    """All packages in the local apt lists, deduplicated by package name, sorted by name.

    Records: {package, section, tags, short_description, long_description, text}.
    With `require_long`, packages without an English long description are dropped.
    """
    lists_dir = Path(lists_dir)
    packages, translations = _lists(lists_dir, "Packages"), _lists(lists_dir, "Translation-en")
    if not packages:
        raise AptListsMissingError(f"no apt Packages lists in {lists_dir}; {UPDATE_HINT}")
    if require_long and not translations:
        raise AptListsMissingError(
            f"no Translation-en lists in {lists_dir} (long descriptions are only there); {UPDATE_HINT}"
        )
    trans: dict[tuple[str, str], str] = {}
    for path in translations:
        for k, v in parse_translations(_open_text(path)).items():
            trans.setdefault(k, v)
    records: dict[str, dict] = {}
    for path in packages:
        for rec in parse_packages(_open_text(path), trans):
            if require_long and not rec["long_description"]:
                continue
            records.setdefault(rec["package"], rec)
    return [records[name] for name in sorted(records)]
