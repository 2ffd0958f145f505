import math

import numpy as np
import pytest
import torch

from pipeline.config import Preprocess
from pipeline.extract import empty_row, pack_crops
from pipeline.model import build_model
from pipeline.scoring import Scorer, score_batch

PRE = Preprocess(input_size=32)


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(0)
    return Scorer(build_model(), PRE, device="cpu", max_batch=4, precision="fp32")


def crops(n, seed):
    return np.random.default_rng(seed).integers(0, 255, (n, 32, 32, 3), np.uint8)


def test_scores_are_probabilities_and_independent_of_batching(scorer):
    x = crops(10, 0)
    scores = scorer.score(x)  # 3 forward passes of at most 4
    assert scores.shape == (10,) and ((scores >= 0) & (scores <= 1)).all()
    assert np.allclose(scores[:3], scorer.score(x[:3]), atol=1e-5)
    assert scorer.score(x[:0]).shape == (0,)


def test_normalisation_matches_the_reference(scorer):
    x = crops(2, 1)
    ref = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(PRE.mean).view(1, 3, 1, 1)
    std = torch.tensor(PRE.std).view(1, 3, 1, 1)
    with torch.no_grad():
        want = torch.sigmoid(scorer.model((ref - mean) / std)).flatten().numpy()
    assert np.allclose(scorer.score(x), want, atol=1e-5)


def test_auto_precision_stays_close_to_fp32(scorer):
    # bf16 where this CPU has it natively (this project's CI machine does), fp32 elsewhere.
    fast = Scorer(scorer.model, PRE, device="cpu", max_batch=4)
    x = crops(8, 2)
    assert np.abs(fast.score(x) - scorer.score(x)).max() < 1e-2
    with pytest.raises(ValueError, match="precision"):
        Scorer(scorer.model, PRE, device="cpu", precision="fp16")


def row(path, status, n_crops, seed=0):
    r = empty_row({"path": path, "size_bytes": 1, "modified_at": 0.0, "fingerprint": "f"})
    r.update(status=status, error="" if status != "error" else "broken")
    if n_crops:
        r.update(crops=pack_crops(list(crops(n_crops, seed))), crop_size=32)
        r["face_meta"] = np.zeros((n_crops, 7)).tobytes()
    return r


def as_batch(rows):
    return {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}


def test_score_batch_scores_each_video_from_its_own_faces(scorer):
    rows = [
        row("a", "ok", 3, 1),
        row("b", "error", 0),
        row("c", "no_face", 0),
        row("d", "ok", 5, 2),
    ]
    out = score_batch(as_batch(rows), scorer, threshold=0.5, method="mean", model_id="m1")
    assert out["faces_scored"] == [3, 0, 0, 5]
    a_scores = np.frombuffer(out["face_scores"][0], np.float32)
    assert out["fake_score"][0] == pytest.approx(float(a_scores.mean()), abs=1e-6)
    assert np.allclose(a_scores, scorer.score(crops(3, 1)), atol=1e-5)
    for i in (1, 2):  # no faces: no score and no label, never a made-up 0.5
        assert math.isnan(out["fake_score"][i]) and out["label"][i] == ""
    assert out["label"][3] in ("fake", "real")
    assert out["model_id"] == ["m1"] * 4
    assert "crops" not in out and out["status"] == ["ok", "error", "no_face", "ok"]


def test_folded_batchnorms_score_as_the_model_did_and_leave_it_alone():
    torch.manual_seed(1)
    model = build_model().eval()
    for m in model.modules():  # running statistics unlike a fresh model's 0 and 1
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
    scorer = Scorer(model, PRE, device="cpu", precision="fp32")
    folded = scorer.model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 53  # untouched
    seen = []
    folded.layer4.register_forward_hook(lambda *_: seen.append(True))  # Grad-CAM's hook point
    with torch.no_grad():
        got = folded(x)
    assert seen and torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(want, torch.zeros_like(want), atol=1e-3)
