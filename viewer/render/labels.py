"""Segmentations drawn over a 2D view: each label-map layer resliced on the image's plane with
nearest-neighbour interpolation (the same reslice axes as the image, so voxels line up exactly),
then coloured per segment (fill with opacity, outline, or both) into an RGBA image actor.

The layer's numpy buffer is shared with VTK (no copy); after an edit ``modified()`` makes the
reslice run again for the one plane shown.  Colouring is a table lookup on the 2D slice.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonDataModel import vtkImageData

from viewer.core.planes import SliceGeometry
from viewer.core.segmentation import Segmentation
from viewer.core.volume import Volume
from viewer.render.image import VtkVolume
from viewer.render.slice import SlicePipeline

DISPLAY_MODES = ("both", "fill", "outline")


def colour_tables(seg: Segmentation, layer: int, opacity: float, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(fill, outline) RGBA tables indexed by label value for the segments of ``layer``."""
    size = 65536 if seg.layers[layer].dtype == np.uint16 else 256
    fill = np.zeros((size, 4), np.uint8)
    line = np.zeros((size, 4), np.uint8)
    for s in seg.segments:
        if s.layer != layer or not s.visible or s.number >= size:
            continue
        fill[s.number, :3] = line[s.number, :3] = s.color
        fill[s.number, 3] = 0 if mode == "outline" else int(round(255 * opacity))
        line[s.number, 3] = 255 if mode in ("outline", "both") else fill[s.number, 3]
    return fill, line


class LabelPipeline(SlicePipeline):
    """One layer of one segmentation on the view's plane."""

    def __init__(self, seg: Segmentation, layer: int):
        self.seg, self.layer = seg, layer
        super().__init__(VtkVolume(Volume(seg.layers[layer], seg.affine)), background=0.0)
        self.reslice.SetInterpolationModeToNearestNeighbor()
        self.rgba_image = vtkImageData()
        self._rgba: np.ndarray | None = None
        self.actor.GetMapper().SetInputData(self.rgba_image)
        self.actor.ForceOpaqueOff()
        self.actor.ForceTranslucentOn()
        self.actor.GetProperty().SetInterpolationTypeToNearest()
        self.actor.SetPosition(0, 0, -0.6)  # over the image, under heatmaps and text
        self.stale = True
        self.tables = colour_tables(seg, layer, 0.4, "both")

    def set_geometry(self, geom: SliceGeometry) -> None:
        super().set_geometry(geom)
        self.stale = True

    def modified(self) -> None:
        self.vtk_volume.modified()
        self.stale = True

    def set_style(self, opacity: float, mode: str) -> None:
        self.tables = colour_tables(self.seg, self.layer, opacity, mode)
        self.stale = True

    def update(self) -> None:
        """Reslice and colour the plane if anything changed since the last call."""
        if not self.stale or self.geometry is None:
            return
        self.stale = False
        labels = self.output_array()
        fill, line = self.tables
        rgba = fill[labels]
        if line[:, 3].any():
            edge = np.zeros(labels.shape, bool)
            edge[1:, :] |= labels[1:, :] != labels[:-1, :]
            edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
            edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
            edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
            edge &= labels != 0
            rgba[edge] = line[labels[edge]]
        ny, nx = labels.shape
        if self._rgba is None or self._rgba.shape != rgba.shape:
            self._rgba = rgba
            out = self.reslice.GetOutput()
            self.rgba_image.SetDimensions(nx, ny, 1)
            self.rgba_image.SetSpacing(out.GetSpacing())
            self.rgba_image.SetOrigin(out.GetOrigin())
            arr = numpy_to_vtk(self._rgba.reshape(-1, 4), deep=False)
            self.rgba_image.GetPointData().SetScalars(arr)
        else:
            self._rgba[...] = rgba
            out = self.reslice.GetOutput()
            self.rgba_image.SetSpacing(out.GetSpacing())
            self.rgba_image.SetOrigin(out.GetOrigin())
        self.rgba_image.GetPointData().GetScalars().Modified()
        self.rgba_image.Modified()

    def rgba(self) -> np.ndarray:
        """The last coloured plane [y, x, 4] (for tests)."""
        return vtk_to_numpy(self.rgba_image.GetPointData().GetScalars()).reshape(self._rgba.shape)


def same_plane(a: SliceGeometry | None, b: SliceGeometry) -> bool:
    return a is not None and a.extent == b.extent and a.spacing == b.spacing and np.allclose(a.origin, b.origin) \
        and np.allclose(a.u, b.u) and np.allclose(a.v, b.v)


class LabelLayers:
    """The label pipelines of a view for the segmentations of its series; ``on_change`` is called
    (to re-render) when voxels, segments or styles change."""

    def __init__(self, renderer, on_change):
        self.renderer, self.on_change = renderer, on_change
        self.pipes: list[LabelPipeline] = []
        self.segs: list[Segmentation] = []
        self.geometry: SliceGeometry | None = None

    def sync(self, segmentations) -> None:
        for seg in self.segs:
            for sig, fn in self._slots(seg):
                sig.disconnect(fn)
        for p in self.pipes:
            self.renderer.RemoveViewProp(p.actor)
        self.pipes, self.segs = [], list(segmentations)
        for seg in self.segs:
            for sig, fn in self._slots(seg):
                sig.connect(fn)
            for n in range(len(seg.layers)):
                p = LabelPipeline(seg, n)
                p.set_style(seg.opacity, seg.display_mode)
                p.actor.SetVisibility(seg.visible)
                if self.geometry is not None:
                    p.set_geometry(self.geometry)
                self.renderer.AddViewProp(p.actor)
                self.pipes.append(p)
        self.on_change()

    def _slots(self, seg):
        return ((seg.changed, self._on_voxels), (seg.segments_changed, self._on_style),
                (seg.style_changed, self._on_style), (seg.layers_changed, self._on_layers))

    def _on_voxels(self, layer, box) -> None:
        for p in self.pipes:
            if p.layer == layer and p.seg.layers[layer] is p.vtk_volume.volume.array:
                p.modified()
        self.on_change()

    def _on_style(self) -> None:
        for p in self.pipes:
            p.set_style(p.seg.opacity, p.seg.display_mode)
            p.actor.SetVisibility(p.seg.visible)
        self.on_change()

    def _on_layers(self) -> None:
        self.sync(self.segs)

    def set_geometry(self, geom: SliceGeometry) -> None:
        self.geometry = geom
        for p in self.pipes:
            if not same_plane(p.geometry, geom):
                p.set_geometry(geom)

    def update(self) -> None:
        for p in self.pipes:
            p.update()
