"""Layered-thickness phantoms of five regions, built from analytic solids in millimetres.

Each region returns a ``Phantom``: path-length maps (mm) per material and the landmarks
the lesion renderers need (tendon insertions, joint lines, muscle and subcutaneous
areas, vessel paths).  Bones are unions (max of chords) of shafts and ends with a cortex
of age-dependent thickness around a trabecular core whose density carries a fine, smooth
texture; soft tissue is muscle inside a fat layer whose thickness follows habitus.
Everything is built in a canonical pose (right side, AP); ``transform`` then mirrors for
laterality and rotates for pose, masks included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from calcdx.datasets.simulator.materials import Material
from calcdx.datasets.simulator.shapes import (
    Grid,
    Window,
    capsule,
    capsule_window,
    ellipsoid,
    ellipsoid_window,
    enclosing_window,
    nested_capsules,
    polyline_tube_local,
    positive_part,
    smooth_curve,
    smooth_noise,
)
from calcdx.taxonomy import Region

Point = tuple[float, float]


@dataclass(frozen=True)
class Body:
    """Patient variation drawn independently of the labels."""

    habitus: float  # soft-tissue scale, 0.8 (thin) .. 1.5 (obese)
    fat_fraction: float  # share of the soft-tissue radius that is subcutaneous fat
    bone_density: float  # 0.55 (osteoporotic, old) .. 1.1 (young adult)
    view: str  # AP, PA, LAT, OBL
    laterality: str  # L or R
    rotation_deg: float


@dataclass
class Phantom:
    grid: Grid
    maps: dict[Material, np.ndarray]
    landmarks: dict[str, object] = field(default_factory=dict)
    bone_outer: np.ndarray | None = None  # path length through any bone (for location classes)

    def trabecular_texture(self, rng: np.random.Generator) -> np.ndarray:
        """A fine (0.6 mm) multiplicative texture for trabecular bone (0.6-1.4), made once per phantom."""
        texture = self.landmarks.get("_texture")
        if texture is None:
            texture = smooth_noise(rng, self.grid.shape, sigma_px=max(0.6 / self.grid.spacing_mm, 0.7))
            texture *= np.float32(0.12)
            texture += np.float32(1.0)
            np.clip(texture, np.float32(0.6), np.float32(1.4), out=texture)  # never below 60 % or above 140 %
            self.landmarks["_texture"] = texture
        return texture  # type: ignore[return-value]

    def add(self, material: Material, thickness: np.ndarray, window: Window | None = None) -> None:
        """Add path lengths of ``material``: a whole map, or the part of one inside ``window``."""
        if window is None:
            if material in self.maps:
                self.maps[material] += thickness
            else:
                self.maps[material] = thickness.astype(np.float32)
            return
        if material not in self.maps:
            self.maps[material] = self.grid.zeros()
        self.maps[material][window] += thickness


class BoneBuilder:
    """Accumulates the outer and inner (marrow) solids of one bone as max-unions.

    Parts are recorded as they come and drawn by ``finish`` into arrays the size of the window
    they cover, rather than the whole radiograph (a phalanx is a few hundredths of it).
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self._parts: list[tuple[str, tuple[float, ...], float, dict[str, float]]] = []
        self._window: Window | None = None  # the bounding box of every part's window

    def _cover(self, window: Window) -> None:
        self._window = window if self._window is None else enclosing_window(self._window, window)

    def part(self, kind: str, *args: float, cortex: float, **kw: float) -> None:
        g = self.grid
        if kind == "capsule":
            y0, x0, y1, x1, r0, r1 = args
            self._cover(capsule_window(g, (y0, x0), (y1, x1), r0, r1))
        else:
            cy, cx, ry, rx = args[:4]
            self._cover(ellipsoid_window(g, cy, cx, ry, rx, args[5] if len(args) > 5 else 0.0))
        self._parts.append((kind, args, cortex, kw))

    def _draw(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Path lengths through the bone and through its marrow cavity inside ``window``."""
        g = self.grid.crop(*window)
        outer, inner = g.zeros(), g.zeros()
        for kind, args, cortex, kw in self._parts:
            if kind == "capsule":
                y0, x0, y1, x1, r0, r1 = args
                capsule(g, (y0, x0), (y1, x1), r0, r1, out=outer, union=True, **kw)
                capsule(g, (y0, x0), (y1, x1), max(r0 - cortex, 0.5), max(r1 - cortex, 0.5), out=inner, union=True,
                        **kw)
            else:
                cy, cx, ry, rx, depth = args[:5]
                angle = args[5] if len(args) > 5 else 0.0
                ellipsoid(g, cy, cx, ry, rx, depth, angle, out=outer, union=True)
                ellipsoid(g, cy, cx, max(ry - cortex, 0.5), max(rx - cortex, 0.5), max(depth - cortex, 0.5), angle,
                          out=inner, union=True)
        return outer, inner

    def finish(self, phantom: Phantom, rng: np.random.Generator, density: float) -> None:
        texture = phantom.trabecular_texture(rng)
        if phantom.bone_outer is None:
            phantom.bone_outer = self.grid.zeros()
        window = self._window
        if window is None or window[0].start >= window[0].stop or window[1].start >= window[1].stop:
            return  # no part inside the frame
        outer, inner = self._draw(window)
        cv2.min(inner, outer, dst=inner)
        cortical = (outer - inner) * np.float32(0.75 + 0.25 * density)
        spongiosa = inner * np.float32(density) * texture[window]
        marrow_fat = inner * np.float32((1.0 - density) * 0.5)
        phantom.add(Material.CORTICAL_BONE, cortical, window)
        phantom.add(Material.SPONGIOSA, spongiosa, window)
        phantom.add(Material.FAT, marrow_fat, window)
        phantom.bone_outer[window] += outer


def _soft_tissue(
    ph: Phantom,
    rng: np.random.Generator,
    body: Body,
    limbs: list[tuple[Point, Point, float, float]],
    depth_ratio: float = 1.0,
) -> None:
    """Limb soft tissue: fat shell around muscle, with fascial planes (thin fat layers)."""
    g = ph.grid
    outer = g.zeros()
    muscle = g.zeros()
    for p0, p1, r0, r1 in limbs:
        r0h, r1h = r0 * body.habitus, r1 * body.habitus
        nested_capsules(g, p0, p1, r0h, r1h, [(1.0, outer), (1.0 - body.fat_fraction, muscle)],
                        depth_ratio=depth_ratio, union=True)
    # fascial planes: gently curved thin fat sheets seen edge-on between compartments
    planes = []
    for p0, p1, r0, _r1 in limbs[:1]:
        for side in (-0.45, 0.4):
            start = (p0[0], p0[1] + side * r0 * body.habitus)
            direction = np.degrees(np.arctan2(p1[0] - p0[0], p1[1] - p0[1]))
            curve = smooth_curve(
                rng, start, direction, float(np.hypot(p1[0] - p0[0], p1[1] - p0[1])), n=10, wiggle_deg=3.0
            )
            planes.append(curve)
            tube, window = polyline_tube_local(g, curve, 0.8)
            fascia = np.minimum(tube * np.float32(6.0), muscle[window] * np.float32(0.25))
            muscle[window] -= fascia
            ph.add(Material.FAT, fascia, window)
    ph.add(Material.MUSCLE, muscle)
    ph.add(Material.FAT, positive_part(cv2.subtract(outer, muscle)))
    ph.landmarks["soft_outer"] = outer
    ph.landmarks["muscle"] = muscle
    ph.landmarks["fascial_planes"] = planes


def _knee(ph: Phantom, rng: np.random.Generator, body: Body) -> None:
    g = ph.grid
    h, w = g.shape[0] * g.spacing_mm, g.shape[1] * g.spacing_mm
    cx, yj = w / 2 + rng.normal(0, 4), h * rng.uniform(0.46, 0.54)
    lateral = body.view in {"LAT", "OBL"}
    _soft_tissue(ph, rng, body, [((0, cx), (yj, cx), 62, 52), ((yj, cx), (h, cx), 52, 42)])
    d = body.bone_density
    femur = BoneBuilder(g)
    femur.part("capsule", 0, cx, yj - 40, cx, 14, 16, cortex=4.0 * d)
    if lateral:
        femur.part("ellipsoid", yj - 18, cx + 4, 22, 26, 38, cortex=1.2)
        condyles = [(yj - 18, cx + 4, 22, 26)]
    else:
        femur.part("ellipsoid", yj - 28, cx, 22, 36, 28, cortex=1.2)
        condyles = [(yj - 13, cx - 19, 14, 19), (yj - 13, cx + 19, 14, 19)]
        for cy, ccx, ry, rx in condyles:
            femur.part("ellipsoid", cy, ccx, ry, rx, 30, cortex=1.2)
    femur.finish(ph, rng, d)
    tibia = BoneBuilder(g)
    gap = rng.uniform(4.0, 7.0)
    top = yj + gap / 2
    tibia.part("ellipsoid", top + 12, cx, 12, 40 if not lateral else 30, 28, cortex=1.0)
    tibia.part("capsule", top + 12, cx, h, cx, 30 if not lateral else 24, 13, cortex=3.5 * d)
    tibia.finish(ph, rng, d)
    fibula = BoneBuilder(g)
    fx = cx + (34 if not lateral else 10)
    fibula.part("ellipsoid", top + 26, fx, 9, 8, 10, cortex=1.0)
    fibula.part("capsule", top + 30, fx, h, fx + 3, 7, 6, cortex=2.0 * d)
    fibula.finish(ph, rng, d)
    patella = BoneBuilder(g)
    if lateral:
        patella.part("ellipsoid", yj - 22, cx - 38, 22, 9, 20, 10.0, cortex=1.2)
    else:
        patella.part("ellipsoid", yj - 32, cx + 2, 21, 20, 11, cortex=1.2)
    patella.finish(ph, rng, d)
    ph.landmarks.update(
        joint_line=yj,
        joint_centre=(yj, cx),
        condyles=condyles,
        plateau_top=top,
        half_width=40,
        menisci=[(yj, cx - 30), (yj, cx + 30)] if not lateral else [(yj, cx - 14), (yj, cx + 20)],
        tendons=[
            ("quadriceps tendon", (yj - 60, cx + (0 if not lateral else -36)), 90.0),
            ("patellar tendon", (yj + 15, cx + (0 if not lateral else -34)), 90.0),
        ],
        periarticular=[(yj - 10, cx - 55), (yj - 10, cx + 55), (yj + 25, cx - 48)],
        shaft=((0, cx), (yj - 40, cx)),
        artery=[(0, cx + 6), (h, cx + 10)],
        region_site="knee",
    )


def _shoulder(ph: Phantom, rng: np.random.Generator, body: Body) -> None:
    g = ph.grid
    h, w = g.shape[0] * g.spacing_mm, g.shape[1] * g.spacing_mm
    hy, hx = h * rng.uniform(0.38, 0.45), w * rng.uniform(0.55, 0.62)  # humeral head centre
    r = rng.uniform(22, 26)
    _soft_tissue(
        ph,
        rng,
        body,
        [((hy - 30, hx - 80), (hy - 10, hx + 30), 70, 60), ((hy, hx + 10), (h, hx + 18), 48, 42)],
        depth_ratio=1.2,
    )
    d = body.bone_density
    humerus = BoneBuilder(g)
    humerus.part("ellipsoid", hy, hx, r, r, r, cortex=1.2)
    humerus.part("ellipsoid", hy - r * 0.55, hx + r * 0.7, r * 0.45, r * 0.4, r * 0.6, cortex=1.0)  # greater tuberosity
    humerus.part("capsule", hy + r * 0.6, hx + 6, h, hx + 14, r * 0.8, 12, cortex=3.5 * d)
    humerus.finish(ph, rng, d)
    scap = BoneBuilder(g)
    gx = hx - r - rng.uniform(4, 7)
    scap.part("ellipsoid", hy + 2, gx - 4, r * 0.9, 6, 14, cortex=1.5)  # glenoid rim, seen tangentially
    scap.part("ellipsoid", hy + 40, gx - 45, 70, 40, 4, -20.0, cortex=1.0)  # scapular body (thin plate)
    scap.part("capsule", hy - r - 14, gx - 40, hy - r - 10, hx + r * 0.9, 8, 7, cortex=1.5, depth_ratio=0.9)  # acromion
    scap.part("capsule", hy - 10, gx - 10, hy - 22, gx - 35, 5, 6, cortex=1.2)  # coracoid
    scap.finish(ph, rng, d)
    clav = BoneBuilder(g)
    clav.part("capsule", hy - r - 22, 0, hy - r - 18, hx - 5, 9, 8, cortex=2.0)
    clav.finish(ph, rng, d)
    insertion = (hy - r * 0.95, hx + r * 0.75)
    ph.landmarks.update(
        joint_line=hy,
        joint_centre=(hy, gx),
        glenoid=(hy, gx, r * 0.9),
        tendons=[
            ("supraspinatus tendon", (insertion[0] - rng.uniform(3, 8), insertion[1] - rng.uniform(8, 16)), 10.0),
            ("infraspinatus tendon", (insertion[0] + 8, insertion[1] + 4), 60.0),
            ("subscapularis tendon", (hy + 4, hx - r * 0.4), 0.0),
        ],
        periarticular=[(hy - r - 30, hx + 20), (hy + r + 10, hx + 35), (hy + 10, hx + r + 25)],
        menisci=[(hy + r * 0.7, gx - 2)],
        half_width=r,
        condyles=[(hy, hx, r, r)],
        shaft=((hy + r, hx + 6), (h, hx + 14)),
        artery=[(hy + r + 20, 0), (h, hx - 20)],
        region_site="shoulder",
    )


def _hip_pelvis(ph: Phantom, rng: np.random.Generator, body: Body) -> None:
    g = ph.grid
    h, w = g.shape[0] * g.spacing_mm, g.shape[1] * g.spacing_mm
    fy, fx = h * rng.uniform(0.40, 0.46), w * rng.uniform(0.60, 0.66)
    r = rng.uniform(22, 26)
    _soft_tissue(
        ph,
        rng,
        body,
        [((0, w * 0.4), (h * 0.45, w * 0.45), 150, 120), ((fy, fx), (h, fx + 25), 75, 65)],
        depth_ratio=0.6,
    )
    d = body.bone_density
    pelvis = BoneBuilder(g)
    pelvis.part("ellipsoid", fy - 70, fx - 45, 65, 55, 12, -25.0, cortex=2.0)  # iliac wing
    pelvis.part("ellipsoid", fy - 2, fx - 8, r + 8, r + 6, 18, cortex=2.0)  # acetabulum
    pelvis.part("capsule", fy + 25, fx - 20, fy + 45, 15, 9, 8, cortex=1.5)  # superior pubic ramus
    pelvis.part("capsule", fy + 45, fx - 30, fy + 75, fx - 55, 10, 8, cortex=1.5)  # ischium
    pelvis.part("capsule", fy + 75, fx - 55, fy + 70, 20, 7, 7, cortex=1.5)  # inferior ramus
    pelvis.part("ellipsoid", fy - 40, 5, 60, 28, 30, cortex=1.5)  # sacrum edge at the left margin
    pelvis.finish(ph, rng, d)
    femur = BoneBuilder(g)
    femur.part("ellipsoid", fy, fx, r, r, r, cortex=1.0)
    neck_end = (fy + 30, fx + 35)
    femur.part("capsule", fy + 3, fx + 5, neck_end[0], neck_end[1], 15, 17, cortex=2.0)
    femur.part("ellipsoid", fy + 22, fx + 52, 22, 14, 22, cortex=1.5)  # greater trochanter
    femur.part("ellipsoid", fy + 58, fx + 25, 9, 8, 10, cortex=1.0)  # lesser trochanter
    femur.part("capsule", fy + 40, fx + 40, h, fx + 30, 18, 14, cortex=4.0 * d)
    femur.finish(ph, rng, d)
    ph.landmarks.update(
        joint_line=fy,
        joint_centre=(fy, fx),
        condyles=[(fy, fx, r, r)],
        half_width=r,
        menisci=[(fy - r - 2, fx - 10), (fy + 26, 18)],  # labrum, symphysis
        tendons=[
            ("gluteus medius tendon", (fy + 2, fx + 66), 80.0),
            ("gluteus minimus tendon", (fy - 8, fx + 56), 60.0),
        ],
        periarticular=[(fy - 10, fx + 75), (fy + 40, fx + 70), (fy - 45, fx + 40)],
        pelvic_soft=[(fy + 10, fx - 70), (fy + 40, fx - 90), (fy + 60, fx - 60), (fy + 20, 40)],
        gluteal_subcut=[(fy - 60, fx + 60), (fy - 40, fx + 80)],
        shaft=((fy + 40, fx + 40), (h, fx + 30)),
        artery=[(fy - 40, fx - 30), (h, fx + 5)],
        region_site="hip",
    )


def _hand_wrist(ph: Phantom, rng: np.random.Generator, body: Body) -> None:
    g = ph.grid
    h, w = g.shape[0] * g.spacing_mm, g.shape[1] * g.spacing_mm
    cx = w / 2 + rng.normal(0, 3)
    wy = h * rng.uniform(0.62, 0.68)  # radiocarpal joint
    d = body.bone_density
    limbs = [((wy, cx), (h, cx), 34, 30), ((wy - 55, cx), (wy, cx), 44, 36)]
    rays = []
    for k, dx in enumerate((-30, -15, 0, 14, 27)):
        top = wy - (120 if k in (2, 3) else 110 if k == 1 else 95 if k == 4 else 70)
        rays.append((top, cx + dx * 1.25))
        limbs.append(((wy - 55, cx + dx * 0.8), (top, cx + dx * 1.35), 9, 7))
    _soft_tissue(ph, rng, body, limbs, depth_ratio=0.8)
    radius = BoneBuilder(g)
    radius.part("ellipsoid", wy + 8, cx - 8, 10, 20, 14, cortex=1.0)
    radius.part("capsule", wy + 12, cx - 8, h, cx - 4, 17, 11, cortex=2.5 * d)
    radius.finish(ph, rng, d)
    ulna = BoneBuilder(g)
    ulna.part("ellipsoid", wy + 12, cx + 20, 7, 8, 10, cortex=1.0)
    ulna.part("capsule", wy + 14, cx + 20, h, cx + 16, 8, 9, cortex=2.0 * d)
    ulna.finish(ph, rng, d)
    carpals = BoneBuilder(g)
    for dy, dx, ry, rx in [
        (-8, -12, 8, 9),
        (-9, 2, 7, 7),
        (-8, 14, 6, 6),
        (-22, -18, 7, 8),
        (-24, -6, 7, 6),
        (-25, 5, 8, 7),
        (-23, 16, 7, 7),
        (-4, 18, 5, 4),
    ]:
        carpals.part("ellipsoid", wy + dy, cx + dx, ry, rx, 9, rng.uniform(-20, 20), cortex=0.8)
    carpals.finish(ph, rng, d)
    for k, dx in enumerate((-30, -15, 0, 14, 27)):
        base = (wy - 32, cx + dx * 0.75)
        top = rays[k]
        n_phal = 2 if k == 0 else 3
        total = np.array(top) - np.array(base)
        seg_lengths = [0.42, 0.3, 0.17, 0.11] if n_phal == 3 else [0.5, 0.3, 0.2]
        start = np.array(base)
        bone = BoneBuilder(g)
        for j, frac in enumerate(seg_lengths):
            end = start + total * frac
            rad = (5.5 if j == 0 else 4.5 - j * 0.6) * (1.15 if k == 0 else 1.0)
            bone.part("capsule", start[0] - 0.5, start[1], end[0] + 1.5, end[1], rad, rad * 0.8, cortex=1.2 * d)
            start = end - total * 0.02
        bone.finish(ph, rng, d)
    ph.landmarks.update(
        joint_line=wy,
        joint_centre=(wy, cx),
        condyles=[(wy + 8, cx - 8, 10, 20)],
        half_width=22,
        menisci=[(wy + 3, cx + 20)],  # TFCC
        tendons=[
            ("flexor carpi ulnaris tendon", (wy - 10, cx + 26), 90.0),
            ("extensor tendons", (wy + 25, cx - 2), 90.0),
        ],
        periarticular=[(wy - 50, cx - 30), (wy - 75, cx + 30), (wy + 20, cx + 30)],
        fingertips=[(t[0] + 4, t[1]) for t in rays],
        shaft=((wy + 12, cx - 8), (h, cx - 4)),
        artery=[(h, cx - 15), (wy - 20, cx - 25)],
        region_site="wrist",
    )


def _thigh_leg(ph: Phantom, rng: np.random.Generator, body: Body) -> None:
    g = ph.grid
    h, w = g.shape[0] * g.spacing_mm, g.shape[1] * g.spacing_mm
    cx = w / 2 + rng.normal(0, 5)
    _soft_tissue(ph, rng, body, [((0, cx), (h, cx), 78, 62)])
    d = body.bone_density
    femur = BoneBuilder(g)
    bx = cx + rng.normal(0, 6)
    femur.part("capsule", -10, bx, h + 10, bx + rng.normal(0, 4), 15, 14, cortex=5.0 * d)
    femur.finish(ph, rng, d)
    ph.landmarks.update(
        joint_line=None,
        joint_centre=(h / 2, bx),
        condyles=[],
        half_width=15,
        menisci=[],
        tendons=[("quadriceps tendon", (h * 0.9, bx), 90.0)],
        periarticular=[(h * 0.3, bx - 45), (h * 0.7, bx + 45)],
        shaft=((0, bx), (h, bx)),
        artery=[(0, bx - 20), (h, bx - 8)],
        region_site="thigh",
    )


REGION_SIZE_MM: dict[Region, tuple[float, float]] = {
    Region.KNEE: (230.0, 190.0),
    Region.SHOULDER: (230.0, 230.0),
    Region.HIP_PELVIS: (260.0, 300.0),
    Region.HAND_WRIST: (240.0, 170.0),
    Region.THIGH_LEG: (330.0, 200.0),
}

_BUILDERS: dict[Region, Callable[[Phantom, np.random.Generator, Body], None]] = {
    Region.KNEE: _knee,
    Region.SHOULDER: _shoulder,
    Region.HIP_PELVIS: _hip_pelvis,
    Region.HAND_WRIST: _hand_wrist,
    Region.THIGH_LEG: _thigh_leg,
}


def build_phantom(region: Region, grid: Grid, rng: np.random.Generator, body: Body) -> Phantom:
    """Render the region's anatomy on ``grid`` (canonical pose)."""
    ph = Phantom(grid=grid, maps={})
    _BUILDERS[region](ph, rng, body)
    ph.landmarks["region"] = region
    ph.landmarks["laterality"] = body.laterality
    if ph.bone_outer is None:
        ph.bone_outer = grid.zeros()
    return ph
