"""Renderers of the six calcification patterns, with the variants the seed describes (one function each)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from calcdx.datasets.simulator.anatomy import Phantom
from calcdx.datasets.simulator.embedding import pull_inside
from calcdx.datasets.simulator.follow_up import DepositChange
from calcdx.datasets.simulator.lesion import VISIBILITY_SCALE, Lesion, make_lesion, pick, soft_point
from calcdx.datasets.simulator.materials import Material
from calcdx.datasets.simulator.shapes import (
    blur,
    capsule,
    ellipsoid,
    ellipsoid_window,
    polyline_tube,
    polyline_tube_local,
    smooth_curve,
    smooth_noise,
)
from calcdx.findings import Morphology
from calcdx.taxonomy import LocationClass, Pattern

HADD_LENGTH_MM: tuple[float, float] = (2.0, 18.0)
"""The range of HADD deposits' long axes (mm, uniform, the comet tail not included) in the standard data set.
The literature's deposits reach 3 cm (SIMULATOR-NOTES); ``SimulationConfig.hadd_length_mm`` draws larger ones
(the extent head's training and a test set of large deposits: docs/simulator.md, docs/model.md)."""


def hadd(ph: Phantom, rng: np.random.Generator, visibility: str, change: DepositChange | None = None,
         length_mm: tuple[float, float] = HADD_LENGTH_MM) -> Lesion:
    """A deposit in one of the body part's tendons: formative/resting (dense, homogeneous, well defined
    oval) or resorptive (fluffy, ill defined, comet tail, less dense), its long axis drawn in ``length_mm``.
    ``change`` (a follow-up) scales its length and width and may force the phase; ``rng`` is then replayed
    from the prior's state (and ``length_mm`` must be the prior's), so the tendon, place and direction are
    the prior's."""
    name, (ty, tx), direction = pick(rng, ph.landmarks["tendons"])  # type: ignore[misc]
    v = VISIBILITY_SCALE[visibility]
    t = ph.grid.zeros()
    resorptive = rng.random() < 0.4
    # semi-axes in mm: by default the deposit is 2-18 mm long; below the 5 mm that were the floor until
    # 2026-12-06 (a fifth of deposits) its width shrinks with it, above it both are drawn as before
    length = rng.uniform(length_mm[0] / 2.0, length_mm[1] / 2.0)
    width = rng.uniform(1.5, 4.0) * min(1.0, length / 2.5)
    if change is not None:
        length, width = length * change.size_factor, width * change.size_factor
        resorptive = resorptive if change.resorptive is None else change.resorptive
    if not resorptive:
        ellipsoid(ph.grid, ty, tx, width, length, width * 1.2, direction, out=t, scale=0.55 * v)
        return make_lesion(
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
            scale=0.38 * v,
        )
        del k
    tail = length * rng.uniform(1.2, 2.2)
    end = (ty + np.sin(a) * tail, tx + np.cos(a) * tail)
    capsule(ph.grid, (ty, tx), end, width * 0.7, 0.3, out=t, scale=0.2 * v)
    t = blur(t, 0.8 / ph.grid.spacing_mm)
    return make_lesion(
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
        return make_lesion(
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
        return make_lesion(
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
    name, (ty, tx), direction = pick(rng, ph.landmarks["tendons"])  # type: ignore[misc]
    curve = smooth_curve(rng, (ty, tx), direction, rng.uniform(12, 30), n=8, wiggle_deg=4)
    t = polyline_tube(g, curve, rng.uniform(0.3, 0.6), depth_ratio=rng.uniform(8, 14)) * 0.6 * v
    return make_lesion(
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


TC_DEPTH_MM = 10.0
"""A tumoral-calcinosis mass is centred where the body is at least this thick, and each lobule of
radius r where it is at least r thick (``pull_inside``)."""


def tumoral_calcinosis(ph: Phantom, rng: np.random.Generator, visibility: str) -> Lesion:
    v = VISIBILITY_SCALE[visibility]
    cy, cx = pull_inside(ph, pick(rng, ph.landmarks["periarticular"]), TC_DEPTH_MM)  # type: ignore[arg-type]
    g = ph.grid
    t = g.zeros()
    spread = rng.uniform(12, 30)
    fluid = rng.random() < 0.3
    for _ in range(int(rng.integers(6, 18))):
        r = rng.uniform(3, 9)
        ly, lx = pull_inside(ph, (cy + rng.normal(0, spread * 0.45), cx + rng.normal(0, spread * 0.45)), r)
        rx = r * rng.uniform(0.8, 1.2)
        window = ellipsoid_window(g, ly, lx, r, rx)  # the lobule and its lucent core (0.75 r) lie inside
        local = g.crop(*window)
        lob = ellipsoid(local, ly, lx, r, rx, r)
        inner = ellipsoid(local, ly, lx, r * 0.75, r * 0.75, r * 0.75)
        lobule = lob - 0.55 * inner
        if fluid:
            level = ly + rng.uniform(-0.2, 0.3) * r
            lobule = np.where(local.y > level, lob * 1.3, lobule * 0.5)
        np.maximum(t[window], lobule, out=t[window])
    t *= 0.5 * v
    morph = (Morphology.MULTILOCULATED, Morphology.FLUID_LEVEL) if fluid else (Morphology.MULTILOCULATED,)
    return make_lesion(
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
    cy, cx = pick(rng, pelvic) if pelvic else soft_point(ph, rng)  # type: ignore[misc]
    n = int(rng.choice([1, 1, 2, 3, 5]))
    for _ in range(n):
        r = rng.uniform(1.2, 3.5)
        py, px = cy + rng.normal(0, 6 if n > 1 else 0), cx + rng.normal(0, 6 if n > 1 else 0)
        outer = ellipsoid(g, py, px, r, r, r)
        if rng.random() < 0.67:
            outer = outer - 0.7 * ellipsoid(g, py, px, r * 0.55, r * 0.55, r * 0.55)
        t += outer
    t *= 0.8 * v
    return make_lesion(
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
    return make_lesion(
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
            sheet, window = polyline_tube_local(g, np.asarray(curve), rng.uniform(0.8, 2.0),
                                                depth_ratio=rng.uniform(3, 8))
            t[window] += sheet * lace[window] * 0.35 * v
    for _ in range(int(rng.integers(4, 14))):
        py, px = soft_point(ph, rng, subcutaneous=True)
        for _k in range(int(rng.integers(1, 4))):
            r = rng.uniform(1.0, 3.0)
            ellipsoid(
                g, py + rng.normal(0, 2), px + rng.normal(0, 2), r, r * rng.uniform(0.7, 1.3), r, out=t, scale=0.5 * v
            )
    return make_lesion(
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


PATTERN_RENDERERS: dict[Pattern, Callable[[Phantom, np.random.Generator, str], Lesion]] = {
    Pattern.HADD: hadd,
    Pattern.CPPD: cppd,
    Pattern.TUMORAL_CALCINOSIS: tumoral_calcinosis,
    Pattern.PHLEBOLITH: phlebolith,
    Pattern.MYOSITIS_OSSIFICANS: myositis_ossificans,
    Pattern.CALCINOSIS_UNIVERSALIS: calcinosis_universalis,
}
