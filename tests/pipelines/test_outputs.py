"""Outputs a reader can trust: one run per output, stale locks taken over, results never mixed with other files."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qscope.errors import InputError
from qscope.pipelines.outputs import LOCK, OutputBusyError, RunLock, merge_parts, publish_parts


def test_second_run_is_refused_and_named(tmp_path):
    with RunLock(tmp_path, "run-A"):
        with pytest.raises(OutputBusyError, match=r"in use by run run-A \(pid \d+ on .*delete .*_lock"):
            RunLock(tmp_path, "run-B").acquire()
    assert not (tmp_path / LOCK).exists()  # released
    with RunLock(tmp_path, "run-B"):
        assert json.loads((tmp_path / LOCK).read_text())["run_id"] == "run-B"


def test_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    # A process that takes the lock and dies without releasing it (SIGKILL: no cleanup runs).
    script = (
        "import os, sys; from qscope.pipelines.outputs import RunLock; "
        f"RunLock({str(tmp_path)!r}, 'dead-run').acquire(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    assert json.loads((tmp_path / LOCK).read_text())["run_id"] == "dead-run"
    with caplog.at_level("WARNING"), RunLock(tmp_path, "new-run"):
        assert json.loads((tmp_path / LOCK).read_text())["run_id"] == "new-run"
    assert "stale lock of run dead-run" in caplog.text


def test_a_reused_pid_is_not_the_lock_owner(tmp_path):
    # Our own pid, but another process start time: the owner is gone even though the pid is alive.
    (tmp_path / LOCK).write_text(
        json.dumps({"run_id": "old", "pid": os.getpid(), "host": os.uname().nodename, "start": "1"})
    )
    with RunLock(tmp_path, "new"):
        pass


def test_lock_from_another_host_is_respected_until_its_heartbeat_stops(tmp_path):
    (tmp_path / LOCK).write_text(json.dumps({"run_id": "remote", "pid": 1, "host": "other-node"}))
    with pytest.raises(OutputBusyError, match="remote"):
        RunLock(tmp_path, "here").acquire()
    old = 1_000_000_000
    os.utime(tmp_path / LOCK, (old, old))  # no heartbeat for years: that run is gone
    with RunLock(tmp_path, "here"):
        pass


def _parts(d, n):
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pq.write_table(pa.table({"id": [f"{i}-{j}" for j in range(3)], "x": [i] * 3}), d / f"part-{i}.parquet")
    return d


def test_merge_streams_parts_into_one_file(tmp_path):
    rows = merge_parts(_parts(tmp_path / "staged", 4), tmp_path / "out.parquet", {b"qscope.run_id": b"r1"})
    t = pq.read_table(tmp_path / "out.parquet")
    assert rows == t.num_rows == 12 and t.schema.metadata[b"qscope.run_id"] == b"r1"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_publish_replaces_parts_and_never_deletes_other_files(tmp_path):
    result = tmp_path / "result"
    publish_parts(_parts(tmp_path / "s1", 3), result, "r1")
    publish_parts(_parts(tmp_path / "s2", 1), result, "r2")
    assert sorted(p.name for p in result.iterdir()) == ["part-0.parquet"]
    (result / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds more than Parquet parts"):
        publish_parts(_parts(tmp_path / "s3", 1), result, "r3")
    assert (result / "notes.txt").read_text() == "mine"


def test_rows_written_where_the_driver_cannot_see_them_are_an_error(tmp_path):
    from qscope.pipelines.flow import OutputNotSharedError, check_written

    staged = _parts(tmp_path / "staged", 2)
    assert check_written(staged, 6, "encode_corpus") == 6
    # a writer on another node reported 3 more rows than this machine can see (its disk is not shared)
    with pytest.raises(OutputNotSharedError, match="wrote 9 rows but 6 are in .*shared"):
        check_written(staged, 9, "encode_corpus")


def test_ray_writer_counts_match_the_files(ray_local, tmp_path):
    from qscope.pipelines.flow import Flow, TableInput

    table = pa.table({"id": [str(i) for i in range(500)], "source_key": [f"k{i % 3}" for i in range(500)]})
    Flow(TableInput(table, 5), [], "w").write_parquet(tmp_path / "parts", "ray", partition_col="source_key")
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["source_key=k0", "source_key=k1", "source_key=k2"]
    assert sum(pq.read_table(p).num_rows for p in (tmp_path / "parts").rglob("*.parquet")) == 500
