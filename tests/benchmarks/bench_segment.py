"""Segment editing benchmark.

1. Brush stroke step on a 512x512x300 label map (0.7 x 0.7 x 1 mm): one dab of a 5 mm disc brush
   moving 1 mm along a stroke (``Editor.brush``), then the overlay of the axial view updated
   (nearest-neighbour reslice of the label layer, colouring, fill + outline) and the view rendered
   in an off-screen 768x768 VTK window holding the image slice and the overlay.
   The target is the overlay update (edit + reslice + colouring, CPU work per step); the frame
   itself is then drawn by OpenGL, so the baseline measured in the same run is "Render() of the
   unchanged view": what drawing the same window costs without any edit (Mesa llvmpipe here), and
   the brush step with its Render() is printed next to it.
   Also printed: the bytes one undo step stores for a dab and for a 60-dab stroke.
2. Fill between slices of a segment drawn on 5 axial slices of the real chest CT (discs 10 slices
   apart), timed around ``Editor.fill_between_slices``.

    python tests/benchmarks/bench_segment.py [--steps 200]

Targets (issue 5): a brush step updates the overlay in < 16 ms; fill between slices < 1 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("VIEWER_TEST_DATA", REPO.parent / "shared" / "data"))


def stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"median {np.median(a):6.2f} ms   p95 {np.percentile(a, 95):6.2f} ms   max {a.max():6.2f} ms"


def brush_benchmark(steps: int) -> None:
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
    from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow

    from viewer.core.edits import Editor
    from viewer.core.planes import plane_axes, slice_geometry
    from viewer.core.segmentation import Segmentation
    from viewer.core.volume import Volume, affine_from
    from viewer.render.camera import apply_camera, view_for
    from viewer.render.image import VtkVolume
    from viewer.render.labels import LabelLayers
    from viewer.render.slice import SlicePipeline

    shape = (300, 512, 512)
    affine = affine_from((0.7, 0.7, 1.0), (-180.0, -180.0, -150.0), np.eye(3))
    rng = np.random.default_rng(0)
    image = Volume((rng.integers(-1000, 1000, shape[1:], dtype=np.int16)[None] + np.zeros(shape, np.int16)),
                   affine, "CT", "HU")
    seg = Segmentation(shape, affine, "bench")
    import tempfile

    from viewer.core.journal import Journal

    journal = Journal(seg, path=os.path.join(tempfile.mkdtemp(prefix="bench-seg-"), "bench.hjournal"))
    ed = Editor(seg, image)
    s = seg.add_segment("Tumor")
    k = 150
    u, v, n = plane_axes("axial", np.eye(3))
    centre = image.index_to_lps([256.0, 256.0, k])
    geom = slice_geometry(image, u, v, n, centre)

    win = vtkRenderWindow()
    win.SetOffScreenRendering(1)
    win.SetSize(768, 768)
    ren = vtkRenderer()
    win.AddRenderer(ren)
    pipe = SlicePipeline(VtkVolume(image), -1024.0)
    pipe.set_window(40, 400)
    pipe.set_geometry(geom)
    ren.AddViewProp(pipe.actor)
    layers = LabelLayers(ren, lambda: None)
    layers.sync([seg])
    layers.set_geometry(geom)
    layers.update()
    apply_camera(ren.GetActiveCamera(), view_for(geom.extent, 768, 768, 1.0, (0.0, 0.0)))
    win.Render()

    base = []
    for _ in range(steps):
        t = time.perf_counter()
        win.Render()
        base.append((time.perf_counter() - t) * 1000)

    edit, edit_only, overlay = [], [], []
    ed.begin("Brush")
    p = centre.copy()
    for step in range(steps):
        q = centre + 60.0 * np.array([np.cos(step / 15), np.sin(step / 15), 0.0]) * (0.3 + step / steps / 2)
        t = time.perf_counter()
        ed.brush(s, p, q, radius_mm=5.0, normal=n)
        t1 = time.perf_counter()
        layers.update()
        t2 = time.perf_counter()
        win.Render()
        edit.append((time.perf_counter() - t) * 1000)
        edit_only.append((t1 - t) * 1000)
        overlay.append((t2 - t) * 1000)
        p = q
    stroke = ed.end()
    ed.begin("Dab")
    ed.brush(s, centre + [80.0, 0, 0], radius_mm=5.0, normal=n)
    dab = ed.end()
    assert layers.pipes[0].rgba()[..., 3].any()
    print(f"Label map {shape[2]}x{shape[1]}x{shape[0]} uint8 ({seg.nbytes / 2**20:.0f} MB), 768x768 off-screen view")
    print(f"  baseline  Render() of the unchanged view  : {stats(base)}")
    print(f"  brush step: edit + overlay update       : {stats(overlay)}   target < 16 ms")
    print(f"    of which the edit (undo, journal)      : {stats(edit_only)}")
    print(f"  brush step + Render()                    : {stats(edit)}   (minus baseline: "
          f"{np.median(edit) - np.median(base):.2f} ms)")
    print(f"  undo bytes: one dab {dab.nbytes} B; a {steps}-dab stroke {stroke.nbytes / 1024:.1f} kB "
          f"(box {[sl.stop - sl.start for sl in stroke.changes[0].box]}), label map {seg.nbytes / 2**20:.0f} MB")
    journal.close(discard=True)
    win.Finalize()


def fill_between_benchmark() -> None:
    import viewer
    from viewer.core.edits import Editor
    from viewer.core.segmentation import Segmentation

    chest = DATA / "chest-ct"
    if not chest.exists():
        print(f"fill between slices: skipped ({chest} absent)")
        return
    vol = viewer.load(chest)
    times = []
    for _ in range(3):
        seg = Segmentation.for_volume(vol)
        ed = Editor(seg, vol)
        s = seg.add_segment("Heart")
        for k, r in zip((40, 50, 60, 70, 80), (25, 35, 45, 40, 30)):
            ed.brush(s, vol.index_to_lps([260.0, 280.0, k]), radius_mm=r, normal=[0, 0, 1.0])
        t = time.perf_counter()
        ed.fill_between_slices(s)
        times.append(time.perf_counter() - t)
        filled = int((seg.mask(s).sum(axis=(1, 2)) > 0).sum())
    print(f"Fill between slices, chest CT (512x512x141), drawn on 5 slices -> {filled} slices: "
          f"best {min(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms   target < 1000 ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    brush_benchmark(args.steps)
    fill_between_benchmark()
    return 0


if __name__ == "__main__":
    sys.exit(main())
