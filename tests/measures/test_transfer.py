import numpy as np
import pytest
from scipy import optimize, stats

from zooscope._validation import ZooscopeInputError
from zooscope.measures import (
    MEASURES,
    Inv,
    gbc,
    h_score,
    knn_accuracy,
    leep,
    linear_probe,
    logme,
    nce,
    ncti,
    ncti_combine,
    ncti_terms,
    sfda,
    sfda_pca,
    transfer,
    transrate,
)

EVIDENCE_TOL = 1e-6  # LogME runs its fixed point to convergence: the evidence is its maximum to round-off


def _evidence(f, y, log_a, log_b):
    """Bayesian linear-regression log evidence / n, written directly as the marginal Gaussian
    y ~ N(0, F Fᵀ / α + I / β) (independent of LogME's SVD and fixed-point algebra)."""
    n = f.shape[0]
    C = f @ f.T * np.exp(-log_a) + np.eye(n) * np.exp(-log_b)
    try:
        L = np.linalg.cholesky(C)
    except np.linalg.LinAlgError:  # the optimiser wandered where C is numerically singular
        return -np.inf
    z = np.linalg.solve(L, y)
    return (-0.5 * z @ z - np.log(np.diag(L)).sum() - n / 2 * np.log(2 * np.pi)) / n


def _max_evidence(f, y):
    best = None
    for x0 in ([0.0, 0.0], [3.0, -1.0], [-3.0, 2.0], [0.0, 30.0]):  # a few starts (the last near β → ∞)
        res = optimize.minimize(lambda t: -_evidence(f, y, *t), x0=x0, method="Nelder-Mead",
                                options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000})
        best = res if best is None or res.fun < best.fun else best
    return -best.fun


def test_logme_is_the_maximum_evidence(rng):
    f = rng.normal(size=(120, 6))
    y = (f[:, 0] + 0.5 * rng.normal(size=120) > 0).astype(int) + (f[:, 1] > 1)
    expected = np.mean([_max_evidence(f, (y == c).astype(float)) for c in range(3)])
    assert logme(f, y) == pytest.approx(expected, abs=EVIDENCE_TOL)


@pytest.mark.parametrize("shape", [(30, 200), (40, 40), (25, 60)])
def test_logme_is_the_maximum_evidence_when_features_outnumber_examples(shape, rng):
    # n <= d: the evidence's log|αI + βFᵀF| has d − n eigenvalues equal to α (thuml/LogME keeps d/2·log α and
    # overstates the evidence there), and the maximum can sit at the β → ∞ boundary
    n, d = shape
    y = np.arange(n) % 3
    f = rng.normal(size=(n, d)) + 0.3 * rng.normal(size=(3, d))[y]
    expected = np.mean([_max_evidence(f, (y == c).astype(float)) for c in range(3)])
    assert logme(f, y) == pytest.approx(expected, abs=EVIDENCE_TOL)


def test_logme_regression_is_the_maximum_evidence(rng):
    f = rng.normal(size=(80, 5))
    t = np.c_[f @ rng.normal(size=5) + 0.3 * rng.normal(size=80), rng.normal(size=80)]
    expected = np.mean([_max_evidence(f, t[:, j]) for j in range(2)])
    assert logme(f, t, regression=True) == pytest.approx(expected, abs=EVIDENCE_TOL)


def _thuml_logme_column(f, y):
    """thuml/LogME's fixed point as it was (11 steps, 0.1 % stop, +1e-5 guards), for one column."""
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma, x2 = s ** 2, (u.T @ y) ** 2
    res_x2 = y @ y - x2.sum()
    alpha = beta = 1.0
    for _ in range(11):
        t = alpha / beta
        gamma = (sigma / (sigma + t)).sum()
        m2 = (sigma * x2 / (t + sigma) ** 2).sum()
        res2 = (x2 / (1 + sigma / t) ** 2).sum() + res_x2
        alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
        if abs(alpha / beta - t) / t <= 1e-3:
            break
    return (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * sigma).sum()
            - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n


def test_logme_reaches_the_optimum_where_eleven_steps_do_not():
    # weakly informative features: thuml's capped fixed point stops measurably short of the maximum
    rng = np.random.default_rng(1)
    f = rng.normal(size=(200, 30))
    y = (f[:, 0] * 0.15 + rng.normal(size=200) > 0).astype(int)
    optimum = np.mean([_max_evidence(f, (y == c).astype(float)) for c in range(2)])
    capped = np.mean([_thuml_logme_column(f, (y == c).astype(float)) for c in range(2)])
    assert capped < optimum - 1e-6
    assert logme(f, y) == pytest.approx(optimum, abs=EVIDENCE_TOL)


def test_logme_warns_when_the_iteration_budget_runs_out(rng, monkeypatch):
    monkeypatch.setattr(transfer, "LOGME_MAX_ITER", 1)
    y = np.arange(60) % 2
    f = rng.normal(size=(60, 5)) + np.outer(y, rng.normal(size=5))  # an interior maximum to refine
    with pytest.warns(RuntimeWarning, match="did not converge"):
        logme(f, y)


def test_logme_prefers_informative_features_and_handles_wide_features(rng):
    y = np.repeat(np.arange(4), 25)
    good = np.eye(4)[y] + 0.2 * rng.normal(size=(100, 4))
    assert logme(good, y) > logme(rng.normal(size=(100, 4)), y)
    wide = rng.normal(size=(30, 200))  # n < d: the full SVD path
    assert np.isfinite(logme(wide, np.arange(30) % 3))


def test_logme_orthogonal_invariance(rng):
    f, y = rng.normal(size=(60, 5)), np.arange(60) % 3
    Q = stats.ortho_group.rvs(5, random_state=1)
    assert logme(f @ Q, y) == pytest.approx(logme(f, y), rel=1e-9)


def _leep_loops(theta, y):
    n, nz = theta.shape
    k = y.max() + 1
    joint = np.zeros((nz, k))
    for i in range(n):
        for z in range(nz):
            joint[z, y[i]] += theta[i, z] / n
    cond = joint / joint.sum(1, keepdims=True)
    return np.mean([np.log(sum(cond[z, y[i]] * theta[i, z] for z in range(nz))) for i in range(n)])


def test_leep_matches_the_definition(rng):
    theta = rng.dirichlet(np.ones(4), size=50)
    y = rng.integers(0, 3, size=50)
    assert leep(theta, y) == pytest.approx(_leep_loops(theta, y), rel=1e-12)


def test_leep_is_zero_for_a_one_to_one_source():
    theta = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    assert leep(theta, [2, 0, 1, 2, 0, 1]) == pytest.approx(0.0, abs=1e-12)


def test_nce_bounds_and_definition(rng):
    z = np.repeat(np.arange(3), 20)
    assert nce(z, (z + 1) % 3) == 0.0  # the source label determines the target label
    y_indep = np.tile(np.arange(2), 30)  # independent of z, uniform
    assert nce(np.eye(3)[z] * 0.9 + 0.1 / 3, y_indep) == pytest.approx(-np.log(2), abs=1e-12)
    theta = rng.dirichlet(np.ones(4), size=40)
    y = rng.integers(0, 3, size=40)
    zh = theta.argmax(1)
    h = 0.0
    for zz in np.unique(zh):
        py = np.bincount(y[zh == zz], minlength=3) / np.sum(zh == zz)
        h -= np.mean(zh == zz) * sum(p * np.log(p) for p in py if p > 0)
    assert nce(theta, y) == pytest.approx(-h, rel=1e-12)


def test_h_score_without_shrinkage_matches_definition_and_is_linear_invariant(rng):
    f, y = rng.normal(size=(90, 4)), np.arange(90) % 3
    f[:, 0] += y
    g = np.stack([f[y == c].mean(0) for c in range(3)])[y]
    expected = np.trace(np.linalg.pinv(np.cov(f, rowvar=False)) @ np.cov(g, rowvar=False))
    assert h_score(f, y, shrinkage=None) == pytest.approx(expected, rel=1e-10)
    W = rng.normal(size=(4, 4))
    assert h_score(f @ W + 3.0, y, shrinkage=None) == pytest.approx(expected, rel=1e-8)


def test_h_score_shrinkage_is_stable_and_invariant(rng):
    f, y = rng.normal(size=(20, 50)), np.arange(20) % 2  # more features than samples: raw H-score blows up
    s = h_score(f, y)
    assert np.isfinite(s) and 0 <= s < 1
    Q = stats.ortho_group.rvs(50, random_state=2)
    assert h_score(3.0 * f @ Q + 1.0, y) == pytest.approx(s, rel=1e-8)
    assert h_score(f, y, shrinkage=1.0) == 0.0


def test_h_score_ignores_dead_and_duplicate_columns(rng):
    """Issue 13: a dead unit (constant column) or a copied unit must not move the shrunk H-score."""
    n = 60
    y = np.arange(n) % 3
    f = rng.normal(size=(n, 12)) * rng.lognormal(0, 1, size=12)
    f[:, :3] += 0.8 * np.eye(3)[y]
    s = h_score(f, y)
    assert h_score(np.c_[f, np.zeros(n), 5.0 * np.ones(n)], y) == pytest.approx(s, rel=1e-12)
    assert h_score(np.c_[f, f[:, [4, 0]]], y) == pytest.approx(s, rel=1e-12)
    for j in (0, 7):  # a unit that dies is the same as a unit that is not there
        dead = f.copy()
        dead[:, j] = 1.0
        assert h_score(dead, y) == pytest.approx(h_score(np.delete(f, j, axis=1), y), rel=1e-12)
    with pytest.raises(ZooscopeInputError, match="same for every example"):
        h_score(np.ones((n, 4)), y)


def test_h_score_refuses_a_covariance_above_the_memory_cap(rng, monkeypatch):
    from zooscope import _validation

    monkeypatch.setattr(_validation, "MEMORY_CAP_BYTES", 4 * 8 * 50 * 50 - 1)  # just below four 50×50 matrices
    with pytest.raises(ZooscopeInputError, match=r"MEMORY_CAP_BYTES.*PCA"):
        h_score(rng.normal(size=(20, 50)), np.arange(20) % 2)


def test_transrate_matches_definition_and_invariances(rng):
    f, y = rng.normal(size=(60, 5)), np.arange(60) % 3
    f[:, 0] += 2 * y

    def rate(Z):
        return 0.5 * np.linalg.slogdet(np.eye(Z.shape[1]) + Z.T @ Z / (len(Z) * 1e-4))[1]

    Z = f - f.mean(0)
    expected = rate(Z) - np.mean([rate(Z[y == c]) for c in range(3)])
    assert transrate(f, y) == pytest.approx(expected, rel=1e-10)
    Q = stats.ortho_group.rvs(5, random_state=3)
    assert transrate(f @ Q + 5.0, y) == pytest.approx(expected, rel=1e-8)
    clusters = 3 * np.eye(3)[y] @ rng.normal(size=(3, 5)) + 0.1 * rng.normal(size=(60, 5))
    assert transrate(clusters, y) > transrate(clusters, rng.permutation(y)) + 1.0


@pytest.mark.parametrize("name", ["logme", "leep", "nce", "h_score", "transrate", "linear_probe", "knn_accuracy",
                                  "sfda", "sfda_pca", "ncti", "gbc"])
def test_registered_with_other_inputs(name):
    m = MEASURES.get(name)
    assert m.inputs == "other" and m.larger_is_more_similar and not m.symmetric and not m.layerwise


@pytest.mark.parametrize("fn", [logme, h_score, transrate])
def test_feature_scores_validate_labels(fn, rng):
    f = rng.normal(size=(10, 3))
    with pytest.raises(ZooscopeInputError, match="at least 2 classes"):
        fn(f, np.zeros(10, int))
    with pytest.raises(ZooscopeInputError, match="shape"):
        fn(f, np.arange(9) % 2)
    with pytest.raises(ZooscopeInputError, match="integer"):
        fn(f, rng.normal(size=10))
    bad = f.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ZooscopeInputError, match="NaN"):
        fn(bad, np.arange(10) % 2)


@pytest.mark.parametrize("fn", [leep, nce])
def test_probability_scores_validate_inputs(fn, rng):
    with pytest.raises(ZooscopeInputError, match="softmax"):
        fn(rng.normal(size=(10, 3)), np.arange(10) % 2)
    with pytest.raises(ZooscopeInputError, match="shape"):
        fn(rng.dirichlet(np.ones(3), size=10), np.arange(8) % 2)


# ----------------------------------------------------------------------------- scores added with issue 8
NEW = [linear_probe, knn_accuracy, sfda, sfda_pca, ncti, gbc]


def _planted(rng, n=120, d=20, k=4, sep=2.0):
    y = np.arange(n) % k
    f = rng.normal(size=(n, d)) + sep * rng.normal(size=(k, d))[y]
    return f, y


@pytest.mark.parametrize("fn", NEW, ids=lambda f: f.__name__)
def test_planted_separable_beats_shuffled_labels(fn, rng):
    f, y = _planted(rng)
    good = fn(f, y)
    shuffled = [fn(f, rng.permutation(y)) for _ in range(3)]
    assert good > max(shuffled)
    assert np.isfinite(good)


@pytest.mark.parametrize("fn", NEW, ids=lambda f: f.__name__)
def test_more_separation_scores_higher(fn, rng):
    y = np.arange(150) % 3
    centres, noise = rng.normal(size=(3, 10)), rng.normal(size=(150, 10))
    weak, strong = noise + 0.4 * centres[y], noise + 3.0 * centres[y]
    assert fn(strong, y) > fn(weak, y)


TRANSFORMS = {
    Inv.TRANSLATION: lambda f, rng: f + 10 * rng.normal(size=(1, f.shape[1])),
    Inv.ISOTROPIC_SCALE: lambda f, rng: 3.7 * f,
    Inv.ORTHOGONAL: lambda f, rng: f @ stats.ortho_group.rvs(f.shape[1], random_state=rng),
    Inv.PERMUTATION: lambda f, rng: f[:, rng.permutation(f.shape[1])],
}


@pytest.mark.parametrize("name", ["linear_probe", "knn_accuracy", "sfda", "sfda_pca", "ncti", "gbc"])
@pytest.mark.parametrize("inv", list(TRANSFORMS), ids=lambda i: i.name)
def test_declared_invariances_of_the_new_scores(name, inv, rng):
    m = MEASURES.get(name)
    if inv not in m.invariances and inv not in m.not_invariant:
        pytest.skip(f"{name} makes no claim about {inv.name}")
    f, y = _planted(rng, n=90, d=8, k=3, sep=0.7)  # overlapping classes: every score is away from its ceiling
    before, after = m(f, y), m(TRANSFORMS[inv](f, rng), y)
    if inv in m.invariances:
        assert after == pytest.approx(before, rel=1e-6, abs=1e-9)
    else:
        assert after != pytest.approx(before, abs=1e-6)


def test_linear_probe_is_invariant_to_per_feature_scaling(rng):
    f, y = _planted(rng, n=90, d=8, k=3, sep=0.7)
    assert linear_probe(f * rng.uniform(0.01, 100, size=8), y) == pytest.approx(linear_probe(f, y), abs=1e-12)


def test_linear_probe_matches_sklearn_directly(rng):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    f, y = _planted(rng, n=90, d=8, k=3, sep=0.5)
    accs = []
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=0).split(f, y):
        sc = StandardScaler().fit(f[tr])
        clf = LogisticRegression(C=1.0, max_iter=1000).fit(sc.transform(f[tr]), y[tr])
        accs.append(np.mean(clf.predict(sc.transform(f[te])) == y[te]))
    assert linear_probe(f, y) == pytest.approx(np.mean(accs), abs=1e-12)


def test_knn_accuracy_is_leave_one_out_knn(rng):
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    f, y = _planted(rng, n=60, d=5, k=3, sep=0.6)
    want = cross_val_score(KNeighborsClassifier(3), f, y, cv=LeaveOneOut()).mean()
    assert knn_accuracy(f, y, k=3) == pytest.approx(want, abs=1e-12)


def test_sfda_first_stage_is_shrinkage_lda_and_pca_variant_does_not_saturate(rng):
    # n << d with large-scale features: lambda hits its floor and raw SFDA saturates near 1 even for
    # labels that carry no information (TencentARC/SFDA #5); the PCA-32 variant does not
    n, d = 60, 400
    y = np.arange(n) % 3
    f = 10 * rng.normal(size=(n, d))
    assert sfda(f, y) > 0.95  # the documented failure of the paper's estimator
    assert sfda_pca(f, y) < 0.8
    planted = f.copy()
    planted[:, :3] += 30 * np.eye(3)[y]
    assert sfda_pca(planted, y) > sfda_pca(f, y) + 0.1


def test_sfda_ignores_dead_and_duplicate_columns(rng):
    f, y = _planted(rng, n=90, d=8, k=3, sep=0.7)
    s = sfda(f, y)
    assert sfda(np.c_[f, np.zeros(90), f[:, 2]], y) == pytest.approx(s, rel=1e-10)


def test_gbc_matches_pairwise_bhattacharyya_definition(rng):
    f, y = _planted(rng, n=90, d=3, k=3, sep=0.8)
    Z = (f - f.mean(0)) @ np.linalg.svd(f - f.mean(0), full_matrices=False)[2].T  # full-rank PCA rotation
    want = 0.0
    for i in range(3):
        for j in range(3):
            if i == j:
                continue
            mi, mj, vi, vj = Z[y == i].mean(0), Z[y == j].mean(0), Z[y == i].var(0), Z[y == j].var(0)
            v = (vi + vj) / 2
            db = np.sum((mi - mj) ** 2 / v) / 8 + 0.5 * np.sum(np.log(v / np.sqrt(vi * vj)))
            want -= np.exp(-db)
    assert gbc(f, y) == pytest.approx(want, rel=1e-9)
    far = np.eye(3)[y] * 1e3 + rng.normal(size=(90, 3))
    assert gbc(far, y) == pytest.approx(0.0, abs=1e-12)


def test_ncti_terms_and_the_papers_candidate_combination(rng):
    f, y = _planted(rng, n=120, d=30, k=4, sep=1.0)
    good, bad = ncti_terms(f, y), ncti_terms(rng.normal(size=f.shape), y)
    assert good.ncc > bad.ncc and good.seli / good.total_scale > bad.seli / bad.total_scale
    combined = ncti_combine([good, bad])
    assert combined[0] > combined[1]
    assert ncti_combine([good]).tolist() == [0.0]  # one candidate: every term is constant


@pytest.mark.parametrize("fn", NEW, ids=lambda f: f.__name__)
def test_new_scores_refuse_too_few_examples_or_one_class(fn, rng):
    f = rng.normal(size=(10, 4))
    with pytest.raises(ZooscopeInputError, match="at least 2 classes"):
        fn(f, np.zeros(10, int))
    with pytest.raises(ZooscopeInputError, match="2 × n_classes"):
        fn(f, np.arange(10) % 6)  # 10 examples, 6 classes
    with pytest.raises(ZooscopeInputError, match="shape"):
        fn(f, np.arange(9) % 2)
    bad = f.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ZooscopeInputError, match="NaN"):
        fn(bad, np.arange(10) % 2)


@pytest.mark.parametrize("fn", [linear_probe, knn_accuracy], ids=lambda f: f.__name__)
def test_cross_validated_scores_need_two_examples_per_class(fn, rng):
    with pytest.raises(ZooscopeInputError, match="at least 2"):
        fn(rng.normal(size=(12, 3)), np.r_[np.zeros(6, int), np.ones(5, int), 2])


def test_every_transfer_score_is_registered_with_what_select_needs():
    from zooscope.measures import TransferMeta
    from zooscope.zoo.select import METHODS

    scores = MEASURES.transfer_scores()
    assert [e.transfer.method for e in scores] == [m for m in METHODS if m not in ("task2vec", "fisher", "history")]
    assert len({e.transfer.order for e in scores}) == len(scores)
    for e in scores:
        assert isinstance(e.transfer, TransferMeta) and e.transfer.display and e.larger_is_more_similar
        assert e.transfer.source in ("features", "probs", "labels")
        assert MEASURES.get(e.transfer.method) is e  # the name select users type finds the measure
    assert {e.name for e in scores} == {"logme", "leep", "nce", "h_score", "ncti", "knn_accuracy", "linear_probe",
                                        "sfda", "sfda_pca", "gbc", "transrate", "probe_logloss", "etran_energy"}
    assert MEASURES.get("leep").transfer.source == "probs" and MEASURES.get("nce").transfer.source == "labels"


def test_old_select_names_are_aliases_not_extra_measures():
    assert MEASURES.get("hscore").name == "h_score" and MEASURES.get("knn").name == "knn_accuracy"
    assert "hscore" in MEASURES and "hscore" not in MEASURES.available()
    y = np.repeat([0, 1], 10)
    f = np.c_[y + 0.1 * np.arange(20) % 3, np.arange(20) % 5]
    assert MEASURES.get("hscore")(f, y) == h_score(f, y)
