"""Developer tool: one click on the chest CT tumour with Click to segment, as
docs/screenshot-click-segment.png (three planes, 3D, the measurements panel).

    xvfb-run -a -s "-screen 0 1920x1080x24" python -m viewer.ui.segments.click_screenshot CHEST_CT_DIR \
        --out docs/screenshot-click-segment.png [--voxel 168,252,77] [--method geodesic]
    ... brain-tumor-mr/brain1_image.nrrd --modality MR --preset "" --voxel 188,136,11 --preset3d "MR default"

The click is a real mouse event in the axial view at ``--voxel`` (i, j, k); the tool runs the
lesion-segmentation plugin in the AI worker as it does for a reader.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from viewer.ui.screenshot import open_window, wait_until


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path")
    p.add_argument("--out", required=True)
    p.add_argument("--voxel", default="168,252,77", help="the click, as 'i,j,k'")
    p.add_argument("--method", default="", help="geodesic, network or region-growing (default: the tool's)")
    p.add_argument("--size", default="1700x1000")
    p.add_argument("--zoom", type=float, default=2.6)
    p.add_argument("--view3d", default="anterior", help="standard view of the 3D slot")
    p.add_argument("--clip-mm", type=float, default=0.0, help="half-size of a 3D clipping box around the click")
    p.add_argument("--preset3d", default="CT lung")
    p.add_argument("--opacity3d", type=float, default=0.3, help="the 3D preset's opacity scale")
    p.add_argument("--zoom3d", type=float, default=2.0)
    p.add_argument("--modality", choices=("CT", "MR"), help="what a file without a modality is (NIfTI, NRRD): "
                                                            "the answer the viewer would ask the reader for")
    p.add_argument("--preset", default="2", help="number key of the 2D window preset (2: lung)")
    args = p.parse_args(argv)
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    app, window = open_window(args.path, args.size, "2x2")
    if window is None:
        return 1
    state = window.model.active_state
    if args.modality:
        from viewer.ai.modality import assume_modality

        assume_modality(state.volume, args.modality)
    if args.preset:
        window.cmd_preset(args.preset)
    centre = state.volume.index_to_lps([float(x) for x in args.voxel.split(",")])
    window.model.set_point(state.key, centre)
    window.model.set_crosshair_visible(False)
    for slot in (0, 1, 2):
        window.model.set_zoom(slot, args.zoom)
        geom = state.geometry(window.model.viewports[slot].plane)
        x, y = geom.from_lps(centre)
        cx, cy = (geom.extent[0] + geom.extent[1]) / 2, (geom.extent[2] + geom.extent[3]) / 2
        window.model.set_pan(slot, (x - cx, y - cy))
    clicker = window.features.segments.click
    window.model.set_tool("seg_click")
    if args.method:
        clicker.widgets["method"].setCurrentText(args.method)
    wait_until(app, lambda: clicker.run is None, 120)  # the model loaded, as while a reader finds the lesion
    axial = window.grid.slice_views[0]
    axial.update_scene()
    dx, dy = axial.view2d.to_display(*axial.pipeline.geometry.from_lps(centre))
    dpr = axial.size_px()[0] / axial.width()
    pos = (int(round(dx / dpr)), int(round((axial.size_px()[1] - dy) / dpr)))
    from PySide6.QtCore import QPoint

    QTest.mouseClick(axial, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(*pos))
    if not wait_until(app, lambda: not clicker.busy, 120) or clicker.segment is None:
        print(f"no mask: {clicker.last_message}", file=sys.stderr)
        return 1
    seg, s = clicker.editable.segmentation, clicker.segment
    window.features.segments.dock.hide()
    view3d = window.grid.views[3]  # the lung and the tumour's surface, the camera on the tumour
    view3d.set_preset(args.preset3d)
    view3d.set_edit(0.0, args.opacity3d)  # a lighter lung, so the tumour's surface shows through it
    if args.clip_mm > 0:
        r = args.clip_mm
        view3d.set_clip_box((centre[0] - r, centre[0] + r, centre[1] - r, centre[1] + r, centre[2] - r,
                             centre[2] + r))
        view3d.set_clipping(True)
    view3d.standard_view(args.view3d)
    rows = window.features.measure.controller.segment_rows
    rows.wait()
    row = next(r for r in rows.rows() if r.segment.number == s.number)
    window.features.measure.controller.select(row.uid)  # its statistics row and histogram
    wait_until(app, lambda: False, 2.0)
    cam = view3d.renderer.GetActiveCamera()  # on the tumour, closer
    pos, focal = np.array(cam.GetPosition()), np.array(cam.GetFocalPoint())
    cam.SetFocalPoint(*centre)
    cam.SetPosition(*(centre + pos - focal))
    cam.Zoom(args.zoom3d)
    view3d.renderer.ResetCameraClippingRange()
    view3d.changed()
    view3d.refine()  # the refined frame, which the session holds back until Accept (it takes seconds here)
    wait_until(app, lambda: False, 1.5)
    for view in window.grid.visible_views():
        view.render_now()
    app.processEvents()
    shot = window.screen().grabWindow(window.winId())
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    shot.save(args.out)
    c = clicker.timings[-1]
    print(f"saved {args.out} ({shot.width()}x{shot.height()}); {s.name} {seg.volume_ml(s):.2f} mL, "
          f"{s.algorithm_name}, click {c.seconds:.2f} s (plugin {c.plugin_seconds:.2f} s); "
          f"{row.summary(state.volume.units)}")
    for ed in state.open_series.segmentations:
        ed.close(discard=True)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
