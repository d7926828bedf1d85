"""Draw one person: LIP part labels, body segments and colours, from a placed skeleton and an outfit.

Everything is drawn with cv2 (thick polylines = capsules, filled polygons, ellipses) into one uint8 layer of
drawing codes; each code stands for a (LIP class, body segment) pair, so `parts` and `segments` are two table
look-ups. Limbs are drawn back to front by camera depth (the far arm behind the torso in a side view, long hair
behind the back in a frontal view). Skin that shows is the arm/leg/face class; clothing drawn over a limb takes
the clothing class, as in LIP. The person's LEFT arm (COCO left_shoulder/elbow/wrist) is Left-arm (14), etc.;
hands belong to the arm classes (or Glove), the neck to Face.
"""

import dataclasses

import cv2
import numpy as np

from input_pipeline.synthetic import outfit as of
from input_pipeline.synthetic import skeleton as sk
from input_pipeline.synthetic import texture

# Body segments: which piece of the body a pixel belongs to (for keypoint self-occlusion).
(
    TORSO,
    HEAD,
    L_UPPER_ARM,
    L_FOREARM,
    L_HAND,
    R_UPPER_ARM,
    R_FOREARM,
    R_HAND,
    L_THIGH,
    L_SHIN,
    L_FOOT,
    R_THIGH,
    R_SHIN,
    R_FOOT,
    SKIRT,
    HAIR,
    SCARF,
) = range(1, 18)
NUM_SEGMENTS = 18

# Per COCO keypoint, the segments on which it counts as visible (clothes over a joint do not hide it).
KEYPOINT_SEGMENTS = (
    (HEAD,),
    (HEAD,),
    (HEAD,),
    (HEAD,),
    (HEAD,),
    (TORSO, L_UPPER_ARM, SCARF, HAIR),
    (TORSO, R_UPPER_ARM, SCARF, HAIR),
    (L_UPPER_ARM, L_FOREARM),
    (R_UPPER_ARM, R_FOREARM),
    (L_FOREARM, L_HAND),
    (R_FOREARM, R_HAND),
    (TORSO, L_THIGH, SKIRT),
    (TORSO, R_THIGH, SKIRT),
    (L_THIGH, L_SHIN, SKIRT),
    (R_THIGH, R_SHIN, SKIRT),
    (L_SHIN, L_FOOT),
    (R_SHIN, R_FOOT),
)
VISIBLE_ON = np.zeros((17, NUM_SEGMENTS), bool)  # (17, segments) look-up table
for _k, _segs in enumerate(KEYPOINT_SEGMENTS):
    VISIBLE_ON[_k, list(_segs)] = True

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate drawing


def _fix(points):
    return np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32)


class _Canvas:
    """A uint8 layer of drawing codes plus the (class, segment) table behind the codes."""

    def __init__(self, shape):
        self.codes = np.zeros(shape, np.uint8)  # (H, W)
        self.classes, self.segments, self._ids = [0], [0], {}

    def _code(self, cls, seg):
        if (cls, seg) not in self._ids:
            self._ids[(cls, seg)] = len(self.classes)
            self.classes.append(cls)
            self.segments.append(seg)
        return self._ids[(cls, seg)]

    def chain(self, points, thickness, cls, seg):
        """Thick polyline with round caps through (n, 2) points."""
        pts = _fix(points).reshape(-1, 1, 2)
        cv2.polylines(
            self.codes, [pts], False, self._code(cls, seg), max(1, int(round(thickness))), cv2.LINE_8, _SHIFT
        )

    def polygon(self, points, cls, seg):
        cv2.fillPoly(self.codes, [_fix(points)], self._code(cls, seg), cv2.LINE_8, _SHIFT)

    def ellipse(self, center, axes, angle, cls, seg, start=0, end=360):
        axes = np.maximum(_fix(axes), 1 << (_SHIFT - 1))
        cv2.ellipse(
            self.codes,
            tuple(int(v) for v in _fix(center)),
            tuple(int(v) for v in axes),
            float(angle),
            start,
            end,
            self._code(cls, seg),
            -1,
            cv2.LINE_8,
            _SHIFT,
        )


@dataclasses.dataclass
class PersonRaster:
    """One person drawn alone (unoccluded) at full image size."""

    codes: np.ndarray  # (H, W) uint8 drawing codes, 0 = not this person
    class_lut: np.ndarray  # (256,) uint8: code -> LIP class
    segment_lut: np.ndarray  # (256,) uint8: code -> body segment
    skeleton: sk.Skeleton
    outfit: of.Outfit

    @property
    def parts(self):
        return self.class_lut[self.codes]  # (H, W) uint8 LIP classes

    @property
    def segments(self):
        return self.segment_lut[self.codes]  # (H, W) uint8 body segments

    @property
    def mask(self):
        return self.codes > 0  # (H, W) bool


def _partial_chain(canvas, points, lengths, thicknesses, fraction, cls, segs, start=0.0):
    """Draw the part [start, fraction] (of the summed 3-D `lengths`) of the polyline `points` (n, 2)."""
    bounds = np.concatenate([[0.0], np.cumsum(lengths)]) / np.sum(lengths)
    for j in range(len(lengths)):
        lo, hi = max(start, bounds[j]), min(fraction, bounds[j + 1])
        if hi <= lo:
            continue
        a, b = points[j], points[j + 1]
        f = lambda x: a + (b - a) * (x - bounds[j]) / (bounds[j + 1] - bounds[j])  # noqa: E731
        canvas.chain(np.stack([f(lo), f(hi)]), thicknesses[j], cls, segs[j])


class _TorsoFrame:
    """Image frame of the torso: axis from neck (t=0) to pelvis (t=1), half-widths in px along it."""

    def __init__(self, s):
        p, b, px = s.points, s.body, s.scale
        axis = p[sk.PELVIS] - p[sk.NECK]
        length = np.linalg.norm(axis)
        if length < 0.05 * px:  # torso points at the camera: fall back to the rolled vertical
            r = np.radians(s.roll)
            axis, length = np.array([-np.sin(r), np.cos(r)]) * 0.05 * px, 0.05 * px
        self.neck, self.u, self.length = p[sk.NECK], axis / length, length
        self.v = np.array([self.u[1], -self.u[0]])  # image-right for an upright person
        side = abs(np.sin(np.radians(s.angles.yaw))) * b.torso_depth * px
        self.w_shoulder = max(0.5 * np.linalg.norm(p[sk.L_SHOULDER] - p[sk.R_SHOULDER]), 0.5 * side)
        self.w_shoulder += 0.3 * b.arm_t * px
        self.w_hip = max(0.5 * np.linalg.norm(p[sk.L_HIP] - p[sk.R_HIP]), 0.55 * side) + 0.4 * b.thigh_t * px
        self.w_waist = 0.92 * min(self.w_shoulder, self.w_hip)

    def half_width(self, t, flare=0.0):
        if t <= 0:
            return self.w_shoulder
        if t <= 0.6:
            return self.w_shoulder + (self.w_waist - self.w_shoulder) * t / 0.6
        if t <= 1:
            return self.w_waist + (self.w_hip - self.w_waist) * (t - 0.6) / 0.4
        return self.w_hip * (1 + flare * (t - 1))

    def quad(self, s0, s1, t0, t1, flare=0.0):
        """Polygon (n, 2) between lateral fractions s0 < s1 (of the half-width) and axis fractions t0 < t1."""
        ts = [t0] + [t for t in (0.6, 1.0) if t0 < t < t1] + [t1]
        c = [self.neck + self.u * self.length * t for t in ts]
        w = [self.half_width(t, flare) for t in ts]
        left = [ci + self.v * s0 * wi for ci, wi in zip(c, w)]
        right = [ci + self.v * s1 * wi for ci, wi in zip(c, w)]
        return np.array(left + right[::-1])


def _draw_leg(cv, s, o, left):
    """Leg skin, socks, pants / jumpsuit legs, shoe (person's left leg when `left`)."""
    p, b, px = s.points, s.body, s.scale
    hip, knee, ankle, heel, toe = (
        p[i]
        for i in (
            (sk.L_HIP, sk.L_KNEE, sk.L_ANKLE, sk.L_HEEL, sk.L_TOE)
            if left
            else (sk.R_HIP, sk.R_KNEE, sk.R_ANKLE, sk.R_HEEL, sk.R_TOE)
        )
    )
    leg, shoe = (of.LEFT_LEG, of.LEFT_SHOE) if left else (of.RIGHT_LEG, of.RIGHT_SHOE)
    thigh_seg, shin_seg, foot_seg = (L_THIGH, L_SHIN, L_FOOT) if left else (R_THIGH, R_SHIN, R_FOOT)
    cv.chain([hip, knee], b.thigh_t * px, leg, thigh_seg)
    cv.chain([knee, ankle], b.shin_t * px, leg, shin_seg)
    if o.socks > 0:
        cv.chain([ankle, ankle + (knee - ankle) * o.socks], 1.12 * b.shin_t * px, of.SOCKS, shin_seg)
    if o.pants_shaped:
        _partial_chain(
            cv,
            np.stack([hip, knee, ankle]),
            (b.thigh, b.shin),
            (1.25 * b.thigh_t * px, 1.3 * b.shin_t * px),
            o.bottom_length,
            o.bottom,
            (thigh_seg, shin_seg),
        )
    cv.chain([heel, toe], b.foot_t * px, shoe if o.shoes else leg, foot_seg)


def _draw_arm(cv, s, o, left):
    """Arm and hand skin, sleeves of the top and of the coat, glove."""
    p, b, px = s.points, s.body, s.scale
    idx = (
        (sk.L_SHOULDER, sk.L_ELBOW, sk.L_WRIST, sk.L_HAND)
        if left
        else (sk.R_SHOULDER, sk.R_ELBOW, sk.R_WRIST, sk.R_HAND)
    )
    sh, el, wr, hand = (p[i] for i in idx)
    arm = of.LEFT_ARM if left else of.RIGHT_ARM
    segs = (L_UPPER_ARM, L_FOREARM, L_HAND) if left else (R_UPPER_ARM, R_FOREARM, R_HAND)
    cv.chain([sh, el], b.arm_t * px, arm, segs[0])
    cv.chain([el, wr], b.forearm_t * px, arm, segs[1])
    cv.chain([wr, hand], b.hand_t * px, arm, segs[2])
    chain, lengths = np.stack([sh, el, wr]), (b.upper_arm, b.forearm)
    if o.sleeve > 0:
        _partial_chain(
            cv, chain, lengths, (1.3 * b.arm_t * px, 1.3 * b.forearm_t * px), o.sleeve, o.top, segs
        )
    if o.coat:
        _partial_chain(
            cv, chain, lengths, (1.45 * b.arm_t * px, 1.45 * b.forearm_t * px), o.coat_sleeve, of.COAT, segs
        )
    if o.gloves:
        cv.chain([wr + (el - wr) * 0.15, hand], 1.1 * b.hand_t * px, of.GLOVE, segs[2])


def _draw_torso(cv, s, o):
    """Pants / jumpsuit seat, the top, skirt or dress hem, coat (open in front), neck, scarf."""
    p, b, px = s.points, s.body, s.scale
    fr = _TorsoFrame(s)
    below = (b.thigh + b.shin) * px / fr.length  # one leg length in axis units
    if o.pants_shaped:
        cv.polygon(fr.quad(-1, 1, 0.8, 1.12), o.bottom, TORSO)
    cv.polygon(fr.quad(-1, 1, -0.06, 1.02), o.top, TORSO)
    for i in (sk.L_SHOULDER, sk.R_SHOULDER):
        cv.ellipse(p[i], (0.6 * b.arm_t * px,) * 2, 0, o.top, TORSO)
    if o.bottom in (of.SKIRT, of.DRESS):
        cv.polygon(fr.quad(-1.02, 1.02, 0.85, 1 + o.bottom_length * below, flare=0.55), o.bottom, SKIRT)
    if o.coat:
        facing = s.facing()
        gap = 0.3 * facing if facing > 0.3 else 0.0
        shift = -0.35 * np.sin(np.radians(s.angles.yaw))
        t_end = 1 + o.coat_length * below
        for s0, s1 in ((-1.08, shift - gap), (shift + gap, 1.08)):
            cv.polygon(fr.quad(s0, s1, -0.08, t_end, flare=0.5), of.COAT, TORSO)
        for i in (sk.L_SHOULDER, sk.R_SHOULDER):
            cv.ellipse(p[i], (0.7 * b.arm_t * px,) * 2, 0, of.COAT, TORSO)
    cv.chain([fr.neck + fr.u * 0.05 * fr.length, p[sk.HEAD]], b.neck_t * px, of.FACE, HEAD)
    if o.scarf:
        ends = [p[i] * 0.55 + fr.neck * 0.45 for i in (sk.L_SHOULDER, sk.R_SHOULDER)]
        low = fr.neck + fr.u * 0.06 * fr.length
        cv.chain([ends[0], low, ends[1]], 1.4 * b.neck_t * px, of.SCARF, SCARF)
        if s.facing() > 0.2:
            w = fr.w_shoulder
            cv.chain(
                [low + fr.v * 0.15 * w, low + fr.u * 0.45 * fr.length + fr.v * 0.25 * w],
                0.8 * b.neck_t * px,
                of.SCARF,
                SCARF,
            )


def _head_frame(s):
    """Head centre (2,), radii rx, ry in px, and the head's image up / right unit vectors."""
    b, px = s.body, s.scale
    a = np.radians(s.head_angle)
    up, right = np.array([np.sin(a), -np.cos(a)]), np.array([np.cos(a), np.sin(a)])
    return s.points[sk.HEAD], b.head_rx * px, b.head_ry * px, up, right


def _draw_long_hair(cv, s, o):
    """Long hair hanging from the back of the head (behind the back in a frontal view)."""
    c, rx, ry, up, right = _head_frame(s)
    top = s.points[sk.HAIR_BACK] + up * 0.5 * ry
    bottom = s.points[sk.HAIR_BACK] - up * (ry + o.hair_length * s.scale)
    cv.polygon(
        [
            top - right * 1.05 * rx,
            top + right * 1.05 * rx,
            bottom + right * 1.25 * rx,
            bottom - right * 1.25 * rx,
        ],
        of.HAIR,
        HAIR,
    )
    cv.ellipse(c, (1.06 * rx, 1.04 * ry), s.head_angle, of.HAIR, HAIR)


def _draw_head(cv, s, o):
    """Head as hair, face towards the camera, fringe, hat, sunglasses."""
    c, rx, ry, up, right = _head_frame(s)
    f = s.facing(head=True)
    hair = o.hair != "none"
    cv.ellipse(
        c, (1.04 * rx, 1.02 * ry) if hair else (rx, ry), s.head_angle, of.HAIR if hair else of.FACE, HEAD
    )
    if hair and f > -0.15:
        cv.ellipse(
            s.points[sk.FACE], ((0.5 + 0.35 * max(f, 0.0)) * rx, 0.8 * ry), s.head_angle, of.FACE, HEAD
        )
        cv.ellipse(c + up * 0.6 * ry, (1.04 * rx, (0.38 + 0.1 * o.fringe) * ry), s.head_angle, of.HAIR, HEAD)
    if o.hat:
        base = c + up * 0.35 * ry
        cv.ellipse(base, (1.12 * rx, 0.8 * ry), s.head_angle, of.HAT, HEAD, 180, 360)
        cv.chain([base - right * 1.35 * rx, base + right * 1.35 * rx], max(1.0, 0.18 * ry), of.HAT, HEAD)
    if o.sunglasses and f > 0.2:
        eyes = [s.points[i] for i in (sk.L_EYE, sk.R_EYE) if s.head_depth(i) < 0]
        for e in eyes:
            cv.ellipse(e, (0.3 * rx, 0.2 * ry), s.head_angle, of.SUNGLASSES, HEAD)
        if len(eyes) == 2:
            cv.chain(eyes, max(1.0, 0.08 * rx), of.SUNGLASSES, HEAD)


def rasterize_person(s, o, shape):
    """Draw skeleton `s` wearing outfit `o` into an (H, W) = `shape` PersonRaster (drawing order by depth)."""
    d = s.depth
    torso_key = 0.5 * (d[sk.NECK] + d[sk.PELVIS]) + 0.05
    groups = []  # (depth key: larger = drawn earlier, draw function)
    for left in (True, False):
        arm = (
            [sk.L_SHOULDER, sk.L_ELBOW, sk.L_WRIST, sk.L_HAND]
            if left
            else [sk.R_SHOULDER, sk.R_ELBOW, sk.R_WRIST, sk.R_HAND]
        )
        leg = [sk.L_HIP, sk.L_KNEE, sk.L_ANKLE] if left else [sk.R_HIP, sk.R_KNEE, sk.R_ANKLE]
        groups.append(
            (max(d[leg].mean(), torso_key + 0.005), lambda cv, left=left: _draw_leg(cv, s, o, left))
        )
        groups.append((d[arm].mean(), lambda cv, left=left: _draw_arm(cv, s, o, left)))
    groups.append((torso_key, lambda cv: _draw_torso(cv, s, o)))
    groups.append((d[sk.HEAD] - 0.02, lambda cv: _draw_head(cv, s, o)))
    if o.hair == "long":
        key = d[sk.HEAD] + 4.0 * (d[sk.HAIR_BACK] - d[sk.HEAD])
        groups.append((key, lambda cv: _draw_long_hair(cv, s, o)))
    cv = _Canvas(shape)
    for _, draw in sorted(groups, key=lambda g: -g[0]):  # stable: ties keep insertion order
        draw(cv)
    lut_c, lut_s = np.zeros(256, np.uint8), np.zeros(256, np.uint8)
    lut_c[: len(cv.classes)], lut_s[: len(cv.segments)] = cv.classes, cv.segments
    return PersonRaster(cv.codes, lut_c, lut_s, s, o)


def colorize(raster, rng):
    """Colours (H, W, 3) float32 in 0..255 of the person (0 outside its mask): textures, shading, outlines."""
    h, w = raster.codes.shape
    out = np.zeros((h, w, 3), np.float32)
    x, y, bw, bh = cv2.boundingRect(raster.mask.astype(np.uint8))
    if bw == 0:
        return out
    codes = raster.codes[y : y + bh, x : x + bw]  # (bh, bw) box around the person
    parts = raster.class_lut[codes]
    box = out[y : y + bh, x : x + bw]
    for cls in np.unique(parts)[1:]:
        m = parts == cls
        yy, xx = np.nonzero(m)
        box[m] = texture.texture_colors(raster.outfit.garments[int(cls)], yy + y, xx + x, rng)
    s = raster.skeleton
    light = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[y : y + bh, x : x + bw].astype(np.float32)
    c = s.points[sk.PELVIS]
    shade = 1 + 0.5 * ((xx - c[0]) * np.cos(light) + (yy - c[1]) * np.sin(light)) / s.scale
    box *= np.clip(shade, 0.6, 1.35)[..., None]
    edge = np.zeros(codes.shape, bool)
    edge[1:] |= codes[1:] != codes[:-1]
    edge[:, 1:] |= codes[:, 1:] != codes[:, :-1]
    box[edge & (codes > 0)] *= 0.7
    _, rx, ry, _, _ = _head_frame(s)
    if rx >= 4 and s.facing(head=True) > 0.2 and not raster.outfit.sunglasses:
        for i in (sk.L_EYE, sk.R_EYE):
            ex, ey = (int(round(v)) for v in s.points[i])
            on_head = 0 <= ex < w and 0 <= ey < h and raster.segment_lut[raster.codes[ey, ex]] == HEAD
            if s.head_depth(i) < 0 and on_head:
                cv2.circle(
                    out, tuple(int(round(v)) for v in s.points[i]), max(1, int(0.12 * rx)), (25, 20, 20), -1
                )
    return np.clip(out, 0, 255)
