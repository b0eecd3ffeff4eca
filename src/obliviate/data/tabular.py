"""Loaders for the user's own files: CSV, Parquet and NPZ.

Every loader ends in :meth:`SampleSet.from_arrays`, so user files get the same validation as
the built-in datasets; errors are re-raised with the file's path so that a message about
"duplicate sample ids" says which file holds them.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.npyio import NpzFile

from obliviate.data.sample_set import SampleSet
from obliviate.errors import DataError, DatasetUnavailableError

__all__ = ["load_csv", "load_file", "load_npz", "load_parquet"]


@dataclass(frozen=True)
class _Columns:
    """A table reduced to numpy arrays, so validation never touches the untyped pyarrow API.

    Attributes:
        names: column names in file order.
        values: raw values of the id, label and subject columns (ids keep their text).
        numeric: float64 values of every numeric column (nulls as NaN).
        types: each column's type name, for error messages.
    """

    names: list[str]
    values: dict[str, npt.NDArray[Any]]
    numeric: dict[str, npt.NDArray[np.float64]]
    types: dict[str, str]


def _existing(path: str | Path) -> Path:
    source = Path(path).expanduser()
    if not source.is_file():
        raise DatasetUnavailableError(f"data file not found: {source}.")
    return source


def _row_ids(dataset: str, rows: int) -> npt.NDArray[np.str_]:
    """Ids for files without an id column: ``"<name>:<row>"``, stable only while unedited."""
    return np.array([f"{dataset}:{row}" for row in range(rows)], dtype=str)


def _columns_from_arrow(table: Any, keep_raw: set[str | None]) -> _Columns:
    """Converts a ``pyarrow.Table`` (untyped library, hence Any) into plain numpy columns.

    Only the ``keep_raw`` columns are kept in their own type; features are converted once,
    to float64, so a wide table is not held twice.
    """
    import pyarrow as pa

    names = [str(n) for n in table.column_names]
    values: dict[str, npt.NDArray[Any]] = {}
    numeric: dict[str, npt.NDArray[np.float64]] = {}
    types: dict[str, str] = {}
    for position, name in enumerate(names):
        column = table.column(position)
        kind = column.type
        types[name] = str(kind)
        if name in keep_raw:
            values[name] = np.asarray(column.to_numpy())
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            # Nulls become NaN here, which SampleSet then reports with their rows.
            numeric[name] = np.asarray(column.cast(pa.float64()).to_numpy(), dtype=np.float64)
    return _Columns(names=names, values=values, numeric=numeric, types=types)


def _build(
    columns: _Columns,
    source: Path,
    *,
    label_column: str,
    id_column: str | None,
    subject_column: str | None,
    feature_columns: Sequence[str] | None,
    num_classes: int | None,
    name: str | None,
) -> SampleSet:
    present = ", ".join(repr(c) for c in columns.names)
    for role, column in (("label", label_column), ("id", id_column), ("subject", subject_column)):
        if column is not None and column not in columns.types:
            hint = " Pass id_column=None to number rows instead." if role == "id" else ""
            raise DataError(
                f"{source}: {role} column {column!r} not found; columns present: {present}.{hint}"
            )
    reserved = {c for c in (label_column, id_column, subject_column) if c is not None}
    if feature_columns is None:
        features = [c for c in columns.names if c not in reserved]
    else:
        features = list(feature_columns)
        missing = [c for c in features if c not in columns.types]
        if missing:
            raise DataError(
                f"{source}: feature columns {missing} not found; columns present: {present}."
            )
    if not features:
        raise DataError(f"{source}: no feature columns; columns present: {present}.")
    non_numeric = [c for c in features if c not in columns.numeric]
    if non_numeric:
        detail = ", ".join(f"{c!r} ({columns.types[c]})" for c in non_numeric)
        raise DataError(
            f"{source}: feature columns must be numeric; non-numeric: {detail}. Encode them as "
            "numbers, or leave them out with feature_columns=[...]."
        )
    dataset = name or source.stem
    matrix = np.column_stack([columns.numeric[c] for c in features])
    rows = len(matrix)
    sample_ids = _row_ids(dataset, rows) if id_column is None else columns.values[id_column]
    subject_ids = None if subject_column is None else columns.values[subject_column]
    try:
        return SampleSet.from_arrays(
            features=matrix,
            labels=columns.values[label_column],
            sample_ids=sample_ids,
            subject_ids=subject_ids,
            num_classes=num_classes,
            name=dataset,
        )
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from exc


def load_csv(
    path: str | Path,
    *,
    label_column: str = "label",
    id_column: str | None = "sample_id",
    subject_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    num_classes: int | None = None,
    name: str | None = None,
) -> SampleSet:
    """Loads a CSV file with a header row; one row per sample.

    Id and subject columns are read as text, so ``"007"`` stays ``"007"``: deletion
    requests name samples by these ids, and a silently reformatted id would not match.

    Args:
        path: the CSV file (``.csv`` or ``.csv.gz``).
        label_column: integer class labels.
        id_column: unique, stable sample ids; ``None`` numbers rows as ``"<name>:<row>"``,
            which is only stable while the file is never edited.
        subject_column: the data subject of each row, if known.
        feature_columns: defaults to every column except the id, label and subject ones.
        num_classes: defaults to ``max(label) + 1``; pass it when some class may be absent.
        name: dataset name; defaults to the file name without suffix.

    Raises:
        DatasetUnavailableError: the file does not exist.
        DataError: unparseable file, missing columns, non-numeric features, NaN values,
            missing labels or duplicate ids; the message names the file.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    source = _existing(path)
    text = {c: pa.string() for c in (id_column, subject_column) if c is not None}
    try:
        table = pa_csv.read_csv(source, convert_options=pa_csv.ConvertOptions(column_types=text))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{source}: could not read it as CSV: {exc}") from None
    return _build(
        _columns_from_arrow(table, {label_column, id_column, subject_column}),
        source,
        label_column=label_column,
        id_column=id_column,
        subject_column=subject_column,
        feature_columns=feature_columns,
        num_classes=num_classes,
        name=name,
    )


def load_parquet(
    path: str | Path,
    *,
    label_column: str = "label",
    id_column: str | None = "sample_id",
    subject_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    num_classes: int | None = None,
    name: str | None = None,
) -> SampleSet:
    """Loads a Parquet file; the arguments mean what they mean for :func:`load_csv`.

    Raises:
        DatasetUnavailableError: the file does not exist.
        DataError: as for :func:`load_csv`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pa_parquet

    source = _existing(path)
    try:
        table = pa_parquet.read_table(source)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{source}: could not read it as Parquet: {exc}") from None
    return _build(
        _columns_from_arrow(table, {label_column, id_column, subject_column}),
        source,
        label_column=label_column,
        id_column=id_column,
        subject_column=subject_column,
        feature_columns=feature_columns,
        num_classes=num_classes,
        name=name,
    )


_NPZ_REQUIRED = ("features", "labels")
_NPZ_OPTIONAL = ("sample_ids", "subject_ids", "num_classes")


def load_npz(path: str | Path, *, name: str | None = None) -> SampleSet:
    """Loads a ``.npz`` archive written with :func:`numpy.savez`.

    Expected arrays: ``features`` (``(n, ...)``), ``labels`` (``(n,)``) and optionally
    ``sample_ids``, ``subject_ids`` (saved as fixed-width strings or integers) and a scalar
    ``num_classes``. Pickled object arrays are refused because loading them can run code.

    Raises:
        DatasetUnavailableError: the file does not exist.
        DataError: not an ``.npz``, arrays missing or invalid; the message names the file.
    """
    source = _existing(path)
    try:
        loaded = np.load(source, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{source}: could not read it as .npz: {exc}") from None
    if not isinstance(loaded, NpzFile):
        raise DataError(f"{source}: expected an .npz archive of named arrays; got a single array.")
    arrays: dict[str, npt.NDArray[Any]] = {}
    with loaded:
        keys = sorted(loaded.files)
        for key in (*_NPZ_REQUIRED, *_NPZ_OPTIONAL):
            if key not in keys:
                continue
            try:
                arrays[key] = np.asarray(loaded[key])
            except ValueError as exc:
                raise DataError(
                    f"{source}: array {key!r} could not be read ({exc}). Object arrays are "
                    "refused because they need pickle; save ids with np.asarray(ids, dtype=str)."
                ) from None
    missing = [key for key in _NPZ_REQUIRED if key not in arrays]
    if missing:
        raise DataError(
            f"{source}: missing arrays {missing}; it holds {keys}. Expected 'features', "
            "'labels' and optionally 'sample_ids', 'subject_ids', 'num_classes'."
        )
    num_classes = arrays.get("num_classes")
    if num_classes is not None and (num_classes.size != 1 or num_classes.dtype.kind not in "iu"):
        raise DataError(f"{source}: 'num_classes' must be a single integer; got {num_classes}.")
    dataset = name or source.stem
    rows = arrays["features"].shape[0] if arrays["features"].ndim else 0
    try:
        return SampleSet.from_arrays(
            features=arrays["features"],
            labels=arrays["labels"],
            sample_ids=arrays.get("sample_ids", _row_ids(dataset, rows)),
            subject_ids=arrays.get("subject_ids"),
            num_classes=None if num_classes is None else int(num_classes.reshape(())),
            name=dataset,
        )
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from exc


_BY_SUFFIX: dict[str, Callable[..., SampleSet]] = {
    ".csv": load_csv,
    ".csv.gz": load_csv,
    ".parquet": load_parquet,
    ".pq": load_parquet,
    ".npz": load_npz,
}


def load_file(path: str | Path, **options: Any) -> SampleSet:
    """Loads a CSV, Parquet or NPZ file, chosen by its suffix.

    Args:
        path: a ``.csv``, ``.csv.gz``, ``.parquet``, ``.pq`` or ``.npz`` file.
        **options: passed on to the chosen loader (their keyword sets differ, hence Any).

    Raises:
        DataError: the suffix is none of those.
    """
    source = Path(path)
    lowered = source.name.lower()
    for suffix, loader in sorted(_BY_SUFFIX.items(), key=lambda item: -len(item[0])):
        if lowered.endswith(suffix):
            return loader(source, **options)
    raise DataError(
        f"{source}: unsupported file type {source.suffix or '(no suffix)'!r}; supported: "
        f"{', '.join(_BY_SUFFIX)}."
    )
