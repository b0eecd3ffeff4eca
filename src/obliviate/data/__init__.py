"""Datasets: the validated :class:`SampleSet`, the catalogue of standard benchmarks, and
loaders for raw formats and the user's own files.

Typical use::

    from obliviate.data import load_dataset, load_file

    train = load_dataset("mnist", split="train")
    mine = load_file("customers.parquet", subject_column="customer_id")
"""

from __future__ import annotations

import obliviate.data.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from obliviate.data.backdoor import PoisonedData, add_trigger, attack_success_rate, poison
from obliviate.data.catalog import DATASETS, DatasetSpec, SplitSource, load_dataset
from obliviate.data.cifar import read_cifar_binary, read_cifar_python
from obliviate.data.download import RemoteFile
from obliviate.data.idx import read_idx
from obliviate.data.sample_set import SampleSet
from obliviate.data.svhn import read_svhn_mat
from obliviate.data.tabular import load_csv, load_file, load_npz, load_parquet

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "PoisonedData",
    "RemoteFile",
    "SampleSet",
    "SplitSource",
    "add_trigger",
    "attack_success_rate",
    "load_csv",
    "load_dataset",
    "load_file",
    "load_npz",
    "load_parquet",
    "poison",
    "read_cifar_binary",
    "read_cifar_python",
    "read_idx",
    "read_svhn_mat",
]
