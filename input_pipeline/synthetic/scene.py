"""Scenes: people composited over a cluttered background, with every annotation the four tasks need.

`render_scene(seed, index)`: several people with occlusion (multi-person tasks: PersonLab, matting, ...).
`render_person_crop(seed, index)`: a LIP-style crop, one large labelled person (others, if any, are part of the
background and unlabelled). Both are pure functions of (seed, index): np.random.default_rng([seed, index]).
Lower-level `sample_person` + `compose` let writers keep one person fixed and vary only the pose (videos).
"""

import dataclasses

import cv2
import numpy as np

from input_pipeline.synthetic import background as bgr
from input_pipeline.synthetic import body as bd
from input_pipeline.synthetic import matte
from input_pipeline.synthetic import outfit as of
from input_pipeline.synthetic import skeleton as sk

# Face keypoints (nose, eyes, ears) are hidden when this far behind the head centre (units of head_rx).
_FACE_HIDDEN_DEPTH = np.array([0.0, 0.0, 0.0, 0.25, 0.25])


@dataclasses.dataclass(frozen=True)
class PersonSpec:
    """Who (body, outfit), in which pose (angles) and where: pelvis at `center` (x, y) px, `scale` px per body
    height, `roll` degrees of in-plane rotation."""

    body: sk.Body
    outfit: of.Outfit
    angles: sk.Angles
    scale: float
    center: tuple
    roll: float

    def skeleton(self):
        return sk.place(self.body, self.angles, self.scale, self.center, self.roll)


@dataclasses.dataclass
class Scene:
    """A rendered scene. P people, indexed back (0) to front (P - 1). Keypoints in COCO order and convention."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    background: np.ndarray  # (H, W, 3) uint8 RGB, the scene without the (labelled) people
    parts: np.ndarray  # (H, W) uint8 LIP class, 0 = background; the front-most person wins
    instances: np.ndarray  # (H, W) int32, 0 = none, i + 1 = person i is visible there
    keypoints: (
        np.ndarray
    )  # (P, 17, 3) float32 [x, y, v]: v 0 = outside the image (x = y = 0), 1 = hidden, 2 = visible
    masks: np.ndarray  # (P, H, W) bool, each person's full (unoccluded) silhouette
    boxes: np.ndarray  # (P, 4) float32 COCO [x, y, w, h] of each full silhouette (clipped to the image)
    alpha: np.ndarray  # (H, W) float32 in [0, 1], the people layer with soft edges and hair strands
    foreground: np.ndarray  # (H, W, 3) uint8 colours of the people layer (image = alpha*fg + (1-alpha)*bg)
    crowd: (
        np.ndarray
    )  # (H, W) bool, blobs of tiny people (COCO iscrowd): in parts, not in instances; empty by default

    @property
    def num_people(self):
        return len(self.keypoints)


def sample_shape(rng, size):
    """(H, W): size x size for an int, else both sides uniform in the inclusive range size = (lo, hi)."""
    if np.isscalar(size):
        return int(size), int(size)
    lo, hi = size
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def sample_person(rng, scale, center, kind=None):
    """A random person (body, outfit, pose of `kind` or random) placed at `center` with `scale`."""
    return PersonSpec(
        sk.sample_body(rng),
        of.sample_outfit(rng),
        sk.sample_angles(rng, kind),
        float(scale),
        tuple(float(v) for v in center),
        sk.sample_roll(rng),
    )


def _keypoints(s, index, instances, segments):
    """(17, 3) float32 COCO keypoints of person `index` from its skeleton, occlusion and self-occlusion."""
    h, w = instances.shape
    xy = s.keypoints  # (17, 2)
    xi, yi = np.round(xy[:, 0]).astype(int), np.round(xy[:, 1]).astype(int)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    xc, yc = np.clip(xi, 0, w - 1), np.clip(yi, 0, h - 1)
    mine = instances[yc, xc] == index + 1
    on_segment = bd.VISIBLE_ON[np.arange(17), segments[yc, xc]]
    facing = np.ones(17, bool)
    facing[:5] = np.array([s.head_depth(k) for k in range(5)]) < _FACE_HIDDEN_DEPTH
    v = np.where(inside, np.where(mine & on_segment & facing, 2, 1), 0)
    out = np.concatenate([np.where(inside[:, None], xy, 0.0), v[:, None]], 1)
    return out.astype(np.float32)


def compose(background, people, rng, crowd_people=()):
    """Draw `people` (list of PersonSpec, back to front) and optional tiny `crowd_people` over `background`."""
    h, w = background.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    premult = np.zeros((h, w, 3), np.float32)  # alpha-premultiplied colour of the people layer
    parts = np.zeros((h, w), np.uint8)
    instances = np.zeros((h, w), np.int32)
    crowd = np.zeros((h, w), bool)
    skeletons, masks, segments = [], [], []
    for i, spec in enumerate(list(crowd_people) + list(people)):
        s = spec.skeleton()
        raster = bd.rasterize_person(s, spec.outfit, (h, w))
        a, fg = matte.person_matte(raster, bd.colorize(raster, rng), rng)
        alpha, premult = matte.over(a, fg, alpha, premult)
        m = raster.mask
        parts[m] = raster.parts[m]
        if i < len(crowd_people):
            crowd |= m
            instances[m] = 0
            continue
        instances[m] = len(skeletons) + 1
        skeletons.append(s)
        masks.append(m)
        segments.append(raster.segments)
    if crowd.any():
        crowd = cv2.dilate(crowd.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    keypoints = np.zeros((len(skeletons), 17, 3), np.float32)
    for i, s in enumerate(skeletons):
        keypoints[i] = _keypoints(s, i, instances, segments[i])
    masks = np.stack(masks) if masks else np.zeros((0, h, w), bool)
    boxes = np.array([cv2.boundingRect(m.astype(np.uint8)) for m in masks], np.float32).reshape(-1, 4)
    image = premult + (1 - alpha[..., None]) * background.astype(np.float32)
    fg = np.where(alpha[..., None] > 0, premult / np.maximum(alpha[..., None], 1e-6), 0)
    to_u8 = lambda x: np.clip(np.round(x), 0, 255).astype(np.uint8)  # noqa: E731
    return Scene(
        image=to_u8(image),
        background=background,
        parts=parts,
        instances=instances,
        keypoints=keypoints,
        masks=masks,
        boxes=boxes,
        alpha=alpha,
        foreground=to_u8(fg),
        crowd=crowd,
    )


def render_scene(seed, index, size=(128, 192), max_people=4, crowd=False, min_people=1):
    """Several people (min_people..max_people) of random scale, pose and position, some truncated, with
    occlusion; `crowd` adds a blob of tiny people marked in Scene.crowd (labelled in parts, not instances)."""
    if not 1 <= min_people <= max_people:
        raise ValueError(f"need 1 <= min_people <= max_people, got {min_people}, {max_people}")
    rng = np.random.default_rng([seed, index])
    h, w = sample_shape(rng, size)
    background = bgr.render_background(rng, h, w)
    people = []
    for _ in range(int(rng.integers(min_people, max_people + 1))):
        scale = h * rng.uniform(0.35, 0.95)
        people.append(sample_person(rng, scale, rng.uniform((0.05 * w, 0.3 * h), (0.95 * w, 0.8 * h))))
    people.sort(key=lambda p: p.center[1] + 0.5 * p.scale)  # feet lower in the image = nearer = drawn later
    crowd_people = []
    if crowd:
        c = rng.uniform((0.15 * w, 0.2 * h), (0.85 * w, 0.5 * h))
        for _ in range(int(rng.integers(5, 12))):
            at = c + rng.normal(0, 1, 2) * (0.06 * w, 0.02 * h)
            crowd_people.append(sample_person(rng, h * rng.uniform(0.08, 0.15), at, kind="stand"))
        crowd_people.sort(key=lambda p: p.center[1])
    return compose(background, people, rng, crowd_people)


def render_person_crop(seed, index, size=(128, 256)):
    """A LIP-style person crop: one main person filling most of an (H, W) image over clutter.

    Sometimes the crop is tight (limbs cut by the border) or shows only the upper body; other people partly in
    view are drawn into the background and stay unlabelled, as in LIP. The Scene has exactly one person.
    """
    rng = np.random.default_rng([seed, index])
    spec = sample_person(rng, 1.0, (0.0, 0.0))
    unit = spec.skeleton()
    x0, y0, x1, y1 = unit.extent()  # at 1 px per body height, pelvis at the origin
    mode = rng.random()
    if mode < 0.18:  # upper body: head to just below the hips
        y1 = min(y1, unit.points[sk.PELVIS, 1] + 0.15)
        fill = rng.uniform(0.85, 1.0)
    elif mode < 0.42:  # tight: cut by the border
        fill = rng.uniform(1.0, 1.35)
    else:
        fill = rng.uniform(0.85, 1.0)
    h, w = sample_shape(rng, size)
    if (h > w) != (y1 - y0 > x1 - x0):  # crops follow the person's aspect, as LIP's person boxes do
        h, w = w, h
    background = bgr.render_background(rng, h, w)
    if rng.random() < 0.3:  # unlabelled bystanders, partly out of frame
        others = []
        for _ in range(int(rng.integers(1, 3))):
            x = rng.uniform(-0.1, 0.25) if rng.random() < 0.5 else rng.uniform(0.75, 1.1)
            others.append(sample_person(rng, h * rng.uniform(0.6, 1.1), (x * w, rng.uniform(0.4, 0.7) * h)))
        background = compose(background, others, rng).image
    scale = fill * min(w / (x1 - x0), h / (y1 - y0))
    jitter = rng.uniform(-0.08, 0.08, 2) * (w, h)
    center = np.array([w / 2, h / 2]) + jitter - scale * np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    spec = dataclasses.replace(spec, scale=float(scale), center=tuple(float(v) for v in center))
    return compose(background, [spec], rng)
