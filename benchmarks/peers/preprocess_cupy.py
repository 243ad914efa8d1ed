"""GPU peer of `medseg bench preprocess --device cuda`: the same preprocessing with CuPy
(cupyx.scipy.ndimage.zoom and CuPy element-wise ops and reductions on the same GPU), and with
SciPy / NumPy on the CPU (the functions of preprocess.py, the CPU peer), in one run.

Usage: preprocess_cupy.py IMAGE LABELS D H W OUT REPEATS SCIPY_REPEATS
IMAGE is raw int16 [D,H,W], LABELS raw uint8; OUT is the target extent of every axis. CuPy
times are kernel times: data already on the GPU, CUDA events around the op, median of REPEATS
after a warm-up call (which also compiles CuPy's kernels). Prints one JSON object:
{"peer": ..., "cupy_version": ..., "cupy": {case: ms} | absent with "cupy_error", "scipy": {case: ms}}.

Usage: preprocess_cupy.py prepare RAW_DIR OUT_DIR OUT
RAW_DIR/images/*.nii and RAW_DIR/labels/*.nii (uncompressed NIfTI-1, read with nibabel when it is
installed, else directly) prepared MedicalSeg's way, one case after another: window, zoom order 1
(image) and order 0 (labels) to OUT^3, np.save; once with SciPy, once with CuPy (transfers
included). Prints {"scipy": ms, "cupy": ms, "peer": ...}.
"""
import json
import os
import sys
import time

import numpy as np
import scipy
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import preprocess as cpu_peer  # noqa: E402  (the CPU peer: hu_window, zscore, crop_nonzero, median_ms)

try:
    import cupy as cp
    from cupyx.scipy import ndimage as cp_ndimage

    CUPY_ERROR = None
except Exception as e:  # no CuPy, or no GPU for it
    cp = None
    CUPY_ERROR = f"{type(e).__name__}: {e}"[:200]


def cupy_ms(f, repeats):
    """Median ms between CUDA events around f(), after one warm-up call."""
    f()
    cp.cuda.Device().synchronize()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(repeats):
        start.record()
        f()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return sorted(times)[len(times) // 2]


def hu_window_gpu(x):
    return cpu_peer.hu_window(x, xp=cp)


zscore_gpu = cpu_peer.zscore  # array-module agnostic already


def crop_nonzero_gpu(x):
    return cpu_peer.crop_nonzero(x, xp=cp)


def cupy_version():
    return f"cupy {cp.__version__}" if cp is not None else "cupy"


def volume_cases(ct, labels, out, repeats, scipy_repeats):
    d, h, w = ct.shape
    factors = [out / d, out / h, out / w]
    result = {"peer": f"{cupy_version()} / scipy {scipy.__version__} / numpy {np.__version__}",
              "cupy_version": cupy_version()}

    windowed = cpu_peer.hu_window(ct)
    scipy_ms = {
        "window": cpu_peer.median_ms(lambda: cpu_peer.hu_window(ct), scipy_repeats),
        "zoom1": cpu_peer.median_ms(lambda: ndimage.zoom(windowed, factors, order=1), scipy_repeats),
        "zoom0_labels": cpu_peer.median_ms(lambda: ndimage.zoom(labels, factors, order=0), scipy_repeats),
        "zscore": cpu_peer.median_ms(lambda: cpu_peer.zscore(windowed), scipy_repeats),
        "crop": cpu_peer.median_ms(lambda: cpu_peer.crop_nonzero(ct), scipy_repeats),
        "chain": cpu_peer.median_ms(
            lambda: cpu_peer.zscore(ndimage.zoom(cpu_peer.hu_window(ct), factors, order=1)), scipy_repeats),
        # Order 3 takes seconds with SciPy: once.
        "zoom3": cpu_peer.once_ms(lambda: ndimage.zoom(windowed, factors, order=3)),
    }
    result["scipy"] = scipy_ms

    if cp is None:
        result["cupy_error"] = CUPY_ERROR
        return result
    try:
        ct_d, labels_d, windowed_d = cp.asarray(ct), cp.asarray(labels), cp.asarray(windowed)
        result["cupy"] = {
            "window": cupy_ms(lambda: hu_window_gpu(ct_d), repeats),
            "zoom1": cupy_ms(lambda: cp_ndimage.zoom(windowed_d, factors, order=1), repeats),
            "zoom3": cupy_ms(lambda: cp_ndimage.zoom(windowed_d, factors, order=3), max(1, repeats // 2)),
            "zoom0_labels": cupy_ms(lambda: cp_ndimage.zoom(labels_d, factors, order=0), repeats),
            "zscore": cupy_ms(lambda: zscore_gpu(windowed_d), repeats),
            "crop": cupy_ms(lambda: crop_nonzero_gpu(ct_d), repeats),
            "chain": cupy_ms(lambda: zscore_gpu(cp_ndimage.zoom(hu_window_gpu(ct_d), factors, order=1)), repeats),
        }
        name = cp.cuda.runtime.getDeviceProperties(0)["name"]
        result["gpu"] = name.decode() if isinstance(name, bytes) else str(name)  # bytes up to CuPy 13
    except Exception as e:  # a CuPy that imports but cannot run (no device, no NVRTC)
        result.pop("cupy", None)
        result["cupy_error"] = f"{type(e).__name__}: {e}"[:200]
    return result


def read_nifti(path):
    """An uncompressed NIfTI-1 volume as a [z, y, x] array (nibabel when there is one)."""
    try:
        import nibabel as nib

        return np.asanyarray(nib.load(path).dataobj).T  # nibabel's [x, y, z] (Fortran order) as [z, y, x]
    except ImportError:
        pass
    raw = open(path, "rb").read()
    endian = "<" if np.frombuffer(raw[:4], "<i4")[0] == 348 else ">"
    dim = np.frombuffer(raw[40:56], endian + "i2")
    code = int(np.frombuffer(raw[70:72], endian + "i2")[0])
    offset = int(np.frombuffer(raw[108:112], endian + "f4")[0])
    slope, inter = (float(v) for v in np.frombuffer(raw[112:120], endian + "f4"))
    types = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2"}
    nx, ny, nz = int(dim[1]), int(dim[2]), int(dim[3])
    data = np.frombuffer(raw, endian + types[code], nx * ny * nz, offset).reshape(nz, ny, nx)
    if slope not in (0.0, 1.0) or inter != 0.0:
        data = data * slope + inter
    return data


def prepare(raw, out_dir, out):
    names = sorted(os.listdir(os.path.join(raw, "images")))

    def run(side):
        os.makedirs(os.path.join(out_dir, side, "images"), exist_ok=True)
        os.makedirs(os.path.join(out_dir, side, "labels"), exist_ok=True)
        start = time.perf_counter()
        for name in names:
            ct = read_nifti(os.path.join(raw, "images", name))
            lb = read_nifti(os.path.join(raw, "labels", name))
            factors = [out / s for s in ct.shape]
            if side == "scipy":
                image = ndimage.zoom(cpu_peer.hu_window(ct), factors, order=1)
                label = ndimage.zoom(lb, factors, order=0)
            else:
                image = cp.asnumpy(cp_ndimage.zoom(hu_window_gpu(cp.asarray(ct)), factors, order=1))
                label = cp.asnumpy(cp_ndimage.zoom(cp.asarray(lb), factors, order=0))
            stem = name.split(".")[0]
            np.save(os.path.join(out_dir, side, "images", stem + ".npy"), image.astype(np.float32))
            np.save(os.path.join(out_dir, side, "labels", stem + ".npy"), label)
        return (time.perf_counter() - start) * 1e3

    result = {"peer": f"{cupy_version()} / scipy {scipy.__version__}", "scipy": run("scipy")}
    if cp is None:
        result["cupy_error"] = CUPY_ERROR
    else:
        try:
            run("cupy_warmup")  # CuPy compiles its kernels on first use
            result["cupy"] = run("cupy")
        except Exception as e:
            result["cupy_error"] = f"{type(e).__name__}: {e}"[:200]
    print(json.dumps(result))


def main():
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    image_path, labels_path = sys.argv[1], sys.argv[2]
    d, h, w, out = (int(v) for v in sys.argv[3:7])
    repeats, scipy_repeats = int(sys.argv[7]), int(sys.argv[8])
    ct = np.fromfile(image_path, dtype=np.int16).reshape(d, h, w)
    labels = np.fromfile(labels_path, dtype=np.uint8).reshape(d, h, w)
    print(json.dumps(volume_cases(ct, labels, out, repeats, scipy_repeats)))


if __name__ == "__main__":
    main()
