"""Explanations: Grad-CAM heatmaps that show which regions of a face drove its score.

Grad-CAM (Selvaraju et al., 2017): the gradients of the 'fake' logit with respect to the last
convolutional block's activations weight those activations; their positive sum, upsampled to the
crop, is the map.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.config import Preprocess
from pipeline.scoring import input_stats, model_input


def grad_cam(
    model: nn.Module,
    crops: np.ndarray,
    preprocess: Preprocess,
    threshold: float = 0.5,
    layer=None,
) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB crops -> (N, S, S) float32 maps in 0..1 (float32 on any device).

    Each map explains the face's own verdict: for a face scored fake (at or above `threshold`)
    the regions that pushed its score up, for a face scored real those that pushed it down."""
    layer = layer if layer is not None else model.layer4
    device = next(model.parameters()).device
    store: dict = {}

    def keep(_module, _inputs, output):
        store["act"] = output
        output.register_hook(lambda grad: store.__setitem__("grad", grad))

    handle = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        # torch.tensor copies: the crops may be a read-only view of a report or pipe buffer.
        x = model_input(torch.tensor(crops).to(device), *input_stats(preprocess, device))
        with torch.enable_grad():
            logits = model(x).squeeze(1)
            fake = torch.sigmoid(logits.detach()) >= threshold
            sign = torch.where(fake, 1.0, -1.0)
            model.zero_grad(set_to_none=True)
            (logits * sign).sum().backward()
        weights = store["grad"].mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * store["act"]).sum(dim=1)).detach()
    finally:
        handle.remove()
        model.train(was_training)
    size = crops.shape[1]
    cam = nn.functional.interpolate(cam[:, None], size=(size, size), mode="bilinear")[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-8).view(-1, 1, 1)
    return (cam / peak).cpu().numpy().astype(np.float32)


def overlay(crop: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heatmap in colour over an RGB crop (RGB out)."""
    colour = cv2.applyColorMap(np.uint8(heat * 255), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    return np.uint8(np.clip((1 - alpha) * crop + alpha * colour, 0, 255))
