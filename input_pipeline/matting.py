"""Human matting data (Semantic Human Matting, Chen et al. ACM MM 2018): layouts, trimaps, per-stage crops, streams.

Layouts, per split folder `<root>/{train,val,test}` (the 'val' split reads test/ when there is no val/):
* foreground / alpha / background (the Deep Image Matting recipe, composited on the fly):
    fg/<name>            foreground colours (any image the reader decodes; other modes converted and counted)
    alpha/<name>         its alpha matte, single-channel 8-bit, same size (looked up by the same file name, else
                         <stem>.png)
    bg/<name>            backgrounds, any size
    fg_names.txt         foreground file names, one a line
    bg_names.txt         K lines per foreground, in order: foreground i goes over backgrounds i*K .. i*K + K - 1
  Each (foreground, background) pair is one example: the background is resized to cover the foreground and
  cropped (centred for evaluation, at a random offset for training), then I = alpha F + (1 - alpha) B in [0, 1]
  (linear, no re-quantisation); the batches carry F and B for the compositional loss.
* pre-composited image / alpha (optionally trimap/, the data set's own evaluation trimaps):
    image/<name>, alpha/<stem>.png (or the same name), trimap/<stem>.png (0 / 128 / 255; other values = unknown)
  Every image of image/ is an example, sorted by file name. There is no F and B: the batches carry the image
  (/ 255) in both with has_fg_bg False, and the loss leaves its compositional term out for them.

Trimaps (SHM section 4 / the DIM ports): from the alpha, binarised into "definitely foreground" (alpha = 1) and
"anything" (alpha > 0), the first eroded and the second dilated by disks whose radii (the kernel sizes) are drawn
independently, each uniform in [kernel_range] x the long side (at least min_kernel px); unknown = dilated and not
eroded. With a binary alpha this is exactly "binarise, erode, dilate"; the two thresholds keep every soft pixel
unknown whatever the draw. Training draws them from the example's generator (pipeline.example_rng(seed, slot)),
so a resumed stream gives the same trimaps; evaluation uses the data set's trimaps or `fixed_trimap`.
Encoded 0 / 128 / 255 and as classes BACKGROUND, UNKNOWN, FOREGROUND = 0, 1, 2 (jhuman.ops.matting.CLASSES; the
values are repeated here because input_pipeline never imports jax).

Per stage (train_stream's `stage`), one affine warp per picture (cv2, bilinear, borders reflected; F, B and alpha
are warped separately and composited after, so the equation holds exactly in the batch):
* 'tnet': a random square crop (side uniform in tnet_crop_scale x the short side), rotated by an angle uniform in
  +-max_rotation degrees and flipped with p = 0.5, resized to crop_size (400 in pretraining, 800 end to end).
* 'mnet': flipped with p = 0.5; a crop of side drawn from mnet_crops (320 / 480 / 640 image pixels; at most the
  short side) centred on an unknown pixel of a random trimap of the whole image (drawn at most 320 px large;
  the crop shifted to stay inside), resized to mnet_size (320). The trimap in the batch is drawn afresh on the
  resized crop (kernels relative to it).
* 'end2end': the 'tnet' crop and, inside it, `window` [y0, x0, size]: the M-Net crop of a side drawn from
  mnet_crops in image pixels (so the M-Net sees the same scale as in its pretraining), expressed in the T-Net
  crop's pixels (at most crop_size), centred on an unknown pixel of the batch's trimap; the step resamples it to
  mnet_size (jhuman.ops.image.crop_and_resize).
Evaluation: the whole image; a long edge over max_side (1500) is resized to max_side (image and ground-truth
alpha area-averaged, trimap nearest), and the metrics are taken at that size (SHM resizes the predicted alpha
back to the original instead: with static shapes the ground truth is brought to the prediction); then padded
bottom/right to pad_size (a multiple of 32), `size` saying where the picture is. An image still larger than
pad_size is shrunk to fit and counted in stats.downscaled.

Corrupt or mismatched files (an alpha of another size than its foreground or image, a trimap of another size, a
missing half of a pair, empty / truncated / undecodable files, an alpha or trimap that is not single-channel
8-bit) are skipped, named and counted as for LIP (input_pipeline.reader). `source='tfds'` reads the
`HumanMatting` TFDS builder (manual_dir = the folders), which stores each example's original file bytes in the
folder reader's order, so both sources give the same batches.
"""

import dataclasses
import math
import os
from pathlib import Path

import cv2
import numpy as np
import tensorflow_datasets as tfds

from input_pipeline import reader
from input_pipeline.pipeline import CorruptExample, Feature
from jhuman.classes import CAFFE_MEAN_RGB

BACKGROUND, UNKNOWN, FOREGROUND = 0, 1, 2  # == jhuman.ops.matting (trimap class order bg / unknown / fg)
TRIMAP_VALUES = (0, 128, 255)
STAGES = ("tnet", "mnet", "end2end")
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FG_LIST, BG_LIST = "fg_names.txt", "bg_names.txt"
_LOOKED_FOR = (
    "<split>/{fg,alpha,bg}/ + <split>/fg_names.txt + <split>/bg_names.txt (foreground / alpha / background) or "
    "<split>/{image,alpha}/ [+ trimap/] (pre-composited), <split> one of train, val, test"
)


# ----------------------------------------------------------------------------------------------- trimaps
def draw_kernels(rng, shape, kernel_range=(0.01, 0.02), min_kernel=2):
    """(erode, dilate) radii in px, each uniform in [max(min_kernel, round(lo * side)), max(.., round(hi * side))],
    side = the long side of `shape` (H, W, ...); two independent draws from rng."""
    side = max(shape[:2])
    lo = max(int(min_kernel), round(kernel_range[0] * side))
    hi = max(lo, round(kernel_range[1] * side))
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def _disk(radius):
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)


def _as_unit(alpha):
    alpha = np.asarray(alpha)
    return alpha.astype(np.float32) / 255.0 if alpha.dtype == np.uint8 else alpha.astype(np.float32)


def trimap_from_kernels(alpha, erode, dilate):
    """Trimap uint8 (H, W) 0 / 128 / 255 of alpha (H, W) (float in [0, 1] or uint8 0..255): foreground = (alpha
    = 1) eroded by a disk of radius `erode`, unknown = (alpha > 0) dilated by a disk of radius `dilate` and not
    foreground, background elsewhere. Across a straight edge of a binary alpha the unknown band is erode + dilate
    px wide. The image border does not erode (a person cut by it stays foreground there)."""
    a = _as_unit(alpha)
    definite = (a >= 1 - 0.5 / 255).astype(np.uint8)
    anything = (a > 0.5 / 255).astype(np.uint8)
    fg = cv2.erode(definite, _disk(int(erode)), borderType=cv2.BORDER_REPLICATE).astype(bool)
    maybe = cv2.dilate(anything, _disk(int(dilate)), borderType=cv2.BORDER_REPLICATE).astype(bool)
    return np.where(fg, np.uint8(255), np.where(maybe, np.uint8(128), np.uint8(0)))


def random_trimap(alpha, rng, kernel_range=(0.01, 0.02), min_kernel=2):
    """Training trimap uint8 (H, W) 0 / 128 / 255: trimap_from_kernels with radii from draw_kernels(rng, ...)."""
    return trimap_from_kernels(alpha, *draw_kernels(rng, np.shape(alpha), kernel_range, min_kernel))


def fixed_trimap(alpha, kernel):
    """Evaluation trimap uint8 (H, W) 0 / 128 / 255: erosion and dilation both by a disk of radius `kernel`."""
    return trimap_from_kernels(alpha, kernel, kernel)


def trimap_classes(trimap):
    """uint8 0 / 128 / 255 (anything not 0 or 255 is unknown) -> int32 classes 0 / 1 / 2, same shape."""
    return _CLASS_OF_VALUE[np.asarray(trimap, np.uint8)]


_CLASS_OF_VALUE = np.full(256, UNKNOWN, np.int32)  # trimap value -> class
_CLASS_OF_VALUE[0], _CLASS_OF_VALUE[255] = BACKGROUND, FOREGROUND


# ----------------------------------------------------------------------------------------------- layouts
@dataclasses.dataclass(frozen=True)
class Entry:
    """One example: a foreground with its alpha over one background, or a pre-composited image with its alpha
    (and, where the data set has them, its trimap). Paths are strings; None = not in this layout."""

    alpha: str
    fg: str | None = None
    bg: str | None = None
    image: str | None = None
    trimap: str | None = None

    @property
    def name(self) -> str:
        """The example in messages: its foreground (or image) file, with its background."""
        return f"{self.fg} over {self.bg}" if self.fg is not None else str(self.image)


def _partner(folder: Path, name: str) -> str:
    """The file of `folder` pairing with `name`: the same file name, else <stem>.png (that path if neither)."""
    same = folder / name
    if same.is_file():
        return str(same)
    png = folder / (Path(name).stem + ".png")
    return str(png if png.is_file() else same)


def _names(path: Path) -> list:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _composite_entries(base: Path, where: str) -> list:
    for needed in ("fg", "alpha", "bg"):
        if not (base / needed).is_dir():
            raise FileNotFoundError(
                f"{where}: missing folder {base / needed} (foreground / alpha / background layout)"
            )
    for needed in (FG_LIST, BG_LIST):
        if not (base / needed).is_file():
            raise FileNotFoundError(
                f"{where}: missing {base / needed} (file names, one a line; {BG_LIST} holds K backgrounds per "
                f"foreground of {FG_LIST}, in order)"
            )
    fgs, bgs = _names(base / FG_LIST), _names(base / BG_LIST)
    if not fgs or len(bgs) % len(fgs) or not bgs:
        raise ValueError(
            f"{where}: {base / BG_LIST} lists {len(bgs)} backgrounds for the {len(fgs)} foregrounds of "
            f"{base / FG_LIST}; it must list the same number K >= 1 for each (foreground i over lines "
            "i*K .. i*K + K - 1)"
        )
    k = len(bgs) // len(fgs)
    return [
        Entry(alpha=_partner(base / "alpha", fg), fg=str(base / "fg" / fg), bg=str(base / "bg" / bg))
        for i, fg in enumerate(fgs)
        for bg in bgs[i * k : (i + 1) * k]
    ]


def _precomposited_entries(base: Path, where: str) -> list:
    if not (base / "alpha").is_dir():
        raise FileNotFoundError(f"{where}: missing folder {base / 'alpha'} (the alpha mattes of image/)")
    trimaps = base / "trimap"
    names = sorted(p.name for p in (base / "image").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    return [
        Entry(
            alpha=_partner(base / "alpha", n),
            image=str(base / "image" / n),
            trimap=_partner(trimaps, n) if trimaps.is_dir() else None,
        )
        for n in names
    ]


def find_layout(root) -> dict:
    """{split: [Entry, ...]} of the splits under root (train / val / test folders, each in either layout).

    FileNotFoundError naming what is missing when no split is found or a split is incomplete (a folder or list
    file); ValueError when the background list does not pair up with the foregrounds. Individual missing or
    corrupt files are not checked here: the streams skip and count them.
    """
    root = Path(root).expanduser()
    found = {}
    for split in SPLITS:
        base = root / split
        where = f"matting {split} split under {root}"
        if (base / "fg").is_dir() or (base / FG_LIST).is_file():
            found[split] = _composite_entries(base, where)
        elif (base / "image").is_dir():
            found[split] = _precomposited_entries(base, where)
    if not found:
        raise FileNotFoundError(f"no matting data found under {root}: looked for {_LOOKED_FOR}")
    return found


def _entries(root, split, stats=None):
    """The entries of `split` ('train', 'val' or 'validation' (test/ when there is no val/), 'test')."""
    del stats
    split = "val" if split == "validation" else split
    layout = find_layout(root)
    if split == "val" and "val" not in layout and "test" in layout:
        split = "test"
    if split not in layout:
        raise FileNotFoundError(
            f"no matting {split!r} split under {root} (found {sorted(layout)}): looked for {_LOOKED_FOR}"
        )
    return layout[split]


# ----------------------------------------------------------------------------------------------- decoding
def _decode(files: dict, paths: dict, stats=None) -> dict:
    """Decoded example {'alpha': uint8 (H, W), 'fg', 'bg', 'image': uint8 RGB or None, 'trimap': uint8 (H, W) or
    None} from the bytes of its files (None: not in this layout); CorruptExample for an unusable file."""
    alpha = reader.decode_label(files["alpha"], paths["alpha"], "alpha matte")
    out = {"alpha": alpha, "fg": None, "bg": None, "image": None, "trimap": None}
    if files.get("fg") is not None:
        out["fg"] = reader.decode_image(files["fg"], paths["fg"], stats)
        reader.check_same_size(out["fg"], alpha, paths["alpha"], "alpha matte")
        out["bg"] = reader.decode_image(files["bg"], paths["bg"], stats)
    else:
        out["image"] = reader.decode_image(files["image"], paths["image"], stats)
        reader.check_same_size(out["image"], alpha, paths["alpha"], "alpha matte")
        if files.get("trimap") is not None:
            out["trimap"] = reader.decode_label(files["trimap"], paths["trimap"], "trimap")
            reader.check_same_size(out["image"], out["trimap"], paths["trimap"], "trimap")
    return out


def _pair_present(picture, alpha, role):
    there, alpha_there = os.path.isfile(picture), os.path.isfile(alpha)
    if there and not alpha_there:
        raise CorruptExample(alpha, f"missing alpha matte of {role} {picture}", "missing pair")
    if alpha_there and not there:
        raise CorruptExample(picture, f"missing {role} of alpha matte {alpha}", "missing pair")


def _read_files(entry: Entry, stats=None):
    """(the bytes of the entry's files {role: bytes or None}, the decoded example)."""
    picture, role = (entry.fg, "foreground") if entry.fg is not None else (entry.image, "image")
    _pair_present(picture, entry.alpha, role)
    files = {"alpha": reader.read_bytes(entry.alpha, "alpha matte"), "fg": None, "bg": None}
    files["image"] = files["trimap"] = None
    if entry.fg is not None:
        files["fg"] = reader.read_bytes(entry.fg, "foreground")
        files["bg"] = reader.read_bytes(entry.bg, f"background of {entry.fg}")
    else:
        files["image"] = reader.read_bytes(entry.image, "image")
        if entry.trimap is not None:
            files["trimap"] = reader.read_bytes(entry.trimap, f"trimap of {entry.image}")
    paths = dataclasses.asdict(entry)
    return files, _decode(files, paths, stats)


def read_example(entry: Entry, stats=None) -> dict:
    """Entry -> {'name', 'alpha', 'fg', 'bg', 'image', 'trimap'} (see _decode); CorruptExample for a missing
    half of a pair, an empty, truncated or undecodable file, an alpha or trimap that is not single-channel 8-bit
    or of another size than its picture. Pictures in other modes are converted to 8-bit RGB (stats.converted)."""
    return {"name": entry.name, **_read_files(entry, stats)[1]}


# ----------------------------------------------------------------------------------------------- geometry
def _crop_matrix(y0, x0, side, out, flip=False, angle=0.0):
    """2x3 affine taking output pixel (u, v) of an out x out picture to source (x, y): the square window at
    (y0, x0) of `side` px, rotated by `angle` degrees about its centre, mirrored when `flip` (pixel centres)."""
    s = side / out
    c, sn = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    fx = -1.0 if flip else 1.0
    cx, cy = x0 + side / 2 - 0.5, y0 + side / 2 - 0.5  # window centre in source pixel coordinates
    # (u, v) -> offsets from the crop centre d = ((u + 0.5) s - side / 2, (v + 0.5) s - side / 2), x mirrored,
    # then rotated: (x, y) = centre + R d.
    a = np.array([[c * fx * s, -sn * s], [sn * fx * s, c * s]])
    d0 = np.array([fx * (0.5 * s - side / 2), 0.5 * s - side / 2])
    t = np.array([cx, cy]) + np.array([[c, -sn], [sn, c]]) @ d0
    return np.concatenate([a, t[:, None]], 1)


def _then(matrix, inner):
    """The affine `inner` (source -> other picture) applied after `matrix` (output -> source): output -> other."""
    m = np.vstack([matrix, [0, 0, 1]])
    i = np.vstack([inner, [0, 0, 1]])
    return (i @ m)[:2]


def _roi(matrix, out_h, out_w, shape, margin):
    """(y0, y1, x0, x1): the part of a source of `shape` that an output of (out_h, out_w) samples through
    `matrix`, with `margin` px more and the pixels that reflected borders read (so warping only that part gives
    the same values as warping the whole source)."""
    corners = np.array(
        [[-0.5, -0.5, 1], [out_w - 0.5, -0.5, 1], [-0.5, out_h - 0.5, 1], [out_w - 0.5, out_h - 0.5, 1]]
    )
    xy = corners @ matrix.T  # (4, 2) source (x, y)
    bounds = []
    for axis, size in ((1, shape[0]), (0, shape[1])):
        lo, hi = xy[:, axis].min(), xy[:, axis].max()
        lo, hi = min(lo, 2 * (size - 1) - hi), max(hi, -lo)  # reflected reads (BORDER_REFLECT_101)
        bounds += [max(0, math.floor(lo) - margin), min(size, math.ceil(hi) + margin + 1)]
    return bounds


def _warp(picture, matrix, out, divide=1.0):
    """float32 picture / divide sampled bilinearly at matrix @ (u, v, 1) for an out x out (or out = (H, W))
    output, borders reflected. Only the part of the source the output reads is touched; a source much larger
    than the output is first area-averaged (in its own dtype) to about the output's scale (no aliasing)."""
    out_h, out_w = (out, out) if np.isscalar(out) else out
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))  # source pixels per output pixel
    y0, y1, x0, x1 = _roi(matrix, out_h, out_w, picture.shape, 2 + 2 * math.ceil(scale))
    picture = picture[y0:y1, x0:x1]
    matrix = matrix - np.array([[0, 0, x0], [0, 0, y0]])
    if scale > 1.5:
        h, w = picture.shape[:2]
        small = cv2.resize(
            picture, (max(1, round(w / scale)), max(1, round(h / scale))), interpolation=cv2.INTER_AREA
        )
        ky, kx = h / small.shape[0], w / small.shape[1]
        shrink = np.array([[1 / kx, 0, 0.5 / kx - 0.5], [0, 1 / ky, 0.5 / ky - 0.5]])
        picture, matrix = small, _then(matrix, shrink)
    warped = cv2.warpAffine(
        picture.astype(np.float32),
        matrix.astype(np.float64),
        (int(out_w), int(out_h)),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return warped / np.float32(divide) if divide != 1.0 else warped


def _cover_matrix(bg_shape, shape, rng=None):
    """Affine from foreground pixels to background pixels: the background resized (uniformly) to cover the
    foreground's (H, W) and cropped, centred or at a random offset (rng)."""
    (bh, bw), (h, w) = bg_shape[:2], shape[:2]
    scale = max(h / bh, w / bw)
    spare_y, spare_x = max(0.0, bh * scale - h), max(0.0, bw * scale - w)  # one is 0 (up to rounding)
    oy, ox = (spare_y / 2, spare_x / 2) if rng is None else (rng.uniform(0, spare_y), rng.uniform(0, spare_x))
    # foreground (x, y) -> covered picture (x + ox, y + oy) -> background ((x + ox + 0.5) / scale - 0.5, ...)
    return np.array([[1 / scale, 0, (ox + 0.5) / scale - 0.5], [0, 1 / scale, (oy + 0.5) / scale - 0.5]])


def _pick_unknown(trimap, rng):
    """(y, x) of a random unknown pixel of trimap (uint8), or of a random pixel when there is none."""
    ys, xs = np.nonzero(trimap == 128)
    if len(ys) == 0:
        return int(rng.integers(trimap.shape[0])), int(rng.integers(trimap.shape[1]))
    i = int(rng.integers(len(ys)))
    return int(ys[i]), int(xs[i])


_CENTRE_SIDE = 320  # the trimap that places M-Net crops is drawn at most this large (it only picks a pixel)


def _unknown_centre(alpha, rng, opts):
    """(y, x) of a random unknown pixel of a random trimap of the whole alpha (uint8 (H, W)); for a large alpha
    the trimap is drawn on an area-averaged copy of long side _CENTRE_SIDE and the pixel mapped back."""
    h, w = alpha.shape
    f = min(1.0, _CENTRE_SIDE / max(h, w))
    small = (
        alpha
        if f == 1
        else cv2.resize(alpha, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    )
    cy, cx = _pick_unknown(random_trimap(small, rng, opts.kernel_range, opts.min_kernel), rng)
    if f < 1:
        sy, sx = h / small.shape[0], w / small.shape[1]
        cy, cx = min(h - 1, int((cy + rng.random()) * sy)), min(w - 1, int((cx + rng.random()) * sx))
    return cy, cx


def _centred_window(centre, size, limit):
    """Start of a window of `size` centred on `centre` as far as [0, limit) allows."""
    return int(np.clip(centre - size // 2, 0, max(limit - size, 0)))


def _sample(raw, matrix, out, rng=None):
    """(image float32 (out, out, 3) 0..255, alpha float32 (out, out, 1) [0, 1], fg, bg float32 (out, out, 3)
    [0, 1], has_fg_bg) of a raw example seen through `matrix` (output -> source pixels)."""
    alpha = np.clip(_warp(raw["alpha"], matrix, out, 255.0), 0, 1)[..., None]
    if raw["fg"] is not None:
        fg = _warp(raw["fg"], matrix, out, 255.0)
        bg_matrix = _then(matrix, _cover_matrix(raw["bg"].shape, raw["fg"].shape, rng))
        bg = _warp(raw["bg"], bg_matrix, out, 255.0)
        fg, bg = np.clip(fg, 0, 1), np.clip(bg, 0, 1)
        image = (alpha * fg + (1 - alpha) * bg) * 255.0  # I = alpha F + (1 - alpha) B (DIM eq. 1), in [0, 1]
        return image.astype(np.float32), alpha, fg, bg, True
    image = np.clip(_warp(raw["image"], matrix, out), 0, 255)
    return image, alpha, image / 255.0, image / 255.0, False


# ----------------------------------------------------------------------------------------------- examples
@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """What train_example does per stage (see the module docstring); train_stream's keyword arguments."""

    stage: str = "tnet"
    crop_size: int = 400
    mnet_size: int = 320
    mnet_crops: tuple = (320, 480, 640)
    tnet_crop_scale: tuple = (0.5, 1.0)
    max_rotation: float = 15.0
    kernel_range: tuple = (0.01, 0.02)
    min_kernel: int = 2

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.crop_size < 1 or self.mnet_size < 1 or not self.mnet_crops or min(self.mnet_crops) < 1:
            raise ValueError(
                f"crop_size {self.crop_size}, mnet_size {self.mnet_size} and mnet_crops {self.mnet_crops} "
                "must be positive"
            )
        if self.stage == "mnet" and self.mnet_size % 16:
            raise ValueError(f"mnet_size {self.mnet_size} must be a multiple of 16 (the M-Net's 4 poolings)")
        lo, hi = self.tnet_crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"tnet_crop_scale {self.tnet_crop_scale} must satisfy 0 < lo <= hi <= 1")


def _tnet_crop(shape, opts, rng):
    """(matrix output -> source, crop side in source px) of a random rotated, flipped square crop."""
    h, w = shape[:2]
    side = max(1.0, rng.uniform(*opts.tnet_crop_scale) * min(h, w))
    y0, x0 = rng.uniform(0, h - side), rng.uniform(0, w - side)
    angle = rng.uniform(-opts.max_rotation, opts.max_rotation) if opts.max_rotation else 0.0
    flip = bool(rng.random() < 0.5)
    return _crop_matrix(y0, x0, side, opts.crop_size, flip, angle), side


def train_example(raw, rng, opts: TrainOptions) -> dict:
    """One training example of opts.stage from a raw example (read_example); every draw from rng.

    'tnet': {'image' float32 (S, S, 3) 0..255, 'trimap' int32 (S, S) classes}; 'mnet': {'image' (M, M, 3),
    'trimap' (M, M), 'alpha' float32 (M, M, 1) [0, 1], 'fg', 'bg' float32 (M, M, 3) [0, 1], 'has_fg_bg' bool};
    'end2end': the same at S plus 'window' int32 (3,) [y0, x0, size] (S = crop_size, M = mnet_size).
    """
    shape = raw["alpha"].shape
    if opts.stage == "mnet":
        h, w = shape
        flip = bool(rng.random() < 0.5)
        cy, cx = _unknown_centre(raw["alpha"], rng, opts)
        side = min(int(opts.mnet_crops[int(rng.integers(len(opts.mnet_crops)))]), h, w)
        y0, x0 = _centred_window(cy, side, h), _centred_window(cx, side, w)
        matrix, out = _crop_matrix(y0, x0, side, opts.mnet_size, flip), opts.mnet_size
    else:
        (matrix, side), out = _tnet_crop(shape, opts, rng), opts.crop_size
    image, alpha, fg, bg, has_fg_bg = _sample(raw, matrix, out, rng)
    trimap = random_trimap(alpha[..., 0], rng, opts.kernel_range, opts.min_kernel)
    example = {"image": image, "trimap": trimap_classes(trimap)}
    if opts.stage == "tnet":
        return example
    example.update(alpha=alpha, fg=fg, bg=bg, has_fg_bg=np.bool_(has_fg_bg))
    if opts.stage == "end2end":
        crop = int(opts.mnet_crops[int(rng.integers(len(opts.mnet_crops)))])
        size = int(np.clip(round(crop * out / side), 1, out))
        cy, cx = _pick_unknown(trimap, rng)
        window = (_centred_window(cy, size, out), _centred_window(cx, size, out), size)
        example["window"] = np.array(window, np.int32)
    return example


_MEAN = np.asarray(CAFFE_MEAN_RGB, np.float32)  # (3,) image padding: about zero after normalisation


def _resize(picture, h, w, interpolation):
    return cv2.resize(picture, (w, h), interpolation=interpolation)


def eval_example(raw, *, pad_size, max_side=1500, trimap_kernel=None, stats=None, name="") -> dict:
    """One evaluation example: the whole picture, long edge capped at max_side, padded bottom/right to pad_size.

    Returns {'image' float32 (P, P, 3) 0..255 (padding: the mean pixel), 'alpha' float32 (P, P, 1) (padding 0),
    'trimap' uint8 (P, P) 0 / 128 / 255 (the data set's own, else fixed_trimap(alpha, trimap_kernel) at the
    capped size, trimap_kernel None = 1.5% of its long side, at least 2 px; padding 0), 'size' int32 (2,) (h, w)
    inside the padding, 'id' str}. Foreground / background examples are composited over the background resized to
    cover and centred.
    """
    alpha = raw["alpha"].astype(np.float32) / 255.0
    if raw["fg"] is not None:
        bg = _warp(
            raw["bg"].astype(np.float32) / 255.0, _cover_matrix(raw["bg"].shape, alpha.shape), alpha.shape
        )
        a = alpha[..., None]
        image = (a * raw["fg"].astype(np.float32) / 255.0 + (1 - a) * np.clip(bg, 0, 1)) * 255.0
    else:
        image = raw["image"].astype(np.float32)
    trimap = raw["trimap"]
    if trimap is not None:
        trimap = np.where((trimap == 0) | (trimap == 255), trimap, np.uint8(128)).astype(np.uint8)
    for limit, counted in ((max_side, False), (pad_size, True)):
        h, w = alpha.shape
        if max(h, w) > limit:
            f = limit / max(h, w)
            nh, nw = min(limit, max(1, round(h * f))), min(limit, max(1, round(w * f)))
            image = _resize(image, nh, nw, cv2.INTER_AREA)
            alpha = np.clip(_resize(alpha, nh, nw, cv2.INTER_AREA), 0, 1)
            if trimap is not None:
                trimap = _resize(trimap, nh, nw, cv2.INTER_NEAREST_EXACT)
            if counted and stats is not None:
                stats.record_downscale(name)
    h, w = alpha.shape
    if trimap is None:
        kernel = max(2, round(0.015 * max(h, w))) if trimap_kernel is None else int(trimap_kernel)
        trimap = fixed_trimap(alpha, kernel)
    out_image = np.empty((pad_size, pad_size, 3), np.float32)
    out_image[...] = _MEAN
    out_image[:h, :w] = image
    out_alpha = np.zeros((pad_size, pad_size, 1), np.float32)
    out_alpha[:h, :w, 0] = alpha
    out_trimap = np.zeros((pad_size, pad_size), np.uint8)
    out_trimap[:h, :w] = trimap
    return {
        "image": out_image,
        "alpha": out_alpha,
        "trimap": out_trimap,
        "size": np.array([h, w], np.int32),
        "id": raw["name"],
    }


def _train_spec(opts: TrainOptions):
    s = opts.mnet_size if opts.stage == "mnet" else opts.crop_size
    spec = {"image": Feature((s, s, 3), np.float32), "trimap": Feature((s, s), np.int32)}
    if opts.stage != "tnet":
        spec.update(
            alpha=Feature((s, s, 1), np.float32),
            fg=Feature((s, s, 3), np.float32),
            bg=Feature((s, s, 3), np.float32),
            has_fg_bg=Feature((), np.bool_),
        )
    if opts.stage == "end2end":
        spec["window"] = Feature((3,), np.int32)
    return spec


def _eval_spec(p):
    return {
        "image": Feature((p, p, 3), np.float32),
        "alpha": Feature((p, p, 1), np.float32),
        "trimap": Feature((p, p), np.uint8),
        "size": Feature((2,), np.int32),
        "id": Feature((), str),
    }


# ----------------------------------------------------------------------------------------------- TFDS
_ROLES = ("alpha", "fg", "bg", "image", "trimap")


class HumanMatting(reader.FolderBuilder):
    """Human matting examples from folders in either layout (manual_dir), in the folder reader's order.

    Each example keeps the original bytes of its files (alpha, and fg + bg or image [+ trimap]; b'' where the
    layout has none), so a stored record decodes exactly like the folders. A foreground goes over K backgrounds:
    it is stored once per pair (K copies: mind the disk for large K). Corrupt files are skipped, logged and
    counted in `self.stats` during generation.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the data set's train / val (or test) folders into manual_dir, each in one of the layouts
    <split>/fg/, <split>/alpha/, <split>/bg/, <split>/fg_names.txt, <split>/bg_names.txt   (fg i over K bgs)
    <split>/image/, <split>/alpha/ [, <split>/trimap/]                                      (pre-composited)
  (see input_pipeline/matting.py and the README's data layouts).
  """
    DESCRIPTION = "Human matting: foregrounds with alpha mattes over backgrounds, or composited images."
    HOMEPAGE = "https://arxiv.org/abs/1809.01354"
    CITATION = (
        "@inproceedings{chen2018semantic, title={Semantic Human Matting}, author={Chen, Quan and Ge, Tiezheng "
        "and Xu, Yanyu and Zhang, Zhiqiang and Yang, Xinxin and Gai, Kun}, booktitle={ACM Multimedia}, "
        "year={2018}}"
    )
    SPLITS = {"train": "train", "val": "validation", "test": "test"}
    UNDECODED = ()

    def features(self):
        string = tfds.features.Tensor(shape=(), dtype=np.object_)
        return tfds.features.FeaturesDict({"name": tfds.features.Text(), **{r: string for r in _ROLES}})

    def split_examples(self, root):
        return find_layout(root)

    def encode(self, entry):
        files, _ = _read_files(entry, self.stats)
        stored = {r: b"" if files[r] is None else files[r].tobytes() for r in _ROLES}
        return {"name": entry.name, **stored}


def _read_record(record, name, stats=None) -> dict:
    """A stored HumanMatting record -> the raw example of read_example."""
    files = {r: (bytes(record[r]) or None) for r in _ROLES}
    paths = {r: f"{name} ({r})" for r in _ROLES}
    return {"name": record["name"].decode("utf-8"), **_decode(files, paths, stats)}


READER = reader.Reader(
    name="matting",
    list_examples=_entries,
    read=read_example,
    example_name=lambda entry: entry.name,
    builder=HumanMatting,
    read_record=_read_record,
)
prepare_tfds = READER.prepare_tfds
num_examples = READER.num_examples


# ----------------------------------------------------------------------------------------------- streams
def train_stream(
    root,
    *,
    batch_size,
    stage="tnet",
    crop_size=400,
    mnet_size=320,
    mnet_crops=(320, 480, 640),
    tnet_crop_scale=(0.5, 1.0),
    max_rotation=15.0,
    kernel_range=(0.01, 0.02),
    min_kernel=2,
    **stream_args,
):
    """Infinite, resumable training batches of this host (batch_size per host) for one SHM stage.

    Yields per stage (B = batch_size, S = crop_size, M = mnet_size; see train_example):
      'tnet': image float32 (B, S, S, 3) RGB 0..255, trimap int32 (B, S, S) classes;
      'mnet': image (B, M, M, 3), trimap (B, M, M), alpha float32 (B, M, M, 1) [0, 1], fg, bg float32
        (B, M, M, 3) [0, 1] (pre-composited data: both the image / 255), has_fg_bg bool (B,);
      'end2end': the 'mnet' keys at S, plus window int32 (B, 3) [y0, x0, size] inside the T-Net crop.
    stream_args: seed, start_index (examples this host already consumed: step * batch_size), process_index,
    process_count, source ('folders' | 'tfds'), tfds_data_dir, stats (see reader.Reader.train_stream). Corrupt
    examples are skipped and counted in `stats` (a pipeline.Stats).
    """
    opts = TrainOptions(
        stage=stage,
        crop_size=int(crop_size),
        mnet_size=int(mnet_size),
        mnet_crops=tuple(int(c) for c in mnet_crops),
        tnet_crop_scale=tuple(float(v) for v in tnet_crop_scale),
        max_rotation=float(max_rotation),
        kernel_range=tuple(float(v) for v in kernel_range),
        min_kernel=int(min_kernel),
    )

    def example(raw, rng, stats, name):
        return train_example(raw, rng, opts)

    return READER.train_stream(root, example, _train_spec(opts), batch_size=batch_size, **stream_args)


def eval_stream(root, *, batch_size, pad_size=1504, max_side=1500, trimap_kernel=None, **stream_args):
    """Finite evaluation batches of this host's shard (examples[p::P] of the sorted split, first `limit`).

    Yields {'image' float32 (B, P, P, 3) 0..255, 'alpha' float32 (B, P, P, 1), 'trimap' uint8 (B, P, P) 0 / 128 /
    255, 'size' int32 (B, 2) (h, w), 'mask' bool (B,), 'id' numpy str (B,) (host-only)}, P = pad_size (a
    multiple of 32); see eval_example. Padding and corrupt examples have mask False. stream_args: split ('val';
    test/ when there is no val/), process_index, process_count, source, tfds_data_dir, stats, limit (see
    reader.Reader.eval_stream).
    """
    pad_size, max_side = int(pad_size), int(max_side)
    if pad_size < 32 or pad_size % 32:
        raise ValueError(f"pad_size {pad_size} must be a positive multiple of 32")
    if max_side < 1:
        raise ValueError(f"max_side {max_side} must be positive")

    def example(raw, stats, name):
        return eval_example(
            raw, pad_size=pad_size, max_side=max_side, trimap_kernel=trimap_kernel, stats=stats, name=name
        )

    return READER.eval_stream(root, example, _eval_spec(pad_size), batch_size=batch_size, **stream_args)
