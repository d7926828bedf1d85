"""Pose-guided synthesis data (Balakrishnan et al., CVPR 2018): the published video layout, pairs, crops, streams.

Layout (the data set's own, as published with balakg/posewarp-cvpr2018), per split folder `<root>/{train,test}`:
    frames/<video>/<k>.jpg (or .png)   frame k - 1 of the video (k = frame index + 1), any image the reader decodes
    info/<video>.mat                   MATLAB struct `data`: X (14, 2, n) joints as 1-based (x, y) pixels, bbox
                                       (n, 4) [x, y, w, h] (scipy: loadmat(f)['data']['X'][0][0])
The splits are 'train' and 'test'; 'val' / 'validation' read test/ (the data set has no other held-out split).
Joints follow the reference order JOINTS; the reader subtracts 1 from the joints AND from the box corner (the
released code subtracts it from the joints only, centring its crops 1 source pixel off).

Pairs (the paper, section 4, and its released data generator):
* training: a video (the pipeline's per-epoch order of the split's videos stands for the released code's uniform
  draw), then two of its frames at least `min_gap` of the video apart (|i - j| > min_gap * n; released: 0.02),
  drawn uniformly among such ordered pairs (`sample_pair`, the distribution of the released rejection loop);
* one scale for both frames from the person size (`person_scale`: max(2.5 * (hip_y - head_y), 5 * calf length)
  / 200; image scale 1.14 / the larger of the two, x image_size / 256 so a smaller crop shows the same view),
  centred on the mean of the two boxes' centres; both frames go through the same crop (`pair_crop`);
* augmentation (training only; `Augmentation`), the same for both frames: horizontal flip (p = 0.5, the joints
  swapped by FLIP_PERMUTATION), scale in [0.90, 1.05], shift in +-5 px (x image_size / 256), rotation in +-5
  degrees, brightness x [0.95, 1.05]. Where we choose differently from the released code: scale and rotation
  both act about the crop centre (the released code scales about the top-left corner, which also shifts the
  person by up to 13 px) and brightness multiplies the 0..255 pixels (it multiplies the [-1, 1] values, a
  contrast change about mid-grey). Crop and augmentation are ONE affine warp per frame (bilinear; sources
  shrunk by more than 1.5x are area-averaged first), borders black (the released centring's padding);
* images float32 in [-1, 1]; joints in crop pixels (0-based); `*_visible` False for a joint that is non-finite
  in the file (then placed at the crop centre), outside its frame, or outside the crop: never a (0, 0) joint.
Evaluation uses `test_pairs`: num_pairs (500) pairs drawn with a seeded generator (a video uniformly, then a pair
as above) from the .mat files, without augmentation, as the released evaluation did with its own seed.

Bad data is skipped, named and counted (input_pipeline.reader / pipeline.Stats): an unreadable .mat, one without
the struct, or with arrays of the wrong shape ('bad .mat', 'wrong shape') skips the video; a missing or corrupt
frame skips that frame (training draws another pair of the video; evaluation masks the pair out).
Inference and animation read one video with `open_video(<split>/info/<video>.mat)` and crop with `prepare_pair`
(tgt_image None when only the target pose is known).
`source='tfds'` reads the `PoseVideos` TFDS builder (manual_dir = the folders): one record per video holding its
joints, boxes and the original bytes of every frame (b'' for a missing one), in the folder order.

input_pipeline never imports jax: JOINTS and FLIP_PERMUTATION repeat jhuman.ops.warp's (a test checks them).
"""

import dataclasses
import math
import os
from pathlib import Path

import cv2
import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from input_pipeline import pipeline, reader
from input_pipeline.pipeline import CorruptExample, Feature
from jhuman.classes import POSEWARP_FLIP_PERMUTATION, POSEWARP_JOINTS

JOINTS = POSEWARP_JOINTS  # jhuman.classes (numpy only): the published .mat files' order
NUM_JOINTS = 14
FLIP_PERMUTATION = POSEWARP_FLIP_PERMUTATION  # joint k after a flip = joint FLIP[k] before
HEAD, R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE = 0, 8, 9, 10, 11, 12, 13
SPLITS = ("train", "test")
FRAME_EXTENSIONS = (".jpg", ".png")
OBJECT_SCALE = 1.14  # image scale x person scale at REFERENCE_SIZE (released param 'obj_scale_factor')
REFERENCE_SIZE = 256
PERSON_UNIT = 200.0  # person_scale = person size / 200 px
MIN_GAP = 0.02
_LOOKED_FOR = "<split>/frames/<video>/<k>.jpg|png and <split>/info/<video>.mat, <split> one of train, test"


# ----------------------------------------------------------------------------------------------- files
def read_info(path) -> tuple[np.ndarray, np.ndarray]:
    """(joints (n, 14, 2) float32 0-based (x, y), boxes (n, 4) float32 [x, y, w, h] 0-based) of a video's .mat.

    Raises CorruptExample naming the file: missing ('missing file'), unreadable or without the struct `data`
    with fields X and bbox ('bad .mat'), X not (14, 2, n) or bbox not (n, 4) ('wrong shape'). (A one-frame
    video's X may come back as (14, 2): MATLAB drops the trailing singleton axis.)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CorruptExample(path, "missing info file (.mat) of the video", "missing file")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises assorted errors for files that are not MATLAB files
        raise CorruptExample(
            path, f"cannot read the .mat file ({type(e).__name__}: {e})", "bad .mat"
        ) from None
    try:
        data = mat["data"]
        x, box = data["X"][0][0], data["bbox"][0][0]
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise CorruptExample(
            path, f"no struct 'data' with fields X and bbox ({type(e).__name__}: {e})", "bad .mat"
        ) from None
    try:
        x, box = np.asarray(x, np.float64), np.asarray(box, np.float64)
    except (TypeError, ValueError):
        raise CorruptExample(path, "X and bbox must be numeric arrays", "wrong shape") from None
    if x.shape == (NUM_JOINTS, 2):
        x, box = x[..., None], box.reshape(-1, 4) if box.size == 4 else box
    n = x.shape[2] if x.ndim == 3 else -1
    if x.ndim != 3 or x.shape[:2] != (NUM_JOINTS, 2) or n < 1:
        raise CorruptExample(path, f"X has shape {x.shape}; expected (14, 2, n_frames)", "wrong shape")
    if box.shape != (n, 4):
        raise CorruptExample(
            path, f"bbox has shape {box.shape}; expected ({n}, 4) for X {x.shape}", "wrong shape"
        )
    joints = (x.transpose(2, 0, 1) - 1.0).astype(np.float32)  # (n, 14, 2), 0-based
    boxes = box.astype(np.float32)
    boxes[:, :2] -= 1.0
    return joints, boxes


def _split_dir(root, split) -> Path:
    """The folder of `split` ('val' / 'validation' read test/); FileNotFoundError naming what is missing."""
    root = Path(root).expanduser()
    folder = "test" if split in ("val", "validation") else split
    if folder not in SPLITS:
        raise ValueError(f"split must be one of train, test (or val = test), got {split!r}")
    base = root / folder
    if not (base / "info").is_dir() and not (base / "frames").is_dir():
        raise FileNotFoundError(f"no pose-video {split!r} split under {root}: looked for {_LOOKED_FOR}")
    return base


def list_videos(root, split) -> list[str]:
    """Sorted names of the videos of `split`: every frames/<video>/ folder and info/<video>.mat (a video with one
    but not the other is listed, and skipped as corrupt when read)."""
    base = _split_dir(root, split)
    names = set()
    if (base / "frames").is_dir():
        names |= {p.name for p in (base / "frames").iterdir() if p.is_dir()}
    if (base / "info").is_dir():
        names |= {p.stem for p in (base / "info").iterdir() if p.suffix == ".mat"}
    return sorted(names)


@dataclasses.dataclass(frozen=True)
class Video:
    """One video as read: its name, joints (n, 14, 2) float32 0-based, boxes (n, 4) float32 [x, y, w, h], and
    where its frames are: a folder (frames_dir: <k>.jpg|png) or the stored bytes of each frame (b'' = missing).
    source: the video in messages (its .mat, or the TFDS record)."""

    name: str
    joints: np.ndarray
    boxes: np.ndarray
    source: str
    frames_dir: str | None = None
    frame_bytes: tuple | None = None

    @property
    def num_frames(self) -> int:
        return len(self.joints)

    def frame_name(self, k) -> str:
        """Frame k (0-based) in messages: its file (the .jpg, or the .png when only that exists)."""
        if self.frames_dir is None:
            return f"{self.source} frame {k + 1}"
        jpg = os.path.join(self.frames_dir, f"{k + 1}.jpg")
        png = os.path.join(self.frames_dir, f"{k + 1}.png")
        return png if not os.path.isfile(jpg) and os.path.isfile(png) else jpg

    def check_frames_folder(self):
        """CorruptExample ('missing frame', naming the folder) when the video's frames folder is missing."""
        if self.frames_dir is not None and not os.path.isdir(self.frames_dir):
            raise CorruptExample(
                self.frames_dir, f"missing frames folder of video {self.name!r}", "missing frame"
            )

    def read_frame(self, k, stats=None) -> np.ndarray:
        """Frame k (0-based) as RGB uint8 (H, W, 3); CorruptExample naming it when missing or unusable."""
        name = self.frame_name(k)
        if self.frames_dir is None:
            data = self.frame_bytes[k]
            if not data:
                raise CorruptExample(name, "missing frame", "missing frame")
            return reader.decode_image(data, name, stats)
        self.check_frames_folder()
        if not os.path.isfile(name):
            raise CorruptExample(
                name, f"missing frame {k + 1} of video {self.name!r} (.jpg or .png)", "missing frame"
            )
        return reader.read_image(name, stats)


def read_video(example, stats=None) -> Video:
    """(split folder, video name) -> Video (the .mat read, frames left on disk); CorruptExample for a bad .mat."""
    base, name = example
    joints, boxes = read_info(os.path.join(base, "info", name + ".mat"))
    frames_dir = os.path.join(base, "frames", name)
    return Video(name, joints, boxes, os.path.join(base, "info", name + ".mat"), frames_dir=frames_dir)


def open_video(info_path) -> Video:
    """The Video of a .mat in the published layout (<split>/info/<video>.mat, its frames in
    <split>/frames/<video>/): for inference and animation on one video. CorruptExample for a bad .mat."""
    info = Path(info_path).expanduser()
    return read_video(
        (str(info.parent.parent), info.name[: -len(".mat")] if info.suffix == ".mat" else info.name)
    )


def _examples(root, split, stats=None):
    del stats
    base = str(_split_dir(root, split))
    return [(base, name) for name in list_videos(root, split)]


# ----------------------------------------------------------------------------------------------- geometry
def person_scale(joints) -> np.ndarray:
    """The released code's person size / 200 px: max(2.5 * upper body, 5 * mean calf length) / 200, the upper body
    being the mean hip y minus the head y. joints (..., 14, 2) -> (...) float64 (NaN for non-finite joints)."""
    j = np.asarray(joints, np.float64)
    upper = (j[..., R_HIP, 1] + j[..., L_HIP, 1]) / 2.0 - j[..., HEAD, 1]
    calf = (
        np.linalg.norm(j[..., R_KNEE, :] - j[..., R_ANKLE, :], axis=-1)
        + np.linalg.norm(j[..., L_KNEE, :] - j[..., L_ANKLE, :], axis=-1)
    ) / 2.0
    return np.maximum(2.5 * upper, 5.0 * calf) / PERSON_UNIT


def frame_scale(joints, box) -> float:
    """person_scale of one frame; where the joints give none (non-finite or not positive: joints missing or the
    person upside down) the larger side of its box / 200 stands in."""
    s = float(person_scale(joints))
    if not (math.isfinite(s) and s > 0):
        s = float(np.max(np.asarray(box, np.float64)[2:])) / PERSON_UNIT
    return s


def _box_centre(box, joints) -> np.ndarray:
    box = np.asarray(box, np.float64)
    centre = box[:2] + box[2:] / 2.0
    if not np.isfinite(centre).all():  # no usable box: the middle of the joints' extent
        j = np.asarray(joints, np.float64)
        j = j[np.isfinite(j).all(-1)]
        centre = (j.min(0) + j.max(0)) / 2.0 if len(j) else np.full(2, np.nan)
    return centre


def pair_crop(src_joints, src_box, tgt_joints, tgt_box, image_size=REFERENCE_SIZE) -> np.ndarray:
    """The (2, 3) affine taking frame pixels (x, y, 1) to crop pixels shared by both frames of a pair.

    scale = 1.14 * (image_size / 256) / max(person scale of either frame) (`person_scale`, the box side / 200
    where the joints give none); the mean of the two box centres (x + w/2, y + h/2) lands on the crop centre
    ((S - 1) / 2, (S - 1) / 2), as the released centre_and_scale_image. ValueError when the pair gives no finite
    scale or centre (e.g. every joint and box value missing).
    """
    s = max(frame_scale(src_joints, src_box), frame_scale(tgt_joints, tgt_box))
    centre = (_box_centre(src_box, src_joints) + _box_centre(tgt_box, tgt_joints)) / 2.0
    if not (math.isfinite(s) and s > 0 and np.isfinite(centre).all()):
        raise ValueError(f"cannot place the person: person scale {s}, centre {centre.tolist()}")
    scale = OBJECT_SCALE * (image_size / REFERENCE_SIZE) / s
    offset = (image_size - 1.0) / 2.0 - centre * scale
    return np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]])


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """One draw of the pair augmentation, applied identically to both frames (see the module docstring).

    flip: mirror horizontally (x -> S - 1 - x) and swap the joints by FLIP_PERMUTATION; scale: zoom about the
    crop centre; shift: (dx, dy) px added after the zoom; rotation: degrees, counter-clockwise as displayed
    (cv2.getRotationMatrix2D), about the crop centre; brightness: factor on the 0..255 pixels.
    """

    flip: bool = False
    scale: float = 1.0
    shift: tuple = (0.0, 0.0)
    rotation: float = 0.0
    brightness: float = 1.0

    @classmethod
    def draw(
        cls, rng, scale_range=(0.90, 1.05), max_shift=5.0, max_rotation=5.0, max_brightness=0.05, flip=True
    ) -> "Augmentation":
        """Flip with p = 0.5 (when `flip`), scale uniform in scale_range, each shift uniform in +-max_shift,
        rotation uniform in +-max_rotation, brightness uniform in 1 +- max_brightness (five draws from rng)."""
        flipped = bool(rng.random() < 0.5) and flip
        zoom = float(rng.uniform(*scale_range))
        shift = tuple(float(v) for v in rng.uniform(-max_shift, max_shift, 2))
        angle = float(rng.uniform(-max_rotation, max_rotation))
        bright = float(rng.uniform(1 - max_brightness, 1 + max_brightness))
        return cls(flipped, zoom, shift, angle, bright)

    def matrix(self, size) -> np.ndarray:
        """(3, 3) affine on crop pixels: rotation . shift . scale . flip (the released code's order)."""
        c = (size - 1.0) / 2.0
        flip = np.array([[-1.0, 0, size - 1.0], [0, 1, 0], [0, 0, 1]]) if self.flip else np.eye(3)
        zoom = np.array(
            [[self.scale, 0, c * (1 - self.scale)], [0, self.scale, c * (1 - self.scale)], [0, 0, 1]]
        )
        shift = np.array([[1.0, 0, self.shift[0]], [0, 1, self.shift[1]], [0, 0, 1]])
        rotate = np.vstack([cv2.getRotationMatrix2D((c, c), self.rotation, 1.0), [0, 0, 1]])
        return rotate @ shift @ zoom @ flip


def warp_frame(image, matrix, size) -> np.ndarray:
    """float32 (size, size, 3) 0..255: `image` (H, W, 3) seen through `matrix` (2, 3) (frame -> crop pixels),
    bilinear, black outside the frame. A frame shrunk by more than 1.5x is area-averaged to the crop's scale
    first (no aliasing); uint8 frames are warped as uint8 (then converted), float frames as float32."""
    matrix = np.asarray(matrix, np.float64)
    shrink = 1.0 / math.sqrt(abs(np.linalg.det(matrix[:, :2])))  # frame pixels per crop pixel
    if shrink > 1.5:
        h, w = image.shape[:2]
        small = cv2.resize(
            image, (max(1, round(w / shrink)), max(1, round(h / shrink))), interpolation=cv2.INTER_AREA
        )
        kx, ky = w / small.shape[1], h / small.shape[0]
        # small pixel q <-> frame pixel p = k q + (k - 1) / 2 (pixel centres)
        up = np.array([[kx, 0, (kx - 1) / 2], [0, ky, (ky - 1) / 2], [0, 0, 1]])
        image, matrix = small, (np.vstack([matrix, [0, 0, 1]]) @ up)[:2]
    if image.dtype != np.uint8:
        image = image.astype(np.float32)
    out = cv2.warpAffine(
        image, matrix, (int(size), int(size)), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return out.astype(np.float32)


def _to_unit(warped, brightness):
    pixels = warped * np.float32(brightness) if brightness != 1.0 else warped
    return np.clip(pixels / np.float32(127.5) - 1.0, -1.0, 1.0).astype(np.float32)


def _place_joints(joints, frame_shape, matrix, size, flip):
    """(joints (14, 2) float32 in crop pixels, visible (14,) bool) of frame joints seen through `matrix` (2, 3)."""
    j = np.asarray(joints, np.float64)
    h, w = frame_shape[:2]
    present = (
        np.isfinite(j).all(-1) & (j[:, 0] >= 0) & (j[:, 0] <= w - 1) & (j[:, 1] >= 0) & (j[:, 1] <= h - 1)
    )
    out = np.where(np.isfinite(j), j, 0.0) @ matrix[:, :2].T + matrix[:, 2]
    out[~np.isfinite(j).all(-1)] = (size - 1.0) / 2.0
    if flip:
        out, present = out[list(FLIP_PERMUTATION)], present[list(FLIP_PERMUTATION)]
    inside = (out >= 0).all(-1) & (out <= size - 1).all(-1)
    return out.astype(np.float32), present & inside


def prepare_pair(
    src_image,
    src_joints,
    src_box,
    tgt_image,
    tgt_joints,
    tgt_box,
    image_size=REFERENCE_SIZE,
    augment: Augmentation | None = None,
) -> dict:
    """One example of the pair: both frames through pair_crop (and `augment`, the same for both).

    Images (H, W, 3) RGB (uint8 or float 0..255), joints (14, 2) 0-based frame pixels, boxes (4,) [x, y, w, h].
    tgt_image may be None (inference: only the target pose is known): 'target' is then zeros and the target
    joints are checked against the source frame's size. Returns {'source', 'target' float32 (S, S, 3) in
    [-1, 1], 'source_joints', 'target_joints' float32 (14, 2) crop pixels, 'source_visible', 'target_visible'
    bool (14,)} with S = image_size. ValueError when the pair gives no crop (see pair_crop).
    """
    size = int(image_size)
    matrix = pair_crop(src_joints, src_box, tgt_joints, tgt_box, size)
    augment = augment or Augmentation()
    matrix = (augment.matrix(size) @ np.vstack([matrix, [0, 0, 1]]))[:2]
    source = _to_unit(warp_frame(src_image, matrix, size), augment.brightness)
    if tgt_image is None:
        target, tgt_shape = np.zeros((size, size, 3), np.float32), np.shape(src_image)
    else:
        target, tgt_shape = (
            _to_unit(warp_frame(tgt_image, matrix, size), augment.brightness),
            np.shape(tgt_image),
        )
    src_j, src_v = _place_joints(src_joints, np.shape(src_image), matrix, size, augment.flip)
    tgt_j, tgt_v = _place_joints(tgt_joints, tgt_shape, matrix, size, augment.flip)
    return {
        "source": source,
        "target": target,
        "source_joints": src_j,
        "target_joints": tgt_j,
        "source_visible": src_v,
        "target_visible": tgt_v,
    }


# ----------------------------------------------------------------------------------------------- pairs
def sample_pair(num_frames, rng, min_gap=MIN_GAP, available=None) -> tuple[int, int]:
    """(source, target) frame indices, uniform over the ordered pairs of distinct frames with |i - j| > min_gap *
    num_frames (the distribution of the released rejection loop), among `available` frames (default all).
    Two draws from rng. ValueError when no pair qualifies."""
    frames = np.arange(num_frames) if available is None else np.unique(np.asarray(available, np.int64))
    gap = math.floor(min_gap * num_frames) + 1  # the smallest integer gap > min_gap * n
    left = np.searchsorted(frames, frames - gap, side="right")  # partners j <= i - gap
    right = len(frames) - np.searchsorted(frames, frames + gap, side="left")  # partners j >= i + gap
    counts = left + right
    total = int(counts.sum())
    if total == 0:
        raise ValueError(
            f"no two frames of {num_frames} more than {min_gap} of the video ({gap - 1} frames) apart"
        )
    first = int(np.searchsorted(np.cumsum(counts), rng.integers(total), side="right"))
    r = int(rng.integers(counts[first]))
    partner = r if r < left[first] else len(frames) - right[first] + (r - left[first])
    return int(frames[first]), int(frames[partner])


def _check_gap(min_gap):
    if not 0 <= min_gap < 1:
        raise ValueError(f"min_gap must be in [0, 1) (a fraction of the video), got {min_gap}")


def _has_pair(num_frames, min_gap) -> bool:
    return math.floor(min_gap * num_frames) + 1 <= num_frames - 1


def _usable_videos(root, split, min_gap, source, tfds_data_dir, stats):
    """(read, {video name: (its example, frame count)}) of the split's videos whose .mat reads and that have a
    qualifying pair; videos with a bad .mat are skipped and counted in stats."""
    examples, read, _ = READER.source(root, split, source, tfds_data_dir, stats)
    videos = {}
    for example in examples:
        try:
            video = read(example, stats)
        except CorruptExample as e:
            stats.record_skip(e.path, e.reason, e.kind)
            continue
        if _has_pair(video.num_frames, min_gap):
            videos[video.name] = (example, video.num_frames)
    return read, videos


def _draw_pairs(frame_counts: dict, num_pairs, seed, min_gap) -> list:
    names = sorted(frame_counts)
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(int(num_pairs) if names else 0):
        video = names[int(rng.integers(len(names)))]
        pairs.append((video, *sample_pair(frame_counts[video], rng, min_gap)))
    return pairs


def test_pairs(
    root,
    split="test",
    num_pairs=500,
    seed=0,
    min_gap=MIN_GAP,
    *,
    source="folders",
    tfds_data_dir=None,
    stats=None,
) -> list[tuple[str, int, int]]:
    """The seeded evaluation pairs of `split`: num_pairs (video name, source frame, target frame), each a video
    drawn uniformly (among those whose .mat reads and that have a qualifying pair; sorted by name) and then
    `sample_pair`, all from default_rng(seed). Depends only on the .mat files (a missing frame masks its pair
    out at evaluation), so both sources give the same list. Videos with a bad .mat are counted in `stats`."""
    _check_gap(min_gap)
    stats = stats if stats is not None else READER.builder.STATS()
    _, videos = _usable_videos(root, split, min_gap, source, tfds_data_dir, stats)
    return _draw_pairs({name: n for name, (_, n) in videos.items()}, num_pairs, seed, min_gap)


test_pairs.__test__ = False  # not a pytest test


# ----------------------------------------------------------------------------------------------- TFDS
class PoseVideos(reader.FolderBuilder):
    """Pose videos in the published layout (manual_dir), one record per video in the folder reader's order:
    name, joints (n, 14, 2) and boxes (n, 4) as read_info gives them, and the original bytes of every frame
    (b'' for a missing frame, skipped when a stream draws it). A video with a bad .mat is skipped, logged and
    counted in `self.stats` during generation."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the data set's train / test folders into manual_dir:
    <split>/frames/<video>/<k>.jpg|png   (k = frame index + 1)
    <split>/info/<video>.mat             (struct data: X (14, 2, n) 1-based joints, bbox (n, 4))
  (see input_pipeline/posewarp.py and the README's data layouts).
  """
    DESCRIPTION = "Videos of people (golf, yoga / workout, tennis) with 14 joints and a box per frame."
    HOMEPAGE = "https://github.com/balakg/posewarp-cvpr2018"
    CITATION = (
        "@inproceedings{balakrishnan2018synthesizing, title={Synthesizing Images of Humans in Unseen Poses}, "
        "author={Balakrishnan, Guha and Zhao, Amy and Dalca, Adrian V. and Durand, Fredo and Guttag, John}, "
        "booktitle={CVPR}, year={2018}}"
    )
    SPLITS = {"train": "train", "test": "test"}
    UNDECODED = ()

    def features(self):
        return tfds.features.FeaturesDict(
            {
                "name": tfds.features.Text(),
                "joints": tfds.features.Tensor(shape=(None, NUM_JOINTS, 2), dtype=np.float32),
                "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
                "frames": tfds.features.Tensor(shape=(None,), dtype=np.object_),
            }
        )

    def split_examples(self, root):
        found = {}
        for split in SPLITS:
            try:
                found[split] = _examples(root, split)
            except FileNotFoundError:
                continue
        if not found:
            raise FileNotFoundError(f"no pose videos found under {root}: looked for {_LOOKED_FOR}")
        return found

    def encode(self, example):
        video = read_video(example, self.stats)
        frames = []
        for k in range(video.num_frames):
            path = video.frame_name(k)
            frames.append(Path(path).read_bytes() if os.path.isfile(path) else b"")
        return {"name": video.name, "joints": video.joints, "boxes": video.boxes, "frames": frames}


def _read_record(record, name, stats=None) -> Video:
    frames = tuple(bytes(f) for f in record["frames"])
    video_name = record["name"].decode("utf-8") if isinstance(record["name"], bytes) else str(record["name"])
    joints = np.asarray(record["joints"], np.float32).reshape(-1, NUM_JOINTS, 2)
    boxes = np.asarray(record["boxes"], np.float32).reshape(-1, 4)
    return Video(video_name, joints, boxes, f"{name} ({video_name})", frame_bytes=frames)


READER = reader.Reader(
    name="pose-video",
    list_examples=_examples,
    read=read_video,
    example_name=lambda example: os.path.join(example[0], "info", example[1] + ".mat"),
    builder=PoseVideos,
    read_record=_read_record,
)
prepare_tfds = READER.prepare_tfds
num_videos = READER.num_examples


# ----------------------------------------------------------------------------------------------- streams
def _spec(size):
    return {
        "source": Feature((size, size, 3), np.float32),
        "target": Feature((size, size, 3), np.float32),
        "source_joints": Feature((NUM_JOINTS, 2), np.float32),
        "target_joints": Feature((NUM_JOINTS, 2), np.float32),
        "source_visible": Feature((NUM_JOINTS,), np.bool_),
        "target_visible": Feature((NUM_JOINTS,), np.bool_),
    }


def pair_example(video: Video, i, j, image_size, augment=None, stats=None) -> dict:
    """prepare_pair of frames i (source) and j (target) of `video`; CorruptExample for an unusable frame or a
    pair that gives no crop."""
    src, tgt = video.read_frame(i, stats), video.read_frame(j, stats)
    try:
        return prepare_pair(
            src, video.joints[i], video.boxes[i], tgt, video.joints[j], video.boxes[j], image_size, augment
        )
    except ValueError as e:
        raise CorruptExample(video.source, f"frames {i + 1} and {j + 1}: {e}", "bad joints") from None


def train_example(video: Video, rng, stats=None, *, image_size=REFERENCE_SIZE, min_gap=MIN_GAP, augment=None):
    """One training pair of `video`: `augment` (a dict of Augmentation.draw's arguments, None = off) drawn first,
    then pairs by sample_pair until both frames read; an unusable frame is skipped, counted in stats and left
    out of the later draws. CorruptExample for the video when no qualifying pair of usable frames is left."""
    video.check_frames_folder()
    aug = Augmentation.draw(rng, **augment) if augment is not None else None
    usable = set(range(video.num_frames))
    while True:
        try:
            i, j = sample_pair(video.num_frames, rng, min_gap, sorted(usable))
        except ValueError as e:
            raise CorruptExample(video.source, f"no usable pair of frames: {e}", "no frame pair") from None
        try:
            return pair_example(video, i, j, image_size, aug, stats)
        except CorruptExample as e:
            if e.kind == "bad joints":
                raise
            if stats is not None:
                stats.record_skip(e.path, e.reason, e.kind)
            usable -= {k for k in (i, j) if e.path == video.frame_name(k)} or {i, j}


def _augment_args(image_size, scale_range, max_shift, max_rotation, max_brightness, flip):
    shift = 5.0 * image_size / REFERENCE_SIZE if max_shift is None else float(max_shift)
    lo, hi = (float(v) for v in scale_range)
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range {scale_range} must satisfy 0 < lo <= hi")
    return dict(
        scale_range=(lo, hi),
        max_shift=shift,
        max_rotation=float(max_rotation),
        max_brightness=float(max_brightness),
        flip=bool(flip),
    )


def train_stream(
    root,
    *,
    batch_size,
    image_size=REFERENCE_SIZE,
    min_gap=MIN_GAP,
    augment=True,
    scale_range=(0.90, 1.05),
    max_shift=None,
    max_rotation=5.0,
    max_brightness=0.05,
    flip=True,
    **stream_args,
):
    """Infinite, resumable training pairs of this host (batch_size per host) from the 'train' split.

    Yields {'source', 'target' float32 (B, S, S, 3) in [-1, 1], 'source_joints', 'target_joints' float32
    (B, 14, 2) crop pixels, 'source_visible', 'target_visible' bool (B, 14)}, S = image_size; one pair per
    video slot of the pipeline's order (see train_example and the module docstring). augment: the pair
    augmentation on / off; its ranges (max_shift None = 5 px x image_size / 256). stream_args: seed,
    start_index (examples this host already consumed: step * batch_size), process_index, process_count, source
    ('folders' | 'tfds'), tfds_data_dir, stats (see reader.Reader.train_stream).
    """
    _check_gap(min_gap)
    size = int(image_size)
    args = (
        _augment_args(size, scale_range, max_shift, max_rotation, max_brightness, flip) if augment else None
    )

    def example(video, rng, stats, name):
        return train_example(video, rng, stats, image_size=size, min_gap=min_gap, augment=args)

    return READER.train_stream(root, example, _spec(size), batch_size=batch_size, **stream_args)


def eval_stream(
    root,
    *,
    batch_size,
    split="test",
    num_pairs=500,
    seed=0,
    image_size=REFERENCE_SIZE,
    min_gap=MIN_GAP,
    limit=None,
    process_index=0,
    process_count=1,
    source="folders",
    tfds_data_dir=None,
    stats=None,
):
    """Finite evaluation batches over this host's shard of test_pairs(root, split, num_pairs, seed, min_gap)
    (the first `limit`), without augmentation: the train_stream keys plus 'mask' (B,) bool (False for padding
    and for pairs with a missing or corrupt frame, counted in `stats`)."""
    _check_gap(min_gap)
    stats = stats if stats is not None else READER.builder.STATS()
    size = int(image_size)
    read, videos = _usable_videos(root, split, min_gap, source, tfds_data_dir, stats)
    counts = {name: n for name, (_, n) in videos.items()}
    pairs = _draw_pairs(counts, num_pairs, seed, min_gap)  # = test_pairs(root, split, ...)
    pairs = pairs[:limit] if limit is not None else pairs
    where = READER.where(root, split, source)
    if not pairs:
        if stats.skip_kinds:
            raise pipeline.NoUsableExamples(
                f"no usable examples in the {where}: no video with a readable .mat and two frames more than "
                f"{min_gap} of it apart ({pipeline.describe_skips(stats.skip_kinds)}); fix or replace those files"
            )
        raise pipeline.empty_split(where)

    def load(pair):
        name, i, j = pair
        return pair_example(read(videos[name][0], stats), i, j, size, None, stats)

    return pipeline.eval_stream(
        pairs,
        load,
        _spec(size),
        batch_size=batch_size,
        process_index=process_index,
        process_count=process_count,
        stats=stats,
        where=where,
    )
