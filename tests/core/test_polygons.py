"""Polygon maths in one place (viewer/core/polygons.py): the even-odd rule for any points (lasso,
ROI statistics) and on a pixel grid (RT structure sets), and the shoelace area."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.polygons import fill_polygons, inside_polygon, polygon_area


def square(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def star(n=40, seed=0):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 30 + 12 * np.random.default_rng(seed).uniform(-1, 1, n)
    return np.column_stack([50.3 + r * np.cos(t), 40.7 + r * np.sin(t)])


def test_inside_polygon_takes_points_of_any_shape_and_a_concave_outline():
    notch = np.array([[0, 0], [10, 0], [10, 10], [5, 3], [0, 10]], float)  # a V cut into the top
    x, y = np.meshgrid(np.arange(0.5, 10), np.arange(0.5, 10))  # (10, 10) points
    m = inside_polygon(x, y, notch)
    assert m.shape == (10, 10)
    assert m[0].all() and not m[9, 5] and m[7, 0] and m[7, 9] and not m[9, 0]
    assert inside_polygon(np.array([5.0]), np.array([-1.0]), notch).tolist() == [False]
    # turning the outline the other way, or a repeated vertex (a horizontal edge of length 0), changes nothing
    assert np.array_equal(inside_polygon(x, y, notch[::-1]), m)
    assert np.array_equal(inside_polygon(x, y, np.insert(notch, 1, notch[1], axis=0)), m)


def test_points_and_grid_agree_and_count_the_area():
    poly = star()
    grid = fill_polygons([poly], (90, 100))
    j, i = np.mgrid[0:90, 0:100]
    assert np.array_equal(inside_polygon(i.astype(float), j.astype(float), poly), grid)
    assert grid.sum() == pytest.approx(polygon_area(poly), rel=0.02)
    assert polygon_area(square(0, 0, 3, 2)) == pytest.approx(6.0)
    assert polygon_area(square(0, 0, 3, 2)[::-1]) == pytest.approx(6.0)


def test_fill_takes_the_pixel_centres_inside():
    m = fill_polygons([square(1.5, 1.5, 5.5, 5.5)], (8, 8))
    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    assert np.array_equal(m, expected)
    # a polygon is the same whichever way it turns, and partly outside the grid is clipped
    assert np.array_equal(fill_polygons([square(1.5, 1.5, 5.5, 5.5)[::-1]], (8, 8)), expected)
    clipped = fill_polygons([square(-3.5, -3.5, 2.5, 2.5)], (8, 8))
    assert clipped.sum() == 9 and clipped[:3, :3].all()


def test_fill_even_odd_makes_holes_and_islands():
    outer, hole, island = square(1.5, 1.5, 9.5, 9.5), square(3.5, 3.5, 6.5, 6.5), square(11.5, 1.5, 13.5, 3.5)
    m = fill_polygons([outer, hole, island], (12, 16))
    assert m.sum() == 64 - 9 + 4
    assert not m[4:7, 4:7].any() and m[2, 2] and m[2:4, 12:14].all()
    # a triangle: the count of centres inside is close to its area
    tri = np.array([[10.2, 20.7], [180.3, 40.1], [60.9, 170.4]])
    assert fill_polygons([tri], (200, 200)).sum() == pytest.approx(polygon_area(tri), rel=0.01)
