"""Self-blended fakes from real faces: landmarks, masks, boundary maps, the boundary head."""

import cv2
import numpy as np
import pytest
import torch
from fixtures import face_photo, write_face_images

from pipeline.config import Preprocess, TrainConfig
from pipeline.model import BoundaryModel, build_model
from pipeline.selfblend import (
    INNER,
    OUTLINE,
    OUTLINES,
    blend,
    blend_pair,
    face_landmarks,
    face_mask,
    onto,
    reencoded,
    similar_faces,
)
from pipeline.training import (
    FaceImages,
    boundary_loss,
    build_transform,
    concat_items,
    list_images,
    load_image,
)
from pipeline.trainplan import blend_outlines


def portrait(size: int = 256) -> np.ndarray:
    """The real test photo (RGB), cut square around its face and shrunk to `size`."""
    photo = cv2.cvtColor(face_photo(), cv2.COLOR_BGR2RGB)
    h, w = photo.shape[:2]
    side = min(h, w)
    return cv2.resize(photo[:side, (w - side) // 2 : (w + side) // 2], (size, size))


def test_the_detector_gives_the_face_box_and_both_eyes():
    lm = face_landmarks(portrait())
    x, y, w, h = lm["box"]
    (lx, ly), (rx, ry) = lm["eyes"]
    assert x < lx < rx < x + w and y < ly < y + h * 0.6 and y < ry < y + h * 0.6
    blank = np.full((128, 128, 3), 127, np.uint8)
    assert face_landmarks(blank) is None


def test_a_blend_is_reproducible_from_its_seed():
    img, lm = portrait(), face_landmarks(portrait())
    a, edge_a = blend(img, np.random.default_rng(7), lm)
    b, edge_b = blend(img, np.random.default_rng(7), lm)
    c, _ = blend(img, np.random.default_rng(8), lm)
    assert np.array_equal(a, b) and np.array_equal(edge_a, edge_b)
    assert not np.array_equal(a, c) and not np.array_equal(a, img)


def test_the_mask_lies_inside_the_face_and_the_boundary_only_on_its_edge():
    img = portrait()
    lm = face_landmarks(img)
    x, y, w, h = lm["box"]
    (lx, ly), (rx, ry) = lm["eyes"]
    for seed in range(20):
        mask = face_mask(256, 256, np.random.default_rng(seed), lm)
        ys, xs = np.nonzero(mask > 0.01)
        # within the detector's box, widened by a third of its size (brows to chin, ears)
        assert xs.min() >= x - w / 3 and xs.max() <= x + w * 4 / 3
        assert ys.min() >= y - h / 3 and ys.max() <= y + h * 4 / 3
        assert mask[round((ly + ry) / 2), round((lx + rx) / 2)] > 0.99  # between the eyes
        _, edge = blend(img, np.random.default_rng(seed), lm)
        assert edge.max() > 0.5  # somewhere on the edge, M is near 1/2
        assert edge[round((ly + ry) / 2) + 10, round((lx + rx) / 2)] < 1e-3  # inside the face
        assert edge[:10, :10].max() == 0 and edge[-10:, -10:].max() == 0  # far outside


def test_the_inner_face_spares_the_forehead_and_hulls_draw_every_region():
    img = portrait()
    lm = face_landmarks(img)
    (lx, ly), (rx, ry) = lm["eyes"]
    eye_line = (ly + ry) / 2

    def tops_and_areas(outlines):  # the mask's top row (above the eyes, in px) and its area
        masks = [face_mask(256, 256, np.random.default_rng(s), lm, outlines) for s in range(30)]
        return [eye_line - np.nonzero(m > 0.5)[0].min() for m in masks], [
            (m > 0.5).sum() for m in masks
        ]

    outline_tops, outline_areas = tops_and_areas((OUTLINE,))
    inner_tops, inner_areas = tops_and_areas((INNER,))
    # the inner face (brows to mouth) stops below every outline's forehead and is smaller
    assert max(inner_tops) < min(outline_tops)
    assert np.mean(inner_areas) < 0.75 * np.mean(outline_areas)
    for s in range(5):  # still around the eyes
        inner = face_mask(256, 256, np.random.default_rng(s), lm, (INNER,))
        assert inner[round(eye_line), round((lx + rx) / 2)] > 0.99
    # "hulls" draws a region per blend: foreheads and no foreheads among 30 draws
    tops, _ = tops_and_areas(OUTLINES["hulls"])
    assert max(tops) <= max(outline_tops)
    assert any(t <= max(inner_tops) for t in tops) and any(t >= min(outline_tops) for t in tops)
    # and a seeded blend with one region is the outline's blend as before
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert np.array_equal(
        blend_pair(img, rng_a, lm)[1], blend_pair(img, rng_b, lm, None, (OUTLINE,))[1]
    )
    cfg = TrainConfig(data_dir="x", run_dir="x", blend_mask="hulls")
    assert blend_outlines(cfg) == OUTLINES["hulls"]
    assert blend_outlines(TrainConfig(data_dir="x", run_dir="x")) == (OUTLINE,)
    with pytest.raises(ValueError, match="blend_mask"):
        TrainConfig(data_dir="x", run_dir="x", blend_mask="squares")


def test_without_landmarks_the_blend_uses_a_centred_ellipse():
    mask = face_mask(64, 64, np.random.default_rng(0), None)
    assert mask[32, 32] > 0.9 and mask[0, 0] == 0 and mask[63, 63] == 0


def test_face_images_carry_boundary_maps_through_the_crops(tmp_path):
    faces = write_face_images(tmp_path, n_real=4, n_fake=2, size=56)
    items = list_images(faces)
    cfg = TrainConfig(data_dir=faces, run_dir="x", image_size=56, resize=False, train_crop=40)
    ds = FaceImages(
        items, build_transform(cfg, Preprocess(input_size=56), True), 1.0, boundaries=True
    )
    assert len(ds) == 6 + 4
    kinds = {}
    for i in range(len(ds)):
        img, label, edge, known = ds[i]
        assert img.shape == (3, 40, 40) and edge.shape == (1, 40, 40)
        kinds.setdefault((label, bool(known)), []).append(float(edge.max()))
    assert max(kinds[(0, True)]) == 0  # real faces: no edge, and known to have none
    assert len(kinds[(1, False)]) == 2  # the folder's fakes: unknown
    assert max(kinds[(1, True)]) > 0.3  # the blends: their edge
    # validation's blends are the same every time
    val = FaceImages(items, build_transform(cfg, Preprocess(input_size=56), False), 1.0,
                     fixed_blends=True)  # fmt: skip
    assert torch.equal(val[8][0], val[8][0]) and val[8][1] == 1


def test_the_boundary_head_learns_only_where_the_map_is_known():
    torch.manual_seed(0)
    model = BoundaryModel(build_model("resnet50_layer2_npr"))
    logits, edges = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 1) and edges.shape == (2, 1, 8, 8)
    maps = torch.zeros(2, 1, 64, 64)
    maps[0, :, 20:40, 20:40] = 1.0
    both = boundary_loss(edges, maps, torch.tensor([True, True]))
    first = boundary_loss(edges, maps, torch.tensor([True, False]))
    assert both != first
    none = boundary_loss(edges, maps, torch.tensor([False, False]))
    none.backward()  # zero, and still connected to the head
    assert none.item() == 0 and model.head[0].weight.grad is not None
    # the classifier alone is what a checkpoint saves: no head keys in it
    assert not any(k.startswith("head") for k in model.net.state_dict())


def test_real_faces_and_blends_alike_are_reencoded_from_their_seed(tmp_path):
    img = portrait(64)
    a, b = reencoded(img, np.random.default_rng(3)), reencoded(img, np.random.default_rng(3))
    assert np.array_equal(a, b) and a.shape == img.shape and a.dtype == np.uint8
    assert not np.array_equal(a, img) and np.abs(a.astype(int) - img).mean() < 8  # same face
    faces = write_face_images(tmp_path, n_real=3, n_fake=0, size=48)
    items = list_images(faces, need_fakes=False)

    def dataset(jpeg):
        return FaceImages(items, None, 1.0, fixed_blends=True, seed=5, jpeg=jpeg)

    plain, every = dataset(0.0), dataset(1.0)
    assert len(every) == 6
    for i in range(len(every)):  # the real faces (0-2) as much as their blends (3-5)
        untouched = np.ascontiguousarray(plain[i][0].permute(1, 2, 0).numpy())
        rng = np.random.default_rng((5, i, 1))  # item i's second stream: whether, then how
        assert rng.random() < 1.0
        expected = reencoded(untouched, rng)
        assert np.array_equal(every[i][0].permute(1, 2, 0).numpy(), expected)
        assert every[i][1] == plain[i][1] == (1 if i >= 3 else 0)
    assert torch.equal(plain[0][0], load_image(items[0][0]))  # without it, untouched
    with pytest.raises(ValueError, match="blend_jpeg"):
        TrainConfig(data_dir=faces, run_dir="x", blend_jpeg=1.5)


def test_a_pair_is_the_blends_own_target_and_its_blend():
    img = portrait(96)
    kept = recoloured = 0
    for seed in range(8):
        target, fake, edge = blend_pair(img, np.random.default_rng(seed))
        alone, alone_edge = blend(img, np.random.default_rng(seed))
        assert np.array_equal(fake, alone) and np.array_equal(edge, alone_edge)  # same draws
        # away from the face the blend is its target, pixel for pixel
        assert np.array_equal(fake[:8, :8], target[:8, :8]) and not np.array_equal(fake, target)
        if np.array_equal(target, img):
            kept += 1
        else:  # the target copy was the recoloured one: the same face in other colours
            recoloured += 1
            assert np.abs(target.astype(int) - img).mean() < 40
    assert kept and recoloured  # either copy is altered, as in SBI


def test_paired_items_are_a_face_and_its_blend_cut_and_flipped_alike(tmp_path):
    faces = write_face_images(tmp_path, n_real=3, n_fake=1, size=64)
    items = list_images(faces)
    cfg = TrainConfig(data_dir=faces, run_dir="x", image_size=64, resize=False, train_crop=48,
                      augment="light")  # fmt: skip
    transform = build_transform(cfg, Preprocess(input_size=64), True)
    paired = FaceImages(items, transform, pairs=True, boundaries=True)
    apart = FaceImages(items, transform, 1.0, boundaries=True)
    assert len(paired) == 4 and len(apart) == 4 + 3  # blends beside their faces, not after
    for i, (_, label) in enumerate(items):
        img, labels, maps, known = paired[i]
        if label == 1:  # a folder's fake: alone, its blend edge unknown
            assert img.shape == (1, 3, 48, 48) and labels.tolist() == [1]
            assert known.tolist() == [False]
            continue
        assert img.shape == (2, 3, 48, 48) and maps.shape == (2, 1, 48, 48)
        assert labels.tolist() == [0, 1] and known.tolist() == [True, True]
        assert maps[0].max() == 0 and maps[1].max() > 0.3
        # one crop and flip for both: outside the blend, every pixel of the two is the same
        same = (img[0] == img[1]).all(0).float().mean()
        assert same > 0.2
        # a face and a blend drawn apart (another crop) share almost no pixel
        its_blend = apart[len(items) + apart.reals.index(i)]
        assert its_blend[1] == 1 and (apart[i][0] == its_blend[0]).all(0).float().mean() < 0.05
    loader = torch.utils.data.DataLoader(paired, batch_size=4, collate_fn=concat_items)
    img, labels, maps, known = next(iter(loader))
    assert img.shape == (7, 3, 48, 48) and maps.shape == (7, 1, 48, 48)
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 1] and known.sum() == 6


def test_training_on_blends_recolours_the_folders_fakes_as_often_as_its_reals(tmp_path):
    # Blends' targets are recoloured half the time, and real faces with them; a folder's fakes
    # must be too, or the recolouring (its shifts and rounding) would mark the real class.
    faces = write_face_images(tmp_path, n_real=2, n_fake=1, size=48)
    items = list_images(faces)
    fake = next(i for i, (_, y) in enumerate(items) if y == 1)
    torch.manual_seed(0)
    for data, take in (
        (FaceImages(items, None, 1.0), lambda d, i: d[i][0]),
        (FaceImages(items, None, pairs=True), lambda d, i: d[i][0][0]),
    ):
        for i in (0, fake):
            raw = load_image(items[i][0])
            altered = sum(not torch.equal(take(data, i), raw) for _ in range(24))
            assert 3 <= altered <= 21, (i, altered)  # about half of the draws
    # without blends, and in validation's fixed blends, a folder's faces are untouched
    for data in (FaceImages(items, None), FaceImages(items, None, 1.0, fixed_blends=True)):
        assert torch.equal(data[fake][0], load_image(items[fake][0]))


def test_a_donor_face_is_moved_onto_this_faces_eyes_in_this_faces_colours():
    img = portrait()
    lm = face_landmarks(img)
    # The same face smaller, off centre, on grey and tinted: only its eyes say where it is.
    donor = np.full((300, 280, 3), 90, np.uint8)
    donor[60:252, 20:212] = cv2.resize(img, (192, 192))
    donor = np.clip(donor * np.array([0.6, 1.0, 1.3]), 0, 255).astype(np.uint8)
    donor_lm = face_landmarks(donor)
    moved = onto(donor, donor_lm, img, lm)
    assert moved.shape == img.shape and moved.dtype == np.float32
    inside = face_mask(256, 256, np.random.default_rng(0), lm) > 0.5
    # in this face's colours: each channel's mean and spread inside the face
    assert np.abs(moved[inside].mean(0) - img[inside].mean(0)).max() < 1
    assert np.abs(moved[inside].std(0) / img[inside].std(0) - 1).max() < 0.05
    # and back in place (to a pixel or two: a 0.75 shrink and the eyes found again)
    off = np.abs(moved[inside] - img[inside]).mean()
    stretched = cv2.resize(donor, (256, 256)).astype(np.float32)  # what no alignment gives
    assert off < 40 and np.abs(stretched[inside] - img[inside]).mean() > 2 * off
    # A blend with a donor: this face outside the mask, reproducible, not the self-blend.
    target, fake, edge = blend_pair(img, np.random.default_rng(4), lm, (donor, donor_lm))
    again = blend_pair(img, np.random.default_rng(4), lm, (donor, donor_lm))[1]
    itself = blend_pair(img, np.random.default_rng(4), lm)[1]
    assert np.array_equal(fake, again) and not np.array_equal(fake, itself)
    assert np.array_equal(fake[:8, :8], target[:8, :8]) and edge.max() > 0.5


def test_face_images_paste_another_real_face_as_often_as_donors_asks(tmp_path):
    faces = write_face_images(tmp_path, n_real=2, n_fake=0, size=64, seed=3)
    items = list_images(faces, need_fakes=False)
    images = [np.ascontiguousarray(load_image(p).permute(1, 2, 0).numpy()) for p, _ in items]

    def blend_of(donors):  # face 0's seeded blend, item 2
        data = FaceImages(items, None, 1.0, fixed_blends=True, seed=5, donors=donors)
        return data[2][0].permute(1, 2, 0).numpy()

    rng = np.random.default_rng((5, 2))
    assert np.array_equal(blend_of(0.0), blend_pair(images[0], rng)[1])
    rng = np.random.default_rng((5, 2))  # with two faces, the donor is always the other one
    assert np.array_equal(blend_of(1.0), blend_pair(images[0], rng, None, (images[1], None))[1])
    with pytest.raises(ValueError, match="blend_donors"):
        TrainConfig(data_dir=faces, run_dir="x", blend_donors=1.5)
    # the regions the masks are drawn from reach the blends
    data = FaceImages(items, None, 1.0, fixed_blends=True, seed=5, outlines=(INNER,))
    rng = np.random.default_rng((5, 2))
    expected = blend_pair(images[0], rng, None, None, (INNER,))[1]
    assert np.array_equal(data[2][0].permute(1, 2, 0).numpy(), expected)


def test_a_donor_posed_alike_is_drawn_from_the_faces_nearest_in_pose(tmp_path):
    def face(eyes):
        return {"box": [8, 8, 48, 48], "eyes": eyes}

    front = face([[20, 24], [44, 24]])
    turned = face([[10, 20], [26, 20]])  # eyes off to one side and closer together
    front_too = face([[21, 25], [45, 25]])
    near = similar_faces([front, turned, front_too, None], k=1)
    assert list(near[0]) == [2] and list(near[2]) == [0] and near[3] is None
    assert list(similar_faces([front, turned, front_too], k=5)[0]) == [2, 1]  # nearest first

    faces = write_face_images(tmp_path, n_real=3, n_fake=0, size=64, seed=3)
    items = list_images(faces, need_fakes=False)
    images = [np.ascontiguousarray(load_image(p).permute(1, 2, 0).numpy()) for p, _ in items]
    lms = {items[0][0]: front, items[1][0]: turned, items[2][0]: front_too}
    data = FaceImages(
        items, None, 1.0, landmarks=lms, fixed_blends=True, seed=5, donors=1.0, donor_pool=1
    )
    rng = np.random.default_rng((5, 3))  # item 3: face 0's blend; its donor is face 2
    expected = blend_pair(images[0], rng, front, (images[2], front_too))[1]
    assert np.array_equal(data[3][0].permute(1, 2, 0).numpy(), expected)
    with pytest.raises(ValueError, match="blend_donor_pool"):
        TrainConfig(data_dir=faces, run_dir="x", blend_donor_pool=-1)
