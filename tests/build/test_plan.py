import numpy as np


def _write_order(rows, ids, seed):
    import pipeline.build.plan as plan_module

    return np.concatenate(list(plan_module._write_order(rows, ids, seed))).tolist()


def test_write_order_sorts_by_seeded_key_and_breaks_ties_by_id_then_replica(monkeypatch):
    import pyarrow as pa

    import pipeline.build.plan as plan_module
    from pipeline.core.seeds import derive_seed

    ids = pa.chunked_array([pa.array(["c", "a", "b"])])
    rows = plan_module._SplitRows(np.arange(3), np.array([1, 0, 2]))  # refs 0,0,1,2,2,2
    refs, replicas = rows.at(np.arange(rows.count))
    assert refs.tolist() == [0, 0, 1, 2, 2, 2] and replicas.tolist() == [0, 1, 0, 0, 1, 2]
    keys = [derive_seed(7, ids[r].as_py(), f"order-{k}") for r, k in zip(refs, replicas, strict=True)]
    id_rank = np.array([2, 0, 1])[refs]
    expected = np.lexsort((replicas, id_rank, np.array(keys, dtype=np.int64)))
    assert _write_order(rows, ids, 7) == expected.tolist()
    monkeypatch.setattr(plan_module, "derive_seed", lambda *args: 0)  # every key equal
    assert _write_order(rows, ids, 7) == [2, 3, 4, 5, 0, 1]
    # many equal keys among many rows: the same order as sorting by (key, id, replica)
    monkeypatch.setattr(plan_module, "derive_seed", lambda seed, i, salt: derive_seed(seed, i, salt) % 5)
    ids = pa.chunked_array([pa.array([f"img{i:03d}" for i in np.random.default_rng(1).permutation(300)])])
    rows = plan_module._SplitRows(np.arange(300), np.random.default_rng(2).integers(0, 4, 300))
    refs, replicas = rows.at(np.arange(rows.count))
    keys = [derive_seed(7, ids[r].as_py(), f"order-{k}") % 5 for r, k in zip(refs, replicas, strict=True)]
    id_rank = np.argsort(np.argsort(ids.to_pylist()))[refs]
    expected = np.lexsort((replicas, id_rank, np.array(keys)))
    assert _write_order(rows, ids, 7) == expected.tolist()


def test_write_order_sorted_a_key_range_at_a_time_is_one_sort(monkeypatch):
    """Rows sorted in many small key ranges (synthetic rows after the split's images) come
    out as one sort of every row by key; shards are cut across the ranges."""
    import pyarrow as pa

    import pipeline.build.plan as plan_module
    from pipeline.core.seeds import derive_seed

    ids = pa.chunked_array([pa.array([f"img{i:03d}" for i in range(200)]), pa.array(["fake0", "fake1"])])
    members = np.arange(0, 200, 2)  # every other image is in the split
    rows = plan_module._SplitRows(members, np.random.default_rng(3).integers(0, 3, 100), 200, 2)
    refs, replicas = rows.at(np.arange(rows.count))
    assert refs[-2:].tolist() == [200, 201] and replicas[-2:].tolist() == [0, 0]
    assert set(refs[:-2].tolist()) == set(members.tolist())
    keys = np.array(
        [derive_seed(7, ids[r].as_py(), f"order-{k}") for r, k in zip(refs, replicas, strict=True)]
    )
    whole = _write_order(rows, ids, 7)
    assert whole == np.argsort(keys, kind="stable").tolist()
    monkeypatch.setattr(plan_module, "_RANGE_ROWS", 16)
    ranges = list(plan_module._write_order(rows, ids, 7))
    assert len(ranges) == -(-rows.count // 16) and np.concatenate(ranges).tolist() == whole
    monkeypatch.setattr(plan_module, "_MAX_RANGES", 3)  # a large split: fewer, larger ranges
    few = list(plan_module._write_order(rows, ids, 7))
    assert len(few) == 3 and np.concatenate(few).tolist() == whole
    shards = list(plan_module._shard_positions(iter(ranges), 4, 60))
    assert [len(s) for s in shards] == [60, 60, 60, rows.count - 180]
    assert np.concatenate(shards).tolist() == whole


def test_build_plan_writes_a_plan_per_shard_that_reads_back(tmp_path):
    import pyarrow as pa

    from pipeline.build.plan import ShardSpec, build_plan, read_shard_plan
    from pipeline.ingest.store import Index

    ids = [f"img{i}" for i in range(6)]
    index = Index(ids, np.array([0, 1, 0, 1, 0, 1]), ["train"] * 4 + ["test"] * 2, ["0" * 64] * 6)
    copies = np.array([2, 0, 1, 1, 0, 0])  # test rows are never copied
    shards = build_plan(index, copies, 3, 4, tmp_path)
    assert shards == [ShardSpec("train", 0, 2, 4), ShardSpec("train", 1, 2, 4), ShardSpec("test", 0, 1, 2)]
    assert [s.name for s in shards] == ["train-00000-of-00002", "train-00001-of-00002", "test-00000-of-00001"]
    plans = [read_shard_plan(tmp_path, s) for s in shards]
    assert [p.num_rows for p in plans] == [4, 4, 2]
    assert all(isinstance(p, pa.Table) for p in plans)
    (tmp_path / "again").mkdir()  # the work folder exists: staging made it
    again = build_plan(index, copies, 3, 4, tmp_path / "again")
    assert again == shards and read_shard_plan(tmp_path / "again", shards[0]).equals(plans[0])
