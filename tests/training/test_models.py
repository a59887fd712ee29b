"""Teacher, prompt module and student: shapes, definitions, and where gradients flow."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from training.config import TeacherConfig
from training.graph import (
    item_feature_propagation,
    item_knn_graph,
    normalized_adjacency,
    propagate,
    spmm,
)
from training.models import PromptModule, Student, Teacher, pca_tokens

U, N_ITEMS, D = 20, 15, 8
DIMS = {"image": 12, "audio": 6}


@pytest.fixture(scope="module")
def adj() -> torch.Tensor:
    r = sp.random(U, N_ITEMS, density=0.25, format="csr", random_state=0)
    r.data[:] = 1.0
    return normalized_adjacency(r)


def _features(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {m: torch.randn(N_ITEMS, d_m, generator=gen) for m, d_m in DIMS.items()}


def _np_features() -> dict[str, np.ndarray]:
    return {m: x.numpy() for m, x in _features().items()}


def _teacher(**kwargs: object) -> Teacher:
    torch.manual_seed(0)
    args: dict[str, object] = {"dropout": 0.3, "alpha": 0.5, "feat_hops": 1}
    args.update(kwargs)
    return Teacher(U, N_ITEMS, D, 2, DIMS, **args)  # type: ignore[arg-type]


def test_pca_tokens_shape_determinism_and_scale() -> None:
    tokens = pca_tokens(_np_features(), D)
    assert tokens.shape == (N_ITEMS, D) and tokens.dtype == torch.float32
    assert torch.equal(tokens, pca_tokens(_np_features(), D))
    # each modality is scaled to unit RMS before the mean: one modality alone has RMS 1
    single = pca_tokens({"image": _np_features()["image"]}, D)
    assert single.pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=1e-5)


def test_pca_tokens_recover_the_principal_axis_and_pad() -> None:
    # rank-1 features along a known axis: the first token column is the (centred) coordinate
    coord = np.linspace(-1.0, 1.0, N_ITEMS)
    axis = np.array([3.0, 4.0]) / 5.0
    tokens = pca_tokens({"x": np.outer(coord, axis).astype(np.float32)}, 4)
    first = tokens[:, 0].numpy()
    assert abs(np.corrcoef(first, coord)[0, 1]) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(tokens[:, 2:].numpy(), 0.0)  # d_m = 2 < d = 4: zero-padded
    with pytest.raises(ValueError, match="at least one modality"):
        pca_tokens({}, 4)


def test_prompt_shapes_rate_scaling_and_disabled() -> None:
    tokens = pca_tokens(_np_features(), D)
    torch.manual_seed(1)
    prompt = PromptModule(tokens, D, DIMS, rate=0.1)
    out = prompt()
    assert {m: tuple(p.shape) for m, p in out.items()} == {m: (N_ITEMS, d) for m, d in DIMS.items()}
    torch.manual_seed(1)
    doubled = PromptModule(tokens, D, DIMS, rate=0.2)()
    for m in DIMS:
        torch.testing.assert_close(doubled[m], 2 * out[m])
    disabled = PromptModule(tokens, D, DIMS, rate=0.0)
    assert not disabled.enabled and disabled() == {}
    with pytest.raises(ValueError, match="tokens must be"):
        PromptModule(tokens[:, :3], D, DIMS, rate=0.1)


def test_teacher_output_is_ids_plus_normalised_modal_features(adj: torch.Tensor) -> None:
    teacher = _teacher().eval()
    feats = _features()
    out = teacher(adj, feats)
    assert out.user_emb.shape == (U, D) and out.item_emb.shape == (N_ITEMS, D)
    assert set(out.modal_users) == set(out.modal_items) == set(DIMS)
    ego = torch.cat(teacher.ego_parameters())
    ids = propagate(adj, ego, 2)
    expected_u, expected_i = ids[:U].clone(), ids[U:].clone()
    for m in DIMS:
        f = teacher.reduce[m](feats[m])  # eval: no dropout
        f_u, f_i = item_feature_propagation(adj, f, U, 1)
        torch.testing.assert_close(out.modal_users[m], f_u)
        torch.testing.assert_close(out.modal_items[m], f_i)
        expected_u += 0.5 * F.normalize(f_u, dim=1)
        expected_i += 0.5 * F.normalize(f_i, dim=1)
    torch.testing.assert_close(out.user_emb, expected_u)
    torch.testing.assert_close(out.item_emb, expected_i)
    # precomputed ID part gives the same result
    with torch.no_grad():
        cached = teacher.propagate_ids(adj)
    torch.testing.assert_close(teacher(adj, feats, ids=cached).item_emb, out.item_emb)


def test_teacher_prompt_is_added_to_the_features(adj: torch.Tensor) -> None:
    teacher = _teacher().eval()
    feats = _features()
    prompts = {m: torch.full_like(x, 0.5) for m, x in feats.items()}
    shifted = {m: x + 0.5 for m, x in feats.items()}
    with_prompt = teacher(adj, feats, prompts)
    torch.testing.assert_close(with_prompt.item_emb, teacher(adj, shifted).item_emb)
    assert not torch.allclose(with_prompt.item_emb, teacher(adj, feats, {}).item_emb)


def test_teacher_dropout_only_in_train_mode(adj: torch.Tensor) -> None:
    teacher = _teacher(dropout=0.5)
    feats = _features()
    teacher.train()
    assert not torch.allclose(teacher(adj, feats).item_emb, teacher(adj, feats).item_emb)
    teacher.eval()
    torch.testing.assert_close(teacher(adj, feats).item_emb, teacher(adj, feats).item_emb)


def test_teacher_rejects_wrong_modalities(adj: torch.Tensor) -> None:
    teacher = _teacher()
    feats = _features()
    with pytest.raises(ValueError, match="modalities"):
        teacher(adj, {"image": feats["image"]})
    with pytest.raises(ValueError, match=r"features\['audio'\] must be \(15, 6\)"):
        teacher(adj, {**feats, "audio": feats["audio"][:, :5]})
    with pytest.raises(ValueError, match="prompts have modalities"):
        teacher(adj, feats, {"image": torch.zeros(N_ITEMS, 12)})


def test_stage2_gradients_reach_the_prompt_through_the_frozen_teacher(adj: torch.Tensor) -> None:
    teacher = _teacher().eval().requires_grad_(False)
    prompt = PromptModule(pca_tokens(_np_features(), D), D, DIMS, rate=0.1)
    student = Student(U, N_ITEMS, D, 2)
    users, items = student(adj)
    out = teacher(adj, _features(), prompt())
    loss = sum(
        (1 - F.cosine_similarity(items, out.modal_items[m], dim=1)).mean()
        + (1 - F.cosine_similarity(users, out.modal_users[m], dim=1)).mean()
        for m in DIMS
    )
    loss.backward()
    for name, p in prompt.named_parameters():
        assert p.grad is not None and bool((p.grad != 0).any()), name
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())


def test_student_lightgcn_and_mf(adj: torch.Tensor) -> None:
    student = Student(U, N_ITEMS, D, 2)
    users, items = student(adj)
    assert users.shape == (U, D) and items.shape == (N_ITEMS, D)
    expected = propagate(adj, torch.cat(student.ego_parameters()), 2)
    torch.testing.assert_close(torch.cat([users, items]), expected)
    mf = Student(U, N_ITEMS, D, 0)
    users, items = mf(adj)
    assert torch.equal(users, mf.user_ego) and torch.equal(items, mf.item_ego)


def test_student_load_ego(adj: torch.Tensor) -> None:
    student = Student(U, N_ITEMS, D, 1)
    user, item = torch.randn(U, D), torch.randn(N_ITEMS, D)
    student.load_ego(user, item)
    assert torch.equal(student.user_ego, user) and torch.equal(student.item_ego, item)
    assert student.user_ego.requires_grad
    with pytest.raises(ValueError, match="load_ego expects"):
        student.load_ego(user[:, :2], item)


def test_item_knn_is_off_by_default() -> None:
    cfg = TeacherConfig()
    assert cfg.item_knn_k == 0
    teacher = _teacher()
    assert not teacher.has_item_graph and teacher.item_graph() is None


@pytest.mark.parametrize("hops", [1, 2])
def test_teacher_adds_the_item_graph_propagation_of_its_item_ids(
    adj: torch.Tensor, hops: int
) -> None:
    feats = _features()
    graph = item_knn_graph(feats, k=3)
    plain = _teacher().eval()
    with_graph = _teacher(item_graph=graph, item_graph_hops=hops, item_graph_weight=0.7).eval()
    # same seed: same parameters; a graph adds no parameter and no state_dict entry
    assert with_graph.state_dict().keys() == plain.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert torch.equal(with_graph.state_dict()[key], value)
    hop = with_graph.item_ego
    dense = graph.to_dense()
    for _ in range(hops):
        hop = dense @ hop
    out, base = with_graph(adj, feats), plain(adj, feats)
    torch.testing.assert_close(out.user_emb, base.user_emb)
    torch.testing.assert_close(out.item_emb, base.item_emb + 0.7 * hop)
    for m in DIMS:  # the modality part is untouched
        torch.testing.assert_close(out.modal_items[m], base.modal_items[m])
    # the precomputed ID part (stage 2) carries the graph term too
    with torch.no_grad():
        cached = with_graph.propagate_ids(adj)
    torch.testing.assert_close(with_graph(adj, feats, ids=cached).item_emb, out.item_emb)


def test_item_graph_gives_items_without_interactions_their_neighbours_ids() -> None:
    # the last item has no training interaction: LightGCN gives it only ego / (L+1);
    # through the item graph it also gets its content neighbours' ego embeddings
    r = sp.random(U, N_ITEMS, density=0.3, format="lil", random_state=1)
    r[:, N_ITEMS - 1] = 0
    r = sp.csr_matrix(r)
    r.eliminate_zeros()
    r.data[:] = 1.0
    cold_adj = normalized_adjacency(r)
    graph = item_knn_graph(_features(), k=3)
    teacher = _teacher(item_graph=graph).eval()
    with torch.no_grad():
        _, items = teacher.propagate_ids(cold_adj)
        neighbours = spmm(graph, teacher.item_ego)
    cold = N_ITEMS - 1
    torch.testing.assert_close(items[cold], teacher.item_ego[cold] / 3 + neighbours[cold])
    assert bool((neighbours[cold] != 0).any())
    # the gradient of an item's embedding reaches its graph neighbours' ego rows
    teacher.train()
    _, items = teacher.propagate_ids(cold_adj)
    items[cold].sum().backward()
    grad = teacher.item_ego.grad
    assert grad is not None
    assert bool((grad[graph.to_dense()[cold].nonzero().ravel()].abs().sum(1) > 0).all())


def test_teacher_with_item_graph_deep_copies_and_moves(adj: torch.Tensor) -> None:
    teacher = _teacher(item_graph=item_knn_graph(_features(), k=2)).eval()
    clone = copy.deepcopy(teacher)
    torch.testing.assert_close(clone(adj, _features()).item_emb, teacher(adj, _features()).item_emb)
    assert clone.to("cpu").item_graph() is not None


def test_teacher_rejects_a_bad_item_graph() -> None:
    with pytest.raises(ValueError, match="item_graph must be"):
        _teacher(item_graph=torch.eye(N_ITEMS))
    with pytest.raises(ValueError, match="item_graph_hops"):
        _teacher(item_graph=item_knn_graph(_features(), k=2), item_graph_hops=0)
