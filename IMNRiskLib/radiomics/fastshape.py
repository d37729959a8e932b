"""pyradiomics' 3-D shape class with its mesh and diameters computed in numpy, to the same bits.

pyradiomics' C `calculate_coefficients` (3.0.1, `radiomics/src/cshape.c`) builds the marching-cubes
mesh of the mask for the surface area and volume, then compares every pair of the mesh's vertices
for the four maximum diameters: O(N^2) in the vertices, 0.15 s of the 0.25 s a 46,000-voxel tumour's
Original-image features take. The largest distance within a set is reached between two vertices
of its convex hull, and a hull vertex is the first or last point of every axis-parallel line of the
set through it; among those candidates only pairs whose direction is within a known angle of a
probe direction, and that lie at the two ends of the set along it, can reach the largest distance
(`_largest_squared_distance`). The pairs left are compared with pyradiomics' own arithmetic, and the
mesh's triangles are added in pyradiomics' order (`np.add.accumulate` adds one after another, as the
C loop does), so every value is pyradiomics' to the last bit (`Testing/test_fastshape.py`).
"""

from __future__ import annotations

import collections
from typing import Dict, Tuple

import numpy as np
import SimpleITK as sitk
from radiomics import imageoperations
from radiomics.shape import RadiomicsShape

# cshape.c's tables: the cube's corners (z, y, x), the point on each of its 12 edges, and for each
# of the 128 corner patterns (the other 128 are their complements) its triangles as triples of
# edges, one hexadecimal digit an edge ("-": none); pyradiomics 3.0.1, BSD licence.
GRID_ANGLES = np.array([(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 0, 0), (1, 0, 1), (1, 1, 1), (1, 1, 0)])
VERT_LIST = np.array([(0, 0, 0.5), (0, 0.5, 1), (0, 1, 0.5), (0, 0.5, 0), (1, 0, 0.5), (1, 0.5, 1),
                      (1, 1, 0.5), (1, 0.5, 0), (0.5, 0, 0), (0.5, 0, 1), (0.5, 1, 1), (0.5, 1, 0)])
_TRIANGLES = " ".join((
    "- 083 190 183198 12a 08312a 92a029 2832a8a98",
    "b23 b2008b 190b23 b2119b98b 3a1ba3 a1008a8ba 9033b9ba9 98aba8",
    "478 043473 190478 194147173 12a478 34730412a 92a902478 2a9297273479",
    "478b23 b47b24204 190478b23 47b94bb29192 3a1ba3478 ba114b10447b 4789033b9ba9 47b4b99ba",
    "954 954083 054015 854835315 12a954 08312a954 2a5542240 2a5325354834",
    "954b23 b2008b954 054015b23 215258b28548 3a1ba3954 549a1008a8ba 54050ba5bb03 548a58ba8",
    "789579 309539357 780017715 157173 78957912a 12a309395357 0288258572a5 2a5253357",
    "579789b23 579972209b27 b23018178157 21b17b157 7895793a1ba3 5705097b0a10ba0 ba003ba50078570 ba557b",
    "65a 08365a 19065a 18319865a 165126 165126083 965906026 598582526832",
    "b2365a b2008b65a 190b2365a b2119b98b65a 63b653513 08b0b50515b6 63b036065059 65969bb98",
    "47865a 04347365a 19047865a 19414717365a 478165126 043473165126 478965906026 739479329596269",
    "b2347865a b47b2420465a 190b2347865a 47b94bb2919265a 47863b653513 51b5b610b47b04b 47863b036065059 "
    "65969b4797b9",
    "a4964a a4964a083 01aa60640 18316886461a 149124264 149124264083 024426 832824426",
    "b23a4964a b2008ba4964a b2301aa60640 64161a148b2118b 964369139b63 18b081b61149641 63b036640 86468b",
    "67a78a89a 67a0a709a073 67a1a7178018 67a1a7173 126168189678 269129679309739 078706602 273267",
    "b2367a78a89a 207b2709767a9a7 67a1a7178018b23 b2117ba61167 896678169b63136 09167b 07870603bb60 67b",
)).split()
TRIANGLE_COUNT = np.array([len(row.strip("-")) // 3 for row in _TRIANGLES])
TRIANGLE_EDGES = np.array([[int(c, 16) for c in row.strip("-").ljust(15, "0")] for row in _TRIANGLES])
# cshape.c's vertices for the diameters: for each cube, the points on edges 6, 7 and 11 where its
# corner 7 and corner 6, 4 or 3 differ (each edge of the grid belongs to one cube that way)
_DIAMETER_EDGES = ((6, 6), (4, 7), (3, 11))


def cube_patterns(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Each cube's corner pattern, complemented where corner 7 is set (then `flipped`), as in cshape.c."""
    inside = mask.astype(np.uint8)
    z, y, x = (n - 1 for n in inside.shape)
    pattern = np.zeros((z, y, x), np.uint8)
    for bit, (dz, dy, dx) in enumerate(GRID_ANGLES):
        pattern |= inside[dz:dz + z, dy:dy + y, dx:dx + x] * np.uint8(1 << bit)
    flipped = pattern >= 0x80
    pattern[flipped] ^= 0xFF
    return pattern, flipped


def surface_and_volume(pattern: np.ndarray, flipped: np.ndarray, spacing: np.ndarray) -> Tuple[float, float]:
    """The mesh's surface area and volume, its triangles taken in cshape.c's order and arithmetic."""
    cubes = np.nonzero(pattern)  # C order, as the C loops visit them
    kinds = pattern[cubes]
    counts = TRIANGLE_COUNT[kinds]
    if not counts.sum():
        return 0.0, 0.0
    cube = np.repeat(np.arange(kinds.size), counts)
    nth = np.arange(cube.size) - np.repeat(np.cumsum(counts) - counts, counts)
    edges = TRIANGLE_EDGES[kinds[cube]]
    origin = np.stack(cubes, axis=1)[cube].astype(np.float64)
    a, b, c = ((origin + VERT_LIST[edges[np.arange(cube.size), 3 * nth + k]]) * spacing for k in range(3))
    sign = np.where(flipped[cubes][cube], -1.0, 1.0)
    volume_terms = sign * _row_sums(_cross(a, b) * c)
    area_terms = 0.5 * np.sqrt(_row_sums(_cross(a - c, b - c) ** 2))
    return float(np.add.accumulate(area_terms)[-1]), float(np.add.accumulate(volume_terms)[-1] / 6)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cshape.c's cross product, column by column (numpy's np.cross may order the products otherwise)."""
    return np.stack([a[:, 1] * b[:, 2] - b[:, 1] * a[:, 2], a[:, 2] * b[:, 0] - b[:, 2] * a[:, 0],
                     a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1]], axis=1)


def _row_sums(x: np.ndarray) -> np.ndarray:
    """The three columns of an (n, 3) array added left to right, as cshape.c adds them."""
    return (x[:, 0] + x[:, 1]) + x[:, 2]


def diameter_vertices(pattern: np.ndarray, spacing: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """cshape.c's vertices for the diameters: (points in mm as it computes them, the same points in
    half-voxel steps as integers, exact for grouping and hull tests)."""
    points, steps = [], []
    for corner, edge in _DIAMETER_EDGES:
        where = np.stack(np.nonzero(pattern & np.uint8(1 << corner)), axis=1)
        points.append((where + VERT_LIST[edge]) * spacing)
        steps.append(2 * where + (2 * VERT_LIST[edge]).astype(np.int64))
    return np.concatenate(points), np.concatenate(steps)


def line_ends(steps: np.ndarray) -> np.ndarray:
    """(n, 3) bool: whether each point is the first or last point of its line along z, y, x. A vertex
    of the set's convex hull (or of its hull within a plane) is an end of every such line."""
    ends = np.zeros(steps.shape, bool)
    for axis in range(3):
        across = [d for d in range(3) if d != axis]
        order = np.lexsort((steps[:, axis], steps[:, across[1]], steps[:, across[0]]))
        line = steps[order][:, across]
        starts = np.r_[True, (line[1:] != line[:-1]).any(axis=1)]
        ends[order, axis] = starts | np.r_[starts[1:], True]
    return ends


def probe_directions(dims: Tuple[int, ...], m: int) -> Tuple[np.ndarray, float]:
    """Unit vectors in the space of the axes `dims` (z=0, y=1, x=2) towards the integer points of the
    cube (square) surface max|g| = m, one of each +-pair, and the cosine of the largest angle between
    any direction and the nearest of them (+-): the nearest surface point of a ray is at most
    sqrt(d-1)/2 away from it, at distance >= m from the centre."""
    axes = np.stack(np.meshgrid(*[np.arange(-m, m + 1)] * len(dims), indexing="ij"), -1).reshape(-1, len(dims))
    surface = axes[np.abs(axes).max(axis=1) == m]
    first = surface[np.arange(len(surface)), (surface != 0).argmax(axis=1)]
    kept = surface[first > 0].astype(np.float64)
    vectors = np.zeros((len(kept), 3))
    vectors[:, list(dims)] = kept / np.linalg.norm(kept, axis=1, keepdims=True)
    return vectors, float(np.cos(np.arcsin(np.sqrt(len(dims) - 1) / 2 / m)))


def _pairs_with_equal_keys(key_a: np.ndarray, key_b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """All (i, j) with key_a[i] == key_b[j]."""
    order_b = np.argsort(key_b, kind="stable")
    sorted_b = key_b[order_b]
    start = np.searchsorted(sorted_b, key_a, side="left")
    n = np.searchsorted(sorted_b, key_a, side="right") - start
    i = np.repeat(np.arange(len(key_a)), n)
    offset = np.arange(i.size) - np.repeat(np.cumsum(n) - n, n)
    return i, order_b[np.repeat(start, n) + offset]


def _largest_squared_distance(points: np.ndarray, groups: np.ndarray, directions: np.ndarray,
                              cos_angle: float) -> float:
    """The largest squared distance between two points of one group, in cshape.c's arithmetic.

    For a pair at distance d and the probe u nearest its direction, u.(p - q) >= d cos(angle); with
    L <= the group's diameter (its widest extent along a probe), p lies within the group's top
    band along u (u.p >= min u.x + L cos(angle)) and q within its bottom band: only such pairs are
    compared. The bands are widened by far more than the rounding of the projections."""
    if not len(points):
        return 0.0
    _, group = np.unique(groups, return_inverse=True)
    order = np.argsort(group, kind="stable")
    points, group = points[order], group.ravel()[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    along = points @ directions.T
    low, high = np.minimum.reduceat(along, starts, axis=0), np.maximum.reduceat(along, starts, axis=0)
    slack = 1e-9 * (1.0 + np.abs(points).max())
    reach = ((high - low).max(axis=1) - slack) * cos_angle - slack
    top = np.nonzero(along >= (low + reach[:, None])[group])
    bottom = np.nonzero(along <= (high - reach[:, None])[group])
    n_probes = directions.shape[0]
    i, j = _pairs_with_equal_keys(group[top[0]] * n_probes + top[1], group[bottom[0]] * n_probes + bottom[1])
    first, second = top[0][i], bottom[0][j]
    largest = 0.0
    for chunk in range(0, first.size, 1 << 21):  # memory stays bounded on flat-faced masks
        a, b = points[first[chunk:chunk + (1 << 21)]], points[second[chunk:chunk + (1 << 21)]]
        largest = max(largest, float(_row_sums((a - b) ** 2).max()))
    return largest


def diameters(pattern: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """cshape.c's four diameters: the largest distance between vertices of one z plane, one y plane,
    one x plane, and over all."""
    points, steps = diameter_vertices(pattern, spacing)
    ends = line_ends(steps) if len(steps) else np.zeros((0, 3), bool)
    found = np.zeros(4)
    for axis in range(3):
        inplane = [d for d in range(3) if d != axis]
        keep = ends[:, inplane].all(axis=1)
        found[axis] = _largest_squared_distance(points[keep], steps[keep, axis], *probe_directions(tuple(inplane), 4))
    keep = ends.all(axis=1)
    found[3] = _largest_squared_distance(points[keep], np.zeros(int(keep.sum()), np.int64), *probe_directions((0, 1, 2), 3))
    return np.sqrt(found)


def calculate_coefficients(mask: np.ndarray, spacing: np.ndarray) -> Tuple[float, float, np.ndarray]:
    """What pyradiomics' `cShape.calculate_coefficients(mask, spacing)` returns: (surface area,
    volume, the four diameters), to the same bits."""
    spacing = np.asarray(spacing, dtype=np.float64)
    pattern, flipped = cube_patterns(mask)
    area, volume = surface_and_volume(pattern, flipped, spacing)
    return area, volume, diameters(pattern, spacing)


class FastShape(RadiomicsShape):
    """RadiomicsShape with `calculate_coefficients` above in place of cshape.c's."""

    __module__ = "radiomics.shape"  # pyradiomics names its class loggers by module

    def _initSegmentBasedCalculation(self) -> None:
        # pyradiomics 3.0.1's RadiomicsShape._initSegmentBasedCalculation with the one call
        # swapped: the C function is called there by its module name, no hook to replace it
        self.pixelSpacing = np.array(self.inputImage.GetSpacing()[::-1])
        pad = sitk.ConstantPadImageFilter()
        pad.SetPadLowerBound([1, 1, 1])
        pad.SetPadUpperBound([1, 1, 1])
        self.inputMask = pad.Execute(self.inputMask)
        self.maskArray = sitk.GetArrayFromImage(self.inputMask) == self.label
        self.labelledVoxelCoordinates = np.where(self.maskArray != 0)
        self.SurfaceArea, self.Volume, self.diameters = calculate_coefficients(self.maskArray, self.pixelSpacing)
        n = len(self.labelledVoxelCoordinates[0])
        coordinates = np.array(self.labelledVoxelCoordinates, dtype="int").transpose((1, 0))
        physical = coordinates * self.pixelSpacing[None, :]
        physical -= np.mean(physical, axis=0)
        physical /= np.sqrt(n)
        covariance = np.dot(physical.T.copy(), physical)
        self.eigenValues = np.linalg.eigvals(covariance)
        rounding = np.bitwise_and(self.eigenValues < 0, self.eigenValues > -1e-10)
        if np.sum(rounding) > 0:
            self.logger.warning("Encountered %d eigenvalues < 0 and > -1e-10, rounding to 0", np.sum(rounding))
            self.eigenValues[rounding] = 0
        self.eigenValues.sort()


def shape_features(image, mask, bounding_box, names, **kwargs) -> Dict[str, float]:
    """pyradiomics' `computeShape` (3.0.1) for the 3-D shape class, computed with FastShape."""
    cropped_image, cropped_mask = imageoperations.cropToTumorMask(image, mask, bounding_box)
    instance = FastShape(cropped_image, cropped_mask, **kwargs)
    for feature in names or ():
        instance.enableFeatureByName(feature)
    return collections.OrderedDict((f"original_shape_{name}", value) for name, value in instance.execute().items())
