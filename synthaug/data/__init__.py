"""Real data sets: NIH malaria, MedMNIST, any ImageFolder; split by patient (group)."""
from .core import ImageArrayDataset, Splits
from .design import PatientDesign, assign_roles, draw_site
from .datasets import check_trainable, dataset_short_name, load_dataset, resolve_data_root
from .download import DownloadError, download_malaria
from .folders import UngroupedWarning
from .imageio import BadImageError, convert_channels, letterbox, resize_batch
from .malaria import malaria_group_id, malaria_patient_id, read_malaria_mapping
from .splits import LeakageError, assert_disjoint_groups, split_by_group, subsample_groups

__all__ = [
    "ImageArrayDataset", "Splits", "load_dataset", "dataset_short_name", "check_trainable", "UngroupedWarning",
    "malaria_patient_id", "malaria_group_id", "read_malaria_mapping", "resolve_data_root", "DownloadError",
    "download_malaria", "BadImageError", "convert_channels", "letterbox", "resize_batch", "LeakageError",
    "assert_disjoint_groups", "split_by_group", "subsample_groups", "PatientDesign", "assign_roles", "draw_site",
]
