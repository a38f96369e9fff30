"""Augmentation for radiographs on the model grid (albumentations).

Geometry (flip, small rotation / scale / shift), contrast and gamma, detector-like noise
and mild blur.  Nothing here draws or erases structures: masks go through the same
geometric transforms as the image, so the ground truth stays aligned, and blur and noise
stay mild enough not to erase a millimetre calcification.
"""

from __future__ import annotations

from typing import Any

import albumentations as A  # noqa: N812
import cv2
import numpy as np

from calcdx.errors import ConfigError

LEVELS = ("none", "light", "default", "strong")


def build_augment(level: str = "default") -> A.Compose | None:
    """The augmentation pipeline for ``level`` (None for "none").

    Raises:
        ConfigError: unknown level.
    """
    if level not in LEVELS:
        raise ConfigError(f'Argument "augment" should be one of {LEVELS}, got {level!r}')
    if level == "none":
        return None
    k = {"light": 0.5, "default": 1.0, "strong": 1.5}[level]
    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.2),
        A.Affine(scale=(1 - 0.1 * k, 1 + 0.1 * k), rotate=(-12 * k, 12 * k),
                 translate_percent=(-0.05 * k, 0.05 * k), border_mode=cv2.BORDER_CONSTANT, fill=0,
                 fill_mask=0, p=0.7),
        A.RandomGamma(gamma_limit=(round(100 - 25 * k), round(100 + 25 * k)), p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.1 * k, contrast_limit=0.15 * k, p=0.5),
        A.GaussNoise(std_range=(0.0, 0.02 * k), p=0.4),
        A.GaussianBlur(sigma_limit=(0.1, 0.5 * k), blur_limit=(3, 3), p=0.2),
    ])


def apply_augment(pipeline: A.Compose | None, image: np.ndarray, masks: np.ndarray | None,
                  seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Augment ``image[H, W]`` float32 in [0, 1] and ``masks[C, H, W]`` uint8 together.

    ``seed`` fixes the random draw (per epoch and sample), so runs and resumes repeat.
    """
    if pipeline is None:
        return image, masks
    pipeline.set_random_seed(seed)
    kw: dict[str, Any] = {"image": image}
    if masks is not None:
        kw["mask"] = np.ascontiguousarray(masks.transpose(1, 2, 0))
    out = pipeline(**kw)
    img = np.clip(out["image"], 0.0, 1.0).astype(np.float32)
    new_masks = out["mask"].transpose(2, 0, 1) if masks is not None else None
    return img, new_masks
