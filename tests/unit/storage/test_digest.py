"""tensor_digest: order-, device- and layout-independent, sensitive to every stored fact."""

from __future__ import annotations

import pytest
import torch

from obliviate.errors import StorageError
from obliviate.storage import checkpoint_id_for, tensor_digest


def _tensors() -> dict[str, torch.Tensor]:
    return {
        "a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "b": torch.tensor([1, 2, 3], dtype=torch.int64),
    }


def test_is_sha256_hex() -> None:
    digest = tensor_digest(_tensors())
    assert len(digest) == 64
    assert int(digest, 16) >= 0


def test_independent_of_dict_order() -> None:
    forward = _tensors()
    backward = dict(reversed(list(forward.items())))
    assert list(forward) != list(backward)
    assert tensor_digest(forward) == tensor_digest(backward)


def test_non_contiguous_view_hashes_like_its_copy() -> None:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    view = base.t()
    assert not view.is_contiguous()
    assert tensor_digest({"x": view}) == tensor_digest({"x": view.contiguous()})
    strided = base[:, ::2]
    assert tensor_digest({"x": strided}) == tensor_digest({"x": strided.clone()})


def test_requires_grad_does_not_matter() -> None:
    value = torch.ones(3, requires_grad=True)
    assert tensor_digest({"x": value}) == tensor_digest({"x": torch.ones(3)})


def test_sensitive_to_name() -> None:
    tensors = _tensors()
    renamed = {"c" if k == "a" else k: v for k, v in tensors.items()}
    assert tensor_digest(tensors) != tensor_digest(renamed)


def test_sensitive_to_dtype_even_with_equal_bytes() -> None:
    raw = torch.arange(4, dtype=torch.int32)
    as_float = raw.view(torch.float32)
    assert tensor_digest({"x": raw}) != tensor_digest({"x": as_float})


def test_sensitive_to_shape() -> None:
    value = torch.arange(6, dtype=torch.float32)
    assert tensor_digest({"x": value.reshape(2, 3)}) != tensor_digest({"x": value.reshape(3, 2)})
    assert tensor_digest({"x": torch.tensor(1.0)}) != tensor_digest({"x": torch.tensor([1.0])})


def test_sensitive_to_one_value() -> None:
    tensors = _tensors()
    changed = {k: v.clone() for k, v in tensors.items()}
    changed["a"][1, 2] = torch.nextafter(changed["a"][1, 2], torch.tensor(100.0))
    assert tensor_digest(tensors) != tensor_digest(changed)


def test_boundaries_are_unambiguous() -> None:
    one = {"ab": torch.zeros(1, dtype=torch.uint8)}
    two = {"a": torch.zeros(0, dtype=torch.uint8), "b": torch.zeros(1, dtype=torch.uint8)}
    assert tensor_digest(one) != tensor_digest(two)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.bool, torch.uint8])
def test_dtypes_numpy_lacks_or_narrow_dtypes_hash(dtype: torch.dtype) -> None:
    value = torch.ones(3, dtype=dtype)
    assert tensor_digest({"x": value}) == tensor_digest({"x": value.clone()})


def test_empty_mapping_and_empty_tensor() -> None:
    assert tensor_digest({}) != tensor_digest({"x": torch.zeros(0)})


def test_sparse_and_non_tensors_are_refused() -> None:
    with pytest.raises(StorageError, match="to_dense"):
        tensor_digest({"x": torch.eye(2).to_sparse()})
    with pytest.raises(StorageError, match="not a torch.Tensor"):
        tensor_digest({"x": [1, 2]})  # type: ignore[dict-item]  # deliberately wrong type
    with pytest.raises(StorageError, match="names must be strings"):
        tensor_digest({"x": torch.zeros(1), 3: torch.zeros(1)})  # type: ignore[dict-item]  # ditto


def test_checkpoint_id_depends_on_meta_and_digest() -> None:
    digest = tensor_digest(_tensors())
    base = checkpoint_id_for(tensor_digest=digest, meta={"lineage": "x"})
    assert base == checkpoint_id_for(tensor_digest=digest, meta={"lineage": "x"})
    assert base != checkpoint_id_for(tensor_digest=digest, meta={"lineage": "y"})
    assert base != checkpoint_id_for(tensor_digest="0" * 64, meta={"lineage": "x"})
