"""Operators inside a user's own ray.data pipeline (real local Ray), and shard writing that survives a kill."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pyarrow.parquet as pq

from qscope.operators import EncodeSignatures, FilterByScore, WriteParquetShards
from qscope.operators.base import Operator
from qscope.operators.writer import finalize_shards


def test_operators_in_a_user_ray_data_pipeline(ray_local, sae_dir, tmp_path):
    import ray

    texts = ["APRS digipeater for ham radio", "JSON parser library", "Morse code trainer", "Font package"]
    spec = {"sae": str(sae_dir), "max_length": 24}
    ds = ray.data.from_items([{"id": f"r{i}", "text": t} for i, t in enumerate(texts)])
    ds = ds.map_batches(
        EncodeSignatures,
        fn_constructor_kwargs={"model_spec": spec, "top_n": 16},
        concurrency=1,
        num_cpus=0.5,
        batch_size=2,
        batch_format="pyarrow",
    )
    ds = ds.map_batches(**FilterByScore.map_batches_kwargs({"rules": {"n_tokens": 1}}, {"num_cpus": 0.25}))
    ds = ds.map_batches(**WriteParquetShards.map_batches_kwargs({"out_dir": str(tmp_path)}, {"num_cpus": 0.25}, 2))
    written = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    assert sum(written["rows"].to_pylist()) == 4
    final = pq.read_table(finalize_shards(tmp_path, "sig.parquet", sort_by="id"))
    local = EncodeSignatures(model_spec=spec, top_n=16)(pa.table({"id": ["r0"], "text": [texts[0]]}))
    assert final["id"].to_pylist() == ["r0", "r1", "r2", "r3"]
    assert final["feature_ids"][0].as_py() == local["feature_ids"][0].as_py()  # Ray == in-process


def test_killed_writer_leaves_only_complete_shards(tmp_path):
    """SIGKILL a process in the middle of writing shards: every visible shard is a complete Parquet file."""
    script = textwrap.dedent(f"""
        import pyarrow as pa
        from qscope.operators import WriteParquetShards
        w = WriteParquetShards({str(tmp_path)!r})
        big = pa.table({{"id": [str(i) for i in range(200_000)], "text": ["x" * 50] * 200_000}})
        i = 0
        while True:
            w(big.set_column(0, "id", pa.array([f"{{i}}-{{j}}" for j in range(big.num_rows)])))
            i += 1
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "1"  # at least one shard finished
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    shards = sorted((tmp_path / "shards").glob("*.parquet"))
    assert shards
    for s in shards:
        assert pq.read_table(s).num_rows == 200_000
    final = pq.read_table(finalize_shards(tmp_path, "out.parquet"))
    assert final.num_rows == 200_000 * len(shards) and (tmp_path / "_SUCCESS").exists()


def test_a_runs_seed_model_scores_rows_in_a_user_pipeline(ray_local, demo_config, tmp_path):
    """A user's own Ray Data ETL reuses a qscope run's SeedModel and gets the run's scores (docs/pipelines.md)."""
    import ray

    from qscope.operators import Classify
    from qscope.pipelines import classify
    from qscope.pipelines.config import ClassifyConfig
    from qscope.seed_model import SeedModel

    cfg = ClassifyConfig.from_dict({**demo_config, "out": str(tmp_path / "labels.parquet")})
    classify.run(classify.build_plan(cfg))
    model = SeedModel.load(tmp_path / "labels.parquet.qscope" / "_seed_model")
    expected = dict(zip(*pq.read_table(tmp_path / "labels.parquet", columns=["id", "score"]).to_pydict().values()))

    spec = demo_config["model"]
    ds = ray.data.read_json(demo_config["corpus"])
    ds = ds.map_batches(
        **EncodeSignatures.map_batches_kwargs(
            # classify's signature settings: sum-pooled top 256 and the mean hidden state its probe reads
            {"model_spec": spec, "pooling": "sum", "top_n": 256, "hidden_mean": True},
            {"num_cpus": 0.5},
            batch_size=8,
        )
    )
    ds = ds.map_batches(**Classify.map_batches_kwargs({"seed_model": model}, {"num_cpus": 0.25}, batch_size=8))
    ds.select_columns(["id", "score"]).write_parquet(str(tmp_path / "mine"))
    got = dict(zip(*pq.read_table(tmp_path / "mine").to_pydict().values()))
    assert got.keys() == expected.keys()
    assert all(abs(got[i] - expected[i]) < 1e-5 for i in got)


class _StampPid(Operator):
    """Test operator: adds `<column>` = the pid of the process it runs in (`drop_odd`: keeps every other row)."""

    def __init__(self, column: str, drop_odd: bool = False, resources=None):
        super().__init__(resources)
        self.column, self.drop_odd = column, drop_odd

    def process(self, table):
        if self.drop_odd:
            table = table.filter(pa.array([i % 2 == 0 for i in range(table.num_rows)]))
        return table.append_column(self.column, pa.array([os.getpid()] * table.num_rows, pa.int64()))


def test_steps_with_equal_resources_run_in_one_actor(ray_local):
    """Ray Data never fuses two actor pools: the Flow groups consecutive steps with the same resources and batch
    size into one actor (one process, no object-store hop), and keeps different ones apart."""
    from ray import cloudpickle

    from qscope.operators.base import Resources
    from qscope.pipelines.flow import Flow, Step, TableInput, fused

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import a test module
    light, heavy = Resources(num_cpus=0.25), Resources(num_cpus=0.5)
    steps = [
        Step(_StampPid, {"column": "a", "drop_odd": True}, light, 8),
        Step(_StampPid, {"column": "b"}, light, 8),
        Step(_StampPid, {"column": "c"}, heavy, 8),
    ]
    assert [len(c) for c in fused(steps)] == [2, 1]
    assert [len(c) for c in fused([steps[0], Step(_StampPid, {"column": "x"}, light, 16)])] == [1, 1]
    table = pa.table({"id": [f"r{i}" for i in range(32)]})
    out = pa.concat_tables(list(Flow(TableInput(table, 4), steps, "t").iter_tables("ray")))
    assert out.num_rows == 16  # the first operator's filter reached the ones after it
    assert all(a == b for a, b in zip(out["a"].to_pylist(), out["b"].to_pylist()))
    assert not set(out["a"].to_pylist()) & set(out["c"].to_pylist())
