import numpy as np
import pytest
import torch
from torch import nn

from zooscope._validation import ZooscopeInputError
from zooscope.embed import fisher as F_
from zooscope.embed._kinds import EMBEDDINGS
from zooscope.embed.task2vec import (
    Task2Vec,
    TaskEmbedding,
    index_vector,
    pdist,
    task2vec,
    task_distance,
)

torch.set_num_threads(1)
PER_SAMPLE_TOL = 1e-5  # relative, float32 forward/backward vs a naive per-example loop
FAST = {"head_epochs": 2, "head_draws": 512, "batch_size": 16, "n_samples": None}


class ResNetlet(nn.Module):
    """Every module type the exact hook estimator supports, with a residual `+=` and in-place ReLUs."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding="same", groups=2, dilation=2)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 12, 3, stride=2, padding=1, padding_mode="reflect")
        self.gn = nn.GroupNorm(4, 12)
        self.conv1d = nn.Conv1d(12, 6, 3, padding=1)
        self.tok = nn.Linear(6, 6)  # applied to a (B, T, 6) sequence: P > 1 positions
        self.ln = nn.LayerNorm(6)
        self.lin = nn.Linear(6, 10)
        self.bn3 = nn.BatchNorm1d(10)
        self.fc = nn.Linear(10, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(x))
        out += x
        out = self.relu(out)
        out = self.relu(self.gn(self.conv3(out)))  # (B, 12, 4, 4)
        seq = self.conv1d(out.flatten(2))  # (B, 6, 16)
        seq = self.ln(self.tok(seq.transpose(1, 2)))  # (B, 16, 6)
        h = self.relu(self.bn3(self.lin(seq.mean(1))))
        return self.fc(h)


@pytest.fixture
def probe():
    torch.manual_seed(0)
    m = ResNetlet()
    for bn in (m.bn1, m.bn2, m.bn3):  # non-trivial running statistics and γ
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.normal_()
    return m


def _net_and_targets(probe, k=3):
    from zooscope.embed.task2vec import _ProbeNet

    net = _ProbeNet(probe)
    torch.manual_seed(1)
    net.head = nn.Linear(10, k)
    for p in net.parameters():
        p.requires_grad_(False)
    targets = F_.fisher_targets(net.model, exclude=net.excluded)
    for t in targets:
        t.weight.requires_grad_(True)
    return net, targets


def _naive_exact_fisher(net, targets, x, w):
    """Σ_i w_i Σ_c p_ic mean_fanin((∇ log p_c(x_i))²), one example and one class at a time."""
    params = [t.weight for t in targets]
    total = [torch.zeros(t.weight.shape[0], dtype=torch.float64) for t in targets]
    for i in range(len(x)):
        logits = net(x[i:i + 1])[0]
        logp = torch.log_softmax(logits, -1)
        for c in range(logits.shape[0]):
            grads = torch.autograd.grad(-logp[c], params, retain_graph=True)
            for acc, g in zip(total, grads, strict=True):
                acc += float(w[i]) * float(logp[c].detach().exp()) * g.double().pow(2).reshape(g.shape[0], -1).mean(1)
    return torch.cat(total)


def test_hook_fisher_matches_naive_per_example_loop(probe, rng):
    net, targets = _net_and_targets(probe)
    assert not F_.hooks_supported(targets)
    x = torch.randn(10, 1, 8, 8)
    w = torch.from_numpy(rng.uniform(0.5, 2.0, size=10))
    expected = _naive_exact_fisher(net, targets, x, w)
    got = F_.per_filter_fisher(net, targets, iter([(x[:6], w[:6]), (x[6:], w[6:])]), estimator="hooks",
                               labels="exact", generator=torch.Generator().manual_seed(0))
    assert (expected > 0).double().mean() > 0.8  # a few dead ReLU units give exact zeros
    torch.testing.assert_close(got, expected, rtol=PER_SAMPLE_TOL, atol=0)


@pytest.mark.parametrize("estimator", ["vmap", "loop"])
def test_sampled_label_estimators_agree_with_hooks(probe, estimator):
    net, targets = _net_and_targets(probe)
    x, w = torch.randn(12, 1, 8, 8), torch.ones(12, dtype=torch.float64)

    def run(est):
        return F_.per_filter_fisher(net, targets, iter([(x[:7], w[:7]), (x[7:], w[7:])]), estimator=est, n_draws=2,
                                    generator=torch.Generator().manual_seed(3))

    torch.testing.assert_close(run(estimator), run("hooks"), rtol=PER_SAMPLE_TOL, atol=0)


def test_random_sign_is_unbiased(probe):
    net, targets = _net_and_targets(probe)
    x, w = torch.randn(8, 1, 8, 8), torch.ones(8, dtype=torch.float64)
    exact = F_.per_filter_fisher(net, targets, iter([(x, w)]), estimator="hooks", labels="exact",
                                 generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    totals = np.array([float(F_.per_filter_fisher(net, targets, iter([(x, w)]), estimator="random_sign",
                                                  labels="exact", generator=gen).sum()) for _ in range(200)])
    stderr = totals.std(ddof=1) / np.sqrt(len(totals))
    assert abs(totals.mean() - float(exact.sum())) < 4 * stderr  # unbiased: within 4 standard errors
    assert stderr < 0.2 * float(exact.sum())  # and the test has power


def test_layout_follows_named_modules_and_excludes_the_classifier(probe):
    emb = Task2Vec(probe, **FAST).embed(torch.randn(30, 1, 8, 8), np.arange(30) % 3)
    names = [name for name, _, _ in emb.layout]
    assert names == ["conv1", "bn1", "conv2", "bn2", "conv3", "gn", "conv1d", "tok", "ln", "lin", "bn3"]
    assert emb.hessian.shape == (8 + 8 + 8 + 8 + 12 + 12 + 6 + 6 + 6 + 10 + 10,)
    assert emb.meta["estimator"] == "hooks" and (emb.scale == 1).all()
    no_bn = Task2Vec(probe, include_bn=False, skip_layers=2, **FAST).embed(torch.randn(30, 1, 8, 8),
                                                                          np.arange(30) % 3)
    assert [n for n, _, _ in no_bn.layout] == ["conv2", "conv3", "conv1d", "tok", "lin"]


def test_order_free_deterministic_and_probe_untouched(probe):
    x, y = torch.randn(40, 1, 8, 8), np.arange(40) % 4
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    a = Task2Vec(probe, seed=5, **FAST).embed(x, y)
    perm = np.random.default_rng(1).permutation(40)
    b = Task2Vec(probe, seed=5, **FAST).embed(x[perm], y[perm] + 10)  # other order and label values
    np.testing.assert_array_equal(a.hessian, b.hessian)
    c = Task2Vec(probe, seed=6, **FAST).embed(x, y)
    assert not np.array_equal(a.hessian, c.hessian)  # the seed drives the sampled labels
    after = probe.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert probe.relu.inplace and probe.training


def test_max_samples_keeps_a_stratified_subset(probe):
    x, y = torch.randn(60, 1, 8, 8), np.repeat([0, 1, 2], 20)
    emb = Task2Vec(probe, max_samples=30, **FAST).embed(x, y)
    assert emb.meta["n_examples"] == 30


@pytest.fixture(scope="module")
def digits_probe():
    """small_cnn trained for a few epochs on all 10 sklearn digits (8x8): a probe that knows digits."""
    from sklearn.datasets import load_digits

    from zooscope.nets.models import small_cnn

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    from zooscope.nets.training import train_classifier

    model = small_cnn(in_chans=1, num_classes=10, width=8, img_size=8, seed=0)
    train_classifier(model, x, y, epochs=6, batch_size=64, lr=3e-3, weight_decay=0.0, seed=0)
    return model.eval(), x, y.numpy()


def test_same_classes_closer_than_disjoint_classes_on_digits(digits_probe):
    model, x, y = digits_probe
    rng = np.random.default_rng(0)
    low = rng.permutation(np.flatnonzero(y < 5))
    high = np.flatnonzero(y >= 5)
    t1, t3 = low[: len(low) // 2], low[len(low) // 2:]
    kw = {"head_epochs": 5, "head_draws": 2048, "n_samples": 1500}
    e1 = Task2Vec(model, seed=1, **kw).embed(x[t1], y[t1])
    e3 = Task2Vec(model, seed=2, **kw).embed(x[t3], y[t3])
    e2 = Task2Vec(model, seed=3, **kw).embed(x[high], y[high] - 5)
    again = Task2Vec(model, seed=4, **kw).embed(x[t1], y[t1])
    D = pdist([e1, e3, e2])
    assert D[0, 1] < min(D[0, 2], D[1, 2])  # same classes (disjoint images) beat disjoint classes
    assert task_distance(e1, again) < D[0, 2]  # a task is closer to itself (another seed) than to T2
    assert task_distance(e1, e1) == 0.0


def test_task_distance_properties(rng):
    a, b, t = rng.uniform(0.1, 1, 50), rng.uniform(0.1, 1, 50), rng.uniform(0.1, 1, 50)
    assert task_distance(a, 7.0 * a, eps=0) == pytest.approx(0.0, abs=1e-12)
    assert task_distance(a, b) == pytest.approx(task_distance(b, a), abs=1e-15)
    asym = task_distance(a, b, kind="asym", alpha=0.15, trivial=t)
    assert asym == pytest.approx(task_distance(a, b) - 0.15 * task_distance(a, t), abs=1e-15)
    with pytest.raises(ZooscopeInputError, match="trivial"):
        task_distance(a, b, kind="asym")
    with pytest.raises(ZooscopeInputError, match="same probe"):
        task_distance(a, b[:10])
    with pytest.raises(ZooscopeInputError, match="'kind'"):
        task_distance(a, b, kind="cosine")
    emb = TaskEmbedding(a, np.ones(50), [("x", 0, 50)])
    assert task_distance(emb, b, eps=0) == pytest.approx(task_distance(a, b, eps=0), abs=1e-15)


def test_index_vector_is_the_centred_log_fisher(rng):
    a = rng.uniform(1e-9, 1e-6, 40)
    v = index_vector(a)
    assert v.dtype == np.float32 and abs(float(v.mean())) < 1e-5
    np.testing.assert_allclose(index_vector(3 * a), v, atol=1e-5)  # scale-free
    np.testing.assert_allclose(v, np.log(a) - np.log(a).mean(), atol=1e-5)
    np.testing.assert_allclose(index_vector(np.stack([a, 2 * a]))[1], v, atol=1e-5)
    assert task2vec.index_transform is index_vector
    with pytest.raises(ZooscopeInputError, match="not a Fisher"):
        task_distance(v, a)


def test_d_sym_reproduces_the_reference_matrices():
    from tests.conftest import shared_oracles_or_skip

    root = shared_oracles_or_skip() / "task2vec" / "mc"
    H = [np.load(root / f"T{k}_hessian.npy") for k in range(1, 5)]
    np.testing.assert_allclose(pdist(H), np.load(root / "dsym_cosine.npy"), atol=1e-6)
    np.testing.assert_allclose(pdist(H, eps=0), np.load(root / "dsym_cosine_noeps.npy"), atol=1e-6)


def test_embedding_kind_is_registered(probe):
    kind = EMBEDDINGS.get("task2vec")
    assert kind.subject == "dataset" and kind.metric == "ip" and kind.normalized
    x, y = torch.randn(20, 1, 8, 8), torch.arange(20) % 2
    v = task2vec(x, y, probe=probe, **FAST)
    assert v.dtype == np.float32 and v.ndim == 1 and (v >= 0).all()
    np.testing.assert_allclose(v, Task2Vec(probe, **FAST).embed(x, y).hessian, rtol=1e-6)
    with pytest.raises(ZooscopeInputError, match="Unknown task2vec parameter"):
        task2vec(torch.randn(20, 1, 8, 8), torch.arange(20) % 2, probe=probe, epochs=3)


def test_variational_method_gives_conv_filters(probe):
    emb = Task2Vec(probe, method="variational", n_samples=64, batch_size=16).embed(torch.randn(30, 1, 8, 8),
                                                                                  np.arange(30) % 3)
    assert [n for n, _, _ in emb.layout] == ["conv1", "conv2", "conv3", "conv1d"]
    assert emb.hessian.shape == (8 + 8 + 12 + 6,) and (emb.hessian > 0).all() and emb.meta["steps"] == 8


def test_trivial_embedding_and_bad_input(probe):
    triv = Task2Vec(probe, **FAST).embed_trivial(torch.randn(20, 1, 8, 8), num_classes=3)
    assert np.isfinite(triv.hessian).all() and triv.hessian.max() > 0
    t2v = Task2Vec(probe, **FAST)
    with pytest.raises(ZooscopeInputError, match="at least 2 classes"):
        t2v.embed(torch.randn(10, 1, 8, 8), np.zeros(10, int))
    with pytest.raises(ZooscopeInputError, match="one label per example"):
        t2v.embed(torch.randn(10, 1, 8, 8), np.arange(9) % 2)
    with pytest.raises(ZooscopeInputError, match="Did you mean"):
        Task2Vec(probe, estimator="per-sample").embed(torch.randn(10, 1, 8, 8), np.arange(10) % 2)


def test_auto_falls_back_when_hooks_cannot_handle_a_module():
    class Scaled(nn.Conv2d):  # a subclass: the hooks cannot know its forward
        pass

    net = nn.Sequential(Scaled(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    emb = Task2Vec(net, **FAST).embed(torch.randn(12, 1, 8, 8), np.arange(12) % 3)
    assert emb.meta["estimator"] == "vmap" and emb.hessian.shape == (4,)


@pytest.mark.slow
def test_timm_probe_uses_forward_head_and_hooks_match_loop():
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet10t", num_classes=4, in_chans=1, pretrained=False)
    x, y = torch.randn(6, 1, 16, 16), np.arange(6) % 2
    kw = {"head_epochs": 1, "head_draws": 64, "batch_size": 6, "n_samples": None, "seed": 0}
    hooks = Task2Vec(model, estimator="hooks", **kw).embed(x, y)
    loop = Task2Vec(model, estimator="loop", **kw).embed(x, y)
    assert "fc" not in [n for n, _, _ in hooks.layout]
    np.testing.assert_allclose(hooks.hessian, loop.hessian, rtol=1e-4, atol=1e-12)
