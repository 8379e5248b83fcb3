"""The paper's augmentation (docs/paper.md s.4), applied to whole batches on the device: random crop
with black padding, horizontal flip, Cutout after normalisation. Sizes scale with the image side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The paper's augmentation at 32 px: pad 4 and a 16 px Cutout hole; other sizes scale with it.
PAPER_IMAGE_SIZE = 32
PAPER_CROP_PADDING = 4
PAPER_CUTOUT = 16


def cutout_holes(n: int, h: int, w: int, size: int, generator: torch.Generator, device) -> torch.Tensor:
    """(n, h, w) boolean masks of one `size` x `size` square each, centred anywhere in the image
    and clipped at the border (the Cutout code's rule: the centre is drawn over the whole image)."""
    cy = torch.randint(0, h, (n, 1), generator=generator).to(device)
    cx = torch.randint(0, w, (n, 1), generator=generator).to(device)
    half = size // 2
    ys, xs = torch.arange(h, device=device), torch.arange(w, device=device)
    in_rows = (ys >= cy - half) & (ys < cy - half + size)
    in_cols = (xs >= cx - half) & (xs < cx - half + size)
    return in_rows[:, :, None] & in_cols[:, None, :]


@dataclass(frozen=True)
class Augmentation:
    """docs/paper.md s.4 at any image size: crop with black padding, horizontal flip, Cutout (one square
    hole, applied after normalisation, centre anywhere, clipped at the border).

    The released pipeline pads the raw image (black = pixel value 0) and normalises afterwards,
    so the border of a shifted crop is normalised black, not the mean colour; Cutout's hole is 0
    after normalisation. Given `normalise`, the crop and flip work on raw pixels, then the batch is
    normalised, then Cutout is applied, in that order.
    """

    crop_padding: int
    cutout: int
    flip: bool = True

    @classmethod
    def paper(cls, image_size: int, cutout: bool = True) -> Augmentation:
        scale = image_size / PAPER_IMAGE_SIZE
        return cls(round(PAPER_CROP_PADDING * scale), round(PAPER_CUTOUT * scale) if cutout else 0)

    def __call__(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        normalise: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        n, _, h, w = x.shape
        dev = x.device

        def draw(high, size):
            return torch.randint(0, high, size, generator=generator).to(dev)

        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))  # zeros: black when x is still in pixel values
            rows = draw(2 * p + 1, (n,))[:, None] + torch.arange(h, device=dev)
            cols = draw(2 * p + 1, (n,))[:, None] + torch.arange(w, device=dev)
            batch = torch.arange(n, device=dev)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if self.flip:
            flip = draw(2, (n,)).bool()
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if normalise is not None:
            x = normalise(x)
        if self.cutout:
            x = x.masked_fill(cutout_holes(n, h, w, self.cutout, generator, dev)[:, None], 0.0)
        return x.contiguous()
