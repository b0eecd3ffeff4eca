"""CheckpointStore: content addressing, atomic write-once, verification on read."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
import torch

from obliviate.errors import CorruptCheckpointError, StorageError
from obliviate.storage import CheckpointStore, tensor_digest


def _tensors() -> dict[str, torch.Tensor]:
    return {
        "weight": torch.randn(4, 3),
        "half": torch.randn(5).to(torch.bfloat16),
        "count": torch.tensor([7, -3, 2**40], dtype=torch.int64),
        "bytes": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "flag": torch.tensor([True, False]),
    }


@pytest.fixture
def local_store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore((tmp_path / "store").as_uri())


@pytest.fixture
def memory_store() -> Iterator[CheckpointStore]:
    name = f"obliviate-test-{uuid.uuid4().hex}"
    yield CheckpointStore(f"memory://{name}")
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest) -> CheckpointStore:
    fixture_name = f"{request.param}_store"
    value: CheckpointStore = request.getfixturevalue(fixture_name)
    return value


def _all_files(store: CheckpointStore) -> list[str]:
    fs, root = fsspec.core.url_to_fs(store.url)
    return sorted(str(p).rsplit("/", 1)[-1] for p in fs.find(root))


def _local_path(store: CheckpointStore, checkpoint_id: str, suffix: str) -> Path:
    tensors_url = store.url_for(checkpoint_id)
    assert tensors_url.startswith("file://")
    return Path(tensors_url[len("file://") :]).with_suffix(suffix)


def test_round_trip_keeps_values_and_dtypes(store: CheckpointStore) -> None:
    tensors = _tensors()
    meta = {"lineage": ["s1", "s2"], "lr": 0.1, "nested": {"k": None}}
    ref = store.put(tensors=tensors, meta=meta)
    checkpoint = store.get(ref.checkpoint_id)
    assert checkpoint.checkpoint_id == ref.checkpoint_id
    assert checkpoint.meta == meta
    assert checkpoint.url == ref.url == store.url_for(ref.checkpoint_id)
    assert set(checkpoint.tensors) == set(tensors)
    for name, value in tensors.items():
        got = checkpoint.tensors[name]
        assert got.dtype == value.dtype
        assert got.shape == value.shape
        assert torch.equal(got, value)
    assert ref.tensor_digest == tensor_digest(tensors)
    assert ref.size_bytes > 0


def test_layout_and_sidecar(local_store: CheckpointStore) -> None:
    ref = local_store.put(tensors=_tensors(), meta={"a": 1})
    data = _local_path(local_store, ref.checkpoint_id, ".safetensors")
    sidecar = _local_path(local_store, ref.checkpoint_id, ".json")
    assert data.parent.name == ref.checkpoint_id[:2]
    assert data.stat().st_size == ref.size_bytes
    record = json.loads(sidecar.read_text("utf-8"))
    assert record["kind"] == "checkpoint"
    assert record["format_version"] == 1
    assert record["tensor_digest"] == ref.tensor_digest
    assert record["meta"] == {"a": 1}


def test_plain_local_path_works(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "plain"))
    ref = store.put(tensors={"x": torch.ones(2)}, meta={})
    assert store.url.startswith("file://")
    assert (tmp_path / "plain" / ref.checkpoint_id[:2] / f"{ref.checkpoint_id}.json").is_file()


def test_put_does_not_alias_or_require_contiguous_cpu_tensors(store: CheckpointStore) -> None:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tied = torch.randn(3)
    ref = store.put(tensors={"view": base.t(), "tied_a": tied, "tied_b": tied}, meta={})
    got = store.get(ref.checkpoint_id).tensors
    assert torch.equal(got["view"], base.t())
    assert torch.equal(got["tied_a"], got["tied_b"])


def test_idempotent_reput(store: CheckpointStore) -> None:
    tensors = _tensors()
    first = store.put(tensors=tensors, meta={"x": 1})
    files_before = _all_files(store)
    second = store.put(tensors={k: v.clone() for k, v in tensors.items()}, meta={"x": 1})
    assert first == second
    assert _all_files(store) == files_before
    assert store.ids() == [first.checkpoint_id]


def test_reput_does_not_rewrite_files(local_store: CheckpointStore) -> None:
    tensors = _tensors()
    ref = local_store.put(tensors=tensors, meta={})
    data = _local_path(local_store, ref.checkpoint_id, ".safetensors")
    stamp = data.stat().st_mtime_ns
    os.utime(data, ns=(stamp - 10**9, stamp - 10**9))
    assert local_store.put(tensors=tensors, meta={}) == ref
    assert data.stat().st_mtime_ns == stamp - 10**9


def test_equal_weights_different_meta_get_different_ids(store: CheckpointStore) -> None:
    tensors = _tensors()
    one = store.put(tensors=tensors, meta={"lineage": "aaa"})
    two = store.put(tensors=tensors, meta={"lineage": "bbb"})
    assert one.checkpoint_id != two.checkpoint_id
    assert one.tensor_digest == two.tensor_digest
    store.delete(one.checkpoint_id)
    assert store.get(two.checkpoint_id).meta == {"lineage": "bbb"}


def test_meta_key_order_does_not_change_id(store: CheckpointStore) -> None:
    tensors = _tensors()
    assert (
        store.put(tensors=tensors, meta={"a": 1, "b": 2}).checkpoint_id
        == store.put(tensors=tensors, meta={"b": 2, "a": 1}).checkpoint_id
    )


def test_no_temp_files_left_behind(store: CheckpointStore) -> None:
    ref = store.put(tensors=_tensors(), meta={})
    assert _all_files(store) == sorted(
        [f"{ref.checkpoint_id}.json", f"{ref.checkpoint_id}.safetensors"]
    )


def test_exists_ids_delete(store: CheckpointStore) -> None:
    assert store.ids() == []
    one = store.put(tensors={"x": torch.zeros(1)}, meta={})
    two = store.put(tensors={"x": torch.ones(1)}, meta={})
    assert store.exists(one.checkpoint_id)
    assert store.ids() == sorted([one.checkpoint_id, two.checkpoint_id])
    store.delete(one.checkpoint_id)
    assert not store.exists(one.checkpoint_id)
    assert store.ids() == [two.checkpoint_id]
    store.delete(one.checkpoint_id)  # deleting again is fine
    with pytest.raises(StorageError, match=one.checkpoint_id):
        store.get(one.checkpoint_id)


def test_missing_id_raises_storage_error_naming_it(store: CheckpointStore) -> None:
    missing = "ab" * 32
    with pytest.raises(StorageError, match=missing) as info:
        store.get(missing)
    assert not isinstance(info.value, CorruptCheckpointError)
    assert not store.exists(missing)


@pytest.mark.parametrize(
    "bad", ["", "abc", "A" * 64, "g" * 64, "../" + "a" * 61, "a" * 63 + "/", "a" * 65]
)
def test_bad_ids_are_refused(store: CheckpointStore, bad: str) -> None:
    for call in (store.get, store.exists, store.delete, store.url_for):
        with pytest.raises(StorageError, match="64 lowercase hex"):
            call(bad)


def test_incomplete_put_reads_as_missing(local_store: CheckpointStore) -> None:
    tensors = _tensors()
    ref = local_store.put(tensors=tensors, meta={})
    _local_path(local_store, ref.checkpoint_id, ".json").unlink()
    assert not local_store.exists(ref.checkpoint_id)
    assert local_store.ids() == []
    with pytest.raises(StorageError, match="never finished"):
        local_store.get(ref.checkpoint_id)
    again = local_store.put(tensors=tensors, meta={})  # a retry completes it
    assert again == ref
    assert torch.equal(local_store.get(ref.checkpoint_id).tensors["weight"], tensors["weight"])


def test_flipped_data_byte_is_detected(local_store: CheckpointStore) -> None:
    ref = local_store.put(tensors=_tensors(), meta={"m": 1})
    path = _local_path(local_store, ref.checkpoint_id, ".safetensors")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=ref.checkpoint_id) as info:
        local_store.get(ref.checkpoint_id)
    assert path.name in str(info.value)


def test_every_single_byte_flip_is_detected(local_store: CheckpointStore) -> None:
    tensors = {"w": torch.randn(2, 2), "b": torch.tensor([1, 2], dtype=torch.int64)}
    ref = local_store.put(tensors=tensors, meta={})
    path = _local_path(local_store, ref.checkpoint_id, ".safetensors")
    original = path.read_bytes()
    for position in range(len(original)):
        for mask in (0x01, 0x80):
            data = bytearray(original)
            data[position] ^= mask
            path.write_bytes(bytes(data))
            with pytest.raises(CorruptCheckpointError, match=ref.checkpoint_id):
                local_store.get(ref.checkpoint_id)
    path.write_bytes(original)
    assert torch.equal(local_store.get(ref.checkpoint_id).tensors["w"], tensors["w"])


@pytest.mark.parametrize("keep", [0, 7, 40, -1])
def test_truncated_file_is_detected(local_store: CheckpointStore, keep: int) -> None:
    ref = local_store.put(tensors=_tensors(), meta={})
    path = _local_path(local_store, ref.checkpoint_id, ".safetensors")
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(CorruptCheckpointError, match=ref.checkpoint_id):
        local_store.get(ref.checkpoint_id)


def test_edited_sidecar_meta_is_detected(local_store: CheckpointStore) -> None:
    ref = local_store.put(tensors=_tensors(), meta={"lineage": "abc"})
    sidecar = _local_path(local_store, ref.checkpoint_id, ".json")
    record = json.loads(sidecar.read_text("utf-8"))
    record["meta"]["lineage"] = "abd"
    sidecar.write_text(json.dumps(record), "utf-8")
    with pytest.raises(CorruptCheckpointError, match=ref.checkpoint_id) as info:
        local_store.get(ref.checkpoint_id)
    assert sidecar.name in str(info.value)


def test_edited_sidecar_digest_is_detected(local_store: CheckpointStore) -> None:
    ref = local_store.put(tensors=_tensors(), meta={})
    sidecar = _local_path(local_store, ref.checkpoint_id, ".json")
    record = json.loads(sidecar.read_text("utf-8"))
    record["tensor_digest"] = "0" * 64
    sidecar.write_text(json.dumps(record), "utf-8")
    with pytest.raises(CorruptCheckpointError, match=ref.checkpoint_id) as info:
        local_store.get(ref.checkpoint_id)
    assert sidecar.name in str(info.value)


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe", b"[]", b'{"kind": "other"}'])
def test_unparseable_sidecar_is_corrupt(local_store: CheckpointStore, content: bytes) -> None:
    ref = local_store.put(tensors=_tensors(), meta={})
    _local_path(local_store, ref.checkpoint_id, ".json").write_bytes(content)
    with pytest.raises(CorruptCheckpointError, match=ref.checkpoint_id):
        local_store.get(ref.checkpoint_id)


def test_newer_format_version_is_a_storage_error(local_store: CheckpointStore) -> None:
    ref = local_store.put(tensors=_tensors(), meta={})
    sidecar = _local_path(local_store, ref.checkpoint_id, ".json")
    record = json.loads(sidecar.read_text("utf-8"))
    record["format_version"] = 2
    sidecar.write_text(json.dumps(record), "utf-8")
    with pytest.raises(StorageError, match="format_version 2") as info:
        local_store.get(ref.checkpoint_id)
    assert not isinstance(info.value, CorruptCheckpointError)


def test_missing_tensors_file_is_corrupt(local_store: CheckpointStore) -> None:
    ref = local_store.put(tensors=_tensors(), meta={})
    _local_path(local_store, ref.checkpoint_id, ".safetensors").unlink()
    with pytest.raises(CorruptCheckpointError, match=ref.checkpoint_id):
        local_store.get(ref.checkpoint_id)


def test_memory_backend_detects_corruption(memory_store: CheckpointStore) -> None:
    ref = memory_store.put(tensors=_tensors(), meta={})
    fs, path = fsspec.core.url_to_fs(ref.url)
    data = bytearray(fs.cat_file(path))
    data[-1] ^= 0xFF
    fs.pipe_file(path, bytes(data))
    with pytest.raises(CorruptCheckpointError, match=ref.checkpoint_id):
        memory_store.get(ref.checkpoint_id)


def test_meta_that_is_not_json_is_refused_before_writing(store: CheckpointStore) -> None:
    with pytest.raises(StorageError, match="NaN"):
        store.put(tensors={"x": torch.zeros(1)}, meta={"loss": float("nan")})
    assert store.ids() == []


def test_unsupported_url_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="nosuchprotocol"):
        CheckpointStore("nosuchprotocol://bucket/prefix")
    with pytest.raises(StorageError):
        CheckpointStore("")
