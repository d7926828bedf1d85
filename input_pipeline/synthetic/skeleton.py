"""Random articulated skeletons: body proportions, joint angles, forward kinematics and projection.

A person is built in a 3-D body frame (units: standing body height ~ 1, origin at the pelvis):
x = the person's LEFT, y = down, z = the person's back (forward is -z). The camera looks along +z; a yaw of 0
means the person faces the camera, so the person's left side lands on the image right, as in COCO and LIP.
`place` turns the 3-D points into image pixels (orthographic projection, in-plane rotation, scale, shift) and
keeps the camera depth of every point so that body.py can draw limbs in depth order.

Points (index into `Skeleton.points`): the 17 COCO keypoints (jhuman.classes.COCO_KEYPOINTS order) followed by
the helper points below.
"""

import dataclasses

import numpy as np

NECK, PELVIS, HEAD, L_HAND, R_HAND, L_HEEL, R_HEEL, L_TOE, R_TOE, FACE, HAIR_BACK = range(17, 28)
NUM_POINTS = 28
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = range(5)
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = range(5, 11)
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = range(11, 17)

POSE_KINDS = ("stand", "walk", "arms_up", "sit", "random")
_POSE_PROBS = (0.3, 0.25, 0.15, 0.12, 0.18)

# Head-local offsets (units: head_rx sideways/depth, head_ry vertical) of the face points, before head yaw.
_HEAD_OFFSETS = {
    NOSE: (0.0, 0.2, -0.8),
    L_EYE: (0.33, -0.1, -0.72),
    R_EYE: (-0.33, -0.1, -0.72),
    L_EAR: (0.85, 0.0, 0.1),
    R_EAR: (-0.85, 0.0, 0.1),
    FACE: (0.0, 0.2, -0.45),
    HAIR_BACK: (0.0, 0.3, 0.5),
}


@dataclasses.dataclass(frozen=True)
class Body:
    """Proportions of one person, in units of the standing body height (head top to sole ~ 1)."""

    head_rx: float
    head_ry: float
    neck: float
    torso: float  # neck (shoulder line) to pelvis (hip joints)
    shoulder_w: float
    hip_w: float
    torso_depth: float
    upper_arm: float
    forearm: float
    hand: float
    thigh: float
    shin: float
    foot: float
    ankle_h: float
    arm_t: float  # limb thicknesses (diameters)
    forearm_t: float
    hand_t: float
    thigh_t: float
    shin_t: float
    foot_t: float
    neck_t: float


@dataclasses.dataclass(frozen=True)
class Angles:
    """Joint angles in degrees; per-side arrays are (2,) = [left, right]."""

    yaw: float  # body orientation about the vertical axis: 0 faces the camera, 90 shows the left side
    head_yaw: float
    nod: float
    lean: float  # forward bend of the spine
    side_bend: float
    twist: float  # shoulders against hips
    arm_abduct: np.ndarray  # upper arm: 0 = down, 90 = sideways, 180 = up
    arm_flex: np.ndarray  # upper arm: positive = forward
    forearm_abduct: np.ndarray
    forearm_flex: np.ndarray
    leg_abduct: np.ndarray
    leg_flex: np.ndarray  # thigh: positive = forward
    knee: np.ndarray  # knee bend (shin goes backward)
    foot_out: np.ndarray
    kind: str = "stand"


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """One placed person: image points (NUM_POINTS, 2) as (x, y) pixels, camera depth (NUM_POINTS,)."""

    points: np.ndarray  # (28, 2) float64, (x, y)
    depth: np.ndarray  # (28,) larger = farther, in body heights
    body: Body
    angles: Angles
    scale: float  # pixels per body height
    roll: float  # in-plane rotation, degrees
    head_angle: float  # head ellipse rotation for cv2.ellipse, degrees

    @property
    def keypoints(self):
        return self.points[:17]  # (17, 2)

    def facing(self, head=False):
        """cos of the yaw: 1 = faces the camera, -1 = shows the back."""
        yaw = self.angles.yaw + (self.angles.head_yaw if head else 0.0)
        return float(np.cos(np.radians(yaw)))

    def head_depth(self, index):
        """Depth of a face point relative to the head centre, in units of head_rx (negative = towards camera)."""
        return (self.depth[index] - self.depth[HEAD]) / self.body.head_rx

    def extent(self):
        """(x0, y0, x1, y1) pixel box around the whole drawn person (limbs, head, hair, hat)."""
        b, s = self.body, self.scale
        pad = 0.6 * max(b.thigh_t, b.arm_t) * s
        lo = self.points.min(0) - pad
        hi = self.points.max(0) + pad
        head_r = 1.45 * max(b.head_rx, b.head_ry) * s
        lo = np.minimum(lo, self.points[HEAD] - head_r)
        hi = np.maximum(hi, self.points[HEAD] + head_r)
        return np.concatenate([lo, hi])


def sample_body(rng):
    """Random proportions: build (thin..heavy), head size and limb lengths jittered around an adult."""
    build = rng.uniform(0.85, 1.35)
    head = rng.uniform(0.92, 1.15)
    limb = rng.uniform(0.95, 1.05)
    j = lambda v: v * rng.uniform(0.94, 1.06)  # noqa: E731
    return Body(
        head_rx=0.054 * head,
        head_ry=0.068 * head,
        neck=j(0.035),
        torso=j(0.29),
        shoulder_w=j(0.235) * (0.9 + 0.1 * build),
        hip_w=j(0.16) * (0.85 + 0.15 * build),
        torso_depth=0.12 * build,
        upper_arm=0.17 * limb,
        forearm=0.15 * limb,
        hand=0.065,
        thigh=0.235 * limb,
        shin=0.225 * limb,
        foot=0.085,
        ankle_h=0.03,
        arm_t=0.06 * build,
        forearm_t=0.05 * build,
        hand_t=0.045 * build,
        thigh_t=0.085 * build,
        shin_t=0.062 * build,
        foot_t=0.042,
        neck_t=0.045 * build,
    )


def sample_yaw(rng):
    """Mostly frontal, some three-quarter, side and back views (degrees)."""
    r = rng.random()
    sign = rng.choice((-1.0, 1.0))
    if r < 0.45:
        return rng.uniform(-30, 30)
    if r < 0.7:
        return sign * rng.uniform(30, 65)
    if r < 0.85:
        return sign * rng.uniform(65, 115)
    return rng.uniform(150, 210)


def sample_angles(rng, kind=None):
    """Joint angles of one of POSE_KINDS (random kind when None)."""
    if kind is None:
        kind = POSE_KINDS[rng.choice(len(POSE_KINDS), p=_POSE_PROBS)]
    u = lambda lo, hi: rng.uniform(lo, hi, 2)  # noqa: E731  (left, right)
    arm_ab, arm_fl, bend = u(4, 25), u(-12, 15), u(0, 25)
    leg_ab, leg_fl, knee = u(0, 8), u(-6, 6), u(0, 8)
    lean, twist = rng.uniform(-5, 8), rng.normal(0, 5)
    if kind == "walk":
        swing, phase = rng.uniform(12, 35), rng.choice((-1.0, 1.0))
        arm_ab, arm_fl, bend = u(3, 12), np.array([phase, -phase]) * swing, u(10, 40)
        leg_fl = np.array([-phase, phase]) * swing * 0.9
        knee = np.where(leg_fl < 0, u(5, 35), u(0, 15))
        twist = phase * rng.uniform(0, 10)
    elif kind == "arms_up":
        raised = [np.array([True, True]), np.array([True, False]), np.array([False, True])][rng.integers(3)]
        arm_ab = np.where(raised, u(100, 175), arm_ab)
        arm_fl = np.where(raised, u(-25, 35), arm_fl)
        bend = np.where(raised, u(0, 70), bend)
    elif kind == "sit":
        leg_fl, leg_ab = u(65, 100), u(5, 25)
        knee = np.clip(leg_fl + u(-20, 10), 0, None)
        arm_fl, bend, lean = u(10, 45), u(20, 80), rng.uniform(-5, 20)
    elif kind == "random":
        arm_ab, arm_fl, bend = u(0, 175), u(-40, 90), u(0, 130)
        leg_ab, leg_fl, knee = u(0, 40), u(-30, 100), u(0, 130)
        lean = rng.uniform(-10, 30)
    return Angles(
        yaw=sample_yaw(rng),
        head_yaw=float(np.clip(rng.normal(0, 12), -35, 35)),
        nod=rng.uniform(-10, 15),
        lean=lean,
        side_bend=rng.normal(0, 3),
        twist=twist,
        arm_abduct=arm_ab,
        arm_flex=arm_fl,
        forearm_abduct=arm_ab + u(-10, 15),
        forearm_flex=arm_fl + bend,
        leg_abduct=leg_ab,
        leg_flex=leg_fl,
        knee=knee,
        foot_out=u(0, 25),
        kind=kind,
    )


def _direction(abduct, flex, side):
    """Unit limb direction: 0/0 points down, abduct swings sideways (side +1 = left), flex swings forward."""
    a, f = np.radians(abduct), np.radians(flex)
    return np.array([side * np.sin(a) * np.cos(f), np.cos(a) * np.cos(f), -np.sin(f)])


def _yaw_rotate(v, yaw_deg):
    """Rotate body-frame vectors (..., 3) about the vertical axis (camera convention: 90 shows the left side)."""
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([x * c + z * s, y, -x * s + z * c], axis=-1)


def forward_kinematics(body, angles):
    """3-D points (NUM_POINTS, 3) in the body frame."""
    b, a = body, angles
    p = np.zeros((NUM_POINTS, 3))
    lean, sb, tw, nod = (np.radians(v) for v in (a.lean, a.side_bend, a.twist, a.nod))
    spine = np.array([np.sin(sb), -np.cos(sb) * np.cos(lean), -np.cos(sb) * np.sin(lean)])
    lateral = np.array([np.cos(tw) * np.cos(sb), np.sin(sb), np.sin(tw)])
    lateral /= np.linalg.norm(lateral)
    p[NECK] = spine * b.torso
    head_dir = spine + np.array([0.0, 0.0, -np.sin(nod)])
    p[HEAD] = p[NECK] + head_dir / np.linalg.norm(head_dir) * (b.neck + b.head_ry)
    for k, (ox, oy, oz) in _HEAD_OFFSETS.items():
        p[k] = p[HEAD] + _yaw_rotate(np.array([ox * b.head_rx, oy * b.head_ry, oz * b.head_rx]), a.head_yaw)
    for i, side in enumerate((1.0, -1.0)):  # left, right
        sh = p[NECK] + side * lateral * b.shoulder_w / 2 - spine * 0.012
        el = sh + b.upper_arm * _direction(a.arm_abduct[i], a.arm_flex[i], side)
        forearm = _direction(a.forearm_abduct[i], a.forearm_flex[i], side)
        wr = el + b.forearm * forearm
        hand = wr + b.hand * forearm
        hip = np.array([side * b.hip_w / 2, 0.0, 0.0])
        kn = hip + b.thigh * _direction(a.leg_abduct[i], a.leg_flex[i], side)
        an = kn + b.shin * _direction(a.leg_abduct[i] * 0.5, a.leg_flex[i] - a.knee[i], side)
        out = np.radians(a.foot_out[i])
        toe = an + np.array([side * np.sin(out) * b.foot, b.ankle_h, -np.cos(out) * b.foot])
        heel = an + np.array([0.0, b.ankle_h, 0.2 * b.foot])
        idx = (L_SHOULDER, L_ELBOW, L_WRIST, L_HAND, L_HIP, L_KNEE, L_ANKLE, L_TOE, L_HEEL)
        if side < 0:
            idx = (R_SHOULDER, R_ELBOW, R_WRIST, R_HAND, R_HIP, R_KNEE, R_ANKLE, R_TOE, R_HEEL)
        p[list(idx)] = np.stack([sh, el, wr, hand, hip, kn, an, toe, heel])
    return p


def place(body, angles, scale, center, roll):
    """Project the person into the image: pelvis at `center` (x, y) px, `scale` px per body height."""
    p3 = _yaw_rotate(forward_kinematics(body, angles), angles.yaw)  # (28, 3) camera frame
    r = np.radians(roll)
    rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    points = np.asarray(center, np.float64) + scale * p3[:, :2] @ rot.T
    up = points[HEAD] - points[NECK]
    if np.linalg.norm(up) > 0.3 * body.neck * scale:
        head_angle = float(np.degrees(np.arctan2(up[0], -up[1])))
    else:  # head points at the camera: keep it upright in the rotated frame
        head_angle = float(roll)
    return Skeleton(
        points=points,
        depth=p3[:, 2],
        body=body,
        angles=angles,
        scale=float(scale),
        roll=float(roll),
        head_angle=head_angle,
    )


def sample_roll(rng):
    """In-plane rotation in degrees: mostly upright, sometimes strongly tilted."""
    if rng.random() < 0.05:
        return rng.uniform(-70, 70)
    return float(np.clip(rng.normal(0, 7), -25, 25))
