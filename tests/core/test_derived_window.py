"""An AI result's own window: the source's where it is on the source's scale, its own where not."""

from __future__ import annotations

import numpy as np
import pytest

import viewer
from viewer.ai.api import DerivedImage, Results
from viewer.core.ai_results import convert_results


@pytest.fixture(scope="module")
def mr(request):
    from tests.conftest import data_path

    vol = viewer.load(data_path("brain-mr-t1"))
    assert vol.modality == "MR" and vol.window is not None  # its DICOM header's window: the case at hand
    return vol


def test_a_synthetic_ct_from_an_mr_keeps_a_ct_window_and_a_denoised_mr_the_mr_s(mr):
    """MR-to-CT's synthetic CT was given the MR's window (here its header's W 502 L 210; in the
    viewer the MR's W 852 L 469, where it showed bone alone); a result on another scale now carries
    no window of the source's and gets a CT's own (soft tissue, W 400 L 40).  A result on the
    source's scale (a denoised MR) keeps the MR's."""
    body = mr.real_values() > 50
    sct = DerivedImage(np.where(body, 40, -1000).astype(np.int16), mr.affine.copy(), "Synthetic CT",
                       modality="CT", units="HU")
    den = DerivedImage(np.asarray(mr.array).copy(), mr.affine.copy(), "Denoised", modality="MR")
    ct_out, mr_out = convert_results(Results(images=[sct, den]), mr).images
    assert ct_out.modality == "CT" and ct_out.window != mr.window
    assert mr_out.modality == "MR" and mr_out.window == mr.window
    from viewer.core.ai_results import same_scale
    from viewer.core.windowing import CT_WINDOW, own_window

    assert not same_scale(mr, ct_out) and own_window(ct_out) == CT_WINDOW
    assert same_scale(mr, mr_out) and own_window(mr_out) == tuple(mr.window)
