"""The normalised LightGCN adjacency and the propagations built on it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from training.graph import (
    bipartite_blocks,
    item_feature_propagation,
    item_knn_graph,
    item_side,
    layer_mean,
    normalized_adjacency,
    propagate,
    propagate_layers,
    propagate_perturbed,
    user_side,
)

S2 = 1 / math.sqrt(2)  # 1 / sqrt(deg 2 * deg 1)


def _toy() -> sp.csr_matrix:
    # 3 users x 3 items. u0: i0, i1; u1: i1, i2; u2: nothing.
    # Degrees: u0 2, u1 2, u2 0; i0 1, i1 2, i2 1.
    return sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0]], dtype=np.float32))


def test_adjacency_of_3x3_toy_graph_matches_hand_computed_entries() -> None:
    # Nodes: u0 u1 u2 i0 i1 i2. Entry (u, i) = 1 / sqrt(deg(u) * deg(i)):
    # (u0,i0) = 1/sqrt(2*1), (u0,i1) = 1/sqrt(2*2) = 0.5, (u1,i1) = 0.5, (u1,i2) = 1/sqrt(2).
    expected = np.array(
        [
            [0, 0, 0, S2, 0.5, 0],
            [0, 0, 0, 0, 0.5, S2],
            [0, 0, 0, 0, 0, 0],
            [S2, 0, 0, 0, 0, 0],
            [0.5, 0.5, 0, 0, 0, 0],
            [0, S2, 0, 0, 0, 0],
        ]
    )
    adj = normalized_adjacency(_toy())
    assert adj.layout == torch.sparse_csr
    assert adj.dtype == torch.float32
    np.testing.assert_allclose(adj.to_dense().numpy(), expected, rtol=1e-6, atol=1e-7)


def test_adjacency_of_3_node_graph() -> None:
    # One user who interacted with both of 2 items: deg(u) = 2, deg(i) = 1 each.
    adj = normalized_adjacency(sp.csr_matrix(np.array([[1.0, 1.0]], dtype=np.float32)))
    expected = np.array([[0, S2, S2], [S2, 0, 0], [S2, 0, 0]])
    np.testing.assert_allclose(adj.to_dense().numpy(), expected, rtol=1e-6)


def test_adjacency_binarises_values_and_duplicates() -> None:
    weighted = sp.coo_matrix(
        (
            np.array([5.0, 1.0, 1.0, 1.0, 2.0]),
            (np.array([0, 0, 0, 1, 1]), np.array([0, 1, 1, 1, 2])),
        ),
        shape=(3, 3),
    )
    np.testing.assert_array_equal(
        normalized_adjacency(weighted).to_dense().numpy(),
        normalized_adjacency(_toy()).to_dense().numpy(),
    )


def test_adjacency_rejects_dense_input() -> None:
    with pytest.raises(ValueError, match="scipy sparse"):
        normalized_adjacency(np.eye(3))  # type: ignore[arg-type]


def _random_graph(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    r = sp.random(7, 5, density=0.4, format="csr", random_state=seed)
    r.data[:] = 1.0
    adj = normalized_adjacency(r)
    return adj, adj.to_dense(), 7


def test_propagate_is_layer_mean_and_its_gradient_matches_dense() -> None:
    adj, dense, _ = _random_graph()
    ego = torch.randn(12, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = propagate(adj, ego, 2)
    out.pow(2).sum().backward()
    grad_sparse = ego.grad.clone()
    ego.grad = None
    reference = (ego + dense @ ego + dense @ (dense @ ego)) / 3
    reference.pow(2).sum().backward()
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(grad_sparse, ego.grad)


def test_propagate_layers_are_powers_of_the_adjacency_and_average_to_propagate() -> None:
    adj, dense, _ = _random_graph()
    ego = torch.randn(12, 4, generator=torch.Generator().manual_seed(2))
    layers = propagate_layers(adj, ego, 3)
    assert len(layers) == 4 and layers[0] is ego
    for power, layer in enumerate(layers):
        torch.testing.assert_close(layer, torch.linalg.matrix_power(dense, power) @ ego)
    assert torch.equal(layer_mean(layers), propagate(adj, ego, 3))
    assert propagate_layers(adj, ego, 0) == [ego] and layer_mean([ego]) is ego
    with pytest.raises(ValueError, match="n_layers"):
        propagate_layers(adj, ego, -1)


def test_propagate_zero_layers_is_identity() -> None:
    adj, _, _ = _random_graph()
    ego = torch.randn(12, 3)
    assert propagate(adj, ego, 0) is ego
    with pytest.raises(ValueError, match="n_layers"):
        propagate(adj, ego, -1)


def test_propagate_perturbed_adds_noise_of_radius_eps_in_each_rows_orthant() -> None:
    adj, dense, _ = _random_graph()
    ego = torch.randn(12, 4, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    assert torch.equal(propagate_perturbed(adj, ego, 2, 0.0), propagate(adj, ego, 2))
    out = propagate_perturbed(adj, ego, 1, 0.1)
    hidden = dense @ ego
    noise = 2 * out - ego - hidden  # out = (ego + hidden + noise) / 2
    nonzero = hidden.abs().sum(dim=1) > 0
    torch.testing.assert_close(noise[nonzero].norm(dim=1), torch.full((int(nonzero.sum()),), 0.1))
    assert bool((noise * hidden >= -1e-6).all())  # same sign as the propagated entry
    assert not torch.equal(out, propagate_perturbed(adj, ego, 1, 0.1))  # fresh noise per call
    with pytest.raises(ValueError, match="eps"):
        propagate_perturbed(adj, ego, 1, -0.1)


def test_user_side_aggregates_items_by_hand() -> None:
    adj = normalized_adjacency(_toy())
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    users = user_side(adj, f, 3)
    # u0 = f0/sqrt(2) + f1/2; u1 = f1/2 + f2/sqrt(2); u2 = 0
    expected = torch.tensor([[S2, 0.5], [2 * S2, 0.5 + 2 * S2], [0.0, 0.0]])
    torch.testing.assert_close(users, expected)
    items = item_side(adj, users, 3)
    # i0 = u0/sqrt(2); i1 = (u0 + u1)/2; i2 = u1/sqrt(2)
    torch.testing.assert_close(
        items, torch.stack([expected[0] * S2, (expected[0] + expected[1]) / 2, expected[1] * S2])
    )


@pytest.mark.parametrize("hops", [1, 2])
def test_item_feature_propagation_matches_dense_round_trips(hops: int) -> None:
    adj, dense, n_users = _random_graph(3)
    a_ui, a_iu = dense[:n_users, n_users:], dense[n_users:, :n_users]
    f = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), requires_grad=True)
    users_total, items_total, item_layer = torch.zeros(n_users, 3), f, f
    for _ in range(hops):
        user_layer = a_ui @ item_layer
        item_layer = a_iu @ user_layer
        users_total, items_total = users_total + user_layer, items_total + item_layer
    expected_u, expected_i = users_total / hops, items_total / (hops + 1)
    (expected_grad,) = torch.autograd.grad((expected_u.sum() + expected_i.pow(2).sum()), f)
    f_u, f_i = item_feature_propagation(adj, f, n_users, hops)
    torch.testing.assert_close(f_u, expected_u)
    torch.testing.assert_close(f_i, expected_i)
    (grad,) = torch.autograd.grad((f_u.sum() + f_i.pow(2).sum()), f)
    torch.testing.assert_close(grad, expected_grad)
    with pytest.raises(ValueError, match="n_hops"):
        item_feature_propagation(adj, f, n_users, 0)


def test_bipartite_blocks_are_the_off_diagonal_blocks() -> None:
    adj, dense, n_users = _random_graph(4)
    a_ui, a_iu = bipartite_blocks(adj, n_users)
    torch.testing.assert_close(a_ui.to_dense(), dense[:n_users, n_users:])
    torch.testing.assert_close(a_iu.to_dense(), dense[n_users:, :n_users])
    with pytest.raises(ValueError, match="sparse CSR"):
        bipartite_blocks(dense, n_users)


def _knn_toy() -> dict[str, torch.Tensor]:
    # 4 items on two orthogonal directions: 0 and 1 point one way, 2 and 3 the other;
    # item 1 leans a little towards 2 and 3.
    return {"x": torch.tensor([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0], [0.1, 1.0]])}


def test_item_knn_graph_k1_neighbours_and_normalisation_by_hand() -> None:
    dense = item_knn_graph(_knn_toy(), k=1).to_dense()
    # nearest other item: 0 -> 1, 1 -> 0, 2 -> 3, 3 -> 2; undirected: two pairs, degree 1 each
    expected = torch.tensor(
        [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]]
    )
    torch.testing.assert_close(dense, expected)


def test_item_knn_graph_k2_symmetrises_directed_edges_before_normalising() -> None:
    # k = 2: 0 -> {1, 3}, 1 -> {0, 3}, 2 -> {3, 1}, 3 -> {2, 1} (cosines by hand);
    # undirected edges 0-1, 0-3, 1-3, 1-2, 2-3: degrees 0: 2, 1: 3, 2: 2, 3: 3
    dense = item_knn_graph(_knn_toy(), k=2).to_dense()
    degree = torch.tensor([2.0, 3.0, 2.0, 3.0])
    edges = torch.zeros(4, 4)
    for a, b in ((0, 1), (0, 3), (1, 3), (1, 2), (2, 3)):
        edges[a, b] = edges[b, a] = 1.0
    expected = edges / torch.sqrt(degree[:, None] * degree[None, :])
    torch.testing.assert_close(dense, expected)
    assert dense[0, 1].item() == pytest.approx(1 / math.sqrt(6))
    assert torch.equal(dense, dense.T) and torch.all(dense.diagonal() == 0)


def test_item_knn_graph_averages_modalities_and_chunking_changes_nothing() -> None:
    gen = torch.Generator().manual_seed(0)
    feats = {"a": torch.randn(30, 5, generator=gen), "b": torch.randn(30, 3, generator=gen)}
    both = item_knn_graph(feats, k=4).to_dense()
    mean = (
        item_knn_graph({"a": feats["a"]}, k=4).to_dense()
        + item_knn_graph({"b": feats["b"]}, k=4).to_dense()
    ) / 2
    torch.testing.assert_close(both, mean)
    torch.testing.assert_close(item_knn_graph(feats, k=4, chunk_size=7).to_dense(), both)
    assert torch.equal(both, both.T)
    # scale-free (cosine): scaling a modality's rows changes no neighbour
    scaled = {"a": feats["a"] * (0.5 + torch.rand(30, 1, generator=gen)), "b": feats["b"]}
    torch.testing.assert_close(item_knn_graph(scaled, k=4).to_dense(), both)
    assert torch.linalg.eigvalsh(both).abs().max().item() <= 1.0 + 1e-5


def test_item_knn_graph_rejects_bad_k_and_shapes() -> None:
    with pytest.raises(ValueError, match="item_knn_k"):
        item_knn_graph(_knn_toy(), k=4)
    with pytest.raises(ValueError, match="item_knn_k"):
        item_knn_graph(_knn_toy(), k=0)
    with pytest.raises(ValueError, match="same number of rows"):
        item_knn_graph({"a": torch.zeros(4, 2), "b": torch.zeros(3, 2)}, k=1)
    with pytest.raises(ValueError, match="at least one modality"):
        item_knn_graph({}, k=1)
