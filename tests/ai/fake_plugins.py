"""Plugins that misbehave on purpose (crash, hang, ignore Cancel, run out of memory) and one that
behaves, for the host's tests.  They run in the real worker process like any plugin."""

from __future__ import annotations

import os
import time

import numpy as np

from viewer.ai.api import DerivedImage, Detection, Heatmap, LabelMap, Parameter, PluginInfo, Results, Segment, Task


def info(name: str, **kw) -> PluginInfo:
    return PluginInfo(id=f"test-{name}", name=f"Test {name}", version="0", task=kw.pop("task", Task.IMAGE_TO_IMAGE),
                      entry=f"tests.ai.fake_plugins:{name.title().replace('-', '')}", source="test", **kw)


class Threshold:
    """Label voxels above 0 (real value), invert the image, report detections at the label centre."""

    def run(self, inputs, params, context):
        vol = inputs["image"]
        real = np.asarray(vol.real_values(), np.float32)
        labels = (real > 0).astype(np.uint8)
        k, j, i = np.argwhere(labels).mean(axis=0)
        centre = vol.index_to_lps([i, j, k])
        context.progress(0.5, "thresholding")
        return Results(
            images=[DerivedImage(-real, vol.affine, "inverted", vol.modality)],
            label_maps=[LabelMap(labels, vol.affine, [Segment(1, "above zero")])],
            detections=[Detection(tuple(centre), (10.0, 10.0, 10.0), 0.9, "blob")],
            heatmaps=[Heatmap(real / max(float(real.max()), 1.0), vol.affine, "scaled", "probability")],
            provenance={"pid": os.getpid(), "device": context.device})


class Slow:
    """Cooperative: works in small steps, checks Cancel between them."""

    def run(self, inputs, params, context):
        steps = int(params.get("steps", 600))
        for n in range(steps):
            context.check_cancelled()
            time.sleep(0.05)
            context.progress(n / steps, "working")
        return Results(provenance={"pid": os.getpid()})


class Stubborn:
    """Ignores Cancel and never reports progress (a plugin stuck in one long call)."""

    def run(self, inputs, params, context):
        context.progress(0.01, "stuck")
        time.sleep(3600)
        return Results()


class Crash:
    def run(self, inputs, params, context):
        context.progress(0.1, "about to crash")
        time.sleep(0.2)
        os._exit(3)


class Greedy:
    def run(self, inputs, params, context):
        raise MemoryError()


class Broken:
    def run(self, inputs, params, context):
        raise ValueError("the model's weights do not match")


class Pid:
    def run(self, inputs, params, context):
        return Results(provenance={"pid": os.getpid(), "device": context.device})


HOSTILE_KINDS = ("object", "strings", "records", "complex", "object-heatmap", "ragged")


def hostile_info() -> PluginInfo:
    return info("hostile", parameters=(Parameter("what", "choice", "object", choices=HOSTILE_KINDS),))


class Hostile:
    """Returns arrays that must never reach the viewer: an object array (its memory is pointers into
    the worker), strings, records, complex numbers, a ragged list."""

    def run(self, inputs, params, context):
        vol = inputs["image"]
        what = params["what"]
        if what == "object":
            array = np.empty(vol.shape, dtype=object)
            array[...] = [float(n) for n in range(vol.shape[2])]  # real Python objects, one per voxel
        elif what == "strings":
            array = np.full(vol.shape, "abc")
        elif what == "records":
            array = np.zeros(vol.shape, dtype=[("a", "f4"), ("b", "i2")])
        elif what == "complex":
            array = np.zeros(vol.shape, dtype=np.complex64)
        elif what == "object-heatmap":
            heat = np.full(vol.shape, "x", dtype=object)
            return Results(heatmaps=[Heatmap(heat, vol.affine, "hostile", "probability")])
        else:
            array = [[[1.0, 2.0]], [[1.0]]]
        return Results(images=[DerivedImage(array, vol.affine, "hostile", vol.modality)])
