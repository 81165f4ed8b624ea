"""From prompts to a lesion probability: the network on a local window (no Qt; torch lazily).

``Segmenter.segment`` takes clicks as continuous array indices ``(k, j, i)`` and returns the
probability on the part of the volume the window covers.  The window:

* with a box: centred on the box, its spacing from the box's extent;
* with a previous mask (refinement): centred on the mask and the positive clicks, spacing from
  their extent;
* on a first click: a 2 mm pass centred on the click finds the lesion's extent (a geodesic-input
  network's: run again centred on what it found, ``Segmenter.recentre``), then a second pass at the spacing
  that extent asks for refines it (the first mask as the previous mask).

Of the thresholded mask only the connected parts holding a positive click are kept (the part
nearest the first click when none holds one), so a click on one lesion does not pick up another.
A refining click changes the mask only its own way (``WindowSegmenter.monotone``): a negative click
only takes voxels off the previous mask, a positive one only adds to it.  Without that rule a
negative click could make the mask grow elsewhere (its window is sized on the mask, so a spilling
mask asked for a wider window that spilled further: network candidate wt3 on BraTS 0003, 193,541 ->
217,238 -> 232,629 voxels after two negative clicks); with it the held-out mean after 3 corrective
clicks rose 0.844 -> 0.856 (BraTS 0005 0.511 -> 0.570) and the validation set's 0.604 -> 0.606,
one-click Dice unchanged (training_log.json "inference_round5").

``RoutedSegmenter`` (plugin 1.3.0) puts a second network beside the first: large MR lesions are segmented
again by a whole-tumour expert (its docstring says when and why).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from plugins.lesion_segmentation.network import (
    CHANNELS,
    COARSE_SPACING_MM,
    GEO_CHANNELS,
    MAX_SPACING_MM,
    OUTPUT_NORM,
    ROI,
    Window,
    build_net,
    network_input,
    spacing_for_extent,
)

WEIGHTS = Path(__file__).resolve().parent / "weights.pt"
THRESHOLD = 0.5


def keep_clicked(mask: np.ndarray, pos_win, neg_win=()) -> np.ndarray:
    """The connected parts of ``mask`` that hold a positive click (window indices)."""
    if not mask.any() or not pos_win:
        return mask
    lab, n = ndimage.label(mask)
    keep = set()
    inside = [tuple(np.clip(np.rint(p).astype(int), 0, np.array(mask.shape) - 1)) for p in pos_win]
    for c in inside:
        if lab[c]:
            keep.add(int(lab[c]))
    if not keep:  # a click just off the mask: the nearest part, when it is close
        d, idx = ndimage.distance_transform_edt(lab == 0, return_indices=True)
        c = inside[0]
        if d[c] <= 4:
            keep.add(int(lab[tuple(idx[:, c[0], c[1], c[2]])]))
    return np.isin(lab, list(keep)) if keep else np.zeros_like(mask)


class WindowSegmenter:
    """The window logic around a method that maps one window to a probability (``_window_prob``);
    the network and the classical baselines (baselines.py) share it, so they see the same windows.

    ``recentre``: how many times the first click's 2 mm pass is run again centred on the mask it
    found (the geodesic-input network: once; the shipped network and the baselines: never)."""

    recentre = 0
    monotone = True  # a refining click only takes voxels off (negative) or only adds (positive): ``segment``

    def _window_prob(self, w: Window, image, modality, pos, neg, prev) -> tuple[np.ndarray, list]:
        raise NotImplementedError

    def segment(self, image: np.ndarray, vox, modality: str, pos, neg=(), box=None, prev: np.ndarray | None = None,
                threshold: float = THRESHOLD, newest: bool | None = None
                ) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
        """(the volume slices the window covers, probability there, mask there).

        ``image``: real values [k, j, i]; ``vox``: spacing (k, j, i) mm; ``pos``/``neg``: click indices;
        ``box``: (lo, hi) indices or None; ``prev``: the previous mask (bool, volume-sized) or None;
        ``newest``: with ``prev``, whether the click that asks for this refinement is positive (True) or
        negative (False), None when not known.  With ``monotone``, a negative click only takes voxels
        off ``prev`` and a positive one only adds to it."""
        vox = np.asarray(vox, np.float64)
        pos = [np.asarray(p, np.float64) for p in pos]
        neg = [np.asarray(p, np.float64) for p in neg]
        box_win = None
        first_click = False
        if box is not None:
            lo, hi = (np.asarray(b, np.float64) for b in box)
            centre = (lo + hi) / 2
            spacing = spacing_for_extent(float(((hi - lo + 1) * vox).max()))
            if not pos:
                pos = [centre]
        elif prev is not None and prev.any():
            idx = np.argwhere(prev)
            pts = np.vstack([idx.min(0), idx.max(0), *pos]) if pos else np.vstack([idx.min(0), idx.max(0)])
            lo, hi = pts.min(0), pts.max(0)
            centre = (lo + hi) / 2
            spacing = spacing_for_extent(float(((hi - lo + 1) * vox).max()))
        else:
            if not pos:
                raise ValueError("a positive click or a box is needed")
            first_click = True
            at = pos[0]
            for again in range(self.recentre, -1, -1):
                w = Window(at, COARSE_SPACING_MM, vox)
                prob, pos_w = self._window_prob(w, image, modality, pos, neg, None)
                mask = keep_clicked(prob > threshold, pos_w)
                if not mask.any():
                    sl, p = w.paste(prob, image.shape)
                    return sl, p, p > threshold
                idx = np.argwhere(mask)
                lo_w, hi_w = idx.min(0), idx.max(0)
                moved = ((lo_w + hi_w) / 2 - (ROI - 1) / 2) * COARSE_SPACING_MM / vox
                if not again or np.abs(moved * vox).max() < 1.0:
                    break
                at = w.centre + moved  # the 2 mm pass again, centred on what it found
            extent = float((hi_w - lo_w + 1).max()) * COARSE_SPACING_MM
            centre = w.centre + moved
            spacing = spacing_for_extent(extent)
            sl, p = w.paste(mask.astype(np.float32), image.shape)
            prev = np.zeros(image.shape, bool)
            prev[sl] = p > 0.5
        spacing = min(spacing, MAX_SPACING_MM)
        w = Window(centre, spacing, vox)
        prob, pos_w = self._window_prob(w, image, modality, pos, neg, prev)
        if box is not None:
            lo_w, hi_w = w.to_window(lo), w.to_window(hi)
            g = [np.arange(ROI) for _ in range(3)]
            inside = [(g[a] >= lo_w[a] - 1) & (g[a] <= hi_w[a] + 1) for a in range(3)]
            box_win = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
            prob = prob * box_win
        mask = keep_clicked(prob > threshold, pos_w)
        sl, p = w.paste(prob.astype(np.float32), image.shape)
        _, m = w.paste(mask.astype(np.float32), image.shape)
        m = (m > 0.5) & (p > threshold)
        if self.monotone and newest is not None and prev is not None and not first_click and box is None:
            m = (m | prev[sl]) if newest else (m & prev[sl])
        return sl, p, m

class Segmenter(WindowSegmenter):
    """The network, loaded once.

    With geodesic-input weights (6 channels) its first 2 mm pass is run twice (``recentre``):
    centred on the click, then centred on the mask that found.  Those networks were trained on
    windows centred near the lesion (train.py), and a window centred on a click near the lesion's
    edge puts the lesion off-centre: on the chest-ct tumour clicked 3 mm inside its edge
    ((k, j, i) = (80, 259, 174), tests/ui) the geodesic candidate any2 drew a blob around the click
    (2 mm pass Dice 0.33 centred on the click, 0.74 centred on the lesion, same click).  Once, not
    more: chosen on off-centre clicks (20-40% of the lesion's depth) on the real training lesions
    (any2's mean Dice 0.43 without, 0.53 once, 0.51 twice).  4-channel weights (network 1.0.0) keep
    the single pass."""

    def __init__(self, weights: Path | str = WEIGHTS, device: str = "cpu", output_norm: bool | None = None,
                 frozen: bool = True):
        """``output_norm``: the network of ``weights`` has the output channel's instance norm (None:
        network.OUTPUT_NORM for 4-input-channel weights, none for the geodesic ones; train.py's stage-4
        candidate has none).  The input channels (4, or 6 with the geodesic maps) are read off the weights.
        ``frozen``: on the CPU, run the network traced and frozen for inference (``_freeze``)."""
        import torch

        from viewer.ai.models import load_state_dict

        state = load_state_dict(weights)
        self.channels = int(state["model.0.conv.unit0.conv.weight"].shape[1])
        self.recentre = 1 if self.channels == GEO_CHANNELS else 0
        if output_norm is None:
            output_norm = OUTPUT_NORM and self.channels == CHANNELS
        self.net = build_net(output_norm, self.channels)
        self.net.load_state_dict(state)
        self.net.eval().to(device)
        self.device = device
        self._torch = torch
        self._frozen = self._freeze() if frozen and device == "cpu" else None

    def _freeze(self):
        """The network traced and frozen with torch.jit.optimize_for_inference (oneDNN convolutions),
        for the CPU: on this 2-core CPU, one thread, a 64^3 window's forward pass took 0.17 s instead of
        0.53 s (same load), logits within 1e-5 of the eager network's.  Tracing and one warm-up pass
        add about 1.5 s to the model's load.  None (the eager network) where that fails."""
        import logging
        import warnings

        torch = self._torch
        x = torch.zeros(1, self.channels, ROI, ROI, ROI)
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frozen = torch.jit.optimize_for_inference(torch.jit.trace(self.net.cpu(), x, check_trace=False))
                frozen(x)
            return frozen
        except Exception:  # noqa: BLE001 - an optional speed-up; the eager network is the same network
            logging.getLogger(__name__).warning("lesion network: no frozen CPU graph, running eager", exc_info=True)
            return None
        finally:
            self.net.to(self.device)

    def to(self, device: str) -> Segmenter:
        if device != self.device:
            self.net.to(device)
            self.device = device
        return self

    def _window_prob(self, w: Window, image, modality, pos, neg, prev) -> tuple[np.ndarray, list]:
        img = w.sample(image)
        pos_w = [w.to_window(p) for p in pos]
        neg_w = [w.to_window(p) for p in neg]
        prev_w = None if prev is None else w.sample(prev, smooth=False)
        x = network_input(img, modality, pos_w, neg_w, prev_w, self.channels)
        torch = self._torch
        net = self._frozen if self._frozen is not None and self.device == "cpu" else self.net
        with torch.inference_mode():
            logits = net(torch.from_numpy(x)[None].to(self.device))[0, 0].float().cpu().numpy()
        return 1.0 / (1.0 + np.exp(-logits)), pos_w






EXPERT_WEIGHTS = Path(__file__).resolve().parent / "weights_whole_tumour.pt"
ROUTE_ML = 0.0  # an MR first mask of 1.2.0 above this many mL is segmented again by the expert (1.3.0: 20)
EXPERT_MAX_RATIO = 2.0  # ... and the expert's mask is kept if it has at most this many times 1.2.0's voxels
REFINE_OFFSET = -0.1  # a positive corrective click's mask: the probability above the threshold plus this
NETWORK = "1.2.0"  # the names results.json and the segment record for the network that drew a mask
EXPERT = "whole-tumour 1.3.0"


def mask_ml(mask: np.ndarray, vox) -> float:
    return float(np.count_nonzero(mask) * np.prod(np.asarray(vox, np.float64)) / 1000.0)


class RoutedSegmenter:
    """The shipped network (1.2.0) with a second, whole-tumour network (the expert) for MR.

    * A first click is segmented by 1.2.0.  If the image is MR (and that mask is not empty nor under
      ``route_ml`` mL: 0, every one, since 1.4.0) the click is segmented again, from scratch, by the
      expert, and the expert's mask is the answer unless it has more than ``max_ratio`` times 1.2.0's
      voxels (then 1.2.0's stays).
    * A corrective click on MR is segmented by the expert, whichever network drew the mask it refines
      (with the monotone rule, ``WindowSegmenter.monotone``, it can only add or only take off).
    * CT and boxes (so detections too) stay on 1.2.0.
    * A positive corrective click (no box) keeps the voxels whose probability is over the threshold
      plus ``refine_offset`` (-0.1: 0.4 at the default); a negative one keeps the threshold.  With the
      monotone rule a positive click only adds, and the lower cut lets it add the uncertain rim of a
      large lesion.  Chosen on the validation set (after 3 clicks: every corrective click at 0.3 / 0.4
      / 0.5 / 0.6: 0.646 / 0.645 / 0.640 / 0.625; positive ones at 0.4 and negative ones at 0.5 / 0.6:
      0.648 / 0.647; training_log.json "session11_routing").  A negative click at 0.4 removed less than
      a reader asks (tests/plugins: 23 of 45 over-covering voxels left beside the click).

    Why: the expert (train.py, "Whole-tumour expert") draws large brain tumours more nearly whole, where
    1.2.0 covers 62-75% of them, but from a first click it spills into the brain around small MR lesions
    (a 3.5 mL lesion drawn as 87 mL; 1.2.0 3.9 mL).  On the tumours it is for it only adds what 1.2.0
    missed (at 62-75% coverage, at most 1.6 times 1.2.0's mask), so a mask more than twice 1.2.0's is
    taken as the spill (a 1.7 mL validation lesion that 1.2.0 over-drew as 23 mL, the expert as 73 mL).
    1.3.0 asked the expert only when 1.2.0's mask was over 20 mL; with the 2x cap alone (1.4.0) it also
    draws the dark-cored tumours whose first click, in the core, 1.2.0 draws small (BraTS 0005: 12.7 mL
    of 80.7, Dice 0.27; the expert 23.0 mL, 0.43): validation 0.461 / 0.640 after 1 / 3 clicks against
    0.459 / 0.631 (training_log.json "session11_routing"), at the cost of a second network on every
    MR first click.  Its corrective clicks were better on
    the validation set for small MR lesions too (after 3 clicks 0.631 against 0.610 with the expert only
    on the lesions it drew; training_log.json "whole_tumour_expert"): a corrective click's window is
    fitted to the mask, so the spill of its 2 mm first pass does not arise.
    The expert's weights load only when first needed; without them (``expert`` None or missing) this is
    1.2.0 alone.  ``last_network``: the network that drew the last mask (NETWORK or EXPERT)."""

    def __init__(self, weights: Path | str = WEIGHTS, expert: Path | str | None = EXPERT_WEIGHTS,
                 device: str = "cpu", route_ml: float = ROUTE_ML, max_ratio: float = EXPERT_MAX_RATIO,
                 frozen: bool = True, refine_offset: float = REFINE_OFFSET):
        self.base = Segmenter(weights, device=device, frozen=frozen)
        self.expert_weights = Path(expert) if expert is not None and Path(expert).exists() else None
        self.route_ml = route_ml
        self.max_ratio = max_ratio
        self.refine_offset = refine_offset
        self.device = device
        self.frozen = frozen
        self._expert: Segmenter | None = None
        self.last_network = NETWORK

    @property
    def expert(self) -> Segmenter:
        if self._expert is None:
            self._expert = Segmenter(self.expert_weights, device=self.device, frozen=self.frozen)
        return self._expert.to(self.device)

    def to(self, device: str) -> RoutedSegmenter:
        self.device = device
        self.base.to(device)
        return self

    def asks_expert(self, modality: str, first_mask: np.ndarray, vox) -> bool:
        """Whether a first click whose 1.2.0 mask is ``first_mask`` is segmented again by the expert."""
        return self.expert_weights is not None and modality == "MR" and mask_ml(first_mask, vox) > self.route_ml

    def segment(self, image: np.ndarray, vox, modality: str, pos, neg=(), box=None, prev: np.ndarray | None = None,
                threshold: float = THRESHOLD, newest: bool | None = None):
        """As ``WindowSegmenter.segment``, by the network the rules above pick."""
        args = (image, vox, modality, pos, neg, box, prev, threshold, newest)
        if box is None and (prev is None or not prev.any()):  # a first click
            out = self.base.segment(*args)
            self.last_network = NETWORK
            if self.asks_expert(modality, out[2], vox):
                alt = self.expert.segment(*args)
                if 0 < np.count_nonzero(alt[2]) <= self.max_ratio * np.count_nonzero(out[2]):
                    out, self.last_network = alt, EXPERT
            return out
        expert = box is None and modality == "MR" and self.expert_weights is not None
        self.last_network = EXPERT if expert else NETWORK
        if box is None and newest:  # a positive corrective click
            threshold = min(max(threshold + self.refine_offset, 0.05), 0.95)
        seg = self.expert if expert else self.base
        return seg.segment(image, vox, modality, pos, neg, box, prev, threshold, newest)
