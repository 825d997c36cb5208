"""Statistics of an experiment's results, from per-variation aggregates (sans-IO).

Every method works on sufficient statistics (users, sum, sum of squares; for CUPED also
the pre-exposure covariate's sums and the cross products), so the warehouse aggregates
in SQL and nothing per user reaches Python. Definitions follow GrowthBook's stats engine
(``gbstats``) for the methods both have, and a test compares the two on the same inputs:

* **Frequentist**: Welch's two-sided t-test on the *relative* lift
  ``(μ_b − μ_a) / μ_a`` with its variance by the delta method,
  ``σ²_b / (μ_a² n_b) + σ²_a μ_b² / (μ_a⁴ n_a)``, Welch–Satterthwaite degrees of freedom;
  proportions use ``σ² = p(1 − p)`` (so this is the two-proportion test, t-distributed).
* **Sequential** (valid under peeking): the asymptotic confidence sequence of
  Waudby-Smith et al. (2023), eq. 9, with tuning ``N*`` (expected sample size), and its
  always-valid p-value (eq. 155).
* **Bayesian**: the lift's posterior is normal around the same estimate and variance
  (flat prior): chance to beat control ``P(lift > 0)`` and the credible interval.
* **CUPED**: each user's value is adjusted by ``θ · (x − x̄)`` with ``x`` the same
  metric in the days before first exposure and ``θ = cov(y, x) / var(x)`` pooled over
  control and the variation; variance shrinks by the share ``x`` explains.
* **Sample-ratio mismatch**: Pearson's χ² of the users per variation against the
  configured weights; flagged below p = 0.001.

Several variations and metrics: each variation is compared with the control on each
metric; the p-values of the goal metrics across all (variation, metric) pairs are
also given Holm-adjusted (familywise error at α); guardrails are tested the same way,
unadjusted, flagged as harm when significantly lower, and never pick a winner.

scipy.special provides the t, normal and χ² distributions (only that module, and only
when results are computed: the storage layer imports :class:`Aggregate` alone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Below this SRM p-value the split is flagged as broken (GrowthBook's default).
SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class Aggregate:
    """One variation's sufficient statistics for one metric. ``proportion``: every
    value is 0 or 1 (then ``sum_squares`` is ``total``). ``pre_*`` and ``cross`` are
    the pre-exposure covariate's sums and Σ y·x, for CUPED (zero without it)."""

    users: int
    total: float
    sum_squares: float
    proportion: bool = False
    pre_total: float = 0.0
    pre_sum_squares: float = 0.0
    cross: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.users if self.users else 0.0

    @property
    def variance(self) -> float:
        if self.proportion:
            return self.mean * (1.0 - self.mean)
        return _sample_variance(self.users, self.total, self.sum_squares)

    @property
    def pre_mean(self) -> float:
        return self.pre_total / self.users if self.users else 0.0

    @property
    def pre_variance(self) -> float:
        if self.proportion:
            return self.pre_mean * (1.0 - self.pre_mean)
        return _sample_variance(self.users, self.pre_total, self.pre_sum_squares)

    @property
    def covariance(self) -> float:
        if self.users <= 1:
            return 0.0
        return (self.cross - self.total * self.pre_total / self.users) / (self.users - 1)


def _sample_variance(n: int, total: float, squares: float) -> float:
    return (squares - total * total / n) / (n - 1) if n > 1 else 0.0


@dataclass(frozen=True)
class Comparison:
    """A variation against the control on one metric (relative lift)."""

    lift: float
    stddev: float
    ci: tuple[float, float]
    p_value: float
    chance_to_win: float
    credible: tuple[float, float]
    dof: float
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "lift": self.lift,
            "stddev": self.stddev,
            "ci": list(self.ci),
            "p_value": self.p_value,
            "chance_to_win": self.chance_to_win,
            "credible_interval": list(self.credible),
            "dof": self.dof,
            **({"error": self.error} if self.error else {}),
        }


def _empty(error: str) -> Comparison:
    return Comparison(0.0, 0.0, (0.0, 0.0), 1.0, 0.5, (0.0, 0.0), 0.0, error)


def compare(
    control: Aggregate, variation: Aggregate, alpha: float = 0.05, sequential_n: float = 0.0, cuped: bool = False
) -> Comparison:
    """Relative lift of ``variation`` over ``control``: frequentist (fixed-horizon
    Welch, or a confidence sequence when ``sequential_n`` > 0) and Bayesian."""
    from scipy import special

    if control.users < 2 or variation.users < 2:
        return _empty("too few users in a variation")
    mean_a, mean_b = control.mean, variation.mean
    var_a, var_b = control.variance, variation.variance
    if cuped:
        theta = _theta(control, variation)
        mean_a -= theta * control.pre_mean
        mean_b -= theta * variation.pre_mean
        var_a = _adjusted_variance(control, theta)
        var_b = _adjusted_variance(variation, theta)
    if control.mean == 0 or mean_a == 0:
        return _empty("the control's mean is zero: no relative lift")
    if var_a <= 0 or var_b <= 0:
        return _empty("zero variance in a variation")
    lift = (mean_b - mean_a) / control.mean
    variance = var_b / (control.mean**2 * variation.users) + var_a * variation.mean**2 / (control.mean**4 * control.users)
    stddev = math.sqrt(variance)
    dof = (var_b / variation.users + var_a / control.users) ** 2 / (
        var_b**2 / (variation.users**2 * (variation.users - 1)) + var_a**2 / (control.users**2 * (control.users - 1))
    )
    if sequential_n > 0:
        ci, p_value = _sequential(lift, variance, control.users + variation.users, alpha, sequential_n)
    else:
        width = float(special.stdtrit(dof, 1 - alpha / 2)) * stddev
        ci = (lift - width, lift + width)
        p_value = float(2 * (1 - special.stdtr(dof, abs(lift) / stddev)))
    z = float(special.ndtri(1 - alpha / 2))
    chance = float(special.ndtr(lift / stddev))
    return Comparison(lift, stddev, ci, p_value, chance, (lift - z * stddev, lift + z * stddev), dof)


def _theta(a: Aggregate, b: Aggregate) -> float:
    """CUPED's θ over control and variation pooled (as gbstats' ``compute_theta``)."""
    joint = Aggregate(
        a.users + b.users,
        a.total + b.total,
        a.sum_squares + b.sum_squares,
        a.proportion,
        a.pre_total + b.pre_total,
        a.pre_sum_squares + b.pre_sum_squares,
        a.cross + b.cross,
    )
    if joint.pre_variance == 0 or joint.variance == 0:
        return 0.0
    return joint.covariance / joint.pre_variance


def _adjusted_variance(a: Aggregate, theta: float) -> float:
    return a.variance + theta**2 * a.pre_variance - 2 * theta * a.covariance


def _sequential(lift: float, variance: float, n: int, alpha: float, tuning: float) -> tuple[tuple[float, float], float]:
    """Waudby-Smith et al. (2023): confidence sequence (eq. 9) and p-value (eq. 155)."""
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    s2 = variance * n
    width = math.sqrt(s2) * math.sqrt(2 * (n * rho**2 + 1) * math.log(math.sqrt(n * rho**2 + 1) / alpha) / (n * rho) ** 2)
    st2 = lift**2 * n / variance
    tr2p1 = n * rho**2 + 1
    log_evalue = rho**2 * st2 / (2 * tr2p1) - 0.5 * math.log(tr2p1)  # in logs: huge evidence overflows exp
    return (lift - width, lift + width), min(math.exp(-log_evalue), 1.0)


def srm_p_value(users: Sequence[int], weights: Sequence[float]) -> float:
    """Pearson χ² test of the observed split against ``weights`` (1 when nobody yet)."""
    from scipy import special

    total = sum(users)
    if not total:
        return 1.0
    weight = sum(weights)
    x = 0.0
    for observed, w in zip(users, weights, strict=True):
        if w <= 0:
            continue
        expected = w / weight * total
        x += (observed - expected) ** 2 / expected
    return float(special.chdtrc(len(users) - 1, x))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    m = len(p_values)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
