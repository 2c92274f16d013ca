import numpy as np
import pytest
from zoo_helpers import make_zoo

from zooscope._validation import ZooscopeInputError
from zooscope.zoo.curate import clusters, duplicates, pair_heatmap, similarity_matrix, zoo_map


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return make_zoo(tmp_path_factory.mktemp("curzoo"))


def test_similarity_matrix_is_symmetric_with_unit_diagonal(zoo):
    S = similarity_matrix(zoo, "cka")
    assert list(S.index) == ["cnn0", "cnn0-copy", "cnn1", "cnn2"]
    np.testing.assert_allclose(S.to_numpy(), S.to_numpy().T)
    np.testing.assert_allclose(np.diag(S.to_numpy()), 1.0, atol=1e-6)


def test_duplicates_groups_the_identical_copy_only(zoo):
    groups = duplicates(zoo, threshold=0.995)
    assert sorted(groups["model"]) == ["cnn0", "cnn0-copy"]
    assert groups["group"].nunique() == 1
    assert groups["min_similarity"].iloc[0] == pytest.approx(1.0, abs=1e-6)


def test_clusters_put_the_copy_with_its_original(zoo):
    labels = clusters(zoo, n_clusters=3).set_index("model")["cluster"]
    assert labels["cnn0"] == labels["cnn0-copy"]
    assert labels.nunique() == 3
    spectral = clusters(zoo, n_clusters=2, method="spectral").set_index("model")["cluster"]
    assert spectral["cnn0"] == spectral["cnn0-copy"]


def test_zoo_map_is_seeded_and_writes_a_png(zoo, tmp_path):
    a = zoo_map(zoo, path=tmp_path / "map.png")
    b = zoo_map(zoo)
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_allclose(a[["x", "y"]], b[["x", "y"]])
    xy = a.set_index("model")[["x", "y"]]
    assert np.linalg.norm(xy.loc["cnn0"] - xy.loc["cnn0-copy"]) < 1e-3 + 0.1 * np.ptp(xy.to_numpy())


def test_pair_heatmap_is_layer_by_layer(zoo, tmp_path):
    table = pair_heatmap(zoo, "cnn0", "cnn0-copy", tmp_path / "pair.png")
    assert table.shape == (4, 4)
    np.testing.assert_allclose(np.diag(table.to_numpy()), 1.0, atol=1e-6)
    assert (tmp_path / "pair.png").is_file()


def test_curation_bad_inputs(zoo):
    with pytest.raises(ZooscopeInputError, match="threshold"):
        duplicates(zoo, threshold=1.5)
    with pytest.raises(ZooscopeInputError, match="Did you mean 'cka'"):
        similarity_matrix(zoo, "ckaa")
    with pytest.raises(ZooscopeInputError, match="n_clusters"):
        clusters(zoo, method="spectral")
