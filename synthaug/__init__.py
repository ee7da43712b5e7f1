"""synthaug: synthetic data augmentation for medical image classification."""
__version__ = "0.1.0"

from .data import load_dataset  # noqa: E402
from .generators import create_generator, list_generators, load_generator, register_generator  # noqa: E402
from .pool import SyntheticPool, load_pool  # noqa: E402
from .quality import ClassifierFilter  # noqa: E402
from .synthetic import ClassQuotas, SyntheticDataset  # noqa: E402
from .transforms import SyntheticMix  # noqa: E402  (imported eagerly: A.load finds it only once registered)

__all__ = ["__version__", "load_dataset", "create_generator", "list_generators", "load_generator",
           "register_generator", "SyntheticDataset", "ClassQuotas", "SyntheticPool", "load_pool",
           "ClassifierFilter", "SyntheticMix"]
