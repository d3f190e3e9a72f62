#!/usr/bin/env python3
"""An independent safetensors reader and writer (json + numpy, not the
safetensors package), so test_safetensors can check that our files and
Python's agree byte for byte.

    safetensors_ref.py check FILE   read FILE, compare with expected(); exit 0 if equal
    safetensors_ref.py write FILE   write expected() to FILE
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert 8 + n <= len(blob), "header runs past the end of the file"
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data, tensors, spans = blob[8 + n:], {}, []
    for name, info in header.items():
        dt, (begin, end) = DTYPES[info["dtype"]], info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=np.int64))
        assert end - begin == count * dt.itemsize, f"{name}: size does not match shape"
        tensors[name] = np.frombuffer(data[begin:end], dtype=dt).reshape(info["shape"])
        spans.append((begin, end))
    covered = 0
    for begin, end in sorted(spans):
        assert begin == covered, "a gap or an overlap in the data"
        covered = end
    assert covered == len(data), "the tensors do not cover the data exactly"
    return tensors, meta


def write(path, tensors, meta):
    header, offset = {"__metadata__": meta}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": {4: "F32", 8: "F64"}[a.itemsize], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header).encode("utf-8")   # ensure_ascii: names become \u escapes
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for a in tensors.values():
            f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())


def ramp(shape, dt):
    """Values test_safetensors.c computes the same way: i * 0.37 - 1.5 in f64."""
    n = int(np.prod(shape, dtype=np.int64))
    return (np.arange(n, dtype=np.float64) * 0.37 - 1.5).astype(dt).reshape(shape)


def expected():
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1.7976931348623157e308])
    return {
        "scalar": ramp((), np.float64),
        "w.f32": ramp((3, 4), np.float32),
        "cube": ramp((2, 3, 4), np.float32),
        "hyper": ramp((2, 1, 2, 3), np.float64),
        'quote"and\\back': ramp((1,), np.float32),
        "ünï código ✓ 😀": ramp((2, 2), np.float64),
        "empty": ramp((0, 3), np.float32),
        "special": special,
    }, {"format": "pt", "note": "tab\there ✓"}


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


if __name__ == "__main__":
    want, want_meta = expected()
    if sys.argv[1] == "write":
        write(sys.argv[2], want, want_meta)
        sys.exit(0)
    got, meta = read(sys.argv[2])
    bad = [k for k in want if k not in got or not same(got[k], want[k])] + [k for k in got if k not in want]
    if bad or meta != want_meta:
        print("mismatch:", bad, meta, file=sys.stderr)
        sys.exit(1)
