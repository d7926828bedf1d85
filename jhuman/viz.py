"""Pictures people look at: label colouring, overlays, image grids, PNG output, training curves.

All images are RGB uint8 (H, W, 3) unless said otherwise; float images are taken to lie in [0, 1].
Only numpy and OpenCV at import time; matplotlib is imported inside `plot_curves`.
"""

import json
import math
import os

import numpy as np

from jhuman.classes import IGNORE_LABEL, LIP_PALETTE

WHITE = (255, 255, 255)


def to_uint8(image):
    """uint8 as is; bool -> 0/255; float in [0, 1] -> [0, 255] rounded and clipped; other ints clipped."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(np.round(np.nan_to_num(image) * 255.0), 0, 255).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)


def _rgb(image):
    """(H, W) or (H, W, 1|3|4) -> (H, W, 3) uint8."""
    image = to_uint8(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got {image.shape}")
    return image


def colorize(label, palette=LIP_PALETTE):
    """Integer label map (..., H, W) -> (..., H, W, 3) uint8 RGB; 255 (ignore) and any value outside the
    palette are drawn white."""
    label = np.asarray(label)
    palette = np.asarray(palette, np.uint8)
    lut = np.full((len(palette) + 1, 3), 255, np.uint8)  # the last row (white) catches everything else
    lut[: len(palette)] = palette
    index = np.where((label >= 0) & (label < len(palette)), label, len(palette)).astype(np.int64)
    return lut[index]


def overlay(image, label, alpha=0.5, palette=LIP_PALETTE):
    """Blend the coloured label over the image: (1 - alpha) * image + alpha * colour; ignore pixels (255)
    keep the image. A label of another size is resized (nearest) to the image."""
    image = _rgb(image)
    label = np.asarray(label)
    if label.shape[:2] != image.shape[:2]:
        import cv2

        label = cv2.resize(
            label.astype(np.int32).astype(np.float32),
            (image.shape[1], image.shape[0]),
            interpolation=cv2.INTER_NEAREST,
        ).astype(np.int64)
    colours = colorize(label, palette).astype(np.float32)
    blend = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    blend = np.where((label == IGNORE_LABEL)[..., None], image.astype(np.float32), blend)
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)


def person_colors(count):
    """`count` distinct bright RGB colours (HSV wheel), one per person."""
    import cv2

    hues = (np.arange(count) * 47) % 180
    hsv = np.stack([hues, np.full(count, 220), np.full(count, 255)], -1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def draw_people(image, keypoints, valid, masks=None, edges=None, min_score=0.05, alpha=0.45):
    """People over an image: instance masks (P, H, W) tinted per person, then skeletons.

    keypoints (P, 17, 3) [x, y, score] in this image's pixels; a keypoint with score < min_score (or a person
    with valid False) is not drawn; edges default to PersonLab's 16-edge COCO tree.
    """
    import cv2

    from jhuman.classes import PERSONLAB_EDGES

    out = _rgb(image).copy()
    people = np.flatnonzero(np.asarray(valid))
    colors = person_colors(max(len(people), 1))
    if masks is not None:
        tint = out.astype(np.float32)
        for color, person in zip(colors, people):
            m = np.asarray(masks[person], bool)
            tint[m] = (1 - alpha) * tint[m] + alpha * color
        out = tint.astype(np.uint8)
    for color, person in zip(colors, people):
        kp = np.asarray(keypoints[person], np.float32)
        seen = kp[:, 2] >= min_score
        c = tuple(int(v) for v in color)
        for a, b in edges or PERSONLAB_EDGES:
            if seen[a] and seen[b]:
                cv2.line(
                    out,
                    tuple(np.round(kp[a, :2]).astype(int)),
                    tuple(np.round(kp[b, :2]).astype(int)),
                    c,
                    2,
                    cv2.LINE_AA,
                )
        for x, y, _ in kp[seen]:
            cv2.circle(out, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(out, (int(round(x)), int(round(y))), 3, c, 1, cv2.LINE_AA)
    return out


def _fit_text(text, max_width, max_height):
    """Largest Hershey-simplex scale (<= 0.6, >= 0.25) whose text fits the box: (scale, (w, h, baseline))."""
    import cv2

    scale = 0.6
    while True:
        (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        if (w <= max_width and h + baseline <= max_height) or scale <= 0.25:
            return scale, (w, h, baseline)
        scale *= 0.9


def image_grid(rows, titles=None, gap=2, title_height=24, background=WHITE):
    """Rows of tiles -> one uint8 RGB image, with optional column titles in a band on top.

    rows: a list of rows, each a list of images ((H, W) grey or (H, W, 3) RGB, uint8 or float in [0, 1];
    None leaves a blank tile). Every tile is resized to the first tile's size (nearest). Short rows are padded
    with blank tiles. Size: height = title_band + R * h + (R + 1) * gap, width = K * w + (K + 1) * gap, where
    K is the longest row's length and title_band = title_height if titles else 0.
    """
    import cv2

    rows = [list(r) for r in rows]
    tiles = [t for r in rows for t in r if t is not None]
    if not tiles:
        raise ValueError("image_grid needs at least one image")
    h, w = _rgb(tiles[0]).shape[:2]
    ncols = max(len(r) for r in rows)
    band = title_height if titles else 0
    grid = np.empty(
        (band + len(rows) * h + (len(rows) + 1) * gap, ncols * w + (ncols + 1) * gap, 3), np.uint8
    )
    grid[:] = background
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            if tile is None:
                continue
            tile = _rgb(tile)
            if tile.shape[:2] != (h, w):
                tile = cv2.resize(tile, (w, h), interpolation=cv2.INTER_NEAREST)
            y, x = band + gap + i * (h + gap), gap + j * (w + gap)
            grid[y : y + h, x : x + w] = tile
    titles = [str(t) if t else "" for t in (titles or [])[:ncols]]
    if any(titles):  # one font size for all titles: the largest at which every title fits its tile
        scale = min(_fit_text(t, w, band - 2)[0] for t in titles if t)
        for j, title in enumerate(titles):
            if not title:
                continue
            (tw, th), base = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            x = gap + j * (w + gap) + max(0, (w - tw) // 2)
            y = (band + th) // 2
            cv2.putText(grid, title, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return grid


def save_png(path, image):
    """Write an RGB (or grey) image as PNG with the right colours on disk; creates the folder; returns path."""
    import cv2

    image = to_uint8(image)
    if image.ndim == 3 and image.shape[-1] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[-1] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    elif image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    if not cv2.imwrite(os.fspath(path), np.ascontiguousarray(image)):
        raise OSError(f"could not write {path}")
    return path


def read_metrics(metrics_jsonl_path):
    """{key: (steps, values)} for every scalar key of a metrics.jsonl; lines that do not parse are skipped
    (e.g. a last line being written), and so are null values. A `resumed_from` row at step s drops the rows
    above s written before it (steps the killed run did after its last checkpoint, which the resumed run
    redoes)."""
    series = {}
    with open(metrics_jsonl_path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict) or "step" not in record:
                continue
            if "resumed_from" in record:
                resumed = record["resumed_from"]
                for key, (steps, values) in series.items():
                    keep = [i for i, step in enumerate(steps) if step <= resumed]
                    series[key] = ([steps[i] for i in keep], [values[i] for i in keep])
                continue
            for key, value in record.items():
                if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                steps, values = series.setdefault(key, ([], []))
                steps.append(record["step"])
                values.append(float(value))
    return series


def plot_curves(metrics_jsonl_path, out_png, keys=None):
    """One panel per scalar key of a metrics.jsonl against 'step' (matplotlib Agg, no pyplot state).

    keys: the keys to draw (default: all scalar keys). Sparse series (eval metrics: a tenth of the points of
    the longest one, or fewer than 20) are drawn with markers. Positive loss curves spanning more than two
    decades use a log axis. Returns out_png.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = read_metrics(metrics_jsonl_path)
    if keys is not None:
        missing = [k for k in keys if k not in series]
        if missing:
            raise KeyError(f"{missing} not in {metrics_jsonl_path}; available: {sorted(series)}")
        series = {k: series[k] for k in keys}
    if not series:
        raise ValueError(f"no scalar metrics with a 'step' in {metrics_jsonl_path}")
    longest = max(len(s) for s, _ in series.values())
    ncols = min(3, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.2 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    for i, (key, (steps, values)) in enumerate(series.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        sparse = len(steps) < 20 or len(steps) * 10 <= longest
        ax.plot(steps, values, marker="o" if sparse else None, markersize=4, linewidth=1.2)
        finite = np.asarray([v for v in values if math.isfinite(v)])
        if "loss" in key and finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
            ax.set_yscale("log")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    parent = os.path.dirname(os.fspath(out_png))
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(out_png, format="png")
    return out_png


# --- mattes (Semantic Human Matting) --------------------------------------------------------------------
TRIMAP_GREYS = np.array([0, 128, 255], np.uint8)  # background / unknown / foreground (jhuman.ops.matting)


def trimap_image(classes):
    """Trimap classes (H, W) (0 background, 1 unknown, 2 foreground) -> grey uint8 0 / 128 / 255."""
    return TRIMAP_GREYS[np.clip(np.asarray(classes), 0, 2).astype(np.int64)]


def checkerboard(height, width, square=16, colors=(200, 255)):
    """A grey checkerboard (height, width, 3) uint8: what transparency is drawn over."""
    rows = (np.arange(height) // square)[:, None]
    cols = (np.arange(width) // square)[None, :]
    board = np.where((rows + cols) % 2 == 0, colors[0], colors[1]).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=-1)


def cover(image, height, width):
    """`image` resized (keeping its aspect) to cover height x width and centre-cropped to it: uint8 RGB."""
    import cv2

    image = _rgb(image)
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, math.ceil(w * scale)), max(height, math.ceil(h * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[y : y + height, x : x + width]


def composite(image, alpha, background):
    """alpha * image + (1 - alpha) * background: the person over a new background, uint8 RGB.
    image, background (H, W, 3); alpha (H, W) or (H, W, 1) in [0, 1]."""
    alpha = np.clip(np.asarray(alpha, np.float32).reshape(_rgb(image).shape[:2])[..., None], 0.0, 1.0)
    out = alpha * _rgb(image).astype(np.float32) + (1.0 - alpha) * _rgb(background).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def matte_sheet(image, trimap, alpha, composite_image, max_side=480, min_side=32):
    """One picture image | trimap | alpha | composite, each tile scaled so its long edge is at most
    `max_side` and its short edge at least `min_side` (a 1-pixel image stays visible)."""
    import cv2

    h, w = _rgb(image).shape[:2]
    scale = min(max_side / max(h, w), max(1.0, min_side / min(h, w)))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    tiles = [
        cv2.resize(_rgb(t), size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
        for t in (image, trimap, alpha, composite_image)
    ]
    return image_grid([tiles], titles=["image", "trimap", "alpha", "composite"])


# --- pose-guided synthesis ------------------------------------------------------------------------------
POSEWARP_TITLES = ("source", "target pose", "warped layers", "masks", "output", "target")


def signed_to_unit(image):
    """An image in [-1, 1] (the library's range for pose-guided synthesis) -> float32 in [0, 1], clipped."""
    return np.clip((np.asarray(image, np.float32) + 1.0) * 0.5, 0.0, 1.0)


def limb_colors():
    """(11, 3) uint8: black for the background channel, then one colour per limb (jhuman.ops.warp.LIMBS)."""
    return np.concatenate([np.zeros((1, 3), np.uint8), person_colors(10)])


def pose_image(joints, visible, height, width, background=None):
    """The 14-joint skeleton (jhuman.ops.warp.LIMBS, the torso as its quadrilateral) drawn over `background`
    (uint8 RGB (height, width, 3); None: black). joints (14, 2) (x, y) pixels, visible (14,) bool."""
    import cv2

    from jhuman.ops.warp import LIMBS

    out = np.zeros((height, width, 3), np.uint8) if background is None else _rgb(background).copy()
    joints, visible = np.asarray(joints, np.float32), np.asarray(visible, bool)
    thickness = max(1, round(min(height, width) / 64))
    for color, limb in zip(limb_colors()[1:], LIMBS):
        chain = (limb[0], limb[1], limb[3], limb[2], limb[0]) if len(limb) == 4 else limb  # torso: 2-5-11-8
        for a, b in zip(chain[:-1], chain[1:]):
            if visible[a] and visible[b]:
                pa, pb = (tuple(int(v) for v in np.round(joints[j])) for j in (a, b))
                cv2.line(out, pa, pb, tuple(int(c) for c in color), thickness, cv2.LINE_AA)
    for x, y in joints[visible]:
        cv2.circle(out, (int(round(x)), int(round(y))), thickness + 1, WHITE, -1, cv2.LINE_AA)
    return out


def limb_layers_image(warped):
    """The warped masked limb layers (H, W, 10, 3) in [-1, 1] summed into one picture (float in [0, 1])."""
    return signed_to_unit(np.sum(np.asarray(warped, np.float32), axis=-2))


def masks_image(masks):
    """Soft masks (H, W, 11) (channel 0 background) -> uint8 RGB, each channel in its limb colour."""
    weights = np.asarray(masks, np.float32)
    return np.clip(np.round(weights @ limb_colors().astype(np.float32)), 0, 255).astype(np.uint8)


def posewarp_row(source, target_joints, target_visible, outputs, target=None):
    """One row of POSEWARP_TITLES: source | target pose | warped layers | masks | output | target. source,
    target (H, W, 3) and the outputs in [-1, 1]; outputs {'image' and, from the modular generator, 'warped'
    (H, W, 10, 3), 'masks' (H, W, 11)}; a tile a model (or a missing target) does not have is left blank."""
    height, width = np.asarray(source).shape[:2]
    return [
        signed_to_unit(source),
        pose_image(target_joints, target_visible, height, width),
        limb_layers_image(outputs["warped"]) if "warped" in outputs else None,
        masks_image(outputs["masks"]) if "masks" in outputs else None,
        signed_to_unit(outputs["image"]),
        None if target is None else signed_to_unit(target),
    ]
