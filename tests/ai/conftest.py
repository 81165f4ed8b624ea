"""Fixtures for the AI host's tests: a real worker process, fake plugins, a models folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.ai import fake_plugins
from tests.conftest import data_path

FAKES = ("threshold", "slow", "stubborn", "crash", "greedy", "broken", "pid")


def make_registry(models: Path | None = None):
    from viewer.ai.discovery import Registry

    reg = Registry(models=models if models is not None else Path("/nonexistent-models"), entry_points=False)
    for name in FAKES:
        reg.add(fake_plugins.info(name))
    reg.add(fake_plugins.hostile_info())
    return reg


@pytest.fixture(scope="module")
def host():
    """One AI host (one worker process) shared by a module's tests."""
    from viewer.ai.host import AIHost

    h = AIHost(make_registry(), device="cpu", threads=2, stall_timeout=120)
    yield h
    h.shutdown()


@pytest.fixture(scope="session")
def aorta_ct():
    """The small real CT (120x126x164, 1.5 mm) from the shared data folder."""
    import viewer

    return viewer.load(data_path("ct-aorta", "ct_cropped.nii.gz"))


# ---------------------------------------------------------------------------------------------
# model files made by the tests


def threshold_torchscript(path: Path) -> None:
    """A TorchScript network that labels intensity > 0.5 (after HU [-1000, 1000] -> [0, 1]): HU > 0."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(1, 2, 1)
            with torch.no_grad():
                self.conv.weight[:] = torch.tensor([-20.0, 20.0]).view(2, 1, 1, 1, 1)
                self.conv.bias[:] = torch.tensor([10.0, -10.0])

        def forward(self, x):
            return self.conv(x)

    torch.jit.script(Net().eval()).save(str(path))


INTENSITY = {"a_min": -1000, "a_max": 1000, "b_min": 0.0, "b_max": 1.0, "clip": True}


def write_descriptor(model: Path, **extra) -> Path:
    desc = {"name": "Threshold (test)", "version": "1.0", "task": "segmentation",
            "inputs": [{"modalities": ["CT"]}], "intensity": INTENSITY, "roi_size": [64, 64, 64],
            "labels": {"1": "above 0 HU"},
            "card": {"intended_use": "tests only", "training_data": "none: weights set by hand"}, **extra}
    path = model.with_suffix(".json")
    path.write_text(json.dumps(desc))
    return path


def small_unet():
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(8, 16), strides=(2,), num_res_units=0)


UNET_DEF = {"_target_": "monai.networks.nets.UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
            "channels": [8, 16], "strides": [2], "num_res_units": 0}


def train_unet(volume, steps: int = 40, seed: int = 0):
    """A few optimisation steps teaching the small UNet 'HU > 0' on crops of a real CT."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = small_unet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = np.clip((volume.array.astype(np.float32) + 1000) / 2000, 0, 1)
    for _ in range(steps):
        crops = []
        for _b in range(2):
            k, j, i = (int(rng.integers(0, s - 32)) for s in x.shape)
            crops.append(x[k:k + 32, j:j + 32, i:i + 32])
        xb = torch.from_numpy(np.stack(crops))[:, None]
        yb = (xb[:, 0] > 0.5).long()
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def write_bundle(folder: Path, model_kind: str, unet=None) -> Path:
    """A MONAI bundle: configs/metadata.json, configs/inference.json, models/model.ts or model.pt."""
    import torch

    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    meta = {"name": f"Test bundle ({model_kind})", "version": "0.1.0", "description": "made by the tests",
            "intended_use": "tests only", "data_source": "none",
            "network_data_format": {
                "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1,
                                     "spatial_shape": [64, 64, 64]}},
                "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 2,
                                     "channel_def": {"0": "background", "1": "above zero"}}}}}
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    inference = {
        "network_def": UNET_DEF,
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", **INTENSITY}]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [64, 64, 64], "sw_batch_size": 2,
                    "overlap": 0.25},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True}]},
    }
    (folder / "configs" / "inference.json").write_text(json.dumps(inference))
    if model_kind == "ts":
        threshold_torchscript(folder / "models" / "model.ts")
    else:
        torch.save(unet.state_dict(), folder / "models" / "model.pt")
    return folder


class Evil:
    """Unpickling this would create a folder: the proof that pickled code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))
