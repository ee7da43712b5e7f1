"""Sample quality of a generator, measured in the feature space of a classifier trained on the same data.

One job per module:

- ``recipe``: the classifier recipe shared by the feature extractor and CAS;
- ``features``: the feature extractor (trained on the real training patients only) and its disk cache;
- ``distribution``: FID, KID, improved precision/recall, overall and per class;
- ``memorization``: the nearest training image of every sample, calibrated on held-out patients;
- ``cas``: classification accuracy score over several seeds, beside the real-trained classifier, on the
  validation patients;
- ``gate``: ``quality_gate`` (reject a generator whose CAS ratio or weakest class is too low), ``GateConfig`` and
  ``GateStopper`` (stop a generator's training once it passes);
- ``metrics``: the ``Metric`` contract and registry (``register_metric``, ``create_metric``, ``list_metrics``), one
  module per registered metric (fidelity, memorization, cas, ...);
- ``evaluate``: ``evaluate_generator``, the configured metrics for one generator or pool (quality.json);
- ``text``: the plain-text table ``synthaug evaluate`` prints;
- ``leakage``: the guard refusing a generator trained on other patients than the split's training patients;
- ``filter``: ``ClassifierFilter``, keeping synthetic images a real-trained classifier agrees with.
"""
from .cas import classification_accuracy_score, score_on, score_on_test, score_on_val
from .distribution import fidelity_metrics, frechet_distance, kernel_distance, nearest_neighbours, precision_recall
from .evaluate import evaluate_generator
from .features import (EXTRACTOR_META, FeatureExtractor, default_cache_dir, extractor_key, get_feature_extractor,
                       train_features, training_fingerprint)
from .filter import ClassifierFilter
from .gate import GateConfig, GateStopper, quality_gate
from .leakage import check_training_options, find_training_options
from .memorization import memorization_audit
from .metrics import DEFAULT_METRICS, Metric, MetricContext, create_metric, list_metrics, register_metric
from .recipe import DEFAULT_MODEL, DEFAULT_STEPS, classifier_recipe
from .text import format_report

__all__ = ["ClassifierFilter", "evaluate_generator", "format_report", "FeatureExtractor", "get_feature_extractor",
           "train_features", "training_fingerprint", "extractor_key", "default_cache_dir", "EXTRACTOR_META",
           "classifier_recipe", "DEFAULT_MODEL", "DEFAULT_STEPS", "frechet_distance", "kernel_distance",
           "precision_recall", "nearest_neighbours", "fidelity_metrics", "memorization_audit",
           "classification_accuracy_score", "score_on", "score_on_val", "score_on_test", "quality_gate", "GateConfig",
           "GateStopper", "check_training_options", "find_training_options", "Metric", "MetricContext",
           "register_metric", "create_metric", "list_metrics", "DEFAULT_METRICS"]
