import numpy as np
import pytest

from features.params import ServeParams
from models.bundle import LaneThresholds
from serving.lanes import assign_lanes, exploration_draws, facilitation_notes

THRESHOLDS = LaneThresholds(
    "risk", red_cutoff=0.9, yellow_cutoff=0.7, red_rate=0.1, yellow_rate=0.2, version="t1"
)
NO_EXPLORATION = ServeParams(exploration_rate=0.0, aeo_risk_discount=0.5)


def _keys(n: int) -> list[str]:
    return [f"D{i}" for i in range(n)]


def test_lanes_follow_cutoffs() -> None:
    priority = np.array([0.95, 0.9, 0.8, 0.7, 0.69, 0.0])
    lanes, exploration = assign_lanes(
        priority, np.zeros(6, bool), _keys(6), THRESHOLDS, NO_EXPLORATION
    )
    assert lanes.tolist() == ["red", "red", "yellow", "yellow", "green", "green"]
    assert not exploration.any()


def test_lanes_fill_at_configured_rates_on_a_batch() -> None:
    priority = np.random.default_rng(0).uniform(size=20_000)
    lanes, _ = assign_lanes(
        priority, np.zeros(20_000, bool), _keys(20_000), THRESHOLDS, NO_EXPLORATION
    )
    assert np.mean(lanes == "red") == pytest.approx(THRESHOLDS.red_rate, abs=0.01)
    assert np.mean(lanes == "yellow") == pytest.approx(THRESHOLDS.yellow_rate, abs=0.01)


def test_aeo_priority_is_discounted_not_exempt() -> None:
    priority = np.array([0.95, 0.95, 1.9])
    aeo = np.array([False, True, True])
    lanes, _ = assign_lanes(priority, aeo, _keys(3), THRESHOLDS, NO_EXPLORATION)
    assert lanes.tolist() == ["red", "green", "red"]


def test_a_lane_made_milder_by_aeo_facilitation_says_so() -> None:
    priority = np.array([0.95, 0.95, 0.8, 1.9, 0.3])
    aeo = np.array([False, True, True, True, True])
    lanes, _ = assign_lanes(priority, aeo, _keys(5), THRESHOLDS, NO_EXPLORATION)
    notes = facilitation_notes(priority, aeo, lanes, THRESHOLDS, NO_EXPLORATION)
    assert set(notes) == {1, 2}  # not the trader without AEO, nor lanes it did not change
    assert notes[1] == (
        "AEO facilitation: priority 0.950 x serve.aeo_risk_discount 0.5 = 0.475, so green "
        "instead of red"
    )
    assert notes[2].endswith("so green instead of yellow")


def test_no_facilitation_no_note() -> None:
    priority, aeo = np.array([0.95]), np.array([True])
    off = ServeParams(exploration_rate=0.0, aeo_risk_discount=1.0)
    lanes, _ = assign_lanes(priority, aeo, _keys(1), THRESHOLDS, off)
    assert facilitation_notes(priority, aeo, lanes, THRESHOLDS, off) == {}


def test_exploration_quota_rate_and_lane() -> None:
    n = 50_000
    policy = ServeParams(exploration_rate=0.02, exploration_seed=11, exploration_lane="yellow")
    lanes, exploration = assign_lanes(np.zeros(n), np.zeros(n, bool), _keys(n), THRESHOLDS, policy)
    assert exploration.mean() == pytest.approx(0.02, abs=0.003)
    assert set(lanes[exploration]) == {"yellow"}
    assert set(lanes[~exploration]) == {"green"}


def test_exploration_never_lowers_the_model_lane() -> None:
    n = 5_000
    policy = ServeParams(exploration_rate=0.5, exploration_seed=1)
    lanes, exploration = assign_lanes(np.ones(n), np.zeros(n, bool), _keys(n), THRESHOLDS, policy)
    assert (lanes == "red").all() and exploration.any()


def test_exploration_is_deterministic_in_seed_and_key() -> None:
    keys = _keys(2_000)
    a = exploration_draws(keys, seed=5)
    assert np.array_equal(a, exploration_draws(keys, seed=5))
    assert np.array_equal(
        a[::-1], exploration_draws(keys[::-1], seed=5)
    )  # per key, not per position
    assert not np.array_equal(a, exploration_draws(keys, seed=6))
    assert ((a >= 0) & (a < 1)).all()


def test_exploration_draw_is_recomputable_with_plain_hashlib() -> None:
    import hashlib

    digest = hashlib.blake2b(b"5:D42", digest_size=8).digest()
    expected = (int.from_bytes(digest, "big") >> 11) / 2**53
    assert exploration_draws(["D42"], seed=5)[0] == expected


@pytest.mark.parametrize(
    "kwargs",
    [{"exploration_rate": 1.5}, {"aeo_risk_discount": -0.1}, {"exploration_lane": "green"}],
)
def test_policy_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ServeParams(**kwargs)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same length"):
        assign_lanes(np.zeros(2), np.zeros(3, bool), _keys(2), THRESHOLDS, NO_EXPLORATION)


def test_an_implausible_number_raises_the_lane_to_the_policys_floor() -> None:
    """A declared value of 1e300 cleared green at risk 0.0003 (probe 9): a number above its
    plausible bound goes at least to serve.implausible_lane; a stricter lane stays."""
    priority = np.array([0.0, 0.8, 0.95, 0.0])
    implausible = np.array([True, True, True, False])
    lanes, _ = assign_lanes(
        priority, np.zeros(4, bool), _keys(4), THRESHOLDS, NO_EXPLORATION, implausible
    )
    assert lanes.tolist() == ["yellow", "yellow", "red", "green"]
    to_red = NO_EXPLORATION.replace(implausible_lane="red")
    lanes, _ = assign_lanes(priority, np.zeros(4, bool), _keys(4), THRESHOLDS, to_red, implausible)
    assert lanes.tolist() == ["red", "red", "red", "green"]
    off = NO_EXPLORATION.replace(implausible_lane="green")
    lanes, _ = assign_lanes(priority, np.zeros(4, bool), _keys(4), THRESHOLDS, off, implausible)
    assert lanes.tolist() == ["green", "yellow", "red", "green"]
