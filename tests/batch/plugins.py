"""A plugin for the batch tests: slow on purpose, and it leaves a marker of each run (which Dask worker ran
it, when it started and ended, which series it saw) so a test can kill that worker mid-task and count runs."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import numpy as np

from viewer.ai.api import DerivedImage, Parameter, PluginInfo, Results, Task


def slow_info() -> PluginInfo:
    return PluginInfo(id="test-batch-slow", name="Test batch slow", version="1", task=Task.IMAGE_TO_IMAGE,
                      entry="tests.batch.plugins:Slow", source="test",
                      parameters=(Parameter("seconds", "float", 1.0), Parameter("markers", "str", "")))


def series_tag(array) -> int:
    """What tells the test archive's series apart (their phantoms differ by seed)."""
    return int(np.asarray(array, np.int64).sum())


class Slow:
    """Sleeps ``seconds`` in small steps (checking Cancel), then returns the image negated."""

    def run(self, inputs, params, context):
        vol = inputs["image"]
        marker = {"pid": os.getpid(), "ppid": os.getppid(), "tag": series_tag(vol.array), "start": time.time()}
        folder = Path(params["markers"]) if params.get("markers") else None
        name = f"{uuid.uuid4().hex}.json"
        if folder is not None:
            (folder / f".{name}").write_text(json.dumps(marker))
            os.replace(folder / f".{name}", folder / f"run-{name}")
        steps = max(1, int(float(params["seconds"]) / 0.05))
        for n in range(steps):
            context.check_cancelled()
            time.sleep(0.05)
            context.progress(n / steps, "waiting")
        if folder is not None:
            (folder / f"run-{name}").write_text(json.dumps({**marker, "end": time.time()}))
        real = np.asarray(vol.real_values(), np.float32)
        return Results(images=[DerivedImage(-real, vol.affine, "negated", vol.modality)],
                       provenance={"pid": os.getpid()})
