"""Developer tool: the chest CT with an edited tumour segment, as docs/screenshot-segment.png.

    xvfb-run -a -s "-screen 0 1920x1080x24" python -m viewer.ui.segments.screenshot CHEST_CT_DIR \
        --out docs/screenshot-segment.png [--voxel 165,255,76]

The tumour is segmented as a reader would: a 3D threshold brush (-500 to 300 HU) over the nodule,
then "keep largest island" and a closing, so that the vessels and lung around it stay out.
"""

from __future__ import annotations

import argparse
import os
import sys

from viewer.ui.screenshot import open_window, wait_until


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path")
    p.add_argument("--out", required=True)
    p.add_argument("--voxel", default="165,255,76", help="centre of the lesion as 'i,j,k'")
    p.add_argument("--size", default="1600x1000")
    p.add_argument("--view3d", default="right", help="standard view of the 3D slot")
    args = p.parse_args(argv)
    import numpy as np

    app, window = open_window(args.path, args.size, "2x2")
    if window is None:
        return 1
    window.cmd_preset("2")  # lung
    state = window.model.active_state
    centre = state.volume.index_to_lps([float(x) for x in args.voxel.split(",")])
    window.model.set_point(state.key, centre)
    c = window.features.segments.controller
    seg, ed, _ = c.target(state)
    tumour = ed.add_segment("Tumor")
    ed.remove_segment(seg.segment(1))
    ed.begin("Threshold brush")
    for d in np.linspace(-4, 4, 5):
        ed.brush(tumour, centre + [d, 0, 0], radius_mm=14.0, hu_range=(-500, 300))
    ed.end()
    ed.islands(tumour, keep_largest=True)
    ed.smooth(tumour, "closing", 1.5)
    window.features.segments.dock.show()
    window.model.set_tool("seg_brush")
    for slot in (0, 1, 2):
        window.model.set_zoom(slot, 2.2)
        geom = state.geometry(window.model.viewports[slot].plane)
        x, y = geom.from_lps(centre)
        cx, cy = (geom.extent[0] + geom.extent[1]) / 2, (geom.extent[2] + geom.extent[3]) / 2
        window.model.set_pan(slot, (x - cx, y - cy))
    view3d = window.grid.views[3]
    view3d.standard_view(args.view3d)  # the tumour's surface between the ribs
    rows = window.features.measure.controller.segment_rows
    rows.wait()
    window.features.measure.controller.select(rows.rows()[0].uid)  # its statistics row and histogram
    wait_until(app, lambda: False, 1.5)
    for view in window.grid.visible_views():
        view.render_now()
    app.processEvents()
    shot = window.screen().grabWindow(window.winId())
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    shot.save(args.out)
    print(f"saved {args.out} ({shot.width()}x{shot.height()}); tumour {seg.volume_ml(tumour):.1f} ml, "
          f"{tumour.provenance}")
    for ed in state.open_series.segmentations:
        ed.close(discard=True)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
