"""MR-to-CT synthesis: the plugin code (runs in the AI worker; declared in plugin.json).

The default is the atlas method (``atlas.py``): head templates registered to the MR, the average
head CT carried across and refined with the MR's own tissues; the heatmap is where the atlases
disagree, in HU.  When a site has trained its own network (``train.py``; a TorchScript file at
``<models folder>/mr-to-ct/model.ts``) and ``method`` is ``auto``, the network's CT is returned and
the heatmap is where the network and the atlas disagree, in HU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viewer.ai.api import DerivedImage, Heatmap, Results

HEATMAP_FULL_SCALE_HU = 300.0  # disagreement of this many HU shows as 1.0
MODEL_NAME = "model.ts"


def site_model_path() -> Path | None:
    """The site's own trained network, when there is one."""
    from viewer.paths import models_dir

    path = models_dir() / "mr-to-ct" / MODEL_NAME
    return path if path.is_file() else None


def series_contrast(description: str) -> str:
    """The contrast a series description names ("T1" or "FLAIR" for T2-weighted and FLAIR), or "" when
    it names none or both (a protocol name such as "t1_mpr_tra", "AX FLAIR", "T2 TSE")."""
    import re

    words = set(re.split(r"[^a-z0-9]+", description.lower()))
    t1 = bool(words & {"t1", "t1w", "mprage", "mpr", "spgr", "bravo", "tfl", "t1c", "t1ce"})
    t2 = bool(words & {"t2", "t2w", "flair", "tirm", "pd"})
    return "" if t1 == t2 else ("T1" if t1 else "FLAIR")


class MRToCT:
    def __init__(self):
        self._net = None
        self._net_key = None

    def _network(self, path: Path, device: str):
        from viewer.ai.models import load_torchscript

        key = (str(path), path.stat().st_mtime, device)
        if self._net_key != key:
            self._net = load_torchscript(path, device)
            self._net_key = key
        return self._net

    def run(self, inputs, params, context) -> Results:
        from plugins.mr_to_ct import atlas

        vol = inputs["image"]
        contrast = {"auto": "auto", "T1": "T1", "T2/FLAIR": "FLAIR"}[params.get("contrast", "auto")]
        names = ("matching",) if params.get("atlases", "both") == "matching" else atlas.CONTRASTS
        net_path = site_model_path() if params.get("method", "auto") == "auto" else None
        span = 0.8 if net_path else 1.0

        def progress(f, m):
            context.progress(f * span, m)

        synth = atlas.synthesize(vol, atlases=names, contrast=contrast, progress=progress,
                                 check=context.check_cancelled, deformable=bool(params.get("deformable", False)))
        notes = list(synth.notes)
        hu, unc = synth.hu, synth.uncertainty
        name, how = "Synthetic CT (atlas)", "atlas-based"
        heat_name, heat_desc = "Synthetic CT uncertainty", "Spread of the atlases' synthetic CTs"
        if net_path is not None:
            context.progress(0.82, "running the site's network")
            net_hu = self._run_network(net_path, vol, synth, context)
            unc = np.abs(net_hu.astype(np.float32) - hu.astype(np.float32))
            unc[~synth.head] = 0.0
            hu = net_hu
            name, how = "Synthetic CT (network)", "network"
            heat_name, heat_desc = "Network vs atlas disagreement", "|network - atlas| synthetic CT"
            notes.append(f"Used the site's network {net_path.name}; the heatmap is where it and the atlas disagree.")
        notes.append(f"MR contrast taken as {'T2/FLAIR' if synth.contrast == 'FLAIR' else synth.contrast}.")
        named = series_contrast(getattr(getattr(vol, "source", None), "series_description", "") or "")
        if named and named != synth.contrast and params.get("contrast", "auto") == "auto":
            notes.append(f"The series description names a {'T2/FLAIR' if named == 'FLAIR' else named} but the image "
                         "reads otherwise; check the result, or set the MR contrast by hand.")
        for n in notes:
            context.note(n)
        results = Results(images=[DerivedImage(hu, vol.affine.copy(), name, "CT", "HU",
                                               f"Synthetic CT ({how}) from the MR; not a measured CT.")])
        if params.get("heatmap", True):
            results.heatmaps.append(Heatmap(
                np.clip(unc / HEATMAP_FULL_SCALE_HU, 0.0, 1.0).astype(np.float32), vol.affine.copy(), heat_name,
                "uncertainty", f"{heat_desc}, in HU; 1.0 = {HEATMAP_FULL_SCALE_HU:g} HU or more.  Bright: do not "
                "trust the synthetic CT there (bone edges, sinuses, where the anatomy differs from the atlas).",
                unit="HU", full_scale=HEATMAP_FULL_SCALE_HU))
        context.progress(1.0, "done")
        return results

    def _run_network(self, path: Path, vol, synth, context) -> np.ndarray:
        import SimpleITK as sitk

        from plugins.mr_to_ct import atlas
        from plugins.mr_to_ct.train import predict_volume
        from viewer.core.formats import sitk_from_volume
        from viewer.core.volume import Volume

        net = self._network(path, context.device)
        spacing = float(getattr(net, "spacing_mm", 2.0))
        norm = atlas.normalise(vol.real_values(), synth.head)
        mr_img = sitk_from_volume(Volume(norm, vol.affine))
        grid = atlas.working_grid(mr_img, spacing)
        pred = predict_volume(net, sitk.GetArrayFromImage(grid), context.device, check=context.check_cancelled)
        img = sitk.GetImageFromArray(pred)
        img.CopyInformation(grid)
        up = sitk.GetArrayFromImage(sitk.Resample(img, mr_img, sitk.Transform(), sitk.sitkLinear, atlas.AIR_HU,
                                                  sitk.sitkFloat32))
        up[~synth.head] = atlas.AIR_HU
        return np.clip(np.rint(up), -1024, 3071).astype(np.int16)
