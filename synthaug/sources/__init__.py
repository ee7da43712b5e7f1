"""Sources of synthetic images from anywhere: synthaug generators, pools, folders of images, any callable,
a diffusers pipeline (``synthaug.diffusers_source``).

Every source keeps the generator contract (stylegan2-ada's ``G(z, c)``): ``num_classes``, ``channels``,
``image_size``, ``class_names`` and ``sample(n, labels=None, *, generator=None) -> uint8 (n, C, H, W)``, so
``SyntheticDataset``, ``SyntheticMix``, ``evaluate_generator`` (``synthaug evaluate --gate``) and the benchmark
take any of them the way they take a trained generator:

- ``FolderSource("exports/cvae")``: images in class folders, ``<folder>/<class name>/<image>`` (the layout
  ``synthaug export`` writes, and the ImageFolder layout medigan or diffusers users save); ``sample`` draws
  the folder's images of each requested class, the same ones for the same torch generator state.
- ``CallableSource(fn, classes=[...])``: any ``fn(n, labels) -> images`` (uint8 ``(n, C, H, W)``; float
  images in [0, 1], ``(n, H, W, C)`` arrays and lists of PIL images are converted).

A source is described in configs and on the command line by a spec, opened by ``open_source_spec``:
``{"folder": PATH}``, ``{"callable": "package.module:function"}``, ``{"diffusers": PATH}``,
``{"checkpoint": PATH}``, ``{"pool": PATH}`` (options beside the kind, e.g. ``{"folder": PATH,
"image_size": 32}``), the same as text ``folder:PATH``, or a bare path (a pool, a checkpoint or a class folder,
recognised by its files). A new kind is one function registered with ``@register_source("kind")``.

Class names are checked against the real data set's (``match_classes``): a folder or callable whose classes
are the real ones in another order is re-ordered; other names are refused with both lists.
"""
from __future__ import annotations

from .callable import CallableSource
from .contract import Source, class_order, is_checkpoint, match_classes, source_class_names
from .folder import FolderSource, is_class_folder
from .registry import SourceContext, list_sources, open_source, open_source_spec, register_source, source_kind

__all__ = ["Source", "FolderSource", "CallableSource", "DiffusersSource", "register_source", "list_sources",
           "open_source_spec", "open_source", "source_kind", "match_classes", "source_class_names", "class_order",
           "is_class_folder", "is_checkpoint", "SourceContext"]


def __getattr__(name: str):
    if name == "DiffusersSource":  # imported on first use: diffusers is an optional extra
        from .diffusion_pipeline import DiffusersSource

        return DiffusersSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
