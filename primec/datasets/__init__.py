"""Datasets primec ships for demos, calibration and tests."""

from primec.datasets.ndigits import SPLITS, load_split, make_ndigits, save_npz, split_indices

__all__ = ["SPLITS", "load_split", "make_ndigits", "save_npz", "split_indices"]
