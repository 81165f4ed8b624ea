"""The nodule detector on the held-out chest CT's second real lesion, and the candidate second stage
(fpr.py: low-threshold candidates, image blobs, per-candidate features) on the same real data."""

from __future__ import annotations

import numpy as np
import pytest

import viewer
from tests.conftest import data_path

SECOND_KJI = (37.0, 306.0, 211.0)  # a round ~9 mm opacity in the right lower lobe (k 35-40)
K0, K1 = 27, 49  # 22 slices around it


@pytest.fixture(scope="module")
def crop():
    chest = viewer.load(data_path("chest-ct"))
    hu = chest.real_values()[K0:K1].astype(np.float32)
    affine = chest.affine.copy()
    affine[:3, 3] = chest.index_to_lps([0, 0, K0])
    sp = np.asarray(chest.spacing[::-1], float)
    return hu, sp, affine


@pytest.fixture(scope="module")
def found(crop):
    from plugins.lung_nodules.detect import Detector

    hu, sp, affine = crop
    return Detector().run(hu, sp, affine, plain=True)


def _near(dets, sp, radius_mm=8.0):
    target = np.array(SECOND_KJI) - [K0, 0, 0]
    return [d for d in dets if np.linalg.norm((np.asarray(d["center_kji"]) - target) * sp) <= radius_mm]


def test_the_shipped_detector_finds_the_second_real_lesion(crop, found):
    """Not in the data README and never trained on: the network's top detection on these slices."""
    _, sp, _ = crop
    assert found.plain == found.detections  # the shipped path has no second stage
    near = _near(found.detections, sp)
    assert near, [(d["center_kji"], d["score"]) for d in found.detections[:5]]
    assert near[0]["score"] >= 0.5 and found.detections.index(near[0]) < 3
    assert near[0]["lung"] == "right"


def test_second_stage_candidates_and_features_on_real_ct(crop, found):
    from scipy import ndimage

    from plugins.lung_nodules import fpr, lungmask

    hu, sp, _ = crop
    lung = found.lungs > 0
    prob = found.probability
    near = ndimage.binary_dilation(lung, structure=lungmask.ball(4.0, sp))
    floor = fpr.background(prob, lung)
    assert 0.0 < floor < 0.3  # the heatmap's background in the lung, far below a detection
    cands = fpr.candidates(prob, sp, near, floor)
    # a low threshold: far more candidates than the plain peaks above 0.5, the lesion among them
    assert len(cands) > 5 * sum(d["score"] >= 0.5 for d in found.detections)
    lesion = _near(cands, sp)
    assert lesion and lesion[0]["score"] > 0.9
    # a weak peak's extent is measured from the background, not swallowed by it (half its peak would
    # lie below the background and take in the whole plateau around it)
    from plugins.lung_nodules.detect import find_peaks

    weak = cands[-20:]
    assert weak[-1]["score"] < 2 * floor
    plain = find_peaks(prob, sp, near, low=0.0)
    by_peak = {tuple(d["peak_kji"]): d["diameter_mm"] for d in plain}
    pairs = [(d["diameter_mm"], by_peak[tuple(d["peak_kji"])]) for d in weak if tuple(d["peak_kji"]) in by_peak]
    assert len(pairs) >= 10
    assert np.median([a for a, _ in pairs]) < 0.5 * np.median([b for _, b in pairs]), pairs
    blobs = fpr.image_candidates(hu, prob, sp, lung, cands)
    assert blobs and all(d["source"] == "image" for d in blobs)
    taken = np.array([d["center_kji"] for d in cands]) * sp
    assert min(np.min(np.linalg.norm(taken - np.asarray(b["center_kji"]) * sp, axis=1)) for b in blobs) >= 5.0
    x = fpr.features(hu, prob, lung, sp, lesion[:1] + blobs[:20], floor=floor)
    assert x.shape == (21, fpr.N_FEATURES) and np.isfinite(x).all()
    f = dict(zip(fpr.FEATURES, x[0]))
    # the lesion: a dense (about -200 HU), compact blob well inside the lung
    assert -0.4 < f["hu_mean2"] < 0.0 and f["net_logit"] > 0
    assert f["hess3.5_l3"] < 0  # all three eigenvalues negative at 3.5 mm: a blob, not a tube
    assert f["lung_edge_mm"] > 0 and f["obj_leaves_box"] == 0.0


def test_classifier_refuses_other_features():
    from plugins.lung_nodules import fpr

    n = fpr.N_FEATURES
    params = {"features": fpr.FEATURES, "mean": [0.0] * n, "std": [1.0] * n, "w1": [[0.0]] * n, "b1": [0.0],
              "w2": [1.0], "b2": 0.0}
    assert np.allclose(fpr.Classifier(params).score(np.zeros((2, n))), 0.5)
    with pytest.raises(ValueError, match="retrain"):
        fpr.Classifier({**params, "features": fpr.FEATURES[:-1]})
