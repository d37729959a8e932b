"""The phantom's inner loops compiled by numba, the same bytes as the numpy they replace: the
smooth random fields upsampled (`upsample_linear`) and each phase's signal with its Rician noise
(`signal_sum`, `rician_magnitude`). Without numba, or with IMNRISK_COMPILED=0, numpy and scipy run.

`upsample_linear` is `scipy.ndimage.zoom(field, ..., order=1)` of a 3-D float32 field (~8x faster:
the synth draws three fields per patient and scipy's general spline loop was a quarter of its time).

Why by hand: scipy's zoom runs one generic loop for every order, mode and dtype; the phantom needs
only linear interpolation of a small coarse field. The kernel does scipy's arithmetic in scipy's
order (NI_ZoomShift: per axis the coordinate k * (n_in - 1) / (n_out - 1), weights 1 - f and
1 - (1 - f); per output voxel the eight corners, last axis fastest, each value times the z, y and
x weights in turn, summed in double, stored as float32), so a seed keeps its bytes
(Testing/test_synth.py compares with scipy bit for bit).

The phase loops fuse numpy's dozen passes over each volume into one, in float32 and in numpy's order
of operations (no fused multiply-add: numba's default), so the rounded magnitudes are numpy's.
"""

from __future__ import annotations

import time
from typing import Sequence, Tuple

import numpy as np

from IMNRiskLib.stats.jit import available, interruptible, njit


def upsample_linear(field: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """`ndimage.zoom(field, [s / c ...], order=1)` for a 3-D float32 field, cut to `shape`."""
    factors = [s / c for s, c in zip(shape, field.shape)]
    if not available() or field.ndim != 3 or field.dtype != np.float32:
        from scipy import ndimage  # start-up time: scipy.ndimage loads only without numba
        return ndimage.zoom(field, factors, order=1)[tuple(slice(0, s) for s in shape)]
    out_shape = tuple(int(round(c * f)) for c, f in zip(field.shape, factors))  # zoom's output shape
    (oz, wz), (oy, wy), (ox, wx) = (axis_weights(c, o) for c, o in zip(field.shape, out_shape))
    out = _upsample(np.ascontiguousarray(field), oz, oy, ox, wz, wy, wx, np.empty(out_shape, np.float32))
    return out[tuple(slice(0, s) for s in shape)]


def axis_weights(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray]:
    """Along one axis: each output sample's first input index and its two linear weights, as
    scipy computes them (zoom (n_in - 1) / (n_out - 1); a coordinate past the last sample by
    rounding is outside the input: constant mode gives it 0, i.e. both weights 0)."""
    zoom = (n_in - 1) / (n_out - 1) if n_out > 1 else 1.0
    coordinate = np.arange(n_out, dtype=np.float64) * zoom
    start = np.floor(coordinate)
    first = 1.0 - (coordinate - start)
    weights = np.column_stack([first, 1.0 - first])
    weights[coordinate > n_in - 1] = 0.0
    return start.astype(np.int64), weights


@interruptible
def _upsample(field, oz, oy, ox, wz, wy, wx, out):
    return _upsample_kernel(field, oz, oy, ox, wz, wy, wx, out)


@njit(cache=True)
def _upsample_kernel(field, oz, oy, ox, wz, wy, wx, out):  # pragma: no cover - compiled
    nz, ny, nx = out.shape
    lz, ly, lx = field.shape[0] - 1, field.shape[1] - 1, field.shape[2] - 1
    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                t = 0.0
                for a in range(2):
                    z = min(oz[k] + a, lz)  # past the edge: scipy's weight there is 0
                    for b in range(2):
                        y = min(oy[j] + b, ly)
                        for c in range(2):
                            value = np.float64(field[z, y, min(ox[i] + c, lx)])
                            value *= wz[k, a]
                            value *= wy[j, b]
                            value *= wx[i, c]
                            t += value
                out[k, j, i] = np.float32(t)
    return out


def signal_sum(base: np.ndarray, parenchyma_gain: np.ndarray, parenchyma: np.float32, muscle_gain: np.ndarray,
               muscle: np.float32, out: np.ndarray) -> np.ndarray:
    """out = parenchyma_gain * parenchyma + base + muscle_gain * muscle (float32, in that order)."""
    if not available():
        np.multiply(parenchyma_gain, parenchyma, out=out)
        out += base
        out += muscle_gain * muscle
        return out
    return _interruptible_sum(base.ravel(), parenchyma_gain.ravel(), parenchyma, muscle_gain.ravel(), muscle,
                              out.reshape(-1)).reshape(out.shape)


def rician_magnitude(signal: np.ndarray, real: np.ndarray, imag: np.ndarray, sigma: np.float32,
                     out: np.ndarray) -> np.ndarray:
    """out (int16) = rint(sqrt((real * sigma + signal)^2 + (imag * sigma)^2)): the magnitude of the
    signal with Gaussian noise of SD sigma in both channels; real and imag hold standard normals
    (float32) and are overwritten."""
    if not available():
        real *= sigma
        real += signal
        imag *= sigma
        real *= real
        imag *= imag
        real += imag
        np.rint(np.sqrt(real, out=real), out=real)
        out[...] = real
        return out
    _interruptible_magnitude(signal.ravel(), real.ravel(), imag.ravel(), sigma, out.reshape(-1))
    return out


@interruptible
def _interruptible_sum(base, parenchyma_gain, parenchyma, muscle_gain, muscle, out):
    return _signal_sum_kernel(base, parenchyma_gain, parenchyma, muscle_gain, muscle, out)


@interruptible
def _interruptible_magnitude(signal, real, imag, sigma, out):
    return _magnitude_kernel(signal, real, imag, sigma, out)


@njit(cache=True)
def _signal_sum_kernel(base, parenchyma_gain, parenchyma, muscle_gain, muscle, out):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        out[i] = parenchyma_gain[i] * parenchyma + base[i] + muscle_gain[i] * muscle
    return out


@njit(cache=True)
def _magnitude_kernel(signal, real, imag, sigma, out):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        r = real[i] * sigma + signal[i]
        m = imag[i] * sigma
        out[i] = np.int16(np.rint(np.sqrt(r * r + m * m)))
    return out


def warm_up() -> float:
    """Compile (or load from numba's cache) on a small field; seconds taken (`make install`)."""
    start = time.perf_counter()
    if available():
        upsample_linear(np.ones((3, 3, 3), np.float32), (5, 5, 5))
        ones = np.ones(4, np.float32)
        signal = signal_sum(ones, ones, np.float32(0.5), ones, np.float32(0.5), np.empty(4, np.float32))
        rician_magnitude(signal, ones.copy(), ones.copy(), np.float32(10.0), np.empty(4, np.int16))
    return time.perf_counter() - start


if __name__ == "__main__":
    print(f"phantom fields: numba {'available' if available() else 'not used'}; compiled or loaded in "
          f"{warm_up():.1f} s")
