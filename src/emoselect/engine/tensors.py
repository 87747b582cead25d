"""Pictures as network input, and the low-level statistics of what the network sees (torch).

``to_tensor`` resizes and crops an RGB picture as :class:`emoselect.images.Preprocessing` says,
``normalise`` applies the per-channel mean and SD, ``image_statistics`` measures luma, contrast,
colourfulness and high-spatial-frequency energy of a batch.
"""

from __future__ import annotations

import torch
from PIL import Image

from ..pictures.images import Preprocessing


def to_tensor(image: Image.Image, prep: Preprocessing) -> torch.Tensor:
    """An RGB picture as the network's unnormalised input: float32 [3, crop, crop] in [0, 1]."""
    from torchvision.transforms import functional as F

    image = F.resize(image, prep.resize, interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    image = F.center_crop(image, [prep.crop, prep.crop])
    tensor = F.pil_to_tensor(image).float().div_(255.0)
    if prep.grayscale:
        gray = 0.299 * tensor[0] + 0.587 * tensor[1] + 0.114 * tensor[2]
        tensor = gray.expand(3, -1, -1).clone()
    return tensor


def normalise(batch: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> the network's normalised input (per-channel mean and SD)."""
    mean = torch.tensor(prep.mean, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std


IMAGE_STATISTICS = ("luminance", "rms_contrast", "colourfulness", "hsf_energy")
HSF_CUTOFF = 0.25  # cycles per pixel: half the Nyquist frequency


def image_statistics(batch: torch.Tensor) -> torch.Tensor:
    """Low-level statistics of pictures as the network sees them: [B, 3, H, W] in [0, 1] -> [B, 4].

    Computed in float64 per picture, returned as float32. Columns (``IMAGE_STATISTICS``): mean luma (Rec. 709 weights on the gamma-encoded values, 0-1);
    RMS contrast (SD of luma over pixels, 0-1); colourfulness (Hasler & Suesstrunk 2003, on the 0-255
    scale); high-spatial-frequency energy (share of the luma power spectrum, mean removed, above
    ``HSF_CUTOFF`` cycles/pixel).
    """
    batch = batch.double()  # float64: the same numbers whatever the batch size (float32 FFTs differ by 1e-7)
    luma = 0.2126 * batch[:, 0] + 0.7152 * batch[:, 1] + 0.0722 * batch[:, 2]
    luminance = luma.mean(dim=(1, 2))
    contrast = luma.std(dim=(1, 2), unbiased=False)
    rgb = batch * 255.0
    rg = rgb[:, 0] - rgb[:, 1]
    yb = 0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]
    colourfulness = torch.sqrt(
        rg.var(dim=(1, 2), unbiased=False) + yb.var(dim=(1, 2), unbiased=False)
    ) + 0.3 * torch.sqrt(rg.mean(dim=(1, 2)) ** 2 + yb.mean(dim=(1, 2)) ** 2)
    centred = luma - luminance[:, None, None]
    power = torch.fft.fft2(centred).abs() ** 2
    fy = torch.fft.fftfreq(luma.shape[1], device=batch.device)[:, None]
    fx = torch.fft.fftfreq(luma.shape[2], device=batch.device)[None, :]
    high = (torch.sqrt(fx**2 + fy**2) > HSF_CUTOFF).float()
    total = power.sum(dim=(1, 2))
    hsf = torch.where(total > 0, (power * high).sum(dim=(1, 2)) / total.clamp_min(1e-20), torch.zeros_like(total))
    return torch.stack([luminance, contrast, colourfulness, hsf], dim=1).float()
