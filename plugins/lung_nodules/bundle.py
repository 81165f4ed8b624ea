"""Bring your own nodule model: a MONAI bundle in the model-zoo ``lung_nodule_ct_detection`` layout
(``configs/inference.json``, ``configs/metadata.json``, ``models/model.ts`` or ``models/model.pt``)
placed in the models folder runs with that bundle's own pre- and post-processing.

The config is read as data; nothing in it is executed.  Bundle configs hold Python expressions
(``"$monai.networks.nets.resnet.resnet50(...)"``, ``"$@detector.set_box_selector_parameters(...)"``);
the few the detection bundle needs are parsed with ``ast`` and accepted only in their known form
(a call of a whitelisted MONAI function or detector method with literal arguments and ``@``
references to plain values):

* network: ``network_def`` (``RetinaNet``: spatial_dims, num_classes, num_anchors, size_divisible)
  on ``feature_extractor`` = ``resnet_fpn_feature_extractor(@backbone, spatial_dims, False,
  returned_layers, trainable_layers)`` with ``backbone`` = ``monai.networks.nets.resnet.resnetNN(...)``;
  weights from ``models/model.pt`` (state dict, ``weights_only``) or the whole network from
  ``models/model.ts`` (TorchScript);
* anchors: ``anchor_generator`` (``AnchorGeneratorWithAnchorShape`` or ``AnchorGenerator``, plain args);
* preprocessing: ``Orientationd`` axcodes, ``Spacingd`` pixdim (applied even where the zoo config
  disables it for LUNA16 data that was resampled beforehand: a user's CT never is),
  ``ScaleIntensityRanged`` (a_min, a_max, b_min, b_max, clip);
* detector: ``set_box_selector_parameters`` (score_thresh, topk_candidates_per_level, nms_thresh,
  detections_per_img) and ``set_sliding_window_inferer`` (roi_size, overlap, sw_batch_size, mode);
* postprocessing as the bundle's: boxes clipped to the image, then the image's affine takes their
  centres to world coordinates (RAS, as MONAI's ``AffineBoxToWorldCoordinated``), returned in LPS.

The orientation and resampling are done here (axis permutation and flips, separable linear
interpolation keeping voxel 0's centre) rather than with MONAI's transforms, which need nibabel.

The model-zoo bundle: MONAI model-zoo ``models/lung_nodule_ct_detection`` (RetinaNet, ResNet-50 FPN,
0.703 x 0.703 x 1.25 mm, HU -1024..300, 512 x 512 x 192 windows, score 0.02, NMS 0.22).
"""

from __future__ import annotations

import ast
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from viewer.core.errors import HounsfieldError

RESNETS = {"resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet200"}
ANCHORS = {"AnchorGeneratorWithAnchorShape", "AnchorGenerator"}
LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class DetectionConfig:
    """The plain settings of a detection bundle's inference config."""

    backbone: str = "resnet50"
    backbone_kwargs: dict = field(default_factory=dict)
    returned_layers: list = field(default_factory=lambda: [1, 2])
    trainable_layers: int | None = None
    network: dict = field(default_factory=dict)  # RetinaNet args without feature_extractor
    anchor_target: str = "AnchorGeneratorWithAnchorShape"
    anchor: dict = field(default_factory=dict)
    axcodes: str = "RAS"
    spacing_mm: list | None = None  # model axes (RAS: x, y, z)
    intensity: dict = field(default_factory=dict)
    roi_size: list = field(default_factory=lambda: [512, 512, 192])
    overlap: float = 0.25
    sw_batch_size: int = 1
    mode: str = "constant"
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    topk_candidates_per_level: int = 1000
    detections_per_img: int = 300
    amp: bool = False
    labels: dict = field(default_factory=lambda: {"0": "nodule"})


# ------------------------------------------------------------------------------- reading the config


def _plain(v) -> bool:
    if isinstance(v, str):
        return not v.startswith(("$", "@", "%"))
    if isinstance(v, int | float | bool) or v is None:
        return True
    if isinstance(v, list | tuple):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(_plain(x) for x in v.values())
    return False


def _resolve(cfg: dict, value, depth: int = 0):
    """A plain value, following ``@name`` references to other plain values."""
    if isinstance(value, str) and value.startswith("@") and depth < 8:
        key = value[1:]
        if key not in cfg:
            raise HounsfieldError(f"The bundle's config refers to {value!r}, which it does not define.")
        return _resolve(cfg, cfg[key], depth + 1)
    if isinstance(value, list):
        return [_resolve(cfg, v, depth) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(cfg, v, depth) for k, v in value.items()}
    if not _plain(value):
        raise HounsfieldError(f"The bundle's config value {str(value)[:60]!r} is an expression where a plain "
                              "value is needed.")
    return value


def _call(cfg: dict, expr: str, allowed: set[str]) -> tuple[str, list, dict]:
    """Parse ``"$name.path(args, kw=...)"`` into (last name, args, kwargs) without running it.
    ``@name`` arguments become plain values (or the marker ``("@", name)`` for non-plain ones)."""
    if not isinstance(expr, str) or not expr.startswith("$"):
        raise HounsfieldError(f"The bundle's config has {str(expr)[:60]!r} where a call was expected.")
    refs = {}

    def sub(m):
        name = f"__ref{len(refs)}"
        refs[name] = m.group(1)
        return name

    text = re.sub(r"@([A-Za-z_][\w#]*)", sub, expr[1:].strip())
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise HounsfieldError(f"The bundle's expression {expr[:60]!r} could not be read.") from None
    if not isinstance(node, ast.Call):
        raise HounsfieldError(f"The bundle's expression {expr[:60]!r} is not a call.")
    func = node.func
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(refs.get(func.id, func.id))
    name = parts[0] if parts else ""
    if name not in allowed:
        raise HounsfieldError(f"The bundle calls {name or expr[:40]!r}, which is not among the calls accepted "
                              "from a detection bundle's config.")

    def value(a):
        if isinstance(a, ast.Name) and a.id in refs:
            target = cfg.get(refs[a.id])
            try:
                return _resolve(cfg, target)
            except HounsfieldError:
                return ("@", refs[a.id])
        try:
            return ast.literal_eval(a)
        except ValueError:
            raise HounsfieldError(f"The bundle's expression {expr[:60]!r} has an argument that is not a plain "
                                  "value.") from None

    return name, [value(a) for a in node.args], {k.arg: value(k.value) for k in node.keywords}


def _find(node, targets: set[str]):
    """The first dict in ``node`` whose ``_target_`` ends with one of ``targets``."""
    if isinstance(node, dict):
        if str(node.get("_target_", "")).rsplit(".", 1)[-1] in targets:
            return node
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for v in children:
        hit = _find(v, targets)
        if hit is not None:
            return hit
    return None


def read_detection_config(bundle) -> DetectionConfig:
    """The detection settings of ``bundle``'s ``configs/inference.json`` (read, never executed)."""
    path = Path(bundle) / "configs" / "inference.json"
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as exc:
        raise HounsfieldError(f"The bundle's {path.name} could not be read ({exc}).") from None
    out = DetectionConfig()
    net = cfg.get("network_def")
    if not isinstance(net, dict) or str(net.get("_target_", "")).rsplit(".", 1)[-1] != "RetinaNet":
        raise HounsfieldError("The bundle's network_def is not a RetinaNet; only RetinaNet detection bundles "
                              "are supported.")
    out.network = {k: _resolve(cfg, v) for k, v in net.items() if not k.startswith("_") and k != "feature_extractor"}
    fe = net.get("feature_extractor")
    fe = cfg.get(fe[1:]) if isinstance(fe, str) and fe.startswith("@") else fe
    _, args, kwargs = _call(cfg, fe, {"resnet_fpn_feature_extractor"})
    names = ["backbone", "spatial_dims", "pretrained_backbone", "returned_layers", "trainable_backbone_layers"]
    fe_args = {**dict(zip(names, args, strict=False)), **kwargs}
    if fe_args.get("pretrained_backbone"):
        raise HounsfieldError("The bundle asks for a downloaded pretrained backbone; its weights must be in models/.")
    out.returned_layers = list(fe_args.get("returned_layers") or [1, 2])
    out.trainable_layers = fe_args.get("trainable_backbone_layers")
    bb = fe_args.get("backbone")
    if isinstance(bb, tuple) and bb[0] == "@":
        out.backbone, bargs, out.backbone_kwargs = _call(cfg, cfg[bb[1]], RESNETS)
        if bargs:
            raise HounsfieldError("The bundle's backbone must be given by keyword arguments.")
    anchor = cfg.get("anchor_generator")
    if not isinstance(anchor, dict) or str(anchor.get("_target_", "")).rsplit(".", 1)[-1] not in ANCHORS:
        raise HounsfieldError("The bundle's anchor_generator is missing or not a MONAI anchor generator.")
    out.anchor_target = str(anchor["_target_"]).rsplit(".", 1)[-1]
    out.anchor = {k: _resolve(cfg, v) for k, v in anchor.items() if not k.startswith("_")}
    pre = cfg.get("preprocessing", {})
    node = _find(pre, {"Orientationd", "Orientation"})
    if node is not None:
        out.axcodes = str(_resolve(cfg, node.get("axcodes", "RAS")))
    node = _find(pre, {"Spacingd", "Spacing"})
    if node is not None:
        out.spacing_mm = [float(v) for v in _resolve(cfg, node["pixdim"])]
    node = _find(pre, {"ScaleIntensityRanged", "ScaleIntensityRange"})
    if node is not None:
        out.intensity = {k: _resolve(cfg, node[k]) for k in ("a_min", "a_max", "b_min", "b_max", "clip") if k in node}
    for op in cfg.get("detector_ops", []):
        if "set_box_selector_parameters" in op:
            _, _, kw = _call(cfg, op, {"set_box_selector_parameters"})
            for k in ("score_thresh", "nms_thresh", "topk_candidates_per_level", "detections_per_img"):
                if k in kw:
                    setattr(out, k, kw[k])
        elif "set_sliding_window_inferer" in op:
            _, _, kw = _call(cfg, op, {"set_sliding_window_inferer"})
            for k in ("roi_size", "overlap", "sw_batch_size", "mode"):
                if k in kw:
                    setattr(out, k, kw[k])
    if isinstance(cfg.get("amp"), bool):
        out.amp = cfg["amp"]
    return out


def is_detection_bundle(folder) -> bool:
    """Whether ``folder`` holds a MONAI detection bundle (its inference config has a RetinaNetDetector)."""
    try:
        with open(Path(folder) / "configs" / "inference.json", encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return False
    return _find(cfg, {"RetinaNetDetector"}) is not None


# ------------------------------------------------------------------------------- the network


def fpn_feature_extractor(backbone, spatial_dims: int, returned_layers: list[int]):
    """What MONAI's ``resnet_fpn_feature_extractor(backbone, dims, False, returned_layers)`` builds
    (the same modules and state-dict keys: ``body.<backbone layer>``, ``fpn.*``), made here because
    MONAI's version needs torchvision (its IntermediateLayerGetter), which is not a dependency."""
    from collections import OrderedDict

    import torch
    from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

    wanted = {f"layer{k}": str(v) for v, k in enumerate(returned_layers)}

    class Body(torch.nn.ModuleDict):  # the backbone's children up to the last returned layer
        def __init__(self):
            layers, left = OrderedDict(), set(wanted)
            for name, module in backbone.named_children():
                layers[name] = module
                left.discard(name)
                if not left:
                    break
            super().__init__(layers)

        def forward(self, x):
            out = OrderedDict()
            for name, module in self.items():
                x = module(x)
                if name in wanted:
                    out[wanted[name]] = x
            return out

    class Extractor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = Body()
            c2 = backbone.in_planes // 8
            self.fpn = FeaturePyramidNetwork(spatial_dims=spatial_dims,
                                             in_channels_list=[c2 * 2 ** (i - 1) for i in returned_layers],
                                             out_channels=256, extra_blocks=LastLevelMaxPool(spatial_dims))
            self.out_channels = 256

        def forward(self, x):
            return self.fpn(self.body(x))

    return Extractor()


def build_network(cfg: DetectionConfig):
    """The RetinaNet the config describes, randomly initialised."""
    from monai.apps.detection.networks.retinanet_network import RetinaNet
    from monai.networks.nets import resnet

    backbone = getattr(resnet, cfg.backbone)(**cfg.backbone_kwargs)
    fe = fpn_feature_extractor(backbone, int(cfg.network.get("spatial_dims", 3)), list(cfg.returned_layers))
    try:
        return RetinaNet(feature_extractor=fe, **cfg.network)
    except TypeError as exc:
        raise HounsfieldError(f"The bundle's RetinaNet could not be built ({exc}).") from None


def anchor_generator(cfg: DetectionConfig):
    from monai.apps.detection.utils import anchor_utils

    return getattr(anchor_utils, cfg.anchor_target)(**cfg.anchor)


def load_network(bundle, cfg: DetectionConfig, device: str = "cpu"):
    """The bundle's network with its weights: models/model.ts (TorchScript) or models/model.pt."""
    from viewer.ai.models import load_state_dict, load_torchscript

    ts, pt = Path(bundle) / "models" / "model.ts", Path(bundle) / "models" / "model.pt"
    if ts.is_file():
        return load_torchscript(ts, device)
    if not pt.is_file():
        raise HounsfieldError(f"The bundle {Path(bundle).name} has neither models/model.ts nor models/model.pt.")
    net = build_network(cfg)
    state = load_state_dict(pt)
    if "model" in state and isinstance(state["model"], dict):  # a CheckpointLoader checkpoint
        state = state["model"]
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise HounsfieldError(f"The bundle's model.pt does not fit its network_def "
                              f"({str(exc).splitlines()[0][:100]}).") from None
    return net.to(device).eval()


def make_detector(network, cfg: DetectionConfig, device: str = "cpu", context=None):
    """MONAI's RetinaNetDetector set up as the bundle's detector_ops say; the network is wrapped so
    that each window reports progress and honours Cancel."""
    import torch
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector

    class Watched(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.calls = 0

        def forward(self, x):
            if context is not None:
                context.check_cancelled()
                self.calls += 1
                context.progress(min(0.9, 0.1 + 0.02 * self.calls), "detecting")
            if context is not None and device.startswith("cuda") and cfg.amp:
                with context.autocast():
                    out = self.net(x)
                return {k: [t.float() for t in v] for k, v in out.items()}
            return self.net(x)

    spatial_dims = int(cfg.network.get("spatial_dims", 3))
    det = RetinaNetDetector(Watched(network), anchor_generator(cfg), spatial_dims=spatial_dims,
                            num_classes=int(cfg.network.get("num_classes", 1)),
                            size_divisible=cfg.network.get("size_divisible", 1))
    det.set_box_selector_parameters(score_thresh=float(cfg.score_thresh),
                                    topk_candidates_per_level=int(cfg.topk_candidates_per_level),
                                    nms_thresh=float(cfg.nms_thresh), detections_per_img=int(cfg.detections_per_img))
    det.set_sliding_window_inferer(roi_size=list(cfg.roi_size), overlap=float(cfg.overlap),
                                   sw_batch_size=int(cfg.sw_batch_size), mode=str(cfg.mode), device=device)
    return det.eval()


# ------------------------------------------------------------------------------- running it


def _resample_axis(arr: np.ndarray, axis: int, ratio: float) -> np.ndarray:
    """Linear resampling along ``axis``: output voxel u sits at input index u * ``ratio`` (voxel 0's
    centre kept), as many voxels as fit inside the input."""
    n = arr.shape[axis]
    if abs(ratio - 1.0) < 1e-6 or n == 1:
        return arr
    m = int(np.floor((n - 1) / ratio + 1e-6)) + 1
    pos = np.arange(m) * ratio
    i0 = np.clip(np.floor(pos).astype(int), 0, n - 1)
    i1 = np.clip(i0 + 1, 0, n - 1)
    shape = [1] * arr.ndim
    shape[axis] = m
    w = (pos - i0).astype(np.float32).reshape(shape)
    return np.take(arr, i0, axis=axis) * (1 - w) + np.take(arr, i1, axis=axis) * w


def preprocess(hu_kji: np.ndarray, affine_lps: np.ndarray, cfg: DetectionConfig) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's preprocessing of a [k, j, i] HU array with its LPS affine, as its Orientationd,
    Spacingd and ScaleIntensityRanged do: the (x, y, z) array in RAS order at the bundle's spacing
    (linear; voxel 0's centre kept) and intensity range, and that array's RAS affine."""
    from viewer.ai.inference import _axis_plan, to_model_axes

    if cfg.axcodes.upper() != "RAS":
        raise HounsfieldError(f"The bundle's orientation {cfg.axcodes} is not supported; only RAS bundles run here.")
    arr = np.asarray(to_model_axes(np.asarray(hu_kji, np.float32), affine_lps, "ras"), np.float32)
    perm, flips = _axis_plan(affine_lps)
    m = np.zeros((4, 4))  # oriented index (x, y, z) -> the array's (i, j, k)
    m[3, 3] = 1.0
    for out_axis, a in enumerate(perm):
        v = 2 - a  # array axis a (0 = k) is voxel axis v (0 = i)
        if flips[out_axis]:
            m[v, out_axis], m[v, 3] = -1.0, hu_kji.shape[a] - 1
        else:
            m[v, out_axis] = 1.0
    affine = LPS_RAS @ np.asarray(affine_lps, float) @ m
    if cfg.spacing_mm:
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        ratio = np.asarray(cfg.spacing_mm, float) / spacing
        for axis in range(3):
            arr = _resample_axis(arr, axis, float(ratio[axis]))
        affine = affine @ np.diag([*ratio, 1.0])
    if cfg.intensity:
        a0, a1 = float(cfg.intensity.get("a_min", 0)), float(cfg.intensity.get("a_max", 1))
        b0, b1 = float(cfg.intensity.get("b_min", 0)), float(cfg.intensity.get("b_max", 1))
        arr = (arr - a0) / (a1 - a0) * (b1 - b0) + b0
        if cfg.intensity.get("clip"):
            arr = np.clip(arr, min(b0, b1), max(b0, b1))
    return np.ascontiguousarray(arr, np.float32), affine


def run_detector(detector, img) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N, 6: xyzxyz in the image's voxel coordinates, clipped), labels and scores of a
    (1, x, y, z) tensor."""
    import torch
    from monai.data.box_utils import clip_boxes_to_image

    with torch.no_grad():
        out = detector([img], use_inferer=True)[0]
    boxes = out[detector.target_box_key]
    labels = out[detector.target_label_key]
    scores = out[detector.pred_score_key]
    boxes, keep = clip_boxes_to_image(boxes, img.shape[1:], remove_empty=True)
    return (boxes.float().cpu().numpy(), labels[keep].cpu().numpy(), scores[keep].float().cpu().numpy())


def boxes_to_lps(boxes: np.ndarray, affine_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box centres (LPS mm) and sizes (mm along the patient's x, y, z) of xyzxyz voxel boxes on an
    image with RAS ``affine_ras``: the centre goes through the affine, as MONAI's
    AffineBoxToWorldCoordinated does, then RAS -> LPS."""
    a = np.asarray(affine_ras, float)
    centres = (boxes[:, :3] + boxes[:, 3:]) / 2.0
    world = centres @ a[:3, :3].T + a[:3, 3]
    lps = world * np.array([-1.0, -1.0, 1.0])
    extent = boxes[:, 3:] - boxes[:, :3]
    sizes = np.abs(extent @ a[:3, :3].T)
    return lps, sizes


def detect(hu_kji: np.ndarray, affine_lps: np.ndarray, bundle, *, device: str = "cpu", score_threshold=None,
           context=None, network=None) -> tuple[list[dict], dict]:
    """Run the bundle on a volume: a list of {center_lps, size_mm, score, label, box_model}, and
    timings and settings (the model grid's shape and affine among them)."""
    t0 = time.perf_counter()
    cfg = read_detection_config(bundle)
    if score_threshold:
        cfg.score_thresh = float(score_threshold)
    net = network if network is not None else load_network(bundle, cfg, device)
    det = make_detector(net, cfg, device, context)
    t1 = time.perf_counter()
    import torch

    arr, affine_ras = preprocess(hu_kji, affine_lps, cfg)
    t2 = time.perf_counter()
    boxes, labels, scores = run_detector(det, torch.from_numpy(arr)[None].to(device))
    t3 = time.perf_counter()
    lps, sizes = boxes_to_lps(boxes, affine_ras)
    names = {int(k): str(v) for k, v in cfg.labels.items()}
    dets = [{"center_lps": lps[n].tolist(), "size_mm": sizes[n].tolist(), "score": float(scores[n]),
             "label": names.get(int(labels[n]), f"class {int(labels[n])}"), "box_model": boxes[n].tolist()}
            for n in range(len(boxes))]
    info = {"model_shape": list(arr.shape), "model_affine_ras": affine_ras.tolist(), "config": cfg,
            "seconds": {"load": t1 - t0, "preprocess": t2 - t1, "detect": t3 - t2}}
    return dets, info


class DetectionBundle:
    """A MONAI detection bundle from the models folder as a plugin (the worker builds it with the
    bundle's PluginInfo: ``takes_info``)."""

    takes_info = True

    def __init__(self, info=None):
        self.info = info
        self._net = None
        self._device = None

    @property
    def folder(self) -> Path:
        extra = getattr(self.info, "extra", {}) or {}
        return Path(extra.get("bundle") or Path(self.info.model_path).parent.parent)

    def run(self, inputs, params, context):
        from viewer.ai.api import Detection, Results

        vol = inputs["image"]
        cfg = read_detection_config(self.folder)
        if self._net is None or self._device != context.device:
            self._net, self._device = load_network(self.folder, cfg, context.device), context.device
        context.progress(0.05, "preparing")
        dets, info = detect(vol.real_values(), vol.affine, self.folder, device=context.device,
                            score_threshold=params.get("score_threshold") or None, context=context, network=self._net)
        context.progress(1.0, "done")
        results = Results(detections=[Detection(tuple(d["center_lps"]), tuple(d["size_mm"]), d["score"], d["label"],
                                                f"{self.info.name if self.info else 'bundle'}: score "
                                                f"{d['score']:.3f}") for d in dets])
        s = info["seconds"]
        results.notes.append(f"{len(dets)} detections at score >= {info['config'].score_thresh:g} "
                             f"(preprocessing {s['preprocess']:.1f} s, detection {s['detect']:.1f} s).")
        return results
