"""Statistics of benchmark samples: description, and whether two sets of samples differ.

    >>> describe([1.0e-3, 1.1e-3, 0.9e-3]).median
    0.001
    >>> s = significance("b", times_b, "a", times_a)      # b against the baseline a
    >>> s.ratio, s.p_value, s.significant, s.verdict

Design decisions:
- Statistics come from scipy and numpy, not hand-rolled code: scipy's tests are reviewed and
  tested by many more people than ours would be.
- The significance test is the **Mann-Whitney U test** (two-sided, ``scipy.stats.mannwhitneyu``).
  Benchmark timings are not normal: they are right-skewed with a floor, and another process on
  the machine adds rare long outliers. A rank test assumes neither normality nor equal
  variances, and one huge outlier moves a rank by one place where it would drag a t-test's
  mean (pyperf uses Student's t-test; with few noisy samples that test is easy to fool).
- The effect is the **ratio of medians** (subject / baseline), robust for the same reason, with a
  **seeded bootstrap percentile interval** (``scipy.stats.bootstrap``, independent samples,
  2,000 resamples): the same samples and seed always give the same interval.
- A difference is reported as significant only when the test says so (``p < alpha``) *and* the
  ratio is at least ``min_effect`` away from 1 (default 2%). A real but tiny shift (code
  alignment, a different address of an identical function) is statistically detectable with
  enough samples and practically meaningless; pyperf has the same guard (``--min-speed``).
- Each subject's own interval is the distribution-free confidence interval of its median
  (``scipy.stats.quantile_test(...).confidence_interval``): exact order statistics, no
  assumption about the distribution, no randomness. With too few samples for the requested
  confidence (fewer than 6 at 95%) it is ``None`` rather than a made-up number.
- scipy is imported on first use (importing ``scipy.stats`` takes ~0.9 s), so ``flowscope
  --help`` and programs that never compare stay fast.
"""

from __future__ import annotations

import math
import statistics as _stdlib_statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MANN_WHITNEY = "Mann-Whitney U (two-sided, scipy.stats.mannwhitneyu)"
RATIO_INTERVAL = "bootstrap percentile interval of the ratio of medians (scipy.stats.bootstrap, seeded)"
MEDIAN_INTERVAL = "distribution-free interval of the median (scipy.stats.quantile_test)"
BOOTSTRAP_RESAMPLES = 2_000


@dataclass(frozen=True)
class Description:
    """Descriptive statistics of one set of samples (same unit as the samples)."""

    n: int
    mean: float
    median: float
    stdev: float            # sample standard deviation (n - 1); 0 for a single sample
    minimum: float
    maximum: float
    p95: float              # linear interpolation between order statistics (numpy's default)
    ci_low: float | None    # confidence interval of the median, None with too few samples
    ci_high: float | None
    confidence: float


@dataclass(frozen=True)
class Significance:
    """Whether ``subject`` differs from ``baseline``, by how much, and how sure that is."""

    subject: str
    baseline: str
    ratio: float                 # median(subject) / median(baseline); < 1 means subject is faster
    ratio_ci_low: float | None
    ratio_ci_high: float | None
    p_value: float
    alpha: float
    min_effect: float
    significant: bool
    test: str
    verdict: str

    @property
    def faster(self) -> bool:
        """True when the subject takes less time than the baseline (significant or not)."""
        return self.ratio < 1.0

    @property
    def change_percent(self) -> float:
        """How much more time the subject takes, in percent (negative: it is faster)."""
        return (self.ratio - 1.0) * 100.0


def describe(samples: Sequence[float], confidence: float = 0.95) -> Description:
    """Descriptive statistics of ``samples`` (at least one)."""
    import numpy as np

    if not samples:
        raise ValueError("describe() needs at least one sample")
    values = np.asarray(samples, dtype=float)
    n = len(values)
    median = float(np.median(values))
    low, high = _median_interval(values, median, confidence)
    return Description(
        n=n, mean=float(values.mean()), median=median,
        stdev=float(values.std(ddof=1)) if n > 1 else 0.0,
        minimum=float(values.min()), maximum=float(values.max()),
        p95=float(np.percentile(values, 95)), ci_low=low, ci_high=high, confidence=confidence)


def _median_interval(values: Any, median: float, confidence: float) -> tuple[float | None, float | None]:
    from scipy import stats

    if len(values) < 2 or float(values.min()) == float(values.max()):
        return (median, median) if len(values) >= 2 else (None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interval = stats.quantile_test(values, q=median, p=0.5).confidence_interval(confidence)
    low, high = float(interval.low), float(interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None, None
    return low, high


def significance(subject: str, subject_samples: Sequence[float], baseline: str,
                 baseline_samples: Sequence[float], *, alpha: float = 0.05, min_effect: float = 0.02,
                 confidence: float = 0.95, seed: int = 0, subject_label: str | None = None,
                 baseline_label: str | None = None) -> Significance:
    """Compare two independent sets of timing samples (see the module docstring)."""
    import numpy as np
    from scipy import stats

    if len(subject_samples) < 2 or len(baseline_samples) < 2:
        raise ValueError("significance() needs at least two samples on each side")
    s = np.asarray(subject_samples, dtype=float)
    b = np.asarray(baseline_samples, dtype=float)
    base_median = float(np.median(b))
    ratio = float(np.median(s)) / base_median if base_median > 0 else math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # identical samples: scipy warns, and p is nan or 1
        p_value = float(stats.mannwhitneyu(s, b, alternative="two-sided").pvalue)
    if not math.isfinite(p_value):
        p_value = 1.0
    ci_low, ci_high = _ratio_interval(s, b, confidence, seed)
    significant = p_value < alpha and math.isfinite(ratio) and abs(ratio - 1.0) >= min_effect
    who = subject_label or subject
    against = baseline_label or baseline
    return Significance(
        subject=subject, baseline=baseline, ratio=ratio, ratio_ci_low=ci_low, ratio_ci_high=ci_high,
        p_value=p_value, alpha=alpha, min_effect=min_effect, significant=significant,
        test=MANN_WHITNEY,
        verdict=_verdict(who, against, ratio, ci_low, ci_high, p_value, alpha, min_effect, significant,
                         confidence))


def _ratio_interval(s: Any, b: Any, confidence: float, seed: int) -> tuple[float | None, float | None]:
    import numpy as np
    from scipy import stats

    if float(np.median(b)) <= 0:
        return None, None

    def ratio_of_medians(x: Any, y: Any, axis: int = -1) -> Any:
        return np.median(x, axis=axis) / np.median(y, axis=axis)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = stats.bootstrap((s, b), ratio_of_medians, vectorized=True, paired=False,
                                     n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
                                     method="percentile", rng=np.random.default_rng(seed))
        except (ValueError, ZeroDivisionError, FloatingPointError):
            return None, None
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None, None
    return low, high


def _verdict(subject: str, baseline: str, ratio: float, low: float | None, high: float | None,
             p_value: float, alpha: float, min_effect: float, significant: bool, confidence: float) -> str:
    interval = (f"{confidence:.0%} CI of the ratio {low:.3f}-{high:.3f}, " if low is not None and high is not None
                else "")
    evidence = f"{interval}Mann-Whitney U p={p_value:.2g}"
    if not significant:
        reason = (f"p >= {alpha:g}" if p_value >= alpha
                  else f"the difference is under the {min_effect:.0%} minimum effect")
        return (f"{subject} is not significantly different from {baseline} "
                f"(ratio {ratio:.3f}; {evidence}; {reason})")
    return f"{subject} is {describe_ratio(ratio)} than {baseline} ({evidence}: significant)"


def describe_ratio(ratio: float) -> str:
    """``1.25`` -> ``'25.0% slower'``, ``0.5`` -> ``'2.00x faster'``, ``0.88`` -> ``'12.0% faster'``."""
    if not math.isfinite(ratio):
        return "infinitely slower"
    if ratio >= 2.0:
        return f"{ratio:.2f}x slower"
    if ratio > 1.0:
        return f"{(ratio - 1.0) * 100:.1f}% slower"
    if ratio <= 0.5:
        return f"{1.0 / ratio:.2f}x faster" if ratio > 0 else "infinitely faster"
    if ratio < 1.0:
        return f"{(1.0 - ratio) * 100:.1f}% faster"
    return "exactly as fast"


def exact_percentile(samples: Sequence[float], percent: float) -> float:
    """The ``percent`` percentile of ``samples`` (numpy linear interpolation; 0.0 when empty)."""
    import numpy as np

    if not samples:
        return 0.0
    return float(np.percentile(np.asarray(samples, dtype=float), percent))


def median(samples: Sequence[float]) -> float:
    return float(_stdlib_statistics.median(samples)) if samples else 0.0
