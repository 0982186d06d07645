"""Saliency datasets: folders of image/mask pairs, named datasets with splits, verification."""

from saliency.datasets.folder import PairFolder, open_pair_folder
from saliency.datasets.registry import DatasetSpec, data_root, get_spec, register_dataset, registered, resolve

__all__ = ["DatasetSpec", "PairFolder", "data_root", "get_spec", "open_pair_folder", "register_dataset",
           "registered", "resolve"]
