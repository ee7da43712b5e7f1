"""Real data sets: NIH malaria, MedMNIST, any ImageFolder; split by patient (group)."""
from .core import ImageArrayDataset, Splits
from .datasets import load_dataset, malaria_patient_id, read_malaria_mapping, resolve_data_root
from .download import DownloadError, download_malaria
from .imageio import BadImageError, convert_channels, letterbox, resize_batch
from .splits import LeakageError, assert_disjoint_groups, split_by_group, subsample_groups

__all__ = [
    "ImageArrayDataset", "Splits", "load_dataset", "malaria_patient_id", "read_malaria_mapping",
    "resolve_data_root", "DownloadError", "download_malaria", "BadImageError", "convert_channels",
    "letterbox", "resize_batch", "LeakageError", "assert_disjoint_groups", "split_by_group",
    "subsample_groups",
]
