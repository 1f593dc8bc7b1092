"""transforms.ToTensor (PIL -> [C, H, W] float in [0, 1]) and an importable v2 namespace."""

import numpy as np
import torch

from torchvision.transforms import v2  # noqa: F401


class ToTensor:
    def __call__(self, pic):
        array = np.array(pic.convert("RGB") if hasattr(pic, "convert") else pic)
        return torch.from_numpy(array).permute(2, 0, 1).float().div(255.0)
