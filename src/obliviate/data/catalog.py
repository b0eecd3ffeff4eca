"""The dataset catalogue: which files each named dataset needs, where to find them, and how
they become a :class:`~obliviate.data.sample_set.SampleSet`.

Every built-in dataset is a :class:`DatasetSpec` in :data:`DATASETS`. A spec lists, per
split, one or more :class:`SplitSource` alternatives (say, CIFAR-10's binary archive, its
python archive, or either one already extracted); the first one whose files are all on
disk wins, and only when none is does :func:`load_dataset` download the preferred one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from obliviate.data.download import RemoteFile, download_file, verify_file
from obliviate.data.sample_set import SampleSet
from obliviate.errors import (
    ChecksumError,
    ConfigError,
    DataError,
    DatasetUnavailableError,
    UnknownNameError,
)
from obliviate.registry import Registry

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DatasetSpec",
    "SplitReader",
    "SplitSource",
    "data_root",
    "load_dataset",
]

DATA_DIR_ENV = "OBLIVIATE_DATA_DIR"

# A reader gets the paths of its source's files, in order, and returns raw features of shape
# (N, C, H, W) in [0, pixel_max] (uint8 for images, hence Any as the element type) and
# int64 labels of shape (N,).
SplitReader = Callable[[Sequence[Path]], tuple[npt.NDArray[Any], npt.NDArray[np.int64]]]


def data_root(data_dir: str | Path | None = None) -> Path:
    """The folder holding one subfolder per dataset.

    Resolution order: the ``data_dir`` argument, then the ``OBLIVIATE_DATA_DIR``
    environment variable, then ``~/.cache/obliviate/data``. An explicit argument wins so a
    test or script is never surprised by the environment.
    """
    if data_dir is not None and str(data_dir):
        return Path(data_dir).expanduser()
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "obliviate" / "data"


@dataclass(frozen=True)
class SplitSource:
    """One way to obtain a split: the files it needs and the function that reads them.

    Attributes:
        files: files relative to the dataset folder; an empty tuple means the data ships
            with a Python package and needs no files.
        read: turns the files' paths (in ``files`` order) into raw features and labels.
        description: a few words for error messages, e.g. ``"binary archive"``.
    """

    files: tuple[RemoteFile, ...]
    read: SplitReader
    description: str = ""

    @property
    def downloadable(self) -> bool:
        """Whether every file has at least one URL, so the split can be fetched unattended."""
        return bool(self.files) and all(remote.urls for remote in self.files)


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """A named dataset: its classes, splits, file sources and pixel range.

    Attributes:
        name: catalogue name and dataset folder name, e.g. ``"fashion_mnist"``.
        num_classes: fixed by the dataset, never inferred from the labels present.
        splits: split name to its alternative sources, preferred (downloadable) one first.
        pixel_max: the format's maximum raw value; features are ``raw / pixel_max`` so that
            scaling never depends on statistics of the data loaded.
        folder_aliases: other accepted folder names, e.g. ``"fashion-mnist"``.
        description: one line for humans.
    """

    name: str
    num_classes: int
    splits: Mapping[str, tuple[SplitSource, ...]]
    pixel_max: float = 255.0
    folder_aliases: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        empty = [split for split, sources in self.splits.items() if not sources]
        if not self.splits or empty:
            raise ConfigError(f"dataset {self.name!r} needs at least one source per split.")
        if self.num_classes < 1 or self.pixel_max <= 0:
            raise ConfigError(
                f"dataset {self.name!r}: num_classes and pixel_max must be positive; got "
                f"{self.num_classes} and {self.pixel_max}."
            )

    @property
    def split_names(self) -> tuple[str, ...]:
        """The splits this dataset publishes, in catalogue order."""
        return tuple(self.splits)

    def sources(self, split: str) -> tuple[SplitSource, ...]:
        """The alternative sources of ``split``, preferred first.

        Raises:
            UnknownNameError: the dataset has no such split; the message lists its splits.
        """
        try:
            return self.splits[split]
        except KeyError:
            raise UnknownNameError(
                f"dataset {self.name!r} has no split {split!r}; its splits are: "
                f"{', '.join(self.splits)}."
            ) from None

    def files(self, split: str) -> tuple[RemoteFile, ...]:
        """The files of the preferred source of ``split`` (what a download fetches)."""
        return self.sources(split)[0].files

    def folders(self, root: Path) -> tuple[Path, ...]:
        """Candidate dataset folders under ``root``, canonical name first."""
        return tuple(root / folder for folder in (self.name, *self.folder_aliases))

    def load(
        self, *, split: str = "train", data_dir: str | Path | None = None, download: bool = True
    ) -> SampleSet:
        """Loads ``split``; see :func:`load_dataset` for the contract."""
        sources = self.sources(split)
        root = data_root(data_dir)
        found = self._locate(sources, root)
        source, folder = found if found is not None else self._fetch(split, sources, root, download)
        paths = [folder / remote.filename for remote in source.files]
        for remote, path in zip(source.files, paths, strict=True):
            verify_file(path, remote)
        raw, labels = source.read(paths)
        return self._to_sample_set(raw, labels, split)

    def _locate(
        self, sources: Sequence[SplitSource], root: Path
    ) -> tuple[SplitSource, Path] | None:
        for folder in self.folders(root):
            for source in sources:
                if all((folder / remote.filename).is_file() for remote in source.files):
                    return source, folder
        return None

    def _fetch(
        self, split: str, sources: Sequence[SplitSource], root: Path, download: bool
    ) -> tuple[SplitSource, Path]:
        folder = next((f for f in self.folders(root) if f.is_dir()), root / self.name)
        source = next((s for s in sources if s.downloadable), sources[0])
        if not download:
            reason = "its files are not on disk and download=False"
            raise self._unavailable(split, sources, source, folder, root, reason)
        if not source.downloadable:
            reason = "its files are not on disk and have no public download URL"
            raise self._unavailable(split, sources, source, folder, root, reason)
        created = not folder.exists()
        try:
            for remote in source.files:
                if not (folder / remote.filename).is_file():
                    download_file(remote, folder)
        except OSError as exc:  # includes DatasetUnavailableError and permission errors
            _remove_if_empty(folder, created)
            reason = f"downloading failed ({exc})"
            raise self._unavailable(split, sources, source, folder, root, reason) from exc
        except ChecksumError:
            _remove_if_empty(folder, created)
            raise
        return source, folder

    def _unavailable(
        self,
        split: str,
        sources: Sequence[SplitSource],
        chosen: SplitSource,
        folder: Path,
        root: Path,
        reason: str,
    ) -> DatasetUnavailableError:
        files = ", ".join(remote.filename for remote in chosen.files)
        urls = ", ".join(remote.urls[0] for remote in chosen.files if remote.urls)
        where = f" (download them from {urls})" if urls else ""
        others = [
            f"{s.description or 'files'}: {', '.join(r.filename for r in s.files)}"
            for s in sources
            if s is not chosen
        ]
        alternative = f" Instead of those you may provide {'; or '.join(others)}." if others else ""
        names = " or ".join(repr(f.name) for f in self.folders(root))
        return DatasetUnavailableError(
            f"dataset {self.name!r} (split {split!r}) is not available: {reason}. "
            f"Put these files in {folder}: {files}{where}.{alternative} To use another "
            f"folder, pass data_dir= or set {DATA_DIR_ENV} to a folder that holds a {names} "
            f"subfolder (searched: {root})."
        )

    def _to_sample_set(
        self, raw: npt.NDArray[Any], labels: npt.NDArray[np.int64], split: str
    ) -> SampleSet:
        context = f"dataset {self.name!r} split {split!r}"
        if raw.ndim != 4 or len(raw) != len(labels):
            raise DataError(
                f"{context}: expected images (N, C, H, W) and N labels; got shapes "
                f"{raw.shape} and {labels.shape}."
            )
        if not (raw.dtype == np.uint8 and self.pixel_max >= 255):
            low, high = float(raw.min()), float(raw.max())
            if low < 0 or high > self.pixel_max:
                raise DataError(
                    f"{context}: raw values must lie in [0, {self.pixel_max}]; got [{low}, {high}]."
                )
        features = raw.astype(np.float32)
        np.divide(features, np.float32(self.pixel_max), out=features)
        ids = np.array([f"{self.name}:{split}:{row}" for row in range(len(labels))])
        try:
            return SampleSet.from_arrays(
                features=features,
                labels=labels,
                sample_ids=ids,
                subject_ids=None,
                num_classes=self.num_classes,
                name=self.name,
            )
        except DataError as exc:
            raise DataError(f"{context}: {exc}") from exc


def _remove_if_empty(folder: Path, created: bool) -> None:
    """Removes a dataset folder this load created, so a failed download leaves no trace."""
    if created:
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: an earlier file of the split downloaded fine and is kept


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def load_dataset(
    name: str,
    *,
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
) -> SampleSet:
    """Loads a catalogued dataset split as a validated SampleSet.

    Features are float32 in [0, 1] (raw value / format maximum, never data statistics),
    images shaped ``(N, C, H, W)``; labels are int64; sample ids are
    ``f"{name}:{split}:{row}"`` with ``row`` the position in the official file order, so the
    same sample has the same id on every machine; subject ids are ``None``.

    Files are looked up in ``<root>/<name>/`` (or an accepted alias such as
    ``fashion-mnist``), where ``root`` is ``data_dir``, else ``$OBLIVIATE_DATA_DIR``, else
    ``~/.cache/obliviate/data``. Files with a published digest are verified on every load
    (once per process).

    Args:
        name: a name in :data:`DATASETS`, e.g. ``"mnist"``.
        split: ``"train"`` or ``"test"`` (see ``DATASETS.get(name).split_names``).
        data_dir: overrides the data root.
        download: fetch missing files from their canonical URLs.

    Raises:
        UnknownNameError: unknown dataset or split; the message lists the known ones.
        DatasetUnavailableError: files missing and not downloadable; the message names the
            files and the folder to put them in.
        ChecksumError: a file does not have its published digest.
        DataError: a file is malformed.
    """
    return DATASETS.get(name).load(split=split, data_dir=data_dir, download=download)
