"""Paired statistics for comparing two condensers run on the same class orders and network seeds.

Runs that share (seed, order, network index) share the class order, the network initialisations and the
training noise, so their final accuracies are paired: the difference per pair removes most of the variance
that comes from the order. The test is a paired t-test (scipy.stats.ttest_rel) and the interval is the
t interval of the mean difference. Pure functions on arrays, no records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

TEST_NAME = "paired t-test"


@dataclass(frozen=True)
class PairedDifference:
    """mean(a - b) with a confidence interval and a p-value; None where too few pairs make them undefined."""

    n: int
    mean: float | None
    std: float | None  # sample std (ddof=1) of the differences
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    confidence: float
    test: str = TEST_NAME


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """Compare `a[i]` with `b[i]` (same pair i): mean difference a - b, its t interval, two-sided p-value.

    With one pair there is no spread: the mean is given, the interval and p-value are None. When every
    difference is equal the spread is zero: the interval collapses to the mean and the p-value is None
    (the t statistic is undefined), rather than a misleading 0 or NaN.
    """
    from scipy import stats

    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired samples must be 1-D and of equal length, got {x.shape} and {y.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    d = x - y
    n = int(d.size)
    if n == 0:
        return PairedDifference(0, None, None, None, None, None, confidence)
    mean = float(d.mean())
    if n == 1:
        return PairedDifference(1, mean, None, None, None, None, confidence)
    std = float(d.std(ddof=1))
    if std == 0.0 or not math.isfinite(std):
        return PairedDifference(n, mean, 0.0, mean, mean, None, confidence)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * std / math.sqrt(n)
    p_value = float(stats.ttest_rel(x, y).pvalue)
    return PairedDifference(n, mean, std, mean - half, mean + half, p_value, confidence)
