import math

import pytest

from pipeline.aggregate import aggregate, label_for


def test_simple_strategies():
    s = [0.1, 0.2, 0.9, 0.6]
    assert aggregate(s, "mean") == pytest.approx(0.45)
    assert aggregate(s, "max") == pytest.approx(0.9)
    assert aggregate(s, "topk", top_k=2) == pytest.approx(0.75)
    assert aggregate(s, "topk", top_k=10) == pytest.approx(0.45)


def test_confident_keeps_a_manipulated_stretch_from_being_averaged_away():
    scores = [0.95] * 14 + [0.3] * 18  # 14 of 32 faces confidently fake
    assert aggregate(scores, "mean") < 0.6
    assert aggregate(scores, "confident") == pytest.approx(0.95)


def test_confident_trusts_a_clearly_real_video_and_falls_back_to_the_mean():
    assert aggregate([0.05] * 30 + [0.5] * 2, "confident") == pytest.approx(0.05)
    assert aggregate([0.5, 0.6, 0.9], "confident") == pytest.approx(2.0 / 3.0)


def test_no_faces_gives_no_score():
    assert math.isnan(aggregate([], "confident"))
    assert label_for(math.nan, 0.5) is None


def test_labels_by_threshold():
    assert label_for(0.5, 0.5) == "fake" and label_for(0.49, 0.5) == "real"


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate([0.1], "median")
