"""What a person wears: garment choices, their extents and textures, keyed by LIP class."""

import dataclasses

from input_pipeline.synthetic import texture
from jhuman.classes import LIP_CLASSES

# LIP label values looked up by name in jhuman.classes.LIP_CLASSES (value = index).
(
    HAT,
    HAIR,
    GLOVE,
    SUNGLASSES,
    UPPER,
    DRESS,
    COAT,
    SOCKS,
    PANTS,
    JUMPSUIT,
    SCARF,
    SKIRT,
    FACE,
    LEFT_ARM,
    RIGHT_ARM,
    LEFT_LEG,
    RIGHT_LEG,
    LEFT_SHOE,
    RIGHT_SHOE,
) = (
    LIP_CLASSES.index(n)
    for n in (
        "Hat",
        "Hair",
        "Glove",
        "Sunglasses",
        "Upper-clothes",
        "Dress",
        "Coat",
        "Socks",
        "Pants",
        "Jumpsuits",
        "Scarf",
        "Skirt",
        "Face",
        "Left-arm",
        "Right-arm",
        "Left-leg",
        "Right-leg",
        "Left-shoe",
        "Right-shoe",
    )
)
SKIN_CLASSES = (FACE, LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG)


@dataclasses.dataclass(frozen=True)
class Outfit:
    """Garments of one person. Lengths are fractions: of the arm chain (sleeves), of the hip-knee-ankle chain
    (pants / jumpsuit legs), of the leg length below the hips (skirt, dress, coat tails), of the shin (socks)."""

    top: int  # class drawn on the torso: UPPER, DRESS or JUMPSUIT (a coat goes over UPPER)
    sleeve: float  # 0 = sleeveless
    coat: bool
    coat_sleeve: float
    coat_length: float
    bottom: int  # PANTS, SKIRT, DRESS (skirt-shaped) or JUMPSUIT (pants-shaped)
    bottom_length: float
    hair: str  # 'none' | 'short' | 'long'
    hair_length: float  # long hair below the head centre, in body heights
    fringe: float  # 0..1, how far the hair comes down the forehead
    hat: bool
    sunglasses: bool
    scarf: bool
    gloves: bool
    socks: float  # 0 = none
    shoes: bool
    garments: dict  # LIP class -> texture.Garment (skin classes share one)

    @property
    def pants_shaped(self):
        return self.bottom in (PANTS, JUMPSUIT)


def _pick(rng, options, probs):
    return options[rng.choice(len(options), p=probs)]


def sample_outfit(rng):
    """A random outfit in which every LIP foreground class can appear."""
    top_kind = _pick(rng, ("upper", "coat", "dress", "jumpsuit"), (0.5, 0.2, 0.18, 0.12))
    if top_kind == "dress":
        top, bottom, bottom_length = DRESS, DRESS, rng.uniform(0.2, 0.95)
    elif top_kind == "jumpsuit":
        top, bottom = JUMPSUIT, JUMPSUIT
        bottom_length = rng.uniform(0.85, 1.0) if rng.random() < 0.7 else rng.uniform(0.25, 0.5)
    else:
        top = UPPER
        if rng.random() < 0.68:
            bottom = PANTS
            length_kind = _pick(rng, ("long", "capri", "shorts"), (0.6, 0.15, 0.25))
            bottom_length = {"long": (0.92, 1.0), "capri": (0.6, 0.85), "shorts": (0.25, 0.45)}[length_kind]
            bottom_length = rng.uniform(*bottom_length)
        else:
            bottom, bottom_length = SKIRT, rng.uniform(0.2, 0.9)
    sleeve_kind = _pick(rng, ("none", "short", "three_quarter", "long"), (0.15, 0.4, 0.1, 0.35))
    sleeve = {
        "none": 0.0,
        "short": rng.uniform(0.2, 0.45),
        "three_quarter": rng.uniform(0.55, 0.8),
        "long": rng.uniform(0.9, 1.0),
    }[sleeve_kind]
    hair = _pick(rng, ("none", "short", "long"), (0.05, 0.55, 0.4))
    socks = rng.uniform(0.15, 0.55) if rng.random() < 0.45 else 0.0
    garments = {c: texture.random_garment(rng) for c in (UPPER, DRESS, JUMPSUIT, PANTS, SKIRT, COAT, SCARF)}
    garments[HAT] = texture.random_garment(rng)
    garments[GLOVE] = texture.random_garment(rng, kind="solid")
    garments[SOCKS] = texture.random_garment(rng)
    garments[SUNGLASSES] = texture.random_garment(rng, sat=(0.0, 0.5), val=(0.0, 0.25), kind="solid")
    garments[LEFT_SHOE] = garments[RIGHT_SHOE] = texture.random_garment(rng, val=(0.05, 0.8), kind="solid")
    garments[HAIR] = texture.hair_garment(rng)
    skin = texture.skin_garment(rng)
    for c in SKIN_CLASSES:
        garments[c] = skin
    return Outfit(
        top=top,
        sleeve=sleeve,
        coat=top_kind == "coat",
        coat_sleeve=rng.uniform(0.85, 1.0),
        coat_length=rng.uniform(0.05, 0.5),
        bottom=bottom,
        bottom_length=bottom_length,
        hair=hair,
        hair_length=rng.uniform(0.05, 0.25),
        fringe=rng.uniform(0.0, 1.0),
        hat=rng.random() < 0.3,
        sunglasses=rng.random() < 0.25,
        scarf=rng.random() < 0.2,
        gloves=rng.random() < 0.2,
        socks=socks,
        shoes=rng.random() < 0.95,
        garments=garments,
    )
