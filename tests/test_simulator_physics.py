"""The simulator's fast paths (and the broad Gaussian blur) agree with the direct computations they replace."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from calcdx.datasets.simulator.materials import Material
from calcdx.datasets.simulator.physics import (
    GAUSSIAN_FROM_QUANTA,
    Acquisition,
    detected_spectrum,
    process,
    quantum_counts,
)
from calcdx.datasets.simulator.shapes import (
    Grid,
    blur,
    capsule,
    ellipsoid,
    nested_capsules,
    polyline_tube,
    positive_part,
)
from calcdx.datasets.simulator.transmission import (
    PER_ENERGY,
    basis_fit_error,
    primary_transmission,
    primary_transmission_exact,
)
from calcdx.gaussian import BROAD_SIGMA_PX, Border, gaussian_blur, gaussian_blur_direct


def _acquisition(kvp: float, detector: str) -> Acquisition:
    return Acquisition(kvp=kvp, dose_ugy=5.0, detector=detector, scatter_to_primary=0.5, grid=False, blur_mm=0.1,
                       electronic_noise=0.001, heel_strength=0.1, heel_axis="rows", processing="log", gamma=1.0,
                       collimation_mm=0.0, grid_line_amplitude=0.0)


def _phantom_maps(rng: np.random.Generator, shape: tuple[int, int]) -> dict[Material, np.ndarray]:
    """Smooth soft tissue up to 13 cm of fat and 11 cm of muscle, bone, and sparse deposits and metal."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32) / max(shape)
    maps = {
        Material.FAT: 130.0 * yy * (0.5 + 0.5 * xx),
        Material.MUSCLE: 110.0 * xx,
        Material.CORTICAL_BONE: 30.0 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.05),
        Material.SPONGIOSA: 40.0 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.04),
    }
    for material, depth in ((Material.HYDROXYAPATITE, 3.0), (Material.CPPD, 1.0), (Material.URATE, 8.0),
                            (Material.IRON, 2.0), (Material.LEAD, 1.0)):
        m = np.zeros(shape, np.float32)
        r, c = rng.integers(5, shape[0] - 5), rng.integers(5, shape[1] - 5)
        m[r - 3 : r + 3, c - 3 : c + 3] = depth
        maps[material] = m
    return {k: v.astype(np.float32) for k, v in maps.items()}


@pytest.mark.parametrize(("kvp", "detector"), [(55.0, "DR"), (70.0, "CR"), (85.0, "DR"), (110.0, "CR")])
def test_two_basis_transmission_agrees_with_the_sum_over_energies(kvp: float, detector: str) -> None:
    maps = _phantom_maps(np.random.default_rng(int(kvp)), (160, 200))
    weights = detected_spectrum(_acquisition(kvp, detector))
    fast = primary_transmission(maps, weights)
    exact = primary_transmission_exact(maps, weights)
    assert fast.dtype == np.float32
    # 1e-3 in ln T is 0.1 % of the signal, against about 2 % quantum noise per pixel
    assert np.abs(np.log(fast) - np.log(exact)).max() < 1e-3
    # a 3 mm hydroxyapatite deposit keeps its contrast to the neighbouring pixels
    ha = maps[Material.HYDROXYAPATITE] > 0
    ring = np.zeros_like(ha)
    rows, cols = np.nonzero(ha)
    ring[rows.min() - 2, cols.min() : cols.max() + 1] = True
    contrast = lambda t: float(np.log(t[ring].mean()) - np.log(t[ha].mean()))  # noqa: E731
    assert contrast(fast) == pytest.approx(contrast(exact), rel=1e-3)


def test_deposit_materials_summed_in_their_windows_give_the_same_transmission() -> None:
    from calcdx.datasets.simulator.lesion import support

    maps = _phantom_maps(np.random.default_rng(5), (160, 200))
    deposits = (Material.HYDROXYAPATITE, Material.CPPD, Material.URATE, Material.IRON, Material.LEAD)
    supports = {m: support(maps[m]) for m in deposits}
    assert all(rows.stop - rows.start == 6 for rows, _ in supports.values())
    weights = detected_spectrum(_acquisition(70.0, "DR"))
    np.testing.assert_allclose(primary_transmission(maps, weights, supports), primary_transmission(maps, weights),
                               rtol=1e-6)


def test_metals_are_summed_energy_by_energy_because_two_bases_cannot_describe_them() -> None:
    assert {Material.LEAD, Material.IRON} <= PER_ENERGY
    assert basis_fit_error(Material.LEAD) > 0.05
    for material in (Material.MUSCLE, Material.CORTICAL_BONE, Material.HYDROXYAPATITE, Material.CPPD):
        assert basis_fit_error(material) < 0.005


@pytest.mark.parametrize(("sigma", "border"), [(BROAD_SIGMA_PX + 1, "reflect"), (40.0, "replicate"),
                                               (125.0, "replicate"), (250.0, "reflect")])
def test_broad_blur_matches_the_direct_gaussian(sigma: float, border: Border) -> None:
    grid = Grid.make(300.0, 240.0, 0.2)
    image = grid.zeros()
    ellipsoid(grid, 150, 120, 80, 60, 40, out=image)
    ellipsoid(grid, 100, 90, 5, 3, 2, out=image, scale=4.0)
    image /= image.max()
    fast, direct = gaussian_blur(image, sigma, border), gaussian_blur_direct(image, sigma, border)
    assert np.abs(fast - direct).max() < 0.003
    noise = np.random.default_rng(0).standard_normal(image.shape).astype(np.float32)
    fast_n, direct_n = gaussian_blur(noise, sigma, border), gaussian_blur_direct(noise, sigma, border)
    if border == "replicate":  # a repeated edge pixel is one sample, not an average: compare the interior
        m = int(3 * sigma)
        fast_n, direct_n = fast_n[m:-m, m:-m], direct_n[m:-m, m:-m]
    assert float(fast_n.std()) == pytest.approx(float(direct_n.std()), rel=0.05)
    assert np.corrcoef(fast_n.ravel(), direct_n.ravel())[0, 1] > 0.99


def test_polyline_tube_is_the_same_drawn_in_a_window() -> None:
    grid = Grid.make(60.0, 80.0, 0.25)
    points = np.array([[10.0, 10.0], [25.0, 30.0], [30.0, 55.0], [50.0, 70.0]])
    tube = polyline_tube(grid, points, 1.5, depth_ratio=2.0)
    assert tube.shape == grid.shape
    # the chord through a tube of radius 1.5 mm, depth ratio 2, on its axis: 2 * 2 * 1.5 = 6 mm
    r, c = round(25.0 / 0.25 - 0.5), round(30.0 / 0.25 - 0.5)
    assert tube[r, c] == pytest.approx(6.0, abs=0.1)
    assert tube[0, -1] == 0.0 and tube.max() <= 6.0 + 1e-4  # joints are not counted twice


@pytest.mark.parametrize("quanta", [0.3, 4.0, GAUSSIAN_FROM_QUANTA - 1, GAUSSIAN_FROM_QUANTA, 400.0, 5000.0])
def test_quantum_counts_have_poisson_mean_and_variance(quanta: float) -> None:
    rng = np.random.default_rng(7)
    counts = quantum_counts(np.full((400, 500), quanta, np.float32), rng)
    assert counts.dtype == np.float32 and counts.min() >= 0
    assert abs(counts.mean() - quanta) < 4 * np.sqrt(quanta / counts.size)
    assert counts.var() == pytest.approx(quanta, rel=0.02)
    if quanta < GAUSSIAN_FROM_QUANTA:  # the Poisson law itself: whole quanta, P(0) = exp(-lambda)
        assert np.array_equal(counts, np.round(counts))
        assert (counts == 0).mean() == pytest.approx(np.exp(-quanta), abs=0.005)


def test_opencv_normal_draws_are_standard_normal_and_reproducible() -> None:
    from scipy import stats

    from calcdx.datasets.simulator.shapes import standard_normal

    draws = standard_normal(np.random.default_rng(3), (1500, 1000))
    again = standard_normal(np.random.default_rng(3), (1500, 1000))
    assert draws.dtype == np.float32 and np.array_equal(draws, again)
    assert not np.array_equal(draws, standard_normal(np.random.default_rng(4), (1500, 1000)))
    flat = draws.ravel().astype(np.float64)
    assert abs(flat.mean()) < 4 / np.sqrt(flat.size) and flat.var() == pytest.approx(1.0, abs=0.005)
    assert abs(stats.skew(flat)) < 0.01 and abs(stats.kurtosis(flat)) < 0.02
    assert stats.kstest(flat[::17], "norm").pvalue > 0.001
    for lagged in ((draws[:, 1:], draws[:, :-1]), (draws[1:], draws[:-1])):  # neighbours are independent
        assert abs(np.corrcoef(lagged[0].ravel(), lagged[1].ravel())[0, 1]) < 0.005


@pytest.mark.parametrize("sigma", [1.5, 5.0, 13.0])
def test_smooth_noise_drawn_coarse_keeps_the_gaussian_correlation(sigma: float) -> None:
    """Broad fields are drawn coarse and resized: their autocorrelation is still exp(-lag^2 / 4 sigma^2)."""
    from calcdx.datasets.simulator.shapes import smooth_noise

    field = smooth_noise(np.random.default_rng(5), (1200, 1300), sigma)
    assert field.shape == (1200, 1300) and field.dtype == np.float32
    assert field.std() == pytest.approx(1.0, abs=1e-4)
    for lag_sigmas in (0.5, 1.0, 2.0):
        lag = round(lag_sigmas * sigma)
        measured = float((field[:, lag:] * field[:, :-lag]).mean())
        assert measured == pytest.approx(np.exp(-(lag**2) / (4 * sigma**2)), abs=0.04), lag


@pytest.mark.parametrize(("laterality", "rotation"), [("R", 0.0), ("L", 0.0), ("R", 7.3), ("L", -5.1)])
def test_a_mask_posed_in_its_window_matches_the_whole_frame_posed(laterality: str, rotation: float) -> None:
    from calcdx.datasets.simulator.anatomy import Body
    from calcdx.datasets.simulator.dataset import _transform, field_window
    from calcdx.datasets.simulator.lesion import support

    body = Body(habitus=1.0, fat_fraction=0.3, bone_density=1.0, view="AP", laterality=laterality,
                rotation_deg=rotation)
    grid = Grid.make(150.0, 120.0, 0.2)
    rng = np.random.default_rng(11)
    for _ in range(6):
        thickness = ellipsoid(grid, rng.uniform(20, 130), rng.uniform(20, 100), rng.uniform(1, 8), rng.uniform(1, 8),
                              3.0, rng.uniform(0, 180))
        mask = thickness > 0.3
        window = support(mask)
        posed = field_window(mask[window], window, mask.shape, body, shutter_rows=40)
        whole = _transform(mask, body, 0)
        whole[:40] = whole[-40:] = False
        if posed is None:
            assert whole.sum() < 0.5 * mask.sum()
            continue
        placed = np.zeros(mask.shape, bool)
        placed[posed[1]] = posed[0]
        assert (placed != whole).sum() <= max(2, 0.005 * whole.sum())


@pytest.mark.parametrize(("laterality", "rotation"), [("R", 7.3), ("L", -5.1)])
def test_attenuation_posed_on_16_bits_matches_the_float_warp(laterality: str, rotation: float) -> None:
    """The pose warps a radiograph's attenuation as 16-bit levels: within one level (2.4e-4 of attenuation,
    0.024 % of the transmission) of OpenCV's float32 warp, bone edges and a lead marker included."""
    import cv2

    from calcdx.datasets.simulator.anatomy import Body
    from calcdx.datasets.simulator.dataset import ATTENUATION_RANGE, _transform

    maps = _phantom_maps(np.random.default_rng(7), (400, 300))
    maps[Material.LEAD][200:210, 20:40] = 4.0  # a thick marker: attenuation beyond the range
    weights = detected_spectrum(_acquisition(70.0, "DR"))
    attenuation = -np.log(primary_transmission(maps, weights)).astype(np.float32)
    body = Body(habitus=1.0, fat_fraction=0.3, bone_density=1.0, view="AP", laterality=laterality,
                rotation_deg=rotation)
    h, w = attenuation.shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rotation, 1.0)
    if laterality == "L":
        matrix = matrix @ np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    ceiling = float(attenuation.min()) + ATTENUATION_RANGE
    assert attenuation.max() > ceiling  # the marker is clipped to the range
    expected = cv2.warpAffine(np.minimum(attenuation, ceiling), matrix, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    posed = _transform(attenuation, body, 1)
    assert posed.dtype == np.float32
    np.testing.assert_allclose(posed, expected, rtol=0, atol=ATTENUATION_RANGE / 65535 * 1.01)


def test_exposure_control_gives_thin_and_thick_parts_the_same_quantum_noise() -> None:
    """The detector dose behind the patient is what the exposure control holds (SIMULATOR-NOTES:
    2.5-10 uGy, 1,000-5,000 quanta per 150 um pixel): a thick part gets more exposure, not more noise."""
    from dataclasses import replace

    from calcdx.datasets.simulator.physics import QUANTA_PER_MM2_PER_UGY, expose

    acq = replace(_acquisition(70.0, "DR"), blur_mm=0.0, electronic_noise=0.0, heel_strength=0.0,
                  scatter_to_primary=0.0)
    noise, air_kerma = [], []
    for muscle_mm in (40.0, 160.0):
        maps = {Material.MUSCLE: np.full((300, 300), muscle_mm, np.float32)}
        exposure = expose(maps, 0.15, acq, np.random.default_rng(1))
        noise.append(float(exposure.detected.std() / exposure.detected.mean()))
        air_kerma.append(exposure.air_kerma_ugy)
    expected = 1 / np.sqrt(acq.dose_ugy * QUANTA_PER_MM2_PER_UGY * 0.15**2)  # 5 uGy: 2,025 quanta per pixel
    assert noise == pytest.approx([expected, expected], rel=0.03)
    assert air_kerma[1] > 20 * air_kerma[0] > 20 * acq.dose_ugy  # 12 cm more muscle: far more exposure


def test_exposure_control_median_on_its_sampling_grid_is_the_full_median() -> None:
    """The exposure control reads a regular grid of about AEC_SAMPLE_PX pixels: on a radiograph-sized
    field with a patient outline, noise and a density gradient it holds the median of every pixel
    behind the patient to 0.5 %; a patient smaller than the grid's spacing is still found."""
    from calcdx.datasets.simulator.physics import AEC_FIELD, aec_reference

    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[0:2600, 0:2200]
    inside = (rows - 1300) ** 2 / 1100**2 + (cols - 1000) ** 2 / 700**2 < 1
    signal = (0.05 + 0.3 * cols / 2200 + rng.normal(0, 0.01, rows.shape)).astype(np.float32)
    h, w = signal.shape
    dr, dc = int(h * (1 - AEC_FIELD) / 2), int(w * (1 - AEC_FIELD) / 2)
    full = float(np.median(signal[dr:h - dr, dc:w - dc][inside[dr:h - dr, dc:w - dc]]))
    assert aec_reference(signal, inside) == pytest.approx(full, rel=0.005)
    speck = np.zeros_like(inside)
    speck[5, 7] = True  # one pixel of patient, outside the central field and off the grid
    assert aec_reference(signal, speck) == pytest.approx(float(signal[5, 7]))
    assert aec_reference(signal, np.zeros_like(inside)) == 1.0


def test_a_worker_keeps_the_memory_it_frees_on_glibc() -> None:
    """The simulator's workers raise glibc's mmap threshold: freed frames of 8-16 MB are reused from
    the heap (no new page faults) instead of being unmapped and faulted in again (by default each
    larger frame than the last is a fresh mapping).  In a child process, so that this test run's
    own allocator is left as it is."""
    import subprocess
    import sys

    probe = (
        "import resource, numpy as np\n"
        "from calcdx.allocator import retain_freed_memory\n"
        "def faults():\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    for k in range(20):\n"
        "        a = np.empty(2_000_000 + 100_000 * k, np.float32); a.fill(1.0); del a\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
        "default = faults()\n"
        "assert retain_freed_memory()\n"
        "faults()\n"  # the first pass grows the heap
        "print(default, faults())\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    default, retained = map(int, result.stdout.split())
    assert default > 5000  # most of the 20 frames are fresh mappings (10,600 faults measured)
    assert retained < 200  # none are (0 measured)


def _process_direct(detected: np.ndarray, spacing_mm: float, acq: Acquisition) -> np.ndarray:
    """The processing styles written out as formulas (what ``process`` computes in place)."""
    attenuation = -np.log(detected.astype(np.float64))
    stride = max(1, int(np.sqrt(attenuation.size / 250_000)))  # the display window's percentile sample
    sample = attenuation[::stride, ::stride]
    if acq.processing == "raw":
        img = np.clip(attenuation / np.percentile(sample, 99.9), 0, 1)
    else:
        lo, hi = np.percentile(sample, [0.5, 99.8])
        img = np.clip((attenuation - lo) / (hi - lo), 0, 1)
    if acq.processing == "unsharp":
        img = np.clip(img + 0.6 * (img - blur(img.astype(np.float32), 4.0 / spacing_mm)), 0, 1)
    elif acq.processing == "equalised":
        img = np.clip(0.55 * img + 0.45 * (img - blur(img.astype(np.float32), 25.0 / spacing_mm) + 0.5), 0, 1)
    img = img**acq.gamma
    if acq.grid and acq.grid_line_amplitude > 0:
        cols = np.arange(img.shape[1]) * spacing_mm
        img = img * (1.0 + acq.grid_line_amplitude * np.sin(2 * np.pi * cols / 0.25 * 0.93))[None, :]
    edge = int(acq.collimation_mm / spacing_mm)
    img[:edge] = img[:edge] * 0.15 + 0.8
    img[-edge:] = img[-edge:] * 0.15 + 0.8
    return np.clip(img, 0, 1)


@pytest.mark.parametrize("style", ["log", "unsharp", "equalised", "raw"])
@pytest.mark.parametrize("gamma", [0.8, 1.0, 1.2])
def test_processing_in_place_matches_the_formulas(style: str, gamma: float) -> None:
    import cv2

    rng = np.random.default_rng(3)
    detected = cv2.GaussianBlur(rng.uniform(0.001, 1.0, (600, 500)).astype(np.float32), (0, 0), 12)
    detected = np.clip(detected + rng.normal(0, 0.01, detected.shape).astype(np.float32), 1e-4, None)
    acq = replace(_acquisition(70.0, "DR"), processing=style, gamma=gamma, grid=True, grid_line_amplitude=0.02,
                  collimation_mm=5.0)
    got = process(detected.copy(), 0.15, acq)
    assert got.dtype == np.float32 and got.shape == detected.shape
    np.testing.assert_allclose(got, _process_direct(detected, 0.15, acq), atol=2e-5)


def test_nested_capsules_equal_one_capsule_per_layer() -> None:
    """A limb's skin and muscle drawn in one pass over their shared geometry are the capsules drawn one by one."""
    grid = Grid.make(120.0, 90.0, 0.3)
    layers = [(1.0, grid.zeros()), (0.7, grid.zeros()), (0.35, grid.zeros())]
    for p0, p1 in (((10.0, 40.0), (100.0, 52.0)), ((60.0, 5.0), (62.0, 85.0))):
        nested_capsules(grid, p0, p1, 30.0, 22.0, layers, depth_ratio=0.8, union=True)
    for factor, got in layers:
        expected = grid.zeros()
        for p0, p1 in (((10.0, 40.0), (100.0, 52.0)), ((60.0, 5.0), (62.0, 85.0))):
            capsule(grid, p0, p1, 30.0 * factor, 22.0 * factor, out=expected, depth_ratio=0.8, union=True)
        assert expected.max() > 10.0
        np.testing.assert_allclose(got, expected, atol=1e-3)  # mm; float32 rounding under the square root at the rim


@pytest.mark.parametrize(("p0", "p1"), [((10.0, 40.0), (100.0, 40.0)), ((100.0, 40.0), (10.0, 40.0)),
                                        ((60.0, 5.0), (60.0, 85.0)), ((60.0, 85.0), (60.0, 5.0)),
                                        ((10.0, 40.0), (100.0, 52.0))])
def test_a_capsule_is_the_chord_through_a_tapered_cylinder(p0: tuple[float, float], p1: tuple[float, float]) -> None:
    """Along the rows, along the columns (the separable path) and oblique: the chord
    2 sqrt(r(t)^2 - d^2) with d the distance to the axis segment and r tapering from r0 to r1."""
    grid = Grid.make(120.0, 90.0, 0.3)
    got = capsule(grid, p0, p1, 25.0, 15.0, depth_ratio=0.8)
    yy, xx = np.broadcast_arrays(grid.y.astype(np.float64), grid.x.astype(np.float64))
    axis = np.subtract(p1, p0, dtype=np.float64)
    length = float(np.hypot(*axis))
    t = np.clip(((yy - p0[0]) * axis[0] + (xx - p0[1]) * axis[1]) / length, 0.0, length)
    nearest_y, nearest_x = p0[0] + axis[0] * t / length, p0[1] + axis[1] * t / length
    radius = 25.0 + (15.0 - 25.0) * t / length
    expected = 2.0 * 0.8 * np.sqrt(np.maximum(radius**2 - (yy - nearest_y) ** 2 - (xx - nearest_x) ** 2, 0.0))
    assert expected.max() > 30.0
    np.testing.assert_allclose(got, expected, atol=2e-3)  # mm; float32 under the square root at the rim


@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (4, 1), (1, 4), (3, 2), (200, 300)])
def test_positive_part_is_numpys_maximum_for_every_shape(shape: tuple[int, int]) -> None:
    """OpenCV's threshold, not ``cv2.max`` with a scalar (which reads a (4, 1) array as a scalar)."""
    values = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    expected = np.maximum(values, np.float32(0.0))
    got = positive_part(values)
    assert got is values
    np.testing.assert_array_equal(got, expected)


def test_solids_outside_the_grid_draw_nothing() -> None:
    grid = Grid.make(20.0, 30.0, 0.5)
    assert not capsule(grid, (40.0, 5.0), (60.0, 5.0), 3.0, 3.0).any()
    assert not ellipsoid(grid, -30.0, 10.0, 4.0, 4.0, 4.0).any()
