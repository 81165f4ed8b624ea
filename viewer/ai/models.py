"""Loading model files without executing pickled code (worker side; torch imported lazily).

* state dicts: ``torch.load(path, weights_only=True)``; a file that needs more than tensors and
  plain containers (a pickled ``nn.Module``, or a payload that would run code) is refused;
* TorchScript: ``torch.jit.load`` (its archive format does not run arbitrary pickled code);
* ONNX: onnxruntime, when installed (it is optional and not a dependency; without it ONNX models
  are listed but refuse to run, saying so);
* MONAI bundles: the network is built from ``configs/inference.json``'s ``network_def`` only when
  its ``_target_`` names a class in ``monai.networks.nets`` and its arguments are plain values:
  bundle configs can name any callable, so nothing else in them is executed.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from viewer.core.errors import HounsfieldError


def load_state_dict(path, map_location="cpu") -> dict:
    """A state dict (or a plain container of tensors), refusing anything that would run code."""
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise HounsfieldError(f"The model file {path} does not exist.") from None
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError) as exc:
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "Unsupported operand" in text \
                or isinstance(exc, pickle.UnpicklingError):
            raise HounsfieldError(f"{path.name} was refused: it holds pickled Python objects that could run code "
                                  "when loaded; save the weights as a state_dict or TorchScript instead.") from None
        raise HounsfieldError(f"{path.name} could not be read as PyTorch weights ({text.splitlines()[0][:80]}).") \
            from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise HounsfieldError(f"{path.name} does not hold a state dict of weights.")
    return obj


def load_torchscript(path, device="cpu"):
    import torch

    path = Path(path)
    try:
        model = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as exc:
        raise HounsfieldError(f"{path.name} could not be loaded as a TorchScript model "
                              f"({str(exc).splitlines()[0][:80]}).") from None
    model.eval()
    return model


class OnnxModel:
    """An ONNX model behind a torch-like call: numpy in, numpy out (first output)."""

    def __init__(self, path, device: str = "cpu"):
        try:
            import onnxruntime as ort
        except ImportError:
            raise HounsfieldError("ONNX models need onnxruntime, which is not installed; "
                                  "install it with 'pip install onnxruntime'.") from None
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise HounsfieldError(f"{Path(path).name} could not be loaded as an ONNX model ({exc}).") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, array):
        return self.session.run(None, {self.input_name: array})[0]


def _plain(value) -> bool:
    if isinstance(value, str):
        return not value.startswith(("$", "@", "%"))  # bundle expressions and references run code
    if isinstance(value, bool | int | float) or value is None:
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return False


def monai_network(network_def: dict):
    """Instantiate a ``monai.networks.nets`` class from a bundle's ``network_def`` (plain args only)."""
    import monai.networks.nets as nets

    if not isinstance(network_def, dict) or "_target_" not in network_def:
        raise HounsfieldError("The bundle's network_def must be an object with a _target_.")
    target = str(network_def["_target_"])
    name = target.rsplit(".", 1)[-1]
    if target not in (name, f"monai.networks.nets.{name}") or not hasattr(nets, name):
        raise HounsfieldError(f"The bundle's network {target!r} is not a MONAI network class; "
                              "only monai.networks.nets classes are built from bundle configs.")
    kwargs = {k: v for k, v in network_def.items() if not k.startswith("_")}
    bad = [k for k, v in kwargs.items() if not _plain(v)]
    if bad:
        raise HounsfieldError(f"The bundle's network argument {bad[0]!r} is an expression; "
                              "only plain values are accepted.")
    try:
        return getattr(nets, name)(**kwargs)
    except TypeError as exc:
        raise HounsfieldError(f"The bundle's network {name} could not be built ({exc}).") from None


def read_bundle_config(bundle: Path) -> dict:
    """The parts of a bundle's inference config the host understands (read as data, never run)."""
    configs = Path(bundle) / "configs"
    for name in ("inference.json", "inference.yaml"):
        if (configs / name).is_file():
            break
    else:
        return {}
    if name.endswith(".yaml"):
        try:
            import yaml
        except ImportError:
            return {}
        with open(configs / name, encoding="utf-8") as f:
            cfg = yaml.safe_load(f) or {}
    else:
        with open(configs / name, encoding="utf-8") as f:
            cfg = json.load(f)
    out: dict = {"network_def": cfg.get("network_def")}

    def walk(node):
        if isinstance(node, dict):
            target = str(node.get("_target_", "")).rsplit(".", 1)[-1]
            if target in ("ScaleIntensityRanged", "ScaleIntensityRange"):
                out["intensity"] = {k: node[k] for k in ("a_min", "a_max", "b_min", "b_max", "clip")
                                    if k in node and _plain(node[k])}
            elif target in ("Spacingd", "Spacing") and _plain(node.get("pixdim")):
                out["spacing_mm"] = node.get("pixdim")
            elif target == "SlidingWindowInferer":
                for k in ("roi_size", "sw_batch_size", "overlap", "mode"):
                    if _plain(node.get(k)) and k in node:
                        out[k] = node[k]
            elif target in ("Activationsd", "Activations"):
                if node.get("softmax") is True:
                    out["activation"] = "softmax"
                elif node.get("sigmoid") is True:
                    out["activation"] = "sigmoid"
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(cfg)
    return out
