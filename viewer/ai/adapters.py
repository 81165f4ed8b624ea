"""Plugins made from model files in the user's models folder (worker side).

One generic pipeline, as MONAI Label's basic infer task (pre-transform, inferer, post-transform,
writer, each stage timed in the log): real values -> intensity window (``a_min..a_max`` to
``b_min..b_max``) -> the model's axis order (RAS by default, as MONAI) -> optional resampling to
the model's spacing -> sliding-window inference -> softmax/sigmoid -> back to the image grid ->
label map (argmax) plus a probability heatmap, or for image-to-image models a derived image.

Settings come from the JSON descriptor (or, for a MONAI bundle, from ``metadata.json`` and the
plain-value parts of ``configs/inference.json``): ``intensity``, ``spacing_mm``, ``roi_size``,
``overlap``, ``sw_batch_size``, ``activation`` (softmax | sigmoid | none), ``axes`` (ras | kji),
``dims`` (3, or 2 for slice-by-slice models), ``labels`` ({"1": "liver"}).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from viewer.ai import explain, models
from viewer.ai.api import DerivedImage, LabelMap, PluginInfo, Results, Segment, Task
from viewer.ai.inference import from_model_axes, to_model_axes
from viewer.core.errors import HounsfieldError
from viewer.logs import log

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


class ModelPlugin:
    def __init__(self, info: PluginInfo):
        self.info = info
        self.kind = info.entry.split(":", 1)[1]
        self.config = dict(info.extra)
        if "bundle" in self.config:
            bundle_cfg = models.read_bundle_config(Path(self.config["bundle"]))
            self.config = {**bundle_cfg, **{k: v for k, v in self.config.items() if v is not None}}
        self._model = None
        self._device = None

    # ------------------------------------------------------------------ model
    def model(self, device: str):
        if self._model is not None and self._device == device:
            return self._model
        path = Path(self.info.model_path)
        if self.kind == "torchscript":
            model = models.load_torchscript(path, device)
        elif self.kind == "onnx":
            model = models.OnnxModel(path, device)
        elif self.kind == "state_dict":
            net_def = self.config.get("network_def") or self.config.get("network")
            if not net_def:
                raise HounsfieldError(f"{path.name} holds only weights; its descriptor must name the MONAI network "
                                      "(\"network\": {\"_target_\": \"UNet\", ...}).")
            state = models.load_state_dict(path)  # refuses pickled code before anything is built
            model = models.monai_network(net_def)
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise HounsfieldError(f"{path.name} does not fit the network {net_def.get('_target_')} "
                                      f"({str(exc).splitlines()[0][:80]}).") from None
            model = model.to(device).eval()
        else:
            raise HounsfieldError(f"Unknown model format {self.kind}.")
        self._model, self._device = model, device
        return model

    def _forward(self, model, x):
        if self.kind == "onnx":
            import torch

            return torch.from_numpy(model(x.detach().cpu().numpy().astype(np.float32))).to(x.device)
        return model(x)

    # ------------------------------------------------------------------ run
    def run(self, inputs, params, context) -> Results:
        import torch
        import torch.nn.functional as F

        cfg = self.config
        vol = next(iter(inputs.values()))
        timings = {}
        t = time.perf_counter()
        real = np.asarray(vol.real_values(), dtype=np.float32)
        inten = cfg.get("intensity") or {}
        x = real
        if inten:
            a0, a1 = float(inten.get("a_min", 0)), float(inten.get("a_max", 1))
            b0, b1 = float(inten.get("b_min", 0)), float(inten.get("b_max", 1))
            x = (x - a0) / (a1 - a0) * (b1 - b0) + b0
            if inten.get("clip", False):
                x = np.clip(x, min(b0, b1), max(b0, b1))
        axes = cfg.get("axes", "ras")
        xm = np.ascontiguousarray(to_model_axes(x, vol.affine, axes))
        spacing = np.asarray(vol.spacing)[::-1] if axes == "kji" else _model_spacing(vol)
        device = context.device
        model = self.model(device)
        tensor = torch.from_numpy(xm)[None, None].to(device)
        shape0 = tuple(tensor.shape[2:])
        target = cfg.get("spacing_mm")
        if target:
            size = [max(int(round(s * sp / float(tg))), 1) for s, sp, tg in zip(shape0, spacing, target)]
            tensor = F.interpolate(tensor, size=size, mode="trilinear", align_corners=False)
        timings["pre"] = time.perf_counter() - t
        t = time.perf_counter()
        dims = int(cfg.get("dims", 3))
        roi = cfg.get("roi_size") or ([96, 96, 96] if dims == 3 else [512, 512])
        overlap = float(cfg.get("overlap", 0.25))
        sw_bs = int(cfg.get("sw_batch_size", 1))
        mode = str(cfg.get("mode", "constant"))  # MONAI's SlidingWindowInferer default

        def predict(w):
            with context.autocast():
                return self._forward(model, w).float()

        with torch.no_grad():
            if dims == 2:  # slice by slice along the model's last axis
                slices = tensor[0].permute(3, 0, 1, 2)  # (z, 1, x, y)
                out = context.sliding_window(predict, slices, roi[:2], overlap=overlap, sw_batch_size=sw_bs,
                                             mode=mode, progress_range=(0.0, 0.85))
                out = out.permute(1, 2, 3, 0)[None]
            else:
                out = context.sliding_window(predict, tensor, roi[:3], overlap=overlap, sw_batch_size=sw_bs,
                                             mode=mode, progress_range=(0.0, 0.85))
        timings["infer"] = time.perf_counter() - t
        t = time.perf_counter()
        task = self.info.task
        activation = cfg.get("activation") or ("softmax" if out.shape[1] > 1 else "sigmoid")
        if task == Task.SEGMENTATION:
            if activation == "softmax":
                prob = torch.softmax(out, 1)
            elif activation == "sigmoid":
                prob = torch.sigmoid(out)
            else:
                prob = out
            if target:
                prob = F.interpolate(prob, size=shape0, mode="trilinear", align_corners=False)
            prob_np = prob[0].float().cpu().numpy()
            if prob_np.shape[0] == 1:
                labels = (prob_np[0] > 0.5).astype(np.uint8)
                fg = prob_np[0]
            else:
                labels = np.argmax(prob_np, axis=0).astype(np.uint8)
                fg = 1.0 - prob_np[0]
            labels = np.ascontiguousarray(from_model_axes(labels, vol.affine, axes))
            result = Results(label_maps=[LabelMap(labels, vol.affine.copy(), self._segments(labels),
                                                  name=self.info.name)])
            how = params.get("explain", "probability")
            if how != "none":
                result.heatmaps.append(self._explain(how, model, tensor, prob_np, fg, labels, vol, axes, context,
                                                     roi, overlap))
        else:
            img = out[:, :1]
            if target:
                img = F.interpolate(img, size=shape0, mode="trilinear", align_corners=False)
            y = img[0, 0].float().cpu().numpy()
            if inten:
                y = (y - b0) / (b1 - b0) * (a1 - a0) + a0
            y = np.ascontiguousarray(from_model_axes(y, vol.affine, axes)).astype(np.float32)
            result = Results(images=[DerivedImage(y, vol.affine.copy(), self.info.name, vol.modality, vol.units)],
                             heatmaps=[explain.heatmap(explain.removed_noise(real, y), vol, "change", "saliency",
                                                       "Where the model changed the image.")])
        timings["post"] = time.perf_counter() - t
        log.info("model plugin %s: %s", self.info.id, ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
        context.progress(1.0, "done")
        return result

    def _segments(self, labels: np.ndarray) -> list[Segment]:
        names = {int(k): str(v) for k, v in (self.config.get("labels") or {}).items()}
        present = sorted(set(names) | {int(v) for v in np.unique(labels) if v != 0})
        return [Segment(v, names.get(v, f"label {v}"), PALETTE[(v - 1) % len(PALETTE)],
                        f"{self.info.name} {self.info.version}") for v in present]

    def _explain(self, how, model, tensor, prob_np, fg, labels, vol, axes, context, roi, overlap):
        import torch

        cls = 1 if prob_np.shape[0] > 1 else 0
        if how not in self.info.explainers:
            raise HounsfieldError(f"{self.info.name} offers no {how} explanation "
                                  f"(it offers {', '.join(self.info.explainers) or 'none'}).")
        if how == "probability":
            arr = fg
            desc = "The model's probability of the foreground."
        elif how == "gradcam":
            if self.config.get("spacing_mm"):
                raise HounsfieldError("GradCAM is not offered for models that resample the image.")
            arr = explain.gradcam(model, tensor, cls, roi_size=roi if int(self.config.get("dims", 3)) == 3 else None,
                                  context=context, overlap=overlap)
            desc = "GradCAM: the regions whose features drove the foreground score."
        else:
            if self.config.get("spacing_mm"):
                raise HounsfieldError("Occlusion is not offered for models that resample the image.")
            lab_m = to_model_axes(labels, vol.affine, axes)
            idx = np.argwhere(lab_m > 0)
            center = idx.mean(axis=0) if len(idx) else None
            with torch.no_grad():
                arr = explain.occlusion(lambda_model(model, self), tensor, cls, center=center,
                                        roi_size=self.config.get("occlusion_roi", (32, 32, 32)), context=context)
            desc = "Occlusion sensitivity: how much hiding each region lowers the foreground score (near the finding)."
        arr = np.ascontiguousarray(from_model_axes(np.asarray(arr, np.float32), vol.affine, axes))
        return explain.heatmap(arr, vol, f"{self.info.name} ({how})", how, desc)


def lambda_model(model, plugin: ModelPlugin):
    """An nn.Module calling ``model`` (TorchScript, ONNX or eager) so MONAI's explainers can wrap it."""
    import torch

    class Wrapped(torch.nn.Module):
        def forward(self, x):
            return plugin._forward(model, x).float()

    return Wrapped()


def _model_spacing(vol) -> np.ndarray:
    from viewer.ai.inference import _axis_plan

    perm, _ = _axis_plan(vol.affine)
    sp_kji = np.asarray(vol.spacing)[::-1]
    return sp_kji[list(perm)]
