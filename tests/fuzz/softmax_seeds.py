# Writes the seed corpus of fuzz_softmax (tests/fuzz/softmax/), whose input
# layout fuzz_softmax.c describes:  python3 tests/fuzz/softmax_seeds.py
import os, random
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "softmax")

def seed(f64, rows, cols, spread, sign, m, e, elems, labels):
    b0 = (1 if f64 else 0) | ((cols - 1) << 1) | ((rows - 1) << 4) | (spread << 6)
    out = bytes([b0, (0x80 if sign < 0 else 0) | (m >> 8), m & 0xff, e])
    for d, w in elems:
        out += bytes([d & 0xff, w & 0xff])
    return out + bytes(labels)

rng = random.Random(21)
def rand_elems(n):
    return [(rng.randrange(-128, 128), rng.randrange(-128, 128)) for _ in range(n)]

seeds = {
    # The cases: f64 [[1e16, 1e16]] label 0 (9095 * 2^40 ~ 1e16),
    # f32 [1e7, 1e7] (9766 * 2^10), f64 logits near 1e15 (7276 * 2^37).
    "seed_01_f64_1e16_pair": seed(True, 1, 2, 0, 1, 9095, 40, [(0, 64), (0, -64)], [0]),
    "seed_02_f32_1e7_pair": seed(False, 1, 2, 0, 1, 9766, 10, [(0, 64), (0, 64)], [1]),
    "seed_03_f64_1e15_row": seed(True, 1, 8, 0, 1, 7276, 37, [(2 * k, 10 * k) for k in range(8)], [3]),
    # No shift, all shapes and spreads.
    "seed_04_f64_4x8_wide": seed(True, 4, 8, 3, 1, 0, 0, rand_elems(32), [0, 7, 3, 5]),
    "seed_05_f32_4x8": seed(False, 4, 8, 1, 1, 0, 0, rand_elems(32), [1, 2, 3, 4]),
    "seed_06_f32_3x5_negative_shift": seed(False, 3, 5, 2, -1, 32000, 7, rand_elems(15), [4, 0, 2]),
    "seed_07_f64_2x3_shift": seed(True, 2, 3, 1, -1, 12345, 30, rand_elems(6), [2, 1]),
    "seed_08_f32_1x1": seed(False, 1, 1, 0, 1, 0, 0, [(5, 5)], [0]),
    "seed_09_f64_spread_512": seed(True, 2, 4, 3, 1, 255, 3, rand_elems(8), [3, 0]),
    "seed_10_empty": b"",
}
os.makedirs(here, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
