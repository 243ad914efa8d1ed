"""Minimal safetensors reader and writer with NumPy, for the reference scripts.

Debian ships no `safetensors` package; the format is small enough to speak directly:
8-byte little-endian header length, JSON header, raw little-endian data.
"""
import json
import struct

import numpy as np

_CODES = {
    "F32": np.float32, "F64": np.float64, "F16": np.float16,
    "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64,
    "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
}
_NAMES = {np.dtype(v): k for k, v in _CODES.items()}


def save(path, tensors, metadata=None):
    """Writes {name: numpy array (or torch tensor)} to `path`."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(a).reshape(np.shape(a))  # ascontiguousarray turns 0-d into 1-d
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


def load(path):
    """Reads `path` into {name: numpy array}."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[b:end], dtype=np.dtype(_CODES[e["dtype"]]).newbyteorder("<")).reshape(e["shape"]).copy()
    return out
