"""Plots a reader understands: models, measure and direction named; scales from the registry; no label overlap."""

import math

import numpy as np
import pandas as pd
import pytest

from zooscope._validation import ZooscopeInputError
from zooscope.plot import (
    heatmap,
    heatmap_figure,
    match_figure,
    match_plot,
    measure_scale,
    model_label,
    zoo_map,
    zoo_map_figure,
)

LAYERS = ["conv1", "layer1", "layer2", "fc"]


def _table(measure, values, larger):
    df = pd.DataFrame(values, index=pd.Index(LAYERS, name="layer_a"), columns=pd.Index(LAYERS, name="layer_b"))
    df.attrs.update(measure=measure, n_examples=500, larger_is_more_similar=larger, model_a="A: timm:resnet18",
                    model_b="B: timm:resnet18", weights_a="base.safetensors", weights_b="tuned.safetensors")
    return df


def _colorbar(fig):
    return next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")


def test_procrustes_scale_is_its_registered_range_and_reads_lower_is_more_similar(rng):
    fig = heatmap_figure(_table("procrustes", rng.uniform(0.1, 0.9, (4, 4)), larger=False))
    ax = fig.axes[0]
    image = ax.images[0]
    assert image.get_clim() == pytest.approx((0.0, math.pi / 2))  # not 0-1, not the data range
    assert image.get_cmap().name == "magma_r"  # brighter = more similar for a distance too
    bar = _colorbar(fig)
    assert "lower = more similar" in bar.get_ylabel()
    assert "π/2" in [t.get_text() for t in bar.get_yticklabels()]
    assert "lower = more similar" in ax.get_title()


def test_similarity_scale_and_checkpoint_names_on_the_axes(rng):
    fig = heatmap_figure(_table("linear_cka", rng.uniform(0.5, 0.9, (4, 4)), larger=True))
    ax = fig.axes[0]
    assert ax.images[0].get_clim() == pytest.approx((0.0, 1.0))
    assert ax.images[0].get_cmap().name == "magma"
    assert "higher = more similar" in _colorbar(fig).get_ylabel()
    assert "base.safetensors" in ax.get_ylabel() and "timm:resnet18" in ax.get_ylabel()
    assert "tuned.safetensors" in ax.get_xlabel()


def test_unbounded_distance_uses_the_data_range_from_zero_bound(rng):
    scale = measure_scale("bures_wasserstein", np.array([0.5, 3.0]))  # registered without bounds
    assert (scale["vmin"], scale["vmax"]) == (0.5, 3.0) and not scale["larger"]
    assert measure_scale("tv_distance", np.array([0.2]))["vmax"] == 1.0


def test_streaming_comparer_takes_the_direction_of_the_measure_it_estimates():
    assert measure_scale("grad_nbs")["direction"] == "higher = more similar"
    assert measure_scale("grad_nbs")["bounded"]


def test_model_label_names_the_checkpoint_file():
    assert model_label("timm:resnet18", "/runs/7/tuned.safetensors") == "timm:resnet18 (tuned.safetensors)"
    assert model_label("timm:resnet18") == "timm:resnet18"


def _crowded(rng, n=60):
    xy = np.concatenate([rng.normal(0, 0.02, size=(n // 3, 2)), rng.normal(1, 0.3, size=(n - n // 3, 2))])
    return pd.DataFrame({"model": [f"checkpoint-{i:04d}-long-name" for i in range(n)], "x": xy[:, 0],
                         "y": xy[:, 1], "trained_on": rng.choice(["a", "b", None], size=n)})


def test_zoo_map_labels_never_overlap_and_stay_inside_the_axes(rng):
    fig, df = zoo_map_figure(_crowded(rng), max_labels=40)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert 0 < len(boxes) == df["labelled"].sum() <= 40
    axbox = ax.get_window_extent(renderer)
    for i, a in enumerate(boxes):
        assert axbox.x0 <= a.x0 and a.x1 <= axbox.x1 and axbox.y0 <= a.y0 and a.y1 <= axbox.y1
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    labelled = {t.get_text() for t in ax.texts}
    assert labelled == set(df.loc[df["labelled"], "model"])


def test_zoo_map_writes_the_unlabelled_rest_beside_the_image(rng, tmp_path):
    df = zoo_map(_crowded(rng), tmp_path / "map.png", max_labels=5)
    assert df["labelled"].sum() <= 5
    side = pd.read_csv(tmp_path / "map.csv")
    assert len(side) == len(df) and set(side["model"]) == set(df["model"])
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.csv", "map.png"]  # no temp files left


def test_a_few_models_are_all_labelled_and_no_csv_is_written(rng, tmp_path):
    coords = pd.DataFrame({"model": ["a", "b", "c"], "x": [0.0, 1.0, 0.5], "y": [0.0, 0.2, 1.0]})
    df = zoo_map(coords, tmp_path / "m.svg")
    assert df["labelled"].all() and not (tmp_path / "m.csv").exists()
    assert b"<svg" in (tmp_path / "m.svg").read_bytes()[:500]


def test_unknown_image_suffix_is_an_input_error(rng, tmp_path):
    with pytest.raises(ZooscopeInputError, match="xyz"):
        heatmap(_table("linear_cka", rng.uniform(size=(4, 4)), True), tmp_path / "x.xyz")
    assert list(tmp_path.iterdir()) == []


def test_match_plot_names_models_and_layers(rng, tmp_path):
    C = np.clip(rng.normal(0, 0.3, (6, 6)) + np.eye(6), -1, 1)
    path = match_plot(C, np.arange(6), np.arange(6), np.diag(C), tmp_path / "m.png", model_a="spec (a.safetensors)",
                      model_b="spec (b.safetensors)", layer_a="conv1", layer_b="conv2", method="bipartite")
    assert path.read_bytes()[:4] == b"\x89PNG"
    fig = match_figure(C, np.arange(6), np.arange(6), np.diag(C), model_a="spec (a.safetensors)",
                       model_b="spec (b.safetensors)", layer_a="conv1", layer_b="conv2", method="bipartite")
    title = fig._suptitle.get_text()
    assert "a.safetensors" in title and "b.safetensors" in title and "conv1" in title and "conv2" in title
    heat = fig.axes[1]
    assert heat.images[0].get_clim() == (-1, 1)
