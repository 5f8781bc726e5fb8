"""The sequential charts and the exact no-drift calibration, against independent references.

The CUSUM path is checked against a plain loop of its definition, its run
lengths against Monte Carlo, and the count statistics' thresholds against
the rate at which they really fire on windows drawn from the population the
reference was sampled from (rare classes included).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from gangplank._drift import count_null
from gangplank._drift.accuracy_charts import AccuracyCharts, drops
from gangplank._drift.drift_statistics import chi_square_p_value, psi
from gangplank._drift.sequential import Cusum, CusumDesign, average_run_length, design, estimation_margin


def loop_cusum(design: CusumDesign, outcomes) -> tuple[list[float], list[bool]]:
    """The chart by its definition, one outcome at a time: statistic and alarm after each."""
    s = r = 0.0
    alarm = False
    statistics, alarms = [], []
    for success in outcomes:
        step = (
            np.log(design.out_of_control / design.in_control)
            if success
            else np.log((1 - design.out_of_control) / (1 - design.in_control))
        )
        s = max(0.0, s + step)
        if alarm:
            r = max(0.0, r - step)
            if r >= design.threshold:
                s = r = 0.0
                alarm = False
        elif s >= design.threshold:
            alarm, r = True, 0.0
        statistics.append(max(s, design.threshold) if alarm else s)
        alarms.append(alarm)
    return statistics, alarms


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_the_chart_follows_its_definition_through_alarm_and_recovery(chunk):
    rng = np.random.default_rng(3)
    d = CusumDesign(0.95, 0.85, 4.0)
    # in control, then a drop (alarm), then back in control (recovery), then a drop again
    outcomes = np.concatenate([rng.random(n) < p for n, p in [(400, 0.95), (200, 0.80), (1500, 0.97), (200, 0.70)]])
    expected, alarms = loop_cusum(d, outcomes)
    chart = Cusum(d)
    for start in range(0, outcomes.size, chunk):
        piece = outcomes[start : start + chunk]
        chart.update(piece)
        end = start + piece.size - 1
        assert chart.reported == pytest.approx(expected[end], abs=1e-9)
        assert chart.alarm == alarms[end]
    episodes = int(np.sum(np.diff(np.concatenate([[False], alarms]).astype(int)) == 1))
    assert chart.alarms == episodes == 2
    assert chart.outcomes == outcomes.size


def simulated_run_lengths(d: CusumDesign, rate: float, chains: int = 20_000, seed: int = 0) -> np.ndarray:
    """Outcomes until the first signal of ``chains`` independent charts, by the chart's definition."""
    rng = np.random.default_rng(seed)
    s, first = np.zeros(chains), np.full(chains, -1)
    t = 0
    while (first < 0).any():
        t += 1
        s = np.maximum(0.0, s + np.where(rng.random(chains) < rate, d.success_step, d.failure_step))
        hit = (s >= d.threshold) & (first < 0)
        first[hit] = t
    return first


def test_run_lengths_of_the_chain_match_monte_carlo():
    d = CusumDesign(0.9, 0.8, 2.5)
    first = simulated_run_lengths(d, 0.9)
    simulated, error = first.mean(), first.std() / np.sqrt(first.size)
    assert abs(d.average_run_length(0.9) - simulated) < 4 * error


def test_a_coarse_grid_never_overstates_the_run_length(monkeypatch):
    """The grid's statistic dominates the chart's: its run length is a lower bound (checked by Monte Carlo)."""
    d = CusumDesign(0.9, 0.8, 2.5)
    monkeypatch.setattr("gangplank._drift.sequential.MAX_STATES", 40)  # a deliberately coarse grid
    coarse = d.average_run_length(0.9)
    first = simulated_run_lengths(d, 0.9, seed=1)
    assert coarse <= first.mean() + 3 * first.std() / np.sqrt(first.size)
    assert coarse < 0.9 * first.mean()  # and coarse enough that the bound is not trivially tight


def test_design_meets_its_budget_and_no_lower_threshold_would():
    d = design(0.945, drop=0.02, budget=5e6)
    assert (d.in_control, d.out_of_control) == (0.94, 0.925)
    assert d.average_run_length(d.in_control) >= 5e6
    lower = CusumDesign(d.in_control, d.out_of_control, d.threshold - 0.05)
    assert lower.average_run_length(d.in_control) < 5e6
    # a model at its reference accuracy runs far longer; one at the rate to detect, far shorter
    assert d.average_run_length(0.945) > 10 * 5e6
    assert d.average_run_length(0.925) < 1e4


def test_a_drop_inside_the_margin_is_refused():
    with pytest.raises(ValueError, match="margin"):
        design(0.9, drop=0.004, budget=1e6)
    assert estimation_margin(0.9, 100) == pytest.approx(2 * np.sqrt(0.09 / 100))
    assert estimation_margin(0.9, 10**7) == 0.005


def test_the_run_length_is_exact_for_a_hand_made_chain():
    # steps -1 (success, p) and +1 (failure), absorbing at 2: from 0, L0 = 1 + p L0 + q L1, L1 = 1 + p L0
    p = 0.7
    length = average_run_length(np.log(0.5), -np.log(0.5), 2 * -np.log(0.5), p)
    q = 1 - p
    assert length == pytest.approx((1 + q) / (1 - p - q * p))


def test_charts_exist_for_what_the_reference_knows():
    both = AccuracyCharts.of(
        0.95, 5000, tolerance=0.02, labels_per_month=1e6, shadow_agreement=0.97, shadow_rows=5000, shadow_per_month=1e6
    )
    assert sorted(both.charts) == [("labels", "large"), ("labels", "small"), ("shadow", "large"), ("shadow", "small")]
    assert drops(0.02) == {"small": 0.02, "large": 0.05}
    no_labels = AccuracyCharts.of(float("nan"), 0, tolerance=0.02, labels_per_month=1e6)
    assert no_labels.charts == {}
    # four charts share one false-alarm budget: each runs at least four months' outcomes
    for chart in both.charts.values():
        assert chart.design.average_run_length(chart.design.in_control) >= 4e6


def test_labels_and_agreement_feed_only_their_own_charts():
    charts = AccuracyCharts.of(
        0.95, 5000, tolerance=0.02, labels_per_month=1e6, shadow_agreement=0.97, shadow_rows=5000, shadow_per_month=1e6
    )
    charts.add("shadow", np.zeros(200, dtype=bool))
    states = charts.states()
    assert states[("shadow", "large")].alarms == 1 and states[("labels", "large")].alarms == 0
    assert states[("labels", "small")].statistic == 0.0


# -- exact calibration of the count statistics --------------------------------------
def test_the_vectorised_statistics_equal_the_monitors_own():
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 500, 12)
    reference[3] = 2
    windows = rng.integers(0, 40, (6, 12))
    shares = (reference + 0.5) / (reference.sum() + 6)
    assert np.allclose(
        count_null.psi_statistic(windows, reference), [psi(w[None], reference[None])[0] for w in windows]
    )
    chi2 = count_null.chi_square_statistic(windows, shares)
    assert np.allclose(special.chdtrc(11, chi2), [chi_square_p_value(w, shares) for w in windows])


def test_simulated_windows_have_the_window_size_and_the_reference_shares():
    reference = np.array([900, 90, 9, 1])
    draws = np.concatenate(list(count_null.simulate_counts(reference, 50, draws=400_000, seed=2)))
    assert draws.shape == (400_000, 4) and (draws.sum(axis=1) == 50).all()
    expected = (reference + 0.5) / (reference.sum() + 2)  # the Dirichlet's mean
    assert np.allclose(draws.mean(axis=0) / 50, expected, rtol=0.02, atol=1e-4)


@pytest.mark.parametrize(
    "population",
    [np.full(10, 0.1), np.array([0.002] + [0.998 / 9] * 9)],
    ids=["balanced", "a class at 0.2 %"],
)
def test_calibrated_count_tests_fire_at_their_rate_where_the_chi_square_leaks(population):
    alpha, window, n_reference = 1e-3, 200, 5000
    rng = np.random.default_rng(7)
    rates, chi2_rates = [], []
    for _ in range(8):  # the reference is a sample too: average over several
        reference = rng.multinomial(n_reference, population)
        shares = (reference + 0.5) / (reference.sum() + 0.5 * reference.size)
        cuts = count_null.null_quantiles(
            reference, window, alpha, {"chi2": lambda c, s=shares: count_null.chi_square_statistic(c, s)}, seed=1
        )
        windows = rng.multinomial(window, population, size=100_000)
        statistic = count_null.chi_square_statistic(windows, shares)
        rates.append(np.mean(statistic > cuts["chi2"]))
        chi2_rates.append(np.mean(statistic > stats.chi2.isf(alpha, reference.size - 1)))
    rate = float(np.mean(rates))
    assert alpha / 2 <= rate <= 2 * alpha, rate
    if population.min() < 0.01:  # where the asymptotic test leaks, the exact one does not
        assert np.mean(chi2_rates) > 2 * alpha


def test_calibrated_confidence_psi_fires_at_its_rate_with_near_empty_bins():
    alpha, window = 1e-3, 200
    population = np.array([0.0005, 0.0015, 0.003, 0.005, 0.01, 0.03, 0.05, 0.1, 0.2, 0.6])
    population /= population.sum()
    rng = np.random.default_rng(11)
    rates = []
    for _ in range(8):
        reference = rng.multinomial(20_000, population)
        cut = count_null.null_quantiles(
            reference, window, alpha, {"psi": lambda c, r=reference: count_null.psi_statistic(c, r)}, seed=3
        )["psi"]
        windows = rng.multinomial(window, population, size=100_000)
        rates.append(np.mean(count_null.psi_statistic(windows, reference) > cut))
    assert alpha / 2 <= float(np.mean(rates)) <= 2 * alpha


def test_the_upper_quantile_leaves_at_most_alpha_beyond_it():
    values = np.arange(1000.0)
    assert count_null.upper_quantile(values, 0.01) == 989.0  # 10 values beyond
    assert count_null.draws_for(2e-5) == 1_000_000 and count_null.draws_for(1e-9) == count_null.MAX_DRAWS


def test_a_chart_with_a_tiny_in_control_drift_is_designed_on_a_fine_enough_grid():
    # Shadow agreement 0.8335 on 2,000 rows, a 0.02 drop at 8.64e6 outcomes a month (tests/test_dashboards.py's
    # fleet): in control the chart drifts down by only 3e-4 nats an outcome, and a coarse grid that rounded the
    # failure step turned that drift positive, so no threshold reached the budget.
    margin = min(estimation_margin(0.8335, 2000), 0.01)
    d = design(0.8335, 0.02, 8.64e6, margin)
    assert d.average_run_length(d.in_control) >= 8.64e6
    charts = AccuracyCharts.of(
        1.0,
        2000,
        tolerance=0.02,
        labels_per_month=2.16e6,
        shadow_agreement=0.8335,
        shadow_rows=2000,
        shadow_per_month=2.16e6,
    )
    assert set(charts.states()) == {("labels", "small"), ("labels", "large"), ("shadow", "small"), ("shadow", "large")}
