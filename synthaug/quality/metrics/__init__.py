"""Metrics of sample quality, one module each, registered by name (``register_metric``, ``create_metric``,
``list_metrics``); ``evaluate_generator`` runs the ones it is given (by default ``DEFAULT_METRICS``).

- ``fidelity``: FID, KID, precision/recall, with real validation images as the reference scale;
- ``memorization``: the nearest training image of every sample, calibrated on validation patients;
- ``cas``: classification accuracy score on the validation patients (what the quality gate judges);

and any other metric registered below (not in the default set). docs/metrics.md ("Adding a metric") says how
to add one.
"""
from .base import (DEFAULT_METRICS, Column, Metric, MetricContext, TableColumn, create_metric, list_metrics,
                   metric_class, metric_options, metric_record, MetricOptions, option, register_metric,
                   reported_metrics)
# the order of these imports is the order of the report's columns and sections
from .fidelity import Fidelity
from .memorization import Memorization
from .cas import CAS
from .two_sample import TwoSample  # noqa: F401 - registers "two_sample"

__all__ = ["DEFAULT_METRICS", "Column", "Metric", "MetricContext", "TableColumn", "create_metric", "list_metrics",
           "metric_class", "metric_options", "metric_record", "MetricOptions", "option", "register_metric", "reported_metrics",
           "Fidelity", "Memorization", "CAS"]
