"""Generators behind one registry and one ``sample(n, labels)`` contract.

Where things live: ``base`` (the contract, the registry, checkpoints), ``options`` (one options
dataclass per generator), ``blocks`` (shared networks), ``losses``, one module per family (``vae``,
``joint_vae``, ``vae_gan``, ``gan``, ``infogan``, ``diffusion``) and ``training`` (the loop).
"""
from . import diffusion, gan, infogan, joint_vae, vae, vae_gan  # noqa: F401  (each module registers its generators)
from .base import (
    Generator,
    create_generator,
    describe_generator,
    generator_options,
    list_generators,
    load_generator,
    options_class,
    options_table,
    register_generator,
    to_uint8,
)
from .options import GeneratorOptions, option
from .optimizer_step import NonFiniteLossError, OptimizerStep
from .training import GeneratorTrainConfig, train_generator

__all__ = [
    "Generator", "create_generator", "describe_generator", "generator_options", "list_generators",
    "load_generator", "register_generator", "to_uint8", "GeneratorTrainConfig", "NonFiniteLossError",
    "train_generator", "OptimizerStep", "GeneratorOptions", "option", "options_class", "options_table",
]
