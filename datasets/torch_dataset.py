"""A torch ``Dataset`` over a manifest: DICOM -> model grid (+ class masks) -> tensors.

Each image is read once (``calcdx.datasets.reader.read_radiograph``), resampled to the
model grid (``to_model_grid``) and, where the manifest has annotations with masks or boxes,
rasterised into one mask per pattern on that grid.  The preprocessed arrays are cached
(``cache_dir``, one ``.npz`` per image, keyed by file, size, mtime and spacing), so later
epochs skip DICOM decoding.

Training samples are crops of ``size_px`` (biased towards lesions when masks exist);
labels of a crop come from its masks (a lesion cut to a sliver is ignored in the loss).
Images without masks keep their image label and are padded, not cropped (set ``size_px``
large enough).  Evaluation samples are whole images (pad with ``pad_collate``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from calcdx.datasets.augment import apply_augment
from calcdx.datasets.manifest import ManifestRow, load_annotations
from calcdx.datasets.radiograph import Radiograph
from calcdx.datasets.transforms import grid_shape, resample_mask, to_model_grid
from calcdx.errors import ManifestError
from calcdx.taxonomy import PATTERNS

logger = logging.getLogger(__name__)

MIN_KEEP_FRACTION = 0.25  # of a class's mask pixels inside a crop for a positive crop label
MIN_KEEP_PIXELS = 6


def read_image(path: Path) -> Radiograph:
    """Read a radiograph with the calcdx reader (``calcdx.datasets.reader.read_radiograph``).

    Raises:
        InputError: a subclass naming the file and why it cannot be used.
    """
    from calcdx.datasets.reader import read_radiograph

    return read_radiograph(path)


def _class_masks(row: ManifestRow, image_shape: tuple[int, int],
                 out_shape: tuple[int, int]) -> np.ndarray | None:
    """uint8 [C, h, w] masks on the model grid from the row's annotations; None if none."""
    if row.annotations is None:
        return None
    lesions = load_annotations(row.annotations)
    names = [p.value for p in PATTERNS]
    masks = np.zeros((len(names), *out_shape), dtype=np.uint8)
    sr, sc = out_shape[0] / image_shape[0], out_shape[1] / image_shape[1]
    for lesion in lesions:
        kind = str(lesion.get("kind", ""))
        if kind not in names:
            continue
        c = names.index(kind)
        mask_ref = lesion.get("mask")
        if mask_ref:
            mpath = Path(mask_ref)
            if not mpath.is_absolute():
                mpath = row.annotations.parent / mpath
            try:
                with np.load(mpath) as data:
                    full = np.asarray(data["mask"], dtype=bool)
            except (OSError, KeyError, ValueError) as exc:
                raise ManifestError(f"cannot read lesion mask: {exc}", path=mpath) from exc
            if full.shape != image_shape:
                raise ManifestError(f"mask shape {full.shape} differs from image {image_shape}", path=mpath)
            masks[c] |= resample_mask(full, out_shape).astype(np.uint8)
        elif lesion.get("bbox_px"):
            r0, c0, r1, c1 = (float(v) for v in lesion["bbox_px"])
            rr0, rr1 = int(np.floor(r0 * sr)), int(np.ceil(r1 * sr))
            cc0, cc1 = int(np.floor(c0 * sc)), int(np.ceil(c1 * sc))
            masks[c, max(rr0, 0):max(rr1, rr0 + 1), max(cc0, 0):max(cc1, cc0 + 1)] = 1
    return masks


def _cache_key(row: ManifestRow, spacing_mm: float, use_masks: bool) -> str:
    st = row.path.stat()
    text = f"{row.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{spacing_mm:.6f}|{use_masks}"
    return hashlib.sha1(text.encode()).hexdigest()


def preprocess(row: ManifestRow, spacing_mm: float, use_masks: bool = True,
               cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(grid image float32 [h, w] in [0, 1], class masks uint8 [C, h, w] or None) for a row."""
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / f"{_cache_key(row, spacing_mm, use_masks)}.npz"
        if cache_file.is_file():
            try:
                with np.load(cache_file) as data:
                    image = data["image"].astype(np.float32)
                    masks = _cached_masks(data)
                return image, masks
            except (OSError, ValueError, KeyError):
                logger.warning("ignoring unreadable cache file %s", cache_file)
    radiograph = read_image(row.path)
    image = to_model_grid(radiograph, spacing_mm)
    masks = None
    if use_masks:
        masks = _class_masks(row, radiograph.shape, grid_shape(radiograph.shape, radiograph.pixel_spacing_mm,
                                                               spacing_mm))
    if cache_file is not None:
        image = image.astype(np.float16).astype(np.float32)  # identical to what the cache returns
        _write_cache(cache_file, image, masks)
    return image, masks


def _cached_masks(data: Any) -> np.ndarray | None:
    """Masks from an open cache file: bit-packed (current) or uint8 (caches written before)."""
    if "masks_bits" in data.files:
        shape = tuple(int(n) for n in data["masks_shape"])
        return np.unpackbits(data["masks_bits"], count=int(np.prod(shape))).reshape(shape)
    return data["masks"] if "masks" in data.files else None


def _write_cache(cache_file: Path, image: np.ndarray, masks: np.ndarray | None) -> None:
    """Store one preprocessed image atomically; a full or unwritable disk only costs the cache.

    A training run of an hour once died on "No space left on device" while caching its
    new images; the cache is an optimisation, so the run now goes on without it.
    """
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
    arrays: dict[str, Any] = {"image": image.astype(np.float16)}
    if masks is not None:  # bit-packed: a sixth of the disk the uint8 masks took
        arrays["masks_bits"] = np.packbits(masks.astype(bool), axis=None)
        arrays["masks_shape"] = np.asarray(masks.shape, dtype=np.int64)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **arrays)
        tmp.replace(cache_file)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log = logger.debug if _cache_failures else logger.warning  # once per process, not per image
        _cache_failures.append(str(exc))
        log("not caching %s (training goes on without the cache): %s", cache_file, exc)


_cache_failures: list[str] = []


class PackedMasks:
    """Class masks [C, h, w] kept as the bit-packed box around their nonzero pixels.

    Lesions cover a small part of a radiograph, so this is a few kilobytes where the
    bit-packed full masks were a quarter of the float16 image: it lets a training run hold
    a third more images in the same memory.
    """

    __slots__ = ("bits", "box", "shape")

    def __init__(self, masks: np.ndarray) -> None:
        self.shape = tuple(int(n) for n in masks.shape)
        rows = np.flatnonzero(masks.any(axis=(0, 2)))
        cols = np.flatnonzero(masks.any(axis=(0, 1)))
        if rows.size == 0:
            self.box = (0, 0, 0, 0)
            self.bits = np.zeros(0, dtype=np.uint8)
        else:
            self.box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
            r0, c0, r1, c1 = self.box
            self.bits = np.packbits(masks[:, r0:r1, c0:c1].astype(bool), axis=None)

    def unpack(self) -> np.ndarray:
        """The uint8 masks [C, h, w]."""
        masks = np.zeros(self.shape, dtype=np.uint8)
        r0, c0, r1, c1 = self.box
        if r1 > r0:
            inner = (self.shape[0], r1 - r0, c1 - c0)
            count = int(np.prod(inner))
            masks[:, r0:r1, c0:c1] = np.unpackbits(self.bits, count=count).reshape(inner)
        return masks


def _pack(image: np.ndarray, masks: np.ndarray | None) -> tuple[np.ndarray, PackedMasks | None]:
    """Compact in-memory form: float16 image, masks as ``PackedMasks``."""
    return image.astype(np.float16), (PackedMasks(masks) if masks is not None else None)


def _place(array: np.ndarray, size: int, r0: int, c0: int) -> np.ndarray:
    """Crop/pad the last two axes of ``array`` to ``size`` starting at (r0, c0) (may be negative = pad)."""
    h, w = array.shape[-2:]
    out = np.zeros((*array.shape[:-2], size, size), dtype=array.dtype)
    sr0, sc0 = max(r0, 0), max(c0, 0)
    sr1, sc1 = min(r0 + size, h), min(c0 + size, w)
    out[..., sr0 - r0:sr1 - r0, sc0 - c0:sc1 - c0] = array[..., sr0:sr1, sc0:sc1]
    return out


class ManifestDataset(Dataset[dict[str, Any]]):
    """Samples from manifest rows on the model grid.

    Args:
        rows: manifest rows.
        spacing_mm: model grid spacing (mm per pixel).
        size_px: training crop size (square); None = whole images (evaluation).
        augment: an albumentations pipeline from ``build_augment`` or None.
        use_masks: rasterise annotation masks (mask supervision and crop labels).
        cache_dir: where preprocessed arrays are cached (None: no cache).
        seed: base seed; crop and augmentation draws depend on (seed, epoch, index) only.
        lesion_crop_p: probability that a training crop is centred on a lesion.

    Each sample is a dict: ``image`` float32 [1, H, W], ``labels`` float32 [C],
    ``label_weight`` float32 [C] (0 = ignore), ``masks`` uint8 [C, H, W], ``has_mask`` bool,
    ``index`` int.
    """

    def __init__(self, rows: Sequence[ManifestRow], spacing_mm: float, *, size_px: int | None = None,
                 augment: Any = None, use_masks: bool = True, cache_dir: str | Path | None = None,
                 seed: int = 0, lesion_crop_p: float = 0.5) -> None:
        self.rows = list(rows)
        self.spacing_mm = float(spacing_mm)
        self.size_px = size_px
        self.augment = augment
        self.use_masks = use_masks
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.seed = seed
        self.lesion_crop_p = lesion_crop_p
        self.epoch = 0
        # image as float16, masks as the bit-packed box around their lesions
        self._memory: dict[int, tuple[np.ndarray, PackedMasks | None]] = {}

    def set_epoch(self, epoch: int) -> None:
        """Make the random draws of this epoch (call before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Preprocessed (image float32, masks) of row ``index`` (kept in memory as float16)."""
        if index not in self._memory:
            image, masks = preprocess(self.rows[index], self.spacing_mm, self.use_masks, self.cache_dir)
            self._memory[index] = _pack(image, masks)
        image16, packed = self._memory[index]
        masks = packed.unpack() if packed is not None else None
        return image16.astype(np.float32), masks

    def preload(self, progress: bool = False, workers: int = 0) -> None:
        """Preprocess every row now (before DataLoader workers fork, so they share the arrays).

        ``workers`` > 1 decodes and resamples in that many processes.
        """
        todo = [i for i in range(len(self.rows)) if i not in self._memory]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="preprocess", leave=False, dynamic_ncols=True)
        if workers > 1 and len(todo) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                futures = {i: pool.submit(preprocess, self.rows[i], self.spacing_mm, self.use_masks,
                                          self.cache_dir) for i in todo}
                for i, fut in futures.items():
                    image, masks = fut.result()
                    self._memory[i] = _pack(image, masks)
                    if bar is not None:
                        bar.update(1)
        else:
            for i in todo:
                self.load(i)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        image, masks = self.load(index)
        labels = np.asarray(row.label_vector(), dtype=np.float32)
        weight = np.ones_like(labels)
        digest = hashlib.sha1(f"{self.seed}|{self.epoch}|{index}".encode()).digest()
        seed = int.from_bytes(digest[:4], "little")
        rng = np.random.default_rng(seed)
        if self.size_px is not None:
            image, masks = self._crop(image, masks, rng)
        image, masks = apply_augment(self.augment, image, masks, seed)
        has_mask = masks is not None
        if masks is not None and self.size_px is not None:
            labels, weight = self._crop_labels(self.load(index)[1], masks, labels)
        if masks is None:
            masks = np.zeros((len(labels), *image.shape), dtype=np.uint8)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            "labels": torch.from_numpy(labels),
            "label_weight": torch.from_numpy(weight),
            "masks": torch.from_numpy(np.ascontiguousarray(masks, dtype=np.uint8)),
            "has_mask": has_mask,
            "index": index,
        }

    def _crop(self, image: np.ndarray, masks: np.ndarray | None,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        size = int(self.size_px or 0)
        h, w = image.shape
        centre = None
        if masks is not None and masks.any() and rng.random() < self.lesion_crop_p:
            _, rr, cc = np.nonzero(masks)
            k = int(rng.integers(len(rr)))
            centre = (int(rr[k]), int(cc[k]))
        if masks is None and (h > size or w > size):
            # no masks: a crop could cut the lesion away and leave a wrong label
            logger.debug("image %dx%d larger than crop %d without masks: centre crop", h, w, size)

        def start(n: int, c: int | None) -> int:
            if n <= size:
                return -int(rng.integers(0, size - n + 1)) if self.augment is not None else 0
            if c is None:
                return int(rng.integers(0, n - size + 1))
            jitter = int(rng.integers(-size // 3, size // 3 + 1))
            return int(np.clip(c - size // 2 + jitter, 0, n - size))

        r0 = start(h, centre[0] if centre else None)
        c0 = start(w, centre[1] if centre else None)
        if masks is None and (h > size or w > size):
            r0, c0 = (h - size) // 2 if h > size else r0, (w - size) // 2 if w > size else c0
        image = _place(image, size, r0, c0)
        return image, (_place(masks, size, r0, c0) if masks is not None else None)

    @staticmethod
    def _crop_labels(full: np.ndarray | None, crop: np.ndarray,
                     labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels from the masks left in the crop; slivers of a lesion get weight 0."""
        weight = np.ones_like(labels)
        if full is None:
            return labels, weight
        total = full.reshape(full.shape[0], -1).sum(axis=1).astype(np.float64)
        kept = crop.reshape(crop.shape[0], -1).sum(axis=1).astype(np.float64)
        out = labels.copy()
        for c in range(len(labels)):
            if total[c] == 0:
                continue  # class absent from masks: keep the image label
            need = min(MIN_KEEP_FRACTION * total[c], MIN_KEEP_PIXELS)
            if kept[c] >= need:
                out[c] = 1.0
            elif kept[c] > 0:
                out[c], weight[c] = 0.0, 0.0
            else:
                out[c] = 0.0
        return out, weight


def pad_collate(batch: Sequence[dict[str, Any]], multiple: int = 32) -> dict[str, Any]:
    """Stack samples, padding images and masks (bottom/right, zeros) to a common size."""
    h = max(s["image"].shape[-2] for s in batch)
    w = max(s["image"].shape[-1] for s in batch)
    h, w = h + (-h) % multiple, w + (-w) % multiple
    images = torch.zeros(len(batch), 1, h, w)
    masks = torch.zeros(len(batch), batch[0]["masks"].shape[0], h, w, dtype=torch.uint8)
    sizes = []
    for i, s in enumerate(batch):
        ih, iw = s["image"].shape[-2:]
        images[i, :, :ih, :iw] = s["image"]
        masks[i, :, :ih, :iw] = s["masks"]
        sizes.append((ih, iw))
    return {
        "image": images,
        "labels": torch.stack([s["labels"] for s in batch]),
        "label_weight": torch.stack([s["label_weight"] for s in batch]),
        "masks": masks,
        "has_mask": torch.tensor([bool(s["has_mask"]) for s in batch]),
        "index": torch.tensor([int(s["index"]) for s in batch]),
        "sizes": torch.tensor(sizes),
    }
