"""Strategies: the ways of using synthetic images in a classifier's training, each with its real-only control,
behind one registry (``register_strategy``, ``list_strategies``, ``create_strategy``). ``base`` says what a
strategy is, ``builtin`` and ``mixup`` hold synthaug's own, ``targets`` the soft-target items they train on."""
from . import builtin, mixup  # noqa: F401  (registers the built-in strategies)
from .base import (ArmContext, Draws, Param, Strategy, create_strategy, list_controls, list_strategies,
                   register_strategy, strategy_of_control, unregister_strategy)
from .targets import TargetItems, images_of, labels_of

__all__ = ["Strategy", "Draws", "Param", "ArmContext", "register_strategy", "unregister_strategy", "list_strategies", "list_controls",
           "create_strategy", "strategy_of_control", "TargetItems", "images_of", "labels_of"]
