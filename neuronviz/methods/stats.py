"""Uncertainty for every rate and correlation the tool reports: one place, scipy's implementations.

Every rate (success, accuracy, DSR, restored, a share of images or of neuron × image pairs) is a
:class:`Rate`: ``k`` of ``n`` with a 95% Wilson interval (``scipy.stats.binomtest(k, n)
.proportion_ci(method="wilson")``). Every correlation is a :class:`Correlation`: the point value,
a bootstrap interval over the paired observations (``scipy.stats.bootstrap``, percentile) and a
permutation p (``scipy.stats.permutation_test``, the pairing shuffled). An attack's effect beside
its matched control is a :class:`Difference` (``paired_difference``): the mean per-unit difference
(per image, usually) with a bootstrap interval and a sign-flip permutation p. Many tests at once
(one per neuron) are corrected with ``scipy.stats.false_discovery_control`` (:func:`fdr`).

A statistic that is not defined for its data (no observations; constant ranks; fewer than three
pairs) is returned with ``value``/``share`` ``None`` and a ``reason``, never as 0 or ±1, and
:func:`mean_defined` leaves it out of averages. Nothing here is written by hand beyond the
bookkeeping: the statistics are scipy's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
#: Resamples for bootstrap intervals and permutation p-values: enough for a stable 95% interval on
#: the dashboard's small samples while staying well under a second.
RESAMPLES = 2000

NOT_DEFINED = "not defined"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%" if 0 < abs(value) < 0.1 else f"{100 * value:.0f}%"


@dataclass(frozen=True)
class Rate:
    """``k`` successes of ``n`` trials, the share and its 95% Wilson interval.

    ``share``, ``low`` and ``high`` are ``None`` (with ``reason``) when ``n == 0``.
    """

    k: int
    n: int
    share: float | None
    low: float | None
    high: float | None
    reason: str | None = None

    @property
    def defined(self) -> bool:
        return self.share is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"share": self.share, "low": self.low, "high": self.high, "n": self.n, "k": self.k}
        if self.reason:
            out["reason"] = self.reason
        return out

    def text(self, *, interval: bool = True) -> str:
        """``81% (95% CI 76–85%, n = 349)``; ``not defined (no images)`` when n is 0."""
        if self.share is None:
            return f"{NOT_DEFINED} ({self.reason})"
        if not interval:
            return f"{_pct(self.share)} (n = {self.n})"
        return f"{_pct(self.share)} (95% CI {_pct(self.low or 0.0)}–{_pct(self.high or 0.0)}, n = {self.n})"

    def __str__(self) -> str:
        return self.text()


def rate(k: int, n: int, confidence: float = CONFIDENCE, *, empty_reason: str = "no observations") -> Rate:
    """``k`` of ``n`` with its Wilson interval (scipy's ``binomtest(...).proportion_ci``)."""
    k, n = int(k), int(n)
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"a rate needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Rate(0, 0, None, None, None, empty_reason)
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Rate(k, n, k / n, float(ci.low), float(ci.high))


def rate_of(mask: Any, confidence: float = CONFIDENCE, *, empty_reason: str = "no observations") -> Rate:
    """The rate of ``True`` in a boolean array (any shape; every element is one trial)."""
    values = np.asarray(_numpy(mask), dtype=bool).ravel()
    return rate(int(values.sum()), int(values.size), confidence, empty_reason=empty_reason)


@dataclass(frozen=True)
class Correlation:
    """A rank correlation with its bootstrap interval and permutation p, or "not defined"."""

    method: str
    value: float | None
    low: float | None
    high: float | None
    p: float | None
    n: int
    reason: str | None = None
    #: why a defined correlation has no interval (e.g. resamples of few pairs with constant ranks)
    interval_reason: str | None = None

    @property
    def defined(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "value": self.value, "low": self.low, "high": self.high,
                               "p": self.p, "n": self.n}
        if self.reason:
            out["reason"] = self.reason
        if self.interval_reason:
            out["interval_reason"] = self.interval_reason
        return out

    def text(self) -> str:
        symbol = {"spearman": "ρ", "kendall": "τ"}.get(self.method, "r")
        if self.value is None:
            return f"{symbol} {NOT_DEFINED} ({self.reason})"
        bits = [f"{symbol} = {self.value:.2f}"]
        if self.low is not None and self.high is not None:
            bits.append(f"95% CI {self.low:.2f} … {self.high:.2f}")
        elif self.interval_reason:
            bits.append(f"95% CI {NOT_DEFINED} ({self.interval_reason})")
        if self.p is not None:
            bits.append(f"permutation p = {format_p(self.p)}")
        bits.append(f"n = {self.n}")
        return f"{bits[0]} ({', '.join(bits[1:])})"

    def __str__(self) -> str:
        return self.text()


def format_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def undefined_reason(a: Any, b: Any, *, minimum: int = 3) -> str | None:
    """Why a rank correlation of ``a`` and ``b`` is not defined, or None when it is."""
    x = np.asarray(_numpy(a), dtype=float).ravel()
    y = np.asarray(_numpy(b), dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired values need equal lengths, got {x.size} and {y.size}")
    if x.size < minimum:
        return f"{x.size} value{'s' if x.size != 1 else ''}; a rank correlation needs at least {minimum}"
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return "non-finite values"
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        which = "first" if np.ptp(x) == 0 else "second"
        return f"the {which} ranking is constant (all values equal)"
    if np.count_nonzero(x) <= 1 or np.count_nonzero(y) <= 1:
        return "at most one non-zero value: the ranks are ties but one"
    return None


def _rank_statistic(method: str):
    from scipy import stats

    if method == "spearman":
        return lambda x, y: stats.spearmanr(x, y).statistic
    if method == "kendall":
        return lambda x, y: stats.kendalltau(x, y).statistic
    raise ValueError(f"unknown correlation method {method!r}; use 'spearman' or 'kendall'")


def _spearman_along_last_axis(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's ρ of every resample at once (Pearson's r of average ranks along ``axis``): what
    ``scipy.stats.spearmanr`` computes for one pair of vectors, here for the whole batch of bootstrap or
    permutation resamples in one call (scipy's spearmanr takes no batch axis). A resample whose ranks are
    constant gives NaN, as spearmanr does."""
    from scipy import stats

    rx = stats.rankdata(x, axis=axis)
    ry = stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=axis) / np.sqrt((rx * rx).sum(axis=axis) * (ry * ry).sum(axis=axis))


def rank_correlation(a: Any, b: Any, method: str = "spearman") -> tuple[float | None, str | None]:
    """The point value alone (no resampling): ``(value, None)`` or ``(None, reason)``. For many
    small per-image correlations whose distribution is then summarised."""
    reason = undefined_reason(a, b)
    if reason:
        return None, reason
    value = float(_rank_statistic(method)(np.asarray(_numpy(a), float).ravel(), np.asarray(_numpy(b), float).ravel()))
    if not math.isfinite(value):
        return None, "the correlation is not finite for these values"
    return value, None


def correlation(
    a: Any, b: Any, method: str = "spearman", *, resamples: int = RESAMPLES, seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Correlation:
    """A rank correlation of paired values with a bootstrap interval (pairs resampled) and a
    permutation p (pairing shuffled, two-sided), or "not defined" with the reason."""
    x = np.asarray(_numpy(a), dtype=float).ravel()
    y = np.asarray(_numpy(b), dtype=float).ravel()
    value, reason = rank_correlation(x, y, method)
    if value is None:
        return Correlation(method, None, None, None, None, int(x.size), reason)
    from scipy import stats

    statistic, vectorized = (_spearman_along_last_axis, True) if method == "spearman" else (_rank_statistic(method), False)

    rng = np.random.default_rng(seed)
    low = high = None
    try:
        with warnings.catch_warnings():  # a resample with constant ranks: said in interval_reason instead
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            boot = stats.bootstrap((x, y), statistic, paired=True, vectorized=vectorized,
                                   n_resamples=resamples, confidence_level=confidence, method="percentile",
                                   random_state=rng)
        low, high = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
        if not (math.isfinite(low) and math.isfinite(high)):
            low = high = None
    except (ValueError, FloatingPointError):  # a resample with constant ranks everywhere
        low = high = None
    interval_reason = None if low is not None else (
        f"bootstrap resamples of the {x.size} pairs with constant ranks"
    )
    perm = stats.permutation_test((x, y), statistic, permutation_type="pairings",
                                  vectorized=vectorized, n_resamples=resamples, alternative="two-sided", random_state=rng)
    return Correlation(method, value, low, high, float(perm.pvalue), int(x.size), interval_reason=interval_reason)


@dataclass(frozen=True)
class Difference:
    """The mean of paired differences (attack − control, per unit such as an image) with its
    bootstrap interval and a sign-flip permutation p; ``None`` with a reason when undefined."""

    value: float | None
    low: float | None
    high: float | None
    p: float | None
    n: int
    reason: str | None = None

    @property
    def defined(self) -> bool:
        return self.value is not None

    @property
    def distinguishable(self) -> bool:
        """The interval excludes zero: the attack's effect can be told from the control's."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"difference": self.value, "low": self.low, "high": self.high, "p": self.p, "n": self.n}
        if self.reason:
            out["reason"] = self.reason
        return out

    def text(self, unit: str = "points") -> str:
        if self.value is None:
            return f"{NOT_DEFINED} ({self.reason})"
        scale = 100.0 if unit == "points" else 1.0
        fmt = "{:+.0f}" if unit == "points" else "{:+.3g}"
        inside = f"95% CI {fmt.format(scale * (self.low or 0))} … {fmt.format(scale * (self.high or 0))}" \
            if self.low is not None else "no interval"
        p = f", p = {format_p(self.p)}" if self.p is not None else ""
        return f"{fmt.format(scale * self.value)} {unit} ({inside}{p}, n = {self.n})"


def paired_difference(
    attack: Any, control: Any, *, resamples: int = RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE,
) -> Difference:
    """Mean of ``attack − control`` over paired units (rows), with a bootstrap interval and a
    two-sided sign-flip permutation p (``permutation_type="samples"``).

    Each argument is one value per unit, or a 2-D array (units × observations, e.g. images ×
    neurons) whose rows are averaged first, so the units (images) are resampled, not the
    correlated observations within one.
    """
    a = np.asarray(_numpy(attack), dtype=float)
    c = np.asarray(_numpy(control), dtype=float)
    if a.shape != c.shape:
        raise ValueError(f"attack and control need the same shape, got {a.shape} and {c.shape}")
    if a.ndim > 1:
        a = a.reshape(a.shape[0], -1).mean(axis=1)
        c = c.reshape(c.shape[0], -1).mean(axis=1)
    n = int(a.size)
    if n == 0:
        return Difference(None, None, None, None, 0, "no observations")
    diff = a - c
    value = float(diff.mean())
    if n < 2:
        return Difference(value, None, None, None, n, "one observation: no interval")
    if np.ptp(diff) == 0:
        # Every unit differs by the same amount: the interval is that point, the sign test exact.
        p = 1.0 if value == 0 else float(2.0 ** (1 - n))
        return Difference(value, value, value, min(1.0, p), n)
    from scipy import stats

    rng = np.random.default_rng(seed)
    boot = stats.bootstrap((diff,), np.mean, n_resamples=resamples, confidence_level=confidence,
                           method="percentile", random_state=rng)
    perm = stats.permutation_test((a, c), lambda x, y, axis=-1: np.mean(x - y, axis=axis), permutation_type="samples",
                                  vectorized=True, n_resamples=resamples, alternative="two-sided", random_state=rng)
    return Difference(value, float(boot.confidence_interval.low), float(boot.confidence_interval.high),
                      float(perm.pvalue), n)


def fdr(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (``scipy.stats.false_discovery_control``); NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        from scipy.stats import false_discovery_control

        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


def mean_defined(values: Iterable[float | None]) -> tuple[float | None, int, int]:
    """The mean of the defined values: ``(mean or None, defined count, left out count)``."""
    items = list(values)
    kept = [float(v) for v in items if v is not None and math.isfinite(float(v))]
    mean = float(np.mean(kept)) if kept else None
    return mean, len(kept), len(items) - len(kept)


def median_with_interval(
    values: Iterable[float | None], *, resamples: int = RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE,
    what: str = "values",
) -> dict[str, Any]:
    """The median of the defined values with a bootstrap interval: ``{"median", "low", "high", "n",
    "left_out"}``; ``median`` None and a ``reason`` when none is defined."""
    items = list(values)
    kept = np.array([float(v) for v in items if v is not None and math.isfinite(float(v))])
    out: dict[str, Any] = {"median": None, "low": None, "high": None, "n": int(kept.size),
                           "left_out": len(items) - int(kept.size)}
    if kept.size == 0:
        out["reason"] = f"no defined {what}"
        return out
    out["median"] = float(np.median(kept))
    if kept.size >= 2 and np.ptp(kept) > 0:
        from scipy import stats

        boot = stats.bootstrap((kept,), np.median, n_resamples=resamples, confidence_level=confidence,
                               method="percentile", random_state=np.random.default_rng(seed))
        out["low"], out["high"] = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    elif kept.size >= 1:
        out["low"] = out["high"] = out["median"] if np.ptp(kept) == 0 and kept.size >= 2 else None
    return out


def _numpy(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value
