"""Peer of `medseg bench core`: the same copies, fills and Philox fills with NumPy.

Usage: core.py N REPEATS. Prints one JSON object of median milliseconds per case.
"""
import json
import sys
import time

import numpy as np


def median_ms(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def main():
    n, repeats = int(sys.argv[1]), int(sys.argv[2])
    a = np.ones(n, dtype=np.float32)
    b = np.zeros(n, dtype=np.float32)
    gen = np.random.Generator(np.random.Philox(1))
    out = {
        "peer": f"numpy {np.__version__}",
        "copy": median_ms(lambda: np.copyto(b, a), repeats),
        "fill": median_ms(lambda: a.fill(3.0), repeats),
        "uniform": median_ms(lambda: gen.random(out=a, dtype=np.float32), repeats),
        "normal": median_ms(lambda: gen.standard_normal(out=a, dtype=np.float32), repeats),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
