"""Renderers of the hard negatives: calcifications and densities that mimic the patterns (one function each)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from calcdx.datasets.simulator.anatomy import Phantom
from calcdx.datasets.simulator.embedding import pull_inside
from calcdx.datasets.simulator.lesion import VISIBILITY_SCALE, Lesion, make_lesion, pick, soft_point
from calcdx.datasets.simulator.materials import Material
from calcdx.datasets.simulator.shapes import (
    blur,
    capsule,
    capsule_window,
    ellipsoid,
    ellipsoid_window,
    enclosing_window,
    polyline_tube,
    polyline_tube_local,
    smooth_curve,
    smooth_noise,
)
from calcdx.findings import Morphology
from calcdx.taxonomy import HardNegative, LocationClass


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
        tubes = [polyline_tube_local(g, curve + sgn * half * normal, 0.35, depth_ratio=6.0) for sgn in (-1, 1)]
        for tube, window in tubes:
            t[window] += tube
        covered = enclosing_window(tubes[0][1], tubes[1][1])  # zero outside: only there is anything kept
        t[covered] = t[covered] * keep[covered] * 0.45 * v
        return make_lesion(
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
    return make_lesion(
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


BONE_MM = 1.0
"""Path length through bone above which a pixel counts as bone for ``bone_edge``."""


def bone_edge(ph: Phantom, point: tuple[float, float], search_mm: float = 40.0
              ) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The bone outline's point nearest ``point`` (mm) and the unit vector pointing out of the bone
    there, within ``search_mm``; None when no bone outline is that close.

    An enthesophyte grows from the cortex where a tendon inserts.  Drawn at the tendon's own
    landmark, it used to float in soft tissue or over a bone's shadow, a dense oval like a HADD
    deposit; the stage-8 model called 13 of 32 of them HADD at "definite" (docs/simulator.md).
    """
    from scipy.ndimage import distance_transform_edt

    g = ph.grid
    if ph.bone_outer is None:
        return None
    py, px = point
    window = g.box(py - search_mm, py + search_mm, px - search_mm, px + search_mm)
    bone = ph.bone_outer[window] > BONE_MM
    if not bone.any() or bone.all():
        return None
    ys = g.y[window[0], 0]
    xs = g.x[0, window[1]]
    r = int(np.clip(np.searchsorted(ys, py), 0, len(ys) - 1))
    c = int(np.clip(np.searchsorted(xs, px), 0, len(xs) - 1))
    inside = bool(bone[r, c])
    # nearest pixel of the other kind: outside the bone when the point is inside, and the reverse
    _, (rows, cols) = distance_transform_edt(bone if inside else ~bone, return_indices=True)
    er, ec = int(rows[r, c]), int(cols[r, c])
    ey, ex = float(ys[er]), float(xs[ec])
    dy, dx = (ey - py, ex - px) if inside else (py - ey, px - ex)
    norm = float(np.hypot(dy, dx))
    if norm < 1e-6:
        return None
    return (ey, ex), (dy / norm, dx / norm)


def bony_spur(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    g = ph.grid
    condyles = ph.landmarks.get("condyles") or []
    if condyles and rng.random() < 0.5:
        cy, cx, ry, rx = pick(rng, condyles)  # type: ignore[misc]
        ang = rng.uniform(0, 2 * np.pi)
        base = (cy + ry * 0.9 * np.sin(ang), cx + rx * 0.9 * np.cos(ang))
        tip = (cy + (ry + rng.uniform(3, 7)) * np.sin(ang + 0.15), cx + (rx + rng.uniform(3, 7)) * np.cos(ang + 0.15))
        kind, site = HardNegative.OSTEOPHYTE, "joint margin"
        radius = rng.uniform(1.5, 3.0)
    else:
        name, (ty, tx), direction = pick(rng, ph.landmarks["tendons"])  # type: ignore[misc]
        edge = bone_edge(ph, (ty, tx))
        if edge is None:  # no bone near this tendon: along it, as drawn before
            a = np.deg2rad(direction + 180)
            (ey, ex), (uy, ux) = (ty + np.sin(a) * 1.5, tx + np.cos(a) * 1.5), (-np.sin(a), -np.cos(a))
        else:
            (ey, ex), (uy, ux) = edge
        kind, site = HardNegative.ENTHESOPHYTE, f"{name} enthesis"
        radius = rng.uniform(1.5, 3.0)
        length = 1.0 + 2.2 * radius  # 4.3-7.6 mm beyond the cortex (no extra draw: later lesions keep theirs)
        base = (ey - uy * 2.5, ex - ux * 2.5)  # rooted inside the cortex: continuous with the bone
        tip = (ey + uy * length, ex + ux * length)
    t = g.zeros()
    window = capsule_window(g, base, tip, radius, 0.4)
    t[window] = capsule(g.crop(*window), base, tip, radius, 0.4, depth_ratio=2.0) * 0.9
    return make_lesion(
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
        window = ellipsoid_window(g, py, px, rr, rr)  # the body and its lucent core (0.7 rr) lie inside
        local = g.crop(*window)
        t[window] += ellipsoid(local, py, px, rr, rr, rr) - 0.6 * ellipsoid(local, py, px, rr * 0.7, rr * 0.7, rr * 0.7)
    t *= 0.6 * v
    return make_lesion(
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
    point = pick(rng, ph.landmarks["periarticular"])
    r = rng.uniform(6, 14)
    cy, cx = pull_inside(ph, point, r)  # type: ignore[arg-type]
    t = ellipsoid(g, cy, cx, r, r * rng.uniform(0.8, 1.4), r) * rng.uniform(0.6, 1.0)
    return make_lesion(
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
        py, px = soft_point(ph, rng)
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
    return make_lesion(
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


GRANULOMA_DEPTH_MM = 8.0
"""Granuloma nodules lie where the body is at least this thick (``pull_inside``)."""


def injection_granuloma(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    v = VISIBILITY_SCALE[visibility]
    g = ph.grid
    spots = ph.landmarks.get("gluteal_subcut")
    t = g.zeros()
    for _ in range(int(rng.integers(2, 7))):
        py, px = pick(rng, spots) if spots else soft_point(ph, rng, subcutaneous=True)  # type: ignore[misc]
        py, px = pull_inside(ph, (py + rng.normal(0, 8), px + rng.normal(0, 8)), GRANULOMA_DEPTH_MM)
        ellipsoid(
            g,
            py,
            px,
            rng.uniform(1, 4),
            rng.uniform(1, 4),
            3,
            rng.uniform(0, 180),
            out=t,
            scale=0.5 * v,
        )
    return make_lesion(
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
        ty, tx = pick(rng, tips)  # type: ignore[misc]
        cy, cx = ty + rng.uniform(35, 50), tx
        t = ellipsoid(g, cy, cx, 2.0, 10.0, 10.0) - ellipsoid(g, cy, cx, 1.2, 9.0, 9.0)
        return make_lesion(
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
    py, px = soft_point(ph, rng)
    a = rng.uniform(0, np.pi)
    length = rng.uniform(5, 25)
    t = capsule(g, (py, px), (py + np.sin(a) * length, px + np.cos(a) * length), 0.3, 0.3)
    return make_lesion(
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
    py, px = soft_point(ph, rng, subcutaneous=False)
    curve = smooth_curve(rng, (py, px), rng.uniform(0, 360), rng.uniform(50, 120), n=10, wiggle_deg=5)
    band = polyline_tube(g, curve, rng.uniform(3, 6), depth_ratio=1.0)
    t = blur(band, 0.3 / g.spacing_mm) * 0.8
    return make_lesion(
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
    return make_lesion(
        ph, HardNegative.LEAD_MARKER, Material.LEAD, t, LocationClass.UNKNOWN, "marker", letter, visibility, ()
    )


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
