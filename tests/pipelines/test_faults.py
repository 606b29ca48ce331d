"""Faults on real Ray: a dead actor is restarted and its batch retried (bounded), an error in operator code fails the
run at once naming it, and on a 3-node `ray.cluster_utils.Cluster` the encode actors spread over the nodes and a
node removed mid-run leaves every corpus row in the result exactly once."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from qscope.operators.base import Operator, Resources
from qscope.pipelines.flow import Flow, OperatorError, Step, TableInput

ROOT = Path(__file__).resolve().parents[2]


class DiesOnce(Operator):
    """Kills its own actor process on the first batch it ever sees (a marker file makes it once per test)."""

    def __init__(self, marker: str, resources=None):
        super().__init__(resources)
        self.marker = marker

    def process(self, table):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return table


class DiesAlways(Operator):
    def process(self, table):
        os._exit(1)


class Fails(Operator):
    def process(self, table):
        if table["id"][0].as_py() >= 40:
            raise ValueError(f"row {table['id'][0].as_py()} cannot be processed")
        return table


@pytest.fixture(autouse=True)
def _operators_by_value():
    # Ray workers cannot import this test module: ship its operator classes by value.
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _flow(op, kwargs=None):
    return Flow(
        TableInput(pa.table({"id": list(range(100))}), 10),
        [Step(op, kwargs or {}, Resources(num_cpus=0.25), 10)],
        "faulty",
    )


def test_a_dead_actor_is_restarted_and_no_row_is_lost_or_doubled(ray_local, tmp_path):
    out = list(_flow(DiesOnce, {"marker": str(tmp_path / "died")}).iter_tables("ray"))
    assert (tmp_path / "died").exists()
    assert sorted(i for t in out for i in t["id"].to_pylist()) == list(range(100))


def test_retries_are_bounded(ray_local):
    with pytest.raises(OperatorError, match="stage faulty: an actor died more often than its retries allow"):
        list(_flow(DiesAlways).iter_tables("ray"))


def test_an_error_in_operator_code_fails_the_run_with_that_error(ray_local):
    with pytest.raises(OperatorError, match=r"stage faulty: ValueError: row \d+ cannot be processed"):
        list(_flow(Fails).iter_tables("ray"))


CLUSTER_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    from pathlib import Path
    from ray.cluster_utils import Cluster
    from qscope.cli.common import emit_json, json_stdout
    from qscope.pipelines import classify
    from qscope.pipelines.config import ClassifyConfig

    work, remove = Path(sys.argv[1]), sys.argv[2] == "remove"
    # Each node gets logical CPUs to spare (DESIGN.md: 1-CPU nodes with 0.5-CPU actors hang).
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    cfg = ClassifyConfig.from_dict({
        "seeds": str(work / "seeds.jsonl"), "corpus": str(work / "corpus"), "out": str(work / "out.parquet"),
        "model": {"sae": str(work / "sae"), "max_length": 16},  # the SAE records its tiny model
        "resources": {"encode": {"concurrency": 3, "batch_size": 64, "num_cpus": 0.5, "threads": 1},
                      "light": {"local_below": 0, "batch_size": 256}}})
    plan = classify.build_plan(cfg)
    if remove:
        def kill_a_worker():
            side = work / "out.parquet.qscope" / "_signatures"
            while not list(side.glob("_staging-*")):  # the corpus pass has started
                time.sleep(0.1)
            time.sleep(4.0)  # its actors are up and encoding
            cluster.remove_node(workers[1])
            print("removed a worker node", file=sys.stderr, flush=True)
        threading.Thread(target=kill_a_worker, daemon=True).start()
    # As the CLI does: stdout holds the one JSON document; Ray's log lines about the lost node go to stderr.
    with json_stdout(restore=False):
        result = classify.run(plan, address=cluster.address)
        emit_json(result)
        import ray
        ray.shutdown()
        cluster.shutdown()
""")


@pytest.fixture(scope="module")
def cluster_inputs(tmp_path_factory):
    from qscope.models.tiny import make_tiny_lm, make_tiny_sae

    work = tmp_path_factory.mktemp("cluster")
    lm = make_tiny_lm(work / "lm")
    make_tiny_sae(work / "sae", lm)
    (work / "corpus").mkdir()
    words = ["antenna", "packet", "radio", "kernel", "font", "game", "morse", "python", "editor", "driver"]
    ids = []
    for f in range(6):  # several files: several read tasks, spread over the nodes
        with open(work / "corpus" / f"part{f}.jsonl", "w") as fh:
            for i in range(3000):
                rid = f"f{f}-{i}"
                ids.append(rid)
                text = " ".join(words[(i * 7 + j * 3 + f) % len(words)] for j in range(6 + i % 9))
                fh.write(json.dumps({"id": rid, "text": text}) + "\n")
    (work / "seeds.jsonl").write_text("".join(json.dumps({"text": f"{w} radio antenna"}) + "\n" for w in words[:5]))
    return work, ids


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["complete", "remove"])
def test_three_node_cluster(cluster_inputs, tmp_path, mode):
    import pyarrow.parquet as pq

    work, ids = cluster_inputs
    run = tmp_path / "run"
    run.mkdir()
    for name in ("seeds.jsonl", "corpus", "lm", "sae"):
        (run / name).symlink_to(work / name)
    ray_tmp = Path("/tmp") / f"qscl{os.getpid()}{mode[0]}"  # the cluster's address file stays out of /tmp/ray
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "QSCOPE_PROGRESS_INTERVAL": "5", "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    r = subprocess.run(
        [sys.executable, "-c", CLUSTER_SCRIPT, str(run), mode],
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-6000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    got = pq.read_table(run / "out.parquet", columns=["id"])["id"].to_pylist()
    assert len(got) == len(ids) and sorted(got) == sorted(ids)  # every row, exactly once
    assert result["rows"] == len(ids)
    if mode == "complete":
        assert result["throughput"]["encode_corpus"]["nodes"] >= 2
    else:  # the node went while the corpus was being encoded, not after
        done = [ln for ln in r.stderr.splitlines() if ln.startswith("[qscope] encode_corpus:") and "done in" in ln]
        assert "removed a worker node" in r.stderr and done
        assert r.stderr.index("removed a worker node") < r.stderr.index(done[0])
