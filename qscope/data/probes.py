"""The sae-probes tasks (Kantamneni et al., "Are Sparse Autoencoders Useful?") as labeled text.

The `sae-probes` wheel ships its datasets as `sae_probes/data/cleaned_data/<task>.csv.zst`
(columns prompt[, prompt_len], target): 155 files, of which 113 are the paper's binary tasks
(marked "Binary Classification" in `probing_datasets_MASTER.csv.zst`); the rest are the
multiclass and continuous sources those were cut from. Install with `pip install --no-deps
sae-probes`: we only read its data files, never import it (importing it pulls pandas, torch, ...).
"""

from __future__ import annotations

import csv
import importlib.util
import io
from collections.abc import Iterator
from pathlib import Path

from qscope.errors import QscopeError

INSTALL_HINT = "install its data with `pip install --no-deps sae-probes`"
_SUFFIX = ".csv.zst"


class ProbesNotInstalledError(QscopeError, FileNotFoundError):
    """The sae-probes package (and so its data files) is not installed."""


def probes_data_dir() -> Path:
    """`.../site-packages/sae_probes/data`, located without importing the package.

    `importlib.resources.files("sae_probes")` would execute `sae_probes/__init__.py`, which
    imports pandas/torch/sae_lens and fails under `--no-deps`; `find_spec` only locates it.
    """
    spec = importlib.util.find_spec("sae_probes")
    if spec is None or not spec.submodule_search_locations:
        raise ProbesNotInstalledError(f"the sae-probes package is not installed; {INSTALL_HINT}")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (data / "cleaned_data").is_dir():
        raise ProbesNotInstalledError(f"sae-probes is installed but has no {data / 'cleaned_data'}; {INSTALL_HINT}")
    return data


def _read_zst_text(path: Path) -> str:
    try:  # Python >= 3.14 has zstd in the stdlib
        from compression import zstd  # type: ignore[import-not-found]

        return zstd.decompress(path.read_bytes()).decode("utf-8")
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError as e:
        raise QscopeError("reading sae-probes data needs the `zstandard` package (`pip install zstandard`)") from e
    with open(path, "rb") as f:  # stream_reader: these frames do not always record their content size
        return zstandard.ZstdDecompressor().stream_reader(f).read().decode("utf-8")


def _read_csv(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(1 << 30)  # some prompts (code, medical abstracts) exceed csv's 128 KiB default
    return list(csv.DictReader(io.StringIO(_read_zst_text(path), newline="")))


def list_tasks(binary_only: bool = True) -> list[str]:
    """Task names (file stems such as "100_news_fake"), sorted by their leading number.

    `binary_only` keeps the 113 binary tasks of the benchmark; False lists all 155 files.
    """
    data = probes_data_dir()
    names = [p.name[: -len(_SUFFIX)] for p in (data / "cleaned_data").glob(f"*{_SUFFIX}")]
    if binary_only:
        master = _read_csv(data / f"probing_datasets_MASTER{_SUFFIX}")
        binary = {Path(r["Dataset save name"]).stem for r in master if r["Data type"].startswith("Binary")}
        names = [n for n in names if n in binary]
    return sorted(names, key=lambda n: (int(n.split("_", 1)[0]) if n[0].isdigit() else 1 << 30, n))


def read_task(task: str, limit: int | None = None) -> list[dict]:
    """Rows of one task as {task, text, label}; `label` is the raw target string ("0"/"1",
    "True"/"False", "bigram"/"not_bigram", a class name, or a number for continuous tasks)."""
    path = probes_data_dir() / "cleaned_data" / f"{task}{_SUFFIX}"
    if not path.is_file():
        raise QscopeError(f"unknown sae-probes task {task!r} (see qscope.data.probes.list_tasks())")
    rows = _read_csv(path)[:limit]
    return [{"task": task, "text": r["prompt"], "label": r["target"]} for r in rows if r.get("prompt")]


def iter_probe_records(binary_only: bool = True, limit_per_task: int | None = None) -> Iterator[dict]:
    """Every row of every task, task by task."""
    for task in list_tasks(binary_only):
        yield from read_task(task, limit_per_task)
