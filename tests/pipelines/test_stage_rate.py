"""A stage's steady rows/s counts only the rows done after its first batch (they set the clock's start)."""

from qscope.pipelines import progress


def test_rows_per_s_leaves_out_the_first_batch(monkeypatch):
    clock = iter([100.0, 101.0, 102.0])
    monkeypatch.setattr(progress.time, "time", lambda: next(clock))
    counter = progress.Counter()
    for _ in range(3):
        counter.add("encode", 4096)
    stats = counter.stats()["encode"]
    assert stats["rows"] == 3 * 4096
    # 2 batches of 4096 rows in the 2 s between the first and the last; rows/(last-first) would say 6144
    assert stats["rows_per_s"] == 4096.0


def test_one_batch_has_no_rate():
    counter = progress.Counter()
    counter.add("encode", 10)
    assert counter.stats()["encode"]["rows_per_s"] is None
