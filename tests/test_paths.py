"""qscope.paths.atomic_path: files and directories replaced in one step, durable, safe under concurrent writers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from qscope import paths
from qscope.paths import atomic_path, file_lock


def _write_version(final: Path, version: int, files: int = 4, **kw) -> None:
    with atomic_path(final, **kw) as tmp:
        tmp.mkdir()
        for i in range(files):
            (tmp / f"part-{i}.txt").write_text(f"v{version}")
        (tmp / "DONE").write_text(str(version))


def _versions_in(final: Path) -> set[str]:
    return {p.read_text() for p in final.glob("part-*.txt")}


def test_file_replaced_and_failed_block_leaves_old_version(tmp_path):
    final = tmp_path / "out.txt"
    with atomic_path(final) as tmp:
        tmp.write_text("one")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert final.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"], "no temporary sibling may survive"


def test_directory_replaced_whole_by_default(tmp_path):
    final = tmp_path / "index"
    _write_version(final, 1, files=5)
    _write_version(final, 2, files=2)
    assert sorted(p.name for p in final.iterdir()) == ["DONE", "part-0.txt", "part-1.txt"]
    assert _versions_in(final) == {"v2"}
    assert [p.name for p in tmp_path.iterdir()] == ["index"]


def test_keep_existing_never_deletes_what_the_new_version_did_not_replace(tmp_path):
    final = tmp_path / "sae"
    _write_version(final, 1, files=2)
    (final / "MODEL_CARD.md").write_text("card")
    (final / "dashboards" / "deep").mkdir(parents=True)
    (final / "dashboards" / "deep" / "f1.html").write_text("<html>")
    (final / "part-0.txt").chmod(0o640)
    with atomic_path(final, keep_existing=True) as tmp:
        (tmp / "dashboards").mkdir(parents=True)
        (tmp / "dashboards" / "index.html").write_text("new index")
        (tmp / "part-0.txt").write_text("v2")
    assert (final / "part-0.txt").read_text() == "v2"  # replaced
    assert (final / "part-1.txt").read_text() == "v1"  # kept
    assert (final / "MODEL_CARD.md").read_text() == "card"
    assert (final / "dashboards" / "index.html").read_text() == "new index"  # merged, new file added
    assert (final / "dashboards" / "deep" / "f1.html").read_text() == "<html>"  # kept, however deep


def test_everything_is_fsynced_before_it_is_published(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(paths.os, "fsync", recording_fsync)
    final = tmp_path / "model"
    _write_version(final, 1, files=2)
    names = {Path(p).name for p in synced}
    assert {"part-0.txt", "part-1.txt", "DONE"} <= names, synced
    assert str(tmp_path) in synced, "the parent directory must be fsynced after the rename"
    assert any(Path(p).name == "model" for p in synced), "the new directory itself must be fsynced"


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "rename-aside"])
def test_concurrent_writers_never_fail_and_never_mix(tmp_path, monkeypatch, exchange):
    if not exchange:  # file systems without RENAME_EXCHANGE take the rename-aside path
        monkeypatch.setattr(paths, "_exchange_unsupported", True)
    final = tmp_path / "cache"
    _write_version(final, 0)
    errors: list[BaseException] = []

    def writer(version: int) -> None:
        try:
            for _ in range(40):
                _write_version(final, version)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(v,)) for v in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(_versions_in(final)) == 1, "the final directory must be one writer's whole version"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_readers_never_see_a_missing_directory_while_it_is_replaced(tmp_path):
    if paths._exchange_unsupported:
        pytest.skip("no renameat2(RENAME_EXCHANGE) on this file system")
    final = tmp_path / "index"
    _write_version(final, 0)
    stop = threading.Event()
    missing: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            if not (final / "DONE").exists():
                missing.append(1)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for v in range(1, 80):
            _write_version(final, v)
    finally:
        stop.set()
        t.join()
    assert missing == [], f"final was missing {len(missing)} times during replacement"


def test_failed_swap_restores_the_old_version(tmp_path, monkeypatch):
    # Without RENAME_EXCHANGE the old directory is renamed aside first; if moving the new one in then fails,
    # the old one goes back: it is never deleted before a new version is in place.
    monkeypatch.setattr(paths, "_exchange_unsupported", True)
    final = tmp_path / "sae"
    _write_version(final, 1)
    real_rename = os.rename
    calls = []

    def failing_rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 3:  # 1: tmp→final (ENOTEMPTY), 2: final→aside, 3: tmp→final, 4: aside→final (restore)
            raise OSError(5, "simulated I/O error")
        return real_rename(src, dst)

    monkeypatch.setattr(paths.os, "rename", failing_rename)
    with pytest.raises(OSError, match="simulated"):
        _write_version(final, 2)
    assert calls[1][1].startswith(".old-") and calls[3] == (calls[1][1], "sae")
    assert _versions_in(final) == {"v1"} and (final / "DONE").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["sae"]


def test_file_lock_serialises(tmp_path):
    order: list[str] = []
    lock = tmp_path / "x.lock"

    def hold(name: str) -> None:
        with file_lock(lock):
            order.append(f"{name}+")
            threading.Event().wait(0.05)
            order.append(f"{name}-")

    threads = [threading.Thread(target=hold, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])
