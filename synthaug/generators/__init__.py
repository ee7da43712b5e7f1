"""Generators behind one registry and one ``sample(n, labels)`` contract."""
from . import diffusion, gan, vae, vae_zoo  # noqa: F401  (each module registers its generators)
from .base import (
    Generator,
    create_generator,
    describe_generator,
    generator_options,
    list_generators,
    load_generator,
    register_generator,
    to_uint8,
)
from .training import GeneratorTrainConfig, NonFiniteLossError, OptimizerStep, train_generator

__all__ = [
    "Generator", "create_generator", "describe_generator", "generator_options", "list_generators",
    "load_generator", "register_generator", "to_uint8", "GeneratorTrainConfig", "NonFiniteLossError",
    "train_generator", "OptimizerStep",
]
