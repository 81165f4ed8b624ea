"""Polygon maths in plane coordinates, with no Qt and no VTK: which points a closed outline holds
(the lasso, polygon ROIs, RT structure set contours) by the even-odd rule, and its area.

``inside_polygon`` tests any points (an oblique plane's voxel centres); ``fill_polygons`` is the same
rule on a regular pixel grid by scanlines, far faster there, and takes several contours together
(holes and islands).
"""

from __future__ import annotations

import numpy as np


def inside_polygon(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule: which points (x, y) (arrays of any one shape) lie inside the closed polygon
    ``poly`` (N, 2).  A point on a crossing's left counts it (a ray to +x), an edge spans
    [min y, max y), as in ``fill_polygons``; the loop runs over edges, vectorised over points, so
    memory stays that of the points (broadcasting points x edges was 2-3x slower)."""
    inside = np.zeros(np.shape(x), bool)
    px, py = poly[:, 0], poly[:, 1]
    qx, qy = np.roll(px, 1), np.roll(py, 1)
    for x0, y0, x1, y1 in zip(px, py, qx, qy):
        if y0 == y1:
            continue
        crosses = (y0 > y) != (y1 > y)
        xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < xc)
    return inside


def fill_polygons(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """A (rows, columns) mask of the pixel centres inside ``polygons`` ((N, 2) arrays of (i, j)
    = (column, row) continuous indices) by the even-odd rule over all of them together: a pixel is
    inside when a ray from it crosses the edges an odd number of times (holes and islands)."""
    nj, ni = shape
    toggles = np.zeros((nj, ni + 1), np.uint8)
    for poly in polygons:
        p = np.asarray(poly, dtype=np.float64)
        a, b = p, np.roll(p, -1, axis=0)
        lo, hi = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
        # rows j whose centre line y = j the edge crosses, half-open [lo, hi) so a vertex counts once
        first = np.clip(np.ceil(lo), 0, nj).astype(np.int64)
        last = np.clip(np.ceil(hi), 0, nj).astype(np.int64)
        counts = np.maximum(last - first, 0)
        if not counts.any():
            continue
        edge = np.repeat(np.arange(len(p)), counts)
        rows = np.repeat(first, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        t = (rows - a[edge, 1]) / (b[edge, 1] - a[edge, 1])
        x = a[edge, 0] + t * (b[edge, 0] - a[edge, 0])
        cols = np.clip(np.ceil(x), 0, ni).astype(np.int64)  # centres i >= x are right of the crossing
        np.add.at(toggles, (rows, cols), 1)
    return (np.cumsum(toggles, axis=1, dtype=np.uint32)[:, :ni] & 1).astype(bool)


def polygon_area(xy: np.ndarray) -> float:
    """Area of the closed polygon ``xy`` (N, 2) by the shoelace formula, whichever way it turns."""
    x, y = xy[:, 0], xy[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
