"""Lesion renderers: the six patterns (with their variants) and the hard negatives.

Each renderer adds path lengths (mm) of its material to a private map on the phantom's
grid and returns a ``Lesion`` with its ground truth.  Mineral deposits are partial-volume
mixtures: ``fraction`` is the share of the chord that is pure mineral.  ``visibility``
scales that fraction (subtle / moderate / obvious) and is logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from calcdx.datasets.simulator.anatomy import Phantom
from calcdx.datasets.simulator.materials import Material
from calcdx.datasets.simulator.shapes import blur, capsule, ellipsoid, polyline_tube, smooth_curve, smooth_noise
from calcdx.findings import Morphology
from calcdx.taxonomy import HardNegative, LocationClass, Pattern

VISIBILITY_SCALE: dict[str, float] = {"subtle": 0.45, "moderate": 0.8, "obvious": 1.3}


@dataclass
class Lesion:
    kind: str  # a Pattern or HardNegative value
    material: Material
    thickness: np.ndarray  # mm of pure material per pixel
    location_class: LocationClass
    site: str
    variant: str
    visibility: str
    morphology: tuple[Morphology, ...] = ()
    extra: dict[str, float | str] = field(default_factory=dict)

    @property
    def is_pattern(self) -> bool:
        return self.kind in {p.value for p in Pattern}


def _pick(rng: np.random.Generator, items: list) -> object:
    return items[int(rng.integers(len(items)))]


def _soft_point(
    ph: Phantom, rng: np.random.Generator, *, subcutaneous: bool = False, away_from_bone: float = 6.0
) -> tuple[float, float]:
    """A random point in muscle (or subcutaneous fat) not overlapping bone."""
    muscle = ph.landmarks["muscle"]
    outer = ph.landmarks["soft_outer"]
    bone = ph.bone_outer
    s = ph.grid.spacing_mm
    ok = (outer > 4.0) & (muscle < 1.0) if subcutaneous else muscle > 20.0
    ok &= bone < 0.5
    rows, cols = np.nonzero(ok[:: max(1, int(2 / s)), :: max(1, int(2 / s))])
    if rows.size == 0:
        return (ph.grid.shape[0] * s / 2, ph.grid.shape[1] * s / 2)
    k = int(rng.integers(rows.size))
    step = max(1, int(2 / s)) * s
    return (rows[k] * step + rng.uniform(0, step), cols[k] * step + rng.uniform(0, step))


def _lesion(
    ph: Phantom,
    kind: str,
    material: Material,
    thickness: np.ndarray,
    loc: LocationClass,
    site: str,
    variant: str,
    visibility: str,
    morphology: tuple[Morphology, ...],
    **extra: float | str,
) -> Lesion:
    return Lesion(kind, material, thickness.astype(np.float32), loc, site, variant, visibility, morphology, dict(extra))


# ----------------------------------------------------------------------------- patterns


def hadd(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    name, (ty, tx), direction = _pick(rng, ph.landmarks["tendons"])  # type: ignore[misc]
    v = VISIBILITY_SCALE[visibility]
    t = ph.grid.zeros()
    resorptive = rng.random() < 0.4
    length = rng.uniform(2.5, 9.0)
    width = rng.uniform(1.5, 4.0)
    if not resorptive:
        ellipsoid(ph.grid, ty, tx, width, length, width * 1.2, direction, out=t, scale=0.55 * v)
        return _lesion(
            ph,
            Pattern.HADD,
            Material.HYDROXYAPATITE,
            t,
            LocationClass.TENDON,
            name,
            "formative_resting",
            visibility,
            (Morphology.OVAL,),
        )
    a = np.deg2rad(direction)
    for k in range(int(rng.integers(4, 9))):
        off = rng.normal(0, 1.0, 2) * [width, length * 0.5]
        ellipsoid(
            ph.grid,
            ty + off[0],
            tx + off[1],
            width * rng.uniform(0.4, 0.8),
            length * rng.uniform(0.3, 0.6),
            width,
            direction + rng.normal(0, 20),
            out=t,
            scale=0.22 * v,
        )
        del k
    tail = length * rng.uniform(1.2, 2.2)
    end = (ty + np.sin(a) * tail, tx + np.cos(a) * tail)
    capsule(ph.grid, (ty, tx), end, width * 0.7, 0.3, out=t, scale=0.12 * v)
    t = blur(t, 0.8 / ph.grid.spacing_mm)
    return _lesion(
        ph,
        Pattern.HADD,
        Material.HYDROXYAPATITE,
        t,
        LocationClass.TENDON,
        name,
        "resorptive",
        visibility,
        (Morphology.FLUFFY, Morphology.COMET_TAIL),
    )


def cppd(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    v = VISIBILITY_SCALE[visibility]
    t = ph.grid.zeros()
    g = ph.grid
    choice = rng.random()
    condyles = ph.landmarks.get("condyles") or []
    if condyles and choice < 0.5:
        for cy, cx, ry, rx in condyles:  # type: ignore[misc]
            gap = rng.uniform(1.2, 2.5)
            start, stop = (
                (np.deg2rad(20), np.deg2rad(160))
                if ph.landmarks["region"] != "hand_wrist"
                else (np.deg2rad(-160), np.deg2rad(-20))
            )
            angles = np.linspace(start, stop, 24)
            pts = np.stack([cy + (ry + gap) * np.sin(angles), cx + (rx + gap) * np.cos(angles)], axis=1)
            radius = rng.uniform(0.25, 0.5)
            line = polyline_tube(g, pts, radius, depth_ratio=rng.uniform(10, 18))
            dashes = np.clip(1.0 + 0.8 * smooth_noise(rng, g.shape, 2.0 / g.spacing_mm), 0.0, 1.6)
            t += line * dashes * 0.45 * v
        return _lesion(
            ph,
            Pattern.CPPD,
            Material.CPPD,
            t,
            LocationClass.INTRA_ARTICULAR,
            "hyaline cartilage",
            "hyaline_linear",
            visibility,
            (Morphology.LINEAR,),
        )
    menisci = ph.landmarks.get("menisci") or []
    if menisci and choice < 0.85:
        site = {
            "knee": "meniscus",
            "wrist": "triangular fibrocartilage complex",
            "shoulder": "glenoid labrum",
            "hip": "acetabular labrum / symphysis",
        }.get(str(ph.landmarks.get("region_site")), "fibrocartilage")
        for my, mx in menisci:  # type: ignore[misc]
            for k in range(int(rng.integers(2, 6))):
                ellipsoid(
                    g,
                    my + rng.normal(0, 1.2),
                    mx + rng.normal(0, 3.5),
                    rng.uniform(0.4, 1.2),
                    rng.uniform(1.5, 4),
                    rng.uniform(6, 12),
                    rng.normal(0, 25),
                    out=t,
                    scale=0.35 * v,
                )
                del k
        t = t * np.clip(1.0 + 0.5 * smooth_noise(rng, g.shape, 0.8 / g.spacing_mm), 0.2, 1.8)
        return _lesion(
            ph,
            Pattern.CPPD,
            Material.CPPD,
            t,
            LocationClass.INTRA_ARTICULAR,
            site,
            "fibrocartilage",
            visibility,
            (Morphology.TRIANGULAR, Morphology.LINEAR),
        )
    name, (ty, tx), direction = _pick(rng, ph.landmarks["tendons"])  # type: ignore[misc]
    curve = smooth_curve(rng, (ty, tx), direction, rng.uniform(12, 30), n=8, wiggle_deg=4)
    t = polyline_tube(g, curve, rng.uniform(0.3, 0.6), depth_ratio=rng.uniform(4, 8)) * 0.4 * v
    return _lesion(
        ph,
        Pattern.CPPD,
        Material.CPPD,
        t,
        LocationClass.TENDON,
        name,
        "tendon_linear",
        visibility,
        (Morphology.LINEAR,),
    )


def tumoral_calcinosis(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    v = VISIBILITY_SCALE[visibility]
    cy, cx = _pick(rng, ph.landmarks["periarticular"])  # type: ignore[misc]
    g = ph.grid
    t = g.zeros()
    spread = rng.uniform(12, 30)
    fluid = rng.random() < 0.3
    for _ in range(int(rng.integers(6, 18))):
        r = rng.uniform(3, 9)
        ly, lx = cy + rng.normal(0, spread * 0.45), cx + rng.normal(0, spread * 0.45)
        lob = ellipsoid(g, ly, lx, r, r * rng.uniform(0.8, 1.2), r)
        inner = ellipsoid(g, ly, lx, r * 0.75, r * 0.75, r * 0.75)
        lobule = lob - 0.55 * inner
        if fluid:
            level = ly + rng.uniform(-0.2, 0.3) * r
            lobule = np.where(g.y > level, lob * 1.3, lobule * 0.5)
        np.maximum(t, lobule, out=t)
    t *= 0.5 * v
    morph = (Morphology.MULTILOCULATED, Morphology.FLUID_LEVEL) if fluid else (Morphology.MULTILOCULATED,)
    return _lesion(
        ph,
        Pattern.TUMORAL_CALCINOSIS,
        Material.HYDROXYAPATITE,
        t,
        LocationClass.PERIARTICULAR,
        f"periarticular {ph.landmarks['region_site']}",
        "fluid_levels" if fluid else "lobulated",
        visibility,
        morph,
    )


def phlebolith(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    v = VISIBILITY_SCALE[visibility]
    g = ph.grid
    t = g.zeros()
    pelvic = ph.landmarks.get("pelvic_soft")
    cy, cx = _pick(rng, pelvic) if pelvic else _soft_point(ph, rng)  # type: ignore[misc]
    n = int(rng.choice([1, 1, 2, 3, 5]))
    for _ in range(n):
        r = rng.uniform(1.2, 3.5)
        py, px = cy + rng.normal(0, 6 if n > 1 else 0), cx + rng.normal(0, 6 if n > 1 else 0)
        outer = ellipsoid(g, py, px, r, r, r)
        if rng.random() < 0.67:
            outer = outer - 0.7 * ellipsoid(g, py, px, r * 0.55, r * 0.55, r * 0.55)
        t += outer
    t *= 0.8 * v
    return _lesion(
        ph,
        Pattern.PHLEBOLITH,
        Material.HYDROXYAPATITE,
        t,
        LocationClass.VASCULAR,
        "pelvic veins" if pelvic else "venous malformation",
        "clustered" if n > 1 else "single",
        visibility,
        (Morphology.ROUND_RIM_LUCENT_CENTRE, Morphology.LAMINATED),
        count=n,
    )


def myositis_ossificans(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    v = VISIBILITY_SCALE[visibility]
    g = ph.grid
    (y0, x0), (y1, x1) = ph.landmarks["shaft"]  # type: ignore[misc]
    f = rng.uniform(0.3, 0.7)
    sy, sx = y0 + f * (y1 - y0), x0 + f * (x1 - x0)
    half_len, half_w = rng.uniform(14, 30), rng.uniform(7, 13)
    side = rng.choice([-1.0, 1.0])
    bone_r = float(ph.landmarks.get("half_width", 15)) if ph.landmarks["region"] == "thigh_leg" else 16.0
    cleft = rng.uniform(1.5, 4.0)
    cx = sx + side * (bone_r + cleft + half_w)
    direction = float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))
    stage = str(rng.choice(["early", "intermediate", "mature"], p=[0.25, 0.3, 0.45]))
    t = g.zeros()
    material = Material.CORTICAL_BONE
    if stage == "early":
        material = Material.HYDROXYAPATITE
        for _ in range(int(rng.integers(15, 40))):
            ellipsoid(
                g,
                sy + rng.normal(0, half_len * 0.4),
                cx + rng.normal(0, half_w * 0.5),
                rng.uniform(0.4, 1.2),
                rng.uniform(0.4, 1.2),
                1.0,
                out=t,
                scale=0.35 * v,
            )
        morph: tuple[Morphology, ...] = (Morphology.FAINT_FLECKS,)
    else:
        outer = ellipsoid(g, sy, cx, half_len, half_w, half_w, direction - 90)
        inner = ellipsoid(g, sy, cx, half_len - 2.5, half_w - 2.5, half_w - 2.5, direction - 90)
        shell = outer - inner
        if stage == "intermediate":
            shell = shell * np.clip(0.6 + 0.6 * smooth_noise(rng, g.shape, 3.0 / g.spacing_mm), 0.0, 1.0)
        t = (shell * 0.8 + inner * 0.15) * v
        morph = (Morphology.ZONAL_PERIPHERAL, Morphology.CLEFT_FROM_BONE)
    return _lesion(
        ph,
        Pattern.MYOSITIS_OSSIFICANS,
        material,
        t,
        LocationClass.INTRAMUSCULAR,
        f"{ph.landmarks['region_site']} musculature",
        stage,
        visibility,
        morph,
    )


def calcinosis_universalis(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    v = VISIBILITY_SCALE[visibility]
    g = ph.grid
    t = g.zeros()
    planes = list(ph.landmarks.get("fascial_planes") or [])
    lace = np.clip(smooth_noise(rng, g.shape, 1.2 / g.spacing_mm), 0.0, None)
    for curve in planes:
        if rng.random() < 0.8:
            sheet = polyline_tube(g, np.asarray(curve), rng.uniform(0.8, 2.0), depth_ratio=rng.uniform(3, 8))
            t += sheet * lace * 0.35 * v
    for _ in range(int(rng.integers(4, 14))):
        py, px = _soft_point(ph, rng, subcutaneous=True)
        for _k in range(int(rng.integers(1, 4))):
            r = rng.uniform(1.0, 3.0)
            ellipsoid(
                g, py + rng.normal(0, 2), px + rng.normal(0, 2), r, r * rng.uniform(0.7, 1.3), r, out=t, scale=0.5 * v
            )
    return _lesion(
        ph,
        Pattern.CALCINOSIS_UNIVERSALIS,
        Material.HYDROXYAPATITE,
        t,
        LocationClass.INTRAMUSCULAR,
        "fascial planes and subcutis",
        "sheets_and_nodules",
        visibility,
        (Morphology.SHEET, Morphology.NODULAR),
        distribution="diffuse",
    )


# ----------------------------------------------------------------------------- hard negatives


def arterial(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    v = VISIBILITY_SCALE[visibility]
    g = ph.grid
    (ay, ax), (by, bx) = ph.landmarks["artery"]  # type: ignore[misc]
    direction = float(np.degrees(np.arctan2(by - ay, bx - ax)))
    length = float(np.hypot(by - ay, bx - ax))
    curve = smooth_curve(rng, (ay, ax), direction, length, n=14, wiggle_deg=3)
    medial = rng.random() < 0.5
    t = g.zeros()
    keep = smooth_noise(rng, g.shape, 4.0 / g.spacing_mm) > rng.uniform(-0.6, 0.4)
    if medial:
        normal = np.array([np.cos(np.deg2rad(direction)), -np.sin(np.deg2rad(direction))])
        half = rng.uniform(2.0, 3.5)
        for sgn in (-1, 1):
            t += polyline_tube(g, curve + sgn * half * normal, 0.35, depth_ratio=6.0)
        t = t * keep * 0.45 * v
        return _lesion(
            ph,
            HardNegative.ARTERIAL_MEDIAL,
            Material.HYDROXYAPATITE,
            t,
            LocationClass.VASCULAR,
            "artery",
            "tram_track",
            visibility,
            (Morphology.TRAM_TRACK,),
        )
    for _ in range(int(rng.integers(3, 9))):
        k = int(rng.integers(len(curve)))
        py, px = curve[k] + rng.normal(0, 1.5, 2)
        ellipsoid(
            g, py, px, rng.uniform(0.6, 2.0), rng.uniform(1.0, 3.5), 2.0, rng.uniform(0, 180), out=t, scale=0.4 * v
        )
    return _lesion(
        ph,
        HardNegative.ARTERIAL_INTIMAL,
        Material.HYDROXYAPATITE,
        t,
        LocationClass.VASCULAR,
        "artery",
        "intimal_irregular",
        visibility,
        (Morphology.IRREGULAR_INTIMAL,),
    )


def bony_spur(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    g = ph.grid
    condyles = ph.landmarks.get("condyles") or []
    if condyles and rng.random() < 0.5:
        cy, cx, ry, rx = _pick(rng, condyles)  # type: ignore[misc]
        ang = rng.uniform(0, 2 * np.pi)
        base = (cy + ry * 0.9 * np.sin(ang), cx + rx * 0.9 * np.cos(ang))
        tip = (cy + (ry + rng.uniform(3, 7)) * np.sin(ang + 0.15), cx + (rx + rng.uniform(3, 7)) * np.cos(ang + 0.15))
        kind, site = HardNegative.OSTEOPHYTE, "joint margin"
    else:
        name, (ty, tx), direction = _pick(rng, ph.landmarks["tendons"])  # type: ignore[misc]
        a = np.deg2rad(direction + 180)
        base = (ty + np.sin(a) * 4, tx + np.cos(a) * 4)
        tip = (ty + np.sin(a) * -3, tx + np.cos(a) * -3)
        kind, site = HardNegative.ENTHESOPHYTE, f"{name} enthesis"
    t = capsule(g, base, tip, rng.uniform(1.5, 3.0), 0.4, depth_ratio=2.0) * 0.9
    return _lesion(
        ph,
        kind,
        Material.CORTICAL_BONE,
        t,
        LocationClass.PERIARTICULAR,
        site,
        "spur",
        visibility,
        (Morphology.CONTINUOUS_WITH_BONE,),
    )


def osteochondromatosis(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    v = VISIBILITY_SCALE[visibility]
    g = ph.grid
    jy, jx = ph.landmarks["joint_centre"]  # type: ignore[misc]
    t = g.zeros()
    r = rng.uniform(2.0, 4.5)
    for _ in range(int(rng.integers(4, 14))):
        py, px = jy + rng.normal(0, 12), jx + rng.normal(0, 18)
        rr = r * rng.uniform(0.8, 1.2)
        t += ellipsoid(g, py, px, rr, rr, rr) - 0.6 * ellipsoid(g, py, px, rr * 0.7, rr * 0.7, rr * 0.7)
    t *= 0.6 * v
    return _lesion(
        ph,
        HardNegative.SYNOVIAL_OSTEOCHONDROMATOSIS,
        Material.HYDROXYAPATITE,
        t,
        LocationClass.INTRA_ARTICULAR,
        "joint",
        "ring_and_arc",
        visibility,
        (Morphology.RING_AND_ARC,),
    )


def gout_tophus(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    g = ph.grid
    cy, cx = _pick(rng, ph.landmarks["periarticular"])  # type: ignore[misc]
    r = rng.uniform(6, 14)
    t = ellipsoid(g, cy, cx, r, r * rng.uniform(0.8, 1.4), r) * rng.uniform(0.6, 1.0)
    return _lesion(
        ph,
        HardNegative.GOUT_TOPHUS,
        Material.URATE,
        t,
        LocationClass.PERIARTICULAR,
        "periarticular",
        "tophus",
        visibility,
        (Morphology.NODULAR,),
    )


def cysticercosis(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    v = VISIBILITY_SCALE[visibility]
    g = ph.grid
    (y0, x0), (y1, x1) = ph.landmarks["shaft"]  # type: ignore[misc]
    direction = float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))
    t = g.zeros()
    for _ in range(int(rng.integers(5, 20))):
        py, px = _soft_point(ph, rng)
        ellipsoid(
            g,
            py,
            px,
            rng.uniform(1.0, 2.5),
            rng.uniform(2.0, 5.0),
            2.0,
            direction + rng.normal(0, 8),
            out=t,
            scale=0.6 * v,
        )
    return _lesion(
        ph,
        HardNegative.CYSTICERCOSIS,
        Material.HYDROXYAPATITE,
        t,
        LocationClass.INTRAMUSCULAR,
        "muscle",
        "rice_grains",
        visibility,
        (Morphology.CIGAR,),
    )


def injection_granuloma(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    v = VISIBILITY_SCALE[visibility]
    g = ph.grid
    spots = ph.landmarks.get("gluteal_subcut")
    t = g.zeros()
    for _ in range(int(rng.integers(2, 7))):
        py, px = _pick(rng, spots) if spots else _soft_point(ph, rng, subcutaneous=True)  # type: ignore[misc]
        ellipsoid(
            g,
            py + rng.normal(0, 8),
            px + rng.normal(0, 8),
            rng.uniform(1, 4),
            rng.uniform(1, 4),
            3,
            rng.uniform(0, 180),
            out=t,
            scale=0.5 * v,
        )
    return _lesion(
        ph,
        HardNegative.INJECTION_GRANULOMA,
        Material.HYDROXYAPATITE,
        t,
        LocationClass.SUBCUTANEOUS,
        "subcutis",
        "granuloma",
        visibility,
        (Morphology.NODULAR,),
    )


def foreign_body(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    g = ph.grid
    tips = ph.landmarks.get("fingertips")
    if tips and rng.random() < 0.6:
        ty, tx = _pick(rng, tips)  # type: ignore[misc]
        cy, cx = ty + rng.uniform(35, 50), tx
        t = ellipsoid(g, cy, cx, 2.0, 10.0, 10.0) - ellipsoid(g, cy, cx, 1.2, 9.0, 9.0)
        return _lesion(
            ph,
            HardNegative.JEWELLERY,
            Material.IRON,
            np.clip(t, 0, None) * 0.5,
            LocationClass.SUBCUTANEOUS,
            "finger",
            "ring",
            visibility,
            (),
        )
    py, px = _soft_point(ph, rng)
    a = rng.uniform(0, np.pi)
    length = rng.uniform(5, 25)
    t = capsule(g, (py, px), (py + np.sin(a) * length, px + np.cos(a) * length), 0.3, 0.3)
    return _lesion(
        ph,
        HardNegative.FOREIGN_BODY,
        Material.IRON,
        t,
        LocationClass.SUBCUTANEOUS,
        "soft tissue",
        "needle_fragment",
        visibility,
        (),
    )


def skin_fold(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    g = ph.grid
    py, px = _soft_point(ph, rng, subcutaneous=False)
    curve = smooth_curve(rng, (py, px), rng.uniform(0, 360), rng.uniform(50, 120), n=10, wiggle_deg=5)
    band = polyline_tube(g, curve, rng.uniform(3, 6), depth_ratio=1.0)
    t = blur(band, 0.3 / g.spacing_mm) * 0.8
    return _lesion(
        ph, HardNegative.SKIN_FOLD, Material.MUSCLE, t, LocationClass.SUBCUTANEOUS, "skin", "fold", visibility, ()
    )


def lead_marker(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    g = ph.grid
    letter = str(rng.choice(["R", "L", "RT", "LT"]))
    size_px = max(int(12.0 / g.spacing_mm), 8)
    img = Image.new("L", (size_px * (len(letter) + 1), size_px * 2), 0)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=size_px * 1.5)
    draw.text((size_px // 3, 0), letter, fill=255, font=font)
    glyph = np.asarray(img, dtype=np.float32) / 255.0
    if ph.landmarks.get("laterality") == "L":
        glyph = glyph[:, ::-1]  # the image is mirrored afterwards: the marker must read correctly
    t = g.zeros()
    r0 = int(rng.uniform(0.03, 0.1) * g.shape[0])
    c0 = int(rng.choice([0.04, 0.7]) * g.shape[1])
    h, w = min(glyph.shape[0], g.shape[0] - r0), min(glyph.shape[1], g.shape[1] - c0)
    t[r0 : r0 + h, c0 : c0 + w] = glyph[:h, :w] * 1.0
    return _lesion(
        ph, HardNegative.LEAD_MARKER, Material.LEAD, t, LocationClass.UNKNOWN, "marker", letter, visibility, ()
    )


PATTERN_RENDERERS: dict[Pattern, Callable[[Phantom, np.random.Generator, str], Lesion]] = {
    Pattern.HADD: hadd,
    Pattern.CPPD: cppd,
    Pattern.TUMORAL_CALCINOSIS: tumoral_calcinosis,
    Pattern.PHLEBOLITH: phlebolith,
    Pattern.MYOSITIS_OSSIFICANS: myositis_ossificans,
    Pattern.CALCINOSIS_UNIVERSALIS: calcinosis_universalis,
}

NEGATIVE_RENDERERS: dict[str, Callable[[Phantom, np.random.Generator, str], Lesion]] = {
    "arterial": arterial,
    "bony_spur": bony_spur,
    "osteochondromatosis": osteochondromatosis,
    "gout_tophus": gout_tophus,
    "cysticercosis": cysticercosis,
    "injection_granuloma": injection_granuloma,
    "foreign_body": foreign_body,
    "skin_fold": skin_fold,
    "lead_marker": lead_marker,
}
