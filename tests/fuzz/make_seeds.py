import json, struct, gzip, os, sys
root = sys.argv[1]
def st(entries, meta=None, pad=True, raw_header=None, extra=b""):
    header = {}
    data = b""
    for name, dt, shape, payload in entries:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    if meta is not None:
        header["__metadata__"] = meta
    h = raw_header if raw_header is not None else json.dumps(header, ensure_ascii=False).encode()
    if pad:
        while (8 + len(h)) % 8:
            h += b" "
    return struct.pack("<Q", len(h)) + h + data + extra
f32 = lambda *v: struct.pack("<%df" % len(v), *v)
f64 = lambda *v: struct.pack("<%dd" % len(v), *v)
seeds = {
 "safetensors": [
  st([("w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6)), ("b", "F32", [3], f32(0.5, -1, 2))]),
  st([("x", "F64", [], f64(3.25))], meta={"format": "pt", "note": "hi"}),
  st([("fc1.weight", "F32", [2, 2], f32(1, 2, 3, 4)), ("steps", "I64", [1], struct.pack("<q", 7))]),
  st([("e", "F32", [0, 3], b""), ("s", "F64", [1, 1, 1, 1], f64(-0.0))]),
  st([]),
  st([], meta={}),
  st([("ünï ✓", "F64", [2], f64(1e300, -1e-300)), ("q\"\\", "F32", [1], f32(7))]),
  st([("h", "BF16", [2], b"\x80\x3f\x00\x40"), ("u", "U8", [3], b"\x01\x02\x03"), ("f", "F16", [1], b"\x00\x3c")]),
  st([("w", "F32", [2], f32(1, 2))], raw_header=b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'),
  st([("w", "F32", [2], f32(1, 2))], raw_header=b'{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}'),
  st([("w", "F32", [2], f32(1, 2))], raw_header=b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}'),
  st([("a", "F32", [1], f32(1)), ("b", "F32", [1], f32(2))], raw_header=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'),
  st([("w", "F32", [2], f32(1, 2))])[:-3],
  st([("w", "F32", [2], f32(1, 2))], extra=b"\0\0\0\0"),
  st([("w", "F32", [2], f32(1, 2))], raw_header=b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":1}}'),
  st([("w", "F64", [1], f64(1))], raw_header=b'{"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]} , "\\u00e9\\ud83d\\ude00":{"dtype":"F64","shape":[0],"data_offsets":[8,8]}}'),
  b"\x02\x00\x00\x00\x00\x00\x00\x00{}",
  b"\xff\xff\xff\xff\xff\xff\xff\xff{}",
  b"\x03\x00\x00",
  # issue 21: a \u0000 inside a dtype and a field name must show escaped
  st([("w", "F32", [1], f32(1))], raw_header=b'{"w":{"dtype":"F\\u00003","shape":[1],"data_offsets":[0,4]}}'),
  st([("w", "F32", [1], f32(1))], raw_header=b'{"w":{"x\\u0000y":1}}'),
  # names and metadata the writer half of the target reuses (cut at NULs)
  b"w\0b\0fc1.weight\0k\0v\0\xc3\xa9\0\0__metadata__\0",
 ],
}
def idx3(n, r, c, px): return struct.pack(">IIII", 0x803, n, r, c) + bytes(px)
def idx1(n, labs): return struct.pack(">II", 0x801, n) + bytes(labs)
def pair(lab, img, f64=False):
    L = len(lab)
    return struct.pack("<H", L | (0x8000 if f64 else 0)) + lab + img
good_img = idx3(3, 2, 2, range(0, 240, 20))
good_lab = idx1(3, [0, 9, 255])
seeds["idx"] = [
  pair(good_lab, good_img),
  pair(good_lab, good_img, f64=True),
  pair(gzip.compress(good_lab, mtime=0), gzip.compress(good_img, mtime=0)),
  pair(good_lab, gzip.compress(good_img, mtime=0)[:-5]),
  pair(idx1(0, []), idx3(0, 28, 28, [])),
  pair(idx1(2, [1, 2]), good_img),
  pair(good_lab, good_img + b"\x00"),
  pair(good_lab, good_img[:-1]),
  pair(struct.pack(">II", 0x803, 3) + bytes(3), good_img),
  pair(good_lab, idx3(1, 0xffffffff, 0xffffffff, [])),
  pair(good_lab[:5], good_img[:10]),
  pair(idx1(1, [7]), idx3(1, 1, 1, [255]), f64=True),
  # issue 21: bytes after a gzip stream; two members; a header promising
  # more than 1032 times the gzip file
  pair(good_lab, gzip.compress(good_img, mtime=0) + b"junk"),
  pair(good_lab, gzip.compress(good_img[:20], mtime=0) + gzip.compress(good_img[20:], mtime=0)),
  pair(good_lab, gzip.compress(idx3(4000, 1000, 1000, []) + bytes(4096), mtime=0)),
]
def csv(flags, ycol, text): return bytes([flags, ycol & 0xff]) + text.encode()
seeds["csv"] = [
  csv(0, 0, "1,2,3\n4,5,6\n"),
  csv(1 | 2, -1, "a,b,label\n0.5,1e-3,2\n-1,.25,0\n"),
  csv(4 | 8, 0, "1.5,2,3\r\n\r\n-2.5,4,5\r\n"),
  csv(1, 0, "\ufeffx,y\n\"1\", 2\n \"3\" ,\"4\"\n"),
  csv(2, 1, "1,2.5\n"),
  csv(0, 0, "1,2\n3\n"),
  csv(0, 0, "1,nan\n"),
  csv(0, 0, "1,inf\n"),
  csv(0, 0, "\"1,2\n"),
  csv(2, 5, "1,2\n"),
  csv(2, 0, "1\n"),
  csv(0, 0, "1,,3\n"),
  csv(0, 0, "\n\n  \n"),
  csv(4, -1, "0x1p3,1e308\n-0,4\n"),
  csv(2, 0, "-1,2\n"),
  csv(0, 0, "\"a\"\"b\",1\n"),
  # issue 21: hex, a number of 100 characters, an overflow, a NUL, the
  # f32 range's end
  csv(0, 0, "0x10,1\n"),
  csv(8, 0, "1." + "0" * 97 + "1,2\n"),
  csv(8, 0, "1e999,2\n"),
  csv(0, 0, "1,2\x00\n"),
  csv(0, 0, "3.40282347e+38,3.4028236e38\n"),
]
for target, items in seeds.items():
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    for i, b in enumerate(items, 1):
        with open(os.path.join(d, "seed_%02d" % i), "wb") as f:
            f.write(b)
    print(target, len(items))
