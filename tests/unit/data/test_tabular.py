"""User files: CSV, Parquet and NPZ round trips, and every way such a file can be wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from obliviate.data import SampleSet, load_csv, load_file, load_npz, load_parquet
from obliviate.errors import DataError, DatasetUnavailableError

CSV = """sample_id,subject,label,x1,x2
007,alice,1,0.5,-3.0
a-1,bob,0,1.25,2.0
NA,alice,2,0.0,1e-3
"""


def write_csv(tmp_path: Path, text: str = CSV, name: str = "table.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_round_trip(tmp_path: Path) -> None:
    samples = load_csv(write_csv(tmp_path), subject_column="subject")
    assert samples.name == "table"
    # Ids stay text exactly as written: "007" keeps its zeros and "NA" is an id, not a gap.
    assert samples.sample_ids.tolist() == ["007", "a-1", "NA"]
    assert samples.subject_ids is not None
    assert samples.subject_ids.tolist() == ["alice", "bob", "alice"]
    assert samples.labels.dtype == np.int64 and samples.labels.tolist() == [1, 0, 2]
    assert samples.num_classes == 3
    expected = np.array([[0.5, -3.0], [1.25, 2.0], [0.0, 1e-3]], dtype=np.float32)
    np.testing.assert_array_equal(samples.features, expected)


def test_csv_feature_columns_and_num_classes(tmp_path: Path) -> None:
    samples = load_csv(
        write_csv(tmp_path),
        subject_column="subject",
        feature_columns=["x2"],
        num_classes=5,
        name="custom",
    )
    assert samples.feature_shape == (1,)
    assert samples.num_classes == 5
    assert samples.name == "custom"


def test_csv_without_id_column_numbers_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "label,x\n0,1\n1,2\n", name="plain.csv")
    samples = load_csv(path, id_column=None)
    assert samples.sample_ids.tolist() == ["plain:0", "plain:1"]


def test_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    table = pa.table(
        {
            "sample_id": pa.array([10, 11, 12], type=pa.int64()),
            "subject": ["s1", "s2", "s1"],
            "label": pa.array([2, 0, 1], type=pa.int32()),
            "f_int": pa.array([1, 2, 3], type=pa.int16()),
            "f_float": [0.25, -1.5, 8.0],
            "f_bool": [True, False, True],
        }
    )
    pq.write_table(table, path)
    samples = load_parquet(path, subject_column="subject")
    assert samples.sample_ids.tolist() == ["10", "11", "12"]
    assert samples.subject_ids is not None and samples.subject_ids.tolist() == ["s1", "s2", "s1"]
    assert samples.labels.tolist() == [2, 0, 1]
    expected = np.array([[1, 0.25, 1], [2, -1.5, 0], [3, 8.0, 1]], dtype=np.float32)
    np.testing.assert_array_equal(samples.features, expected)


def test_npz_round_trip(tmp_path: Path) -> None:
    features = np.arange(24, dtype=np.float32).reshape(3, 2, 4) / 8
    path = tmp_path / "arrays.npz"
    np.savez(
        path,
        features=features,
        labels=np.array([0, 3, 1]),
        sample_ids=np.array(["u", "v", "w"]),
        subject_ids=np.array(["p", "p", "q"]),
        num_classes=np.array(4),
    )
    samples = load_npz(path)
    np.testing.assert_array_equal(samples.features, features)
    assert samples.labels.tolist() == [0, 3, 1]
    assert samples.sample_ids.tolist() == ["u", "v", "w"]
    assert samples.subject_ids is not None and samples.subject_ids.tolist() == ["p", "p", "q"]
    assert samples.num_classes == 4
    assert samples.name == "arrays"


def test_npz_without_ids_numbers_rows(tmp_path: Path) -> None:
    path = tmp_path / "bare.npz"
    np.savez(path, features=np.zeros((2, 1)), labels=np.array([0, 1]))
    assert load_npz(path, name="b").sample_ids.tolist() == ["b:0", "b:1"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npz"])
def test_load_file_dispatches_on_suffix(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"same{suffix}"
    ids, labels, values = ["a", "b"], [1, 0], [0.5, 0.75]
    if suffix == ".csv":
        path.write_text("sample_id,label,v\na,1,0.5\nb,0,0.75\n")
    elif suffix == ".parquet":
        pq.write_table(pa.table({"sample_id": ids, "label": labels, "v": values}), path)
    else:
        np.savez(path, features=np.array(values)[:, None], labels=labels, sample_ids=ids)
    samples = load_file(path)
    assert isinstance(samples, SampleSet)
    assert samples.sample_ids.tolist() == ids
    assert samples.labels.tolist() == labels
    np.testing.assert_array_equal(samples.features[:, 0], np.array(values, dtype=np.float32))


def test_load_file_passes_options_on(tmp_path: Path) -> None:
    path = write_csv(tmp_path)
    assert load_file(path, subject_column="subject", num_classes=7).num_classes == 7


# --- bad input ---------------------------------------------------------------------------


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "sample_id,label,x\na,0,1\nb,1,2\na,0,3\n", name="dup.csv")
    with pytest.raises(DataError, match=r"dup\.csv: duplicate sample ids: 'a'"):
        load_csv(path)


def test_nan_label(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "sample_id,label,x\na,0,1\nb,,2\n", name="gap.csv")
    with pytest.raises(DataError, match=r"gap\.csv: labels are missing \(NaN\) at rows 1"):
        load_csv(path)


def test_nan_feature(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "sample_id,label,x\na,0,1\nb,1,nan\n", name="nanx.csv")
    with pytest.raises(DataError, match=r"nanx\.csv: features contain NaN .* rows 1 .*'b'"):
        load_csv(path)


def test_label_out_of_range(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "sample_id,label,x\na,0,1\nb,2,2\n", name="range.csv")
    with pytest.raises(DataError, match=r"range\.csv: labels must lie in \[0, 2\)"):
        load_csv(path, num_classes=2)


def test_mismatched_lengths(tmp_path: Path) -> None:
    path = tmp_path / "uneven.npz"
    np.savez(path, features=np.zeros((3, 2)), labels=np.array([0, 1]))
    with pytest.raises(DataError, match=r"uneven\.npz: mismatched lengths: features=3, labels=2"):
        load_npz(path)


def test_missing_id_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "id,label,x\na,0,1\n", name="noid.csv")
    with pytest.raises(DataError, match=r"id column 'sample_id' not found; columns present: 'id'"):
        load_csv(path)


def test_missing_label_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "sample_id,target,x\na,0,1\n", name="nolabel.csv")
    with pytest.raises(DataError, match=r"label column 'label' not found.*'target'"):
        load_csv(path)


def test_non_numeric_feature_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "sample_id,label,x,color\na,0,1,red\nb,1,2,blue\n", name="c.csv")
    with pytest.raises(DataError, match=r"non-numeric: 'color' \(string\)"):
        load_csv(path)


def test_unknown_feature_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"feature columns \['nope'\] not found"):
        load_csv(write_csv(tmp_path), subject_column="subject", feature_columns=["nope"])


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "table.txt"
    path.write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'"):
        load_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="data file not found"):
        load_csv(tmp_path / "absent.csv")


def test_npz_missing_labels(tmp_path: Path) -> None:
    path = tmp_path / "nolabels.npz"
    np.savez(path, features=np.zeros((2, 2)), targets=np.array([0, 1]))
    with pytest.raises(DataError, match=r"missing arrays \['labels'\]; it holds"):
        load_npz(path)


def test_npz_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    ids = np.array(["a", 1], dtype=object)
    np.savez(path, features=np.zeros((2, 1)), labels=np.array([0, 1]), sample_ids=ids)
    with pytest.raises(DataError, match="Object arrays are refused"):
        load_npz(path)


def test_npy_is_not_npz(tmp_path: Path) -> None:
    path = tmp_path / "single.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(DataError, match="got a single array"):
        load_npz(path)


def test_unparseable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"broken\.parquet: could not read it as Parquet"):
        load_parquet(path)
