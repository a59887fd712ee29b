"""finetune_user: mean and BPR updates computed by hand, their direction, the proximal pull."""

from __future__ import annotations

import numpy as np
import pytest

from service.finetune import FinetuneMethod, finetune_user, sample_negatives


def sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def test_one_step_matches_the_hand_computed_gradient() -> None:
    # 3 items, positives {0, 1}: both sampled negatives (n_neg=2) are item 2.
    items = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    start = np.array([0.5, 0.25])
    lr, prox = 0.1, 0.5
    # margins u.(e0 - e2) = 1.0 and u.(e1 - e2) = 0.75; dL/du = -mean (1 - s(m)) (e_pos - e2)
    grad_bpr = -0.5 * (
        (1 - sigmoid(1.0)) * np.array([2.0, 0.0]) + (1 - sigmoid(0.75)) * np.array([1.0, 1.0])
    )
    # the proximal term is zero at the start
    expected = start - lr * grad_bpr

    vec = finetune_user(
        items,
        start,
        np.array([0, 1]),
        np.random.default_rng(0),
        1,
        lr,
        2,
        prox,
        item_scale=1.0,
        method="bpr",
    )

    np.testing.assert_allclose(vec, expected, rtol=1e-6)


def test_steps_are_preconditioned_by_the_item_scale() -> None:
    # Same setting, automatic scale: mean squared coordinate of the items is 3 / 6 = 0.5.
    items = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    start = np.array([0.5, 0.25])
    unit = finetune_user(
        items, start, np.array([0, 1]), np.random.default_rng(0), 1, 0.1, 2, 0.0, method="bpr"
    )
    double = finetune_user(
        items,
        start,
        np.array([0, 1]),
        np.random.default_rng(0),
        1,
        0.2,
        2,
        0.0,
        item_scale=1.0,
        method="bpr",
    )

    np.testing.assert_allclose(unit, double, rtol=1e-6)


@pytest.mark.parametrize("method", ["mean", "bpr"])
def test_updated_scores_do_not_depend_on_the_embedding_scale(method: FinetuneMethod) -> None:
    rng = np.random.default_rng(6)
    items = rng.standard_normal((300, 16))
    start = rng.standard_normal(16)
    positives = np.array([4, 40, 140])

    def scores(scale: float) -> np.ndarray:
        vec = finetune_user(
            (items * scale).astype(np.float32),
            start / scale,
            positives,
            np.random.default_rng(7),
            20,
            2.0,
            64,
            0.01,
            method=method,
        )
        return np.asarray((items * scale) @ vec)

    np.testing.assert_allclose(scores(0.05), scores(1.0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(scores(20.0), scores(1.0), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("method", ["mean", "bpr"])
def test_updates_raise_positives_above_negatives_and_leave_inputs_alone(
    method: FinetuneMethod,
) -> None:
    rng = np.random.default_rng(0)
    items = rng.standard_normal((200, 16)).astype(np.float32)
    items.flags.writeable = False
    start = rng.standard_normal(16).astype(np.float32)
    start_copy = start.copy()
    positives = np.array([3, 50, 120])

    vec = finetune_user(
        items, start, positives, np.random.default_rng(1), 20, 0.05, 64, 0.1, method=method
    )

    rank_before = (items @ start).argsort()[::-1].argsort()[positives]
    rank_after = (items @ vec).argsort()[::-1].argsort()[positives]
    assert rank_after.mean() < rank_before.mean()
    assert vec.dtype == np.float32 and vec.shape == (16,)
    assert np.array_equal(start, start_copy)


@pytest.mark.parametrize("method", ["mean", "bpr"])
def test_new_user_folds_in_from_zero_towards_its_items(method: FinetuneMethod) -> None:
    rng = np.random.default_rng(2)
    items = rng.standard_normal((100, 8)).astype(np.float32)
    positives = np.array([7, 8])

    vec = finetune_user(
        items, None, positives, np.random.default_rng(3), 10, 0.1, 32, 0.0, method=method
    )

    top = np.argsort(-(items @ vec))
    assert np.linalg.norm(vec) > 0
    assert set(positives.tolist()) <= set(top[:15].tolist())


def test_proximal_term_keeps_the_vector_nearer_its_start() -> None:
    rng = np.random.default_rng(4)
    items = rng.standard_normal((100, 8)).astype(np.float32)
    start = rng.standard_normal(8)

    def drift(prox: float) -> float:
        vec = finetune_user(
            items,
            start,
            np.array([1, 2]),
            np.random.default_rng(5),
            30,
            0.2,
            32,
            prox,
            method="bpr",
        )
        return float(np.linalg.norm(vec - start))

    assert drift(5.0) < drift(0.0)


def test_zero_steps_or_no_positives_return_the_start() -> None:
    items = np.eye(4, dtype=np.float32)
    start = np.array([1.0, 2.0, 3.0, 4.0])
    rng = np.random.default_rng(0)

    assert np.array_equal(
        finetune_user(items, start, np.array([1]), rng, 0, 0.1, 2, 0.1, method="bpr"), start
    )
    assert np.array_equal(
        finetune_user(items, start, np.array([], dtype=int), rng, 5, 0.1, 2, 0.1), start
    )


def test_negatives_are_never_positives_and_cover_the_other_items() -> None:
    positives = np.arange(0, 40, 2)

    negatives = sample_negatives(40, positives, 2000, np.random.default_rng(0))

    assert len(negatives) == 2000
    assert set(negatives.tolist()) == set(range(1, 40, 2))
    assert sample_negatives(3, np.arange(3), 5, np.random.default_rng(0)).size == 0


@pytest.mark.parametrize(
    ("start", "positives", "steps", "lr", "message"),
    [
        (np.zeros(3), np.array([0]), 1, 0.1, r"start_vec must have shape \(2,\)"),
        (None, np.array([5]), 1, 0.1, r"positives must be item indices in \[0, 4\)"),
        (None, np.array([0]), -1, 0.1, "expected steps >= 0"),
        (None, np.array([0]), 1, 0.0, "lr > 0"),
    ],
)
def test_bad_arguments_are_refused(
    start: np.ndarray | None, positives: np.ndarray, steps: int, lr: float, message: str
) -> None:
    items = np.ones((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        finetune_user(items, start, positives, np.random.default_rng(0), steps, lr, 2, 0.1)


def test_divergence_raises() -> None:
    items = np.array([[1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    with pytest.raises(ValueError, match="diverged"):
        finetune_user(
            items, None, np.array([0]), np.random.default_rng(0), 1, 1e40, 1, 0.0, method="bpr"
        )


def test_all_zero_items_are_refused() -> None:
    items = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="item_scale must be > 0"):
        finetune_user(items, None, np.array([0]), np.random.default_rng(0), 1, 0.1, 2, 0.1)


def test_mean_update_matches_the_hand_computed_step() -> None:
    # s = mean squared coordinate = (1 + 0 + 0 + 4 + 1 + 1) / 6 = 7 / 6
    items = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]], dtype=np.float32)
    start = np.array([0.5, -0.5])
    # positives {0, 1}: centroid (0.5, 1.0); step beta / s = 0.3 * 6 / 7 = 1.8 / 7
    expected = start + (1.8 / 7) * np.array([0.5, 1.0])

    vec = finetune_user(
        items, start, np.array([1, 0, 1]), np.random.default_rng(0), 20, 2.0, 64, 0.01
    )

    np.testing.assert_allclose(vec, expected, rtol=1e-6)
    assert vec.dtype == np.float32


def test_mean_update_is_deterministic_and_ignores_the_rng() -> None:
    rng = np.random.default_rng(8)
    items = rng.standard_normal((50, 4)).astype(np.float32)
    start = rng.standard_normal(4)
    positives = np.array([3, 9, 27])

    first = finetune_user(items, start, positives, np.random.default_rng(1), 20, 2.0, 64, 0.01)
    again = finetune_user(items, start, positives, np.random.default_rng(2), 20, 2.0, 64, 0.01)

    assert np.array_equal(first, again)
    assert not np.allclose(first, start)


@pytest.mark.parametrize(
    ("method", "beta", "message"),
    [("sgd", 0.3, "expected method 'mean' or 'bpr'"), ("mean", -1.0, "beta >= 0")],
)
def test_bad_method_or_beta_is_refused(method: str, beta: float, message: str) -> None:
    items = np.ones((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        finetune_user(
            items,
            None,
            np.array([0]),
            np.random.default_rng(0),
            1,
            0.1,
            2,
            0.1,
            method=method,  # type: ignore[arg-type]
            beta=beta,
        )
