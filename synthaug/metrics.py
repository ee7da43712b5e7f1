"""Where the sample-quality metrics used to live: they are in ``synthaug.quality`` now, one job per module.

This module re-exports the public names so that ``from synthaug.metrics import evaluate_generator`` keeps
working, with a DeprecationWarning, for one release: the extractor and its cache in ``quality.features``, FID/KID/precision/recall in
``quality.distribution``, the memorization audit in ``quality.memorization``, CAS in ``quality.cas``,
``evaluate_generator`` in ``quality.evaluate``, ``format_report`` in ``quality.text`` and the leakage guard
in ``quality.leakage``.
"""
from ._deprecated import warn_moved
from .quality.cas import classification_accuracy_score, score_on_test
from .quality.distribution import (fidelity_metrics, frechet_distance, kernel_distance, nearest_neighbours,
                                   precision_recall)
from .quality.evaluate import evaluate_generator
from .quality.features import (CACHE_FORMAT, EXTRACTOR_META, TRAIN_FEATURES, FeatureExtractor, default_cache_dir,
                               extractor_key, get_feature_extractor, train_features)
from .quality.leakage import check_training_options, find_training_options
from .quality.memorization import memorization_audit
from .quality.recipe import DEFAULT_MODEL, DEFAULT_STEPS, classifier_recipe
from .quality.text import format_report

__all__ = ["CACHE_FORMAT", "DEFAULT_MODEL", "DEFAULT_STEPS", "EXTRACTOR_META", "TRAIN_FEATURES", "classifier_recipe",
           "FeatureExtractor", "extractor_key", "default_cache_dir", "get_feature_extractor", "train_features",
           "frechet_distance", "kernel_distance", "nearest_neighbours", "precision_recall", "fidelity_metrics",
           "memorization_audit", "score_on_test", "classification_accuracy_score", "evaluate_generator",
           "format_report", "find_training_options", "check_training_options"]

warn_moved(__name__, "synthaug.quality")
