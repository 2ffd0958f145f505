"""Training pieces without Ray: data, augmentation, self-blending, phases, metrics."""

import dataclasses
import os

import numpy as np
import pytest
import torch
from fixtures import face_frame, write_face_images, write_phone_photo

from pipeline.config import Preprocess, TrainConfig
from pipeline.metrics import auc, choose_threshold, eer, summary
from pipeline.model import build_model
from pipeline.selfblend import self_blend
from pipeline.training import (
    FaceImages,
    Repeated,
    build_transform,
    list_images,
    load_image,
    make_optimizer,
    make_scheduler,
    resume_schedule,
    set_phase,
    source_repeats,
    train_one_epoch,
)
from pipeline.trainplan import (
    describe_balance,
    loader_options,
    preprocess_for,
    training_set,
    validation_set,
)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_face_images(tmp_path_factory.mktemp("faces"), n_real=6, n_fake=4, size=48)


def test_list_images_labels_fake_as_1(faces):
    items = list_images(faces)
    assert len(items) == 10 and sum(y for _, y in items) == 4
    assert all(("/fake/" in p) == bool(y) for p, y in items)


def test_list_images_needs_both_classes(tmp_path):
    write_face_images(tmp_path, n_real=2, n_fake=0)
    with pytest.raises(FileNotFoundError, match="fake"):
        list_images(tmp_path)


def test_self_blend_changes_the_face_and_the_border_at_most_in_colour():
    img = face_frame(128, 128)
    untouched = 0
    for seed in range(10):
        out = self_blend(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        diff = np.abs(out.astype(int) - img.astype(int)).mean(axis=2)
        assert diff[40:90, 40:90].mean() > 2.0  # inside the face mask
        # SBI alters the pasted copy or the picture it goes into: the corners keep their
        # pixels, or take the whole picture's colour change
        untouched += diff[:8, :8].mean() < 0.5 and diff[-8:, -8:].mean() < 0.5
    assert 2 <= untouched <= 8


def test_self_blend_adds_fakes_made_from_reals(faces):
    cfg = TrainConfig(data_dir=faces, run_dir="unused", image_size=40)
    ds = FaceImages(
        list_images(faces), build_transform(cfg, Preprocess(input_size=40), True), 1.0, True
    )
    assert len(ds) == 10 + 6
    assert ds.labels().sum() == 4 + 6
    img, label = ds[15]
    assert label == 1 and img.shape == (3, 40, 40) and img.dtype == torch.float32


@pytest.mark.parametrize("augment", ["standard", "light", "none"])
@pytest.mark.parametrize("resize", [True, False])
def test_transforms_give_the_input_size(faces, augment, resize):
    cfg = TrainConfig(data_dir=faces, run_dir="x", image_size=32, augment=augment, resize=resize)
    pre = Preprocess(input_size=32)
    for train in (True, False):
        img, _ = FaceImages(list_images(faces), build_transform(cfg, pre, train))[0]
        assert img.shape == (3, 32, 32)


@pytest.mark.parametrize("resize", [True, False])
def test_train_crop_trains_on_patches_and_validates_on_whole_inputs(faces, resize):
    cfg = TrainConfig(data_dir=faces, run_dir="x", image_size=48, resize=resize, train_crop=32)
    pre = Preprocess(input_size=48)
    train = FaceImages(list_images(faces), build_transform(cfg, pre, True))
    val = FaceImages(list_images(faces), build_transform(cfg, pre, False))
    assert train[0][0].shape == (3, 32, 32) and val[0][0].shape == (3, 48, 48)
    torch.manual_seed(0)
    patches = {tuple(train[0][0][0, :4, :4].flatten().tolist()) for _ in range(8)}
    assert len(patches) > 1  # a different part of the face each time it is drawn
    with pytest.raises(ValueError, match="train_crop"):
        TrainConfig(data_dir=faces, run_dir="x", image_size=48, train_crop=64)
    # An epoch sees about as many pixels as whole inputs would: 16 patches of 64 in 256.
    assert (
        TrainConfig(data_dir=faces, run_dir="x", image_size=256, train_crop=64).patches_per_image
        == 16
    )
    repeated = Repeated(train, 3)
    assert len(repeated) == 3 * len(train) and repeated[len(train)][1] == train[0][1]


def test_native_resolution_crops_do_not_resample(faces):
    cfg = TrainConfig(data_dir=faces, run_dir="x", image_size=48, resize=False, augment="none")
    ds = FaceImages(list_images(faces), build_transform(cfg, Preprocess(input_size=48), False))
    raw = FaceImages(list_images(faces))._image(0).float() / 255.0
    mean = torch.tensor(Preprocess().mean).view(3, 1, 1)
    std = torch.tensor(Preprocess().std).view(3, 1, 1)
    assert torch.allclose(ds[0][0], (raw - mean) / std, atol=1e-5)


def test_frozen_phase_trains_only_the_head_and_keeps_batchnorm_statistics(faces):
    torch.manual_seed(0)
    model = build_model()
    cfg = TrainConfig(data_dir=faces, run_dir="x", image_size=32, augment="none")
    loader = torch.utils.data.DataLoader(
        FaceImages(list_images(faces), build_transform(cfg, Preprocess(input_size=32), True)),
        batch_size=5,
    )
    set_phase(model, "frozen")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = make_optimizer(model, 1e-2, 0.0)
    loss = train_one_epoch(
        model, torch.nn.BCEWithLogitsLoss(), opt, make_scheduler(opt, 2, 1, 0), loader, "cpu"
    )
    assert np.isfinite(loss)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("fc.") for k in changed)
    set_phase(model, "full")
    assert all(p.requires_grad for p in model.parameters()) and model.training


def test_schedule_warms_up_then_decays():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make_scheduler(opt, steps_per_epoch=10, epochs=2, warmup_epochs=0.5)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[4] <= 1.0 and lrs[-1] < 0.1
    assert max(lrs) == pytest.approx(1.0, abs=0.02)


def _schedule(steps_per_epoch, lr=1.0, epochs=4):
    weight = torch.zeros(1, requires_grad=True)
    weight.grad = torch.ones(1)
    opt = torch.optim.AdamW([weight], lr=lr)
    return opt, make_scheduler(opt, steps_per_epoch, epochs, warmup_epochs=0.5)


def _run(opt, sched, steps):
    for _ in range(steps):
        opt.step()
        sched.step()


def test_resumed_schedule_follows_this_runs_steps_per_epoch_and_learning_rate():
    killed_opt, killed = _schedule(steps_per_epoch=10)
    _run(killed_opt, killed, 20)  # killed after 2 of 4 epochs
    saved = (killed_opt.state_dict(), killed.state_dict())
    uninterrupted_opt, uninterrupted = _schedule(steps_per_epoch=5, lr=0.5)
    _run(uninterrupted_opt, uninterrupted, 2 * 5)  # where this run's settings are after 2 epochs

    # Rerun with twice the batch size (5 steps an epoch) and another --lr.
    opt, sched = _schedule(steps_per_epoch=5, lr=0.5)
    opt.load_state_dict(saved[0])
    sched.load_state_dict(saved[1])
    resume_schedule(opt, sched, lr=0.5, steps_done=2 * 5, weight_decay=0.05)
    assert opt.param_groups[0]["lr"] == pytest.approx(uninterrupted_opt.param_groups[0]["lr"])
    assert opt.param_groups[0]["weight_decay"] == 0.05  # not the killed run's 0.01
    assert int(opt.state_dict()["state"][0]["step"]) == 20  # AdamW's own state is kept
    _run(opt, sched, 10)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * 0.01)  # ends where it should


def test_several_workers_reshuffle_their_shards_every_epoch():
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from jobs.train import reshuffle

    data = list(range(100))
    loader = DataLoader(data, sampler=DistributedSampler(data, num_replicas=2, rank=0))
    orders = []
    for epoch in range(2):
        reshuffle(loader, epoch)
        orders.append(list(loader.sampler))
    assert orders[0] != orders[1]
    reshuffle(DataLoader(data, shuffle=True), 1)  # one worker: nothing to do, no error


def test_metrics():
    y = [0, 0, 1, 1]
    assert auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    rate, _ = eer(y, [0.1, 0.6, 0.4, 0.9])
    assert rate == pytest.approx(0.5)
    assert eer(y, [0.1, 0.2, 0.8, 0.9])[0] == 0.0
    # Ties: the ROC jumps over fpr = fnr (from fpr 0.75, fnr 1 to fpr 0.75, fnr 0.5); the
    # nearest point alone said 0.875, the crossing is at 0.75.
    y8 = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.75, 0.0, 0.5, 0.75, 0.25, 0.0, 0.25, 0.0]
    assert eer(y8, scores)[0] == pytest.approx(0.75)
    assert 0.2 < choose_threshold(y, [0.1, 0.2, 0.8, 0.9]) <= 0.8
    s = summary(y, [0.1, 0.6, 0.4, 0.9], threshold=0.5)
    assert s["n"] == 4 and s["accuracy"] == 0.5
    assert s["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 1}


def test_native_resolution_training_gets_a_scan_crop_of_the_same_region_and_scale(tmp_path):
    import json

    from pipeline.faces import Box, crop_face
    from pipeline.trainplan import preprocess_for

    (tmp_path / "preprocess.json").write_text(json.dumps({"input_size": 64, "margin": 0.2}))
    native = TrainConfig(data_dir=str(tmp_path), run_dir="r", image_size=48, resize=False)
    margin = preprocess_for(native).margin
    frame, box = face_frame(), Box(120, 40, 80, 90)
    extracted = crop_face(frame, box, 0.0, 64, 0.2)
    trained_on = extracted[8:56, 8:56]  # what --no-resize's centre crop shows the network
    scanned = crop_face(frame, box, 0.0, 48, margin)
    assert np.abs(scanned.astype(int) - trained_on.astype(int)).max() <= 1

    resized = TrainConfig(data_dir=str(tmp_path), run_dir="r", image_size=48)
    assert preprocess_for(resized).margin == 0.2  # resizing training sees the whole crop
    with pytest.raises(ValueError, match="at most 64"):
        preprocess_for(
            TrainConfig(data_dir=str(tmp_path), run_dir="r", image_size=80, resize=False)
        )


def test_a_diverged_epoch_stops_before_its_weights_are_saved():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = make_scheduler(opt, steps_per_epoch=2, epochs=1, warmup_epochs=0)
    batches = [(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]))] * 2

    def nan_loss(logits, labels):
        return (logits * float("nan")).mean()

    loss = train_one_epoch(model, torch.nn.BCEWithLogitsLoss(), opt, sched, batches, "cpu")
    assert np.isfinite(loss) and loss > 0
    with pytest.raises(FloatingPointError, match="diverged"):
        train_one_epoch(model, nan_loss, opt, sched, batches, "cpu")


def test_training_images_are_read_upright_by_their_exif_orientation(tmp_path):
    path, upright = write_phone_photo(tmp_path / "phone.jpg")
    img = load_image(path).permute(1, 2, 0).numpy()[:, :, ::-1].astype(np.int16)  # RGB -> BGR
    assert img.shape == upright.shape  # (352, 272, 3): as shown, not as stored
    assert np.abs(img - upright).mean() < 4  # JPEG's error, not a turned picture
    assert np.abs(img[::-1, ::-1] - upright).mean() > 20


def _keys(n: int, split: str, fraction: float, start: int = 0) -> list[str]:
    """n keys that hashing alone puts in `split` at `fraction`."""
    from pipeline.faceset import split_of

    keys, i = [], start
    while len(keys) < n:
        if split_of(f"clip{i}", fraction) == split:
            keys.append(f"clip{i}")
        i += 1
    return keys


def test_a_small_face_set_validates_on_both_classes():
    from pipeline.faceset import _position, plan_splits

    # Hashing put all three real clips in train and all three fakes in val.
    real, fake = _keys(3, "train", 0.2), _keys(3, "val", 0.2, start=1000)
    videos = [(k, "real") for k in real] + [(k, "fake") for k in fake]
    plan = plan_splits(videos, 0.2)
    # the real clip nearest the cut joins val; the fake farthest from it joins train
    assert [plan[k] for k in real] == [
        "val" if k == min(real, key=_position) else "train" for k in real
    ]
    assert [plan[k] for k in fake] == [
        "train" if k == max(fake, key=_position) else "val" for k in fake
    ]
    assert plan_splits(videos, 0.2) == plan  # the same clips, the same plan


def test_splits_that_already_hold_both_classes_are_left_to_the_hash():
    from pipeline.faceset import plan_splits, split_of

    keys = _keys(2, "train", 0.3) + _keys(1, "val", 0.3) + _keys(2, "train", 0.3, start=500)
    videos = [(k, "real") for k in keys[:3]] + [(k, "fake") for k in keys[3:]]
    lonely = _keys(1, "train", 0.3, start=900)[0]
    # fakes: both in train, but an earlier extraction's fake in val stays: nothing moves;
    # a class of one video is as hashed
    kept = [(_keys(1, "val", 0.3, start=700)[0], "fake", "val")]
    plan = plan_splits(videos + [(lonely, "real")], 0.3, kept)
    assert plan == {k: split_of(k, 0.3) for k in keys + [lonely]}
    assert plan_splits([(lonely, "fake")], 0.3) == {lonely: "train"}
    assert set(plan_splits(videos, 0.0).values()) == {""}  # no split asked for


def test_a_video_extracted_again_keeps_its_split():
    from pipeline.faceset import plan_splits

    fakes = _keys(2, "val", 0.2)  # both hashed to val: the first extraction moves one over
    first = plan_splits([(k, "fake") for k in fakes], 0.2)
    assert sorted(first.values()) == ["train", "val"]
    # --add: a new fake in train makes the move needless, but the moved clip was trained on
    new = _keys(1, "train", 0.2, start=800)[0]
    kept = [(k, "fake", first[k]) for k in fakes]
    again = plan_splits([(k, "fake") for k in [*fakes, new]], 0.2, kept)
    assert again == {**first, new: "train"}


def test_a_content_under_both_labels_or_copied_is_never_split_apart():
    from pipeline.faceset import plan_splits

    real = _keys(2, "train", 0.2)
    both = _keys(1, "train", 0.2, start=300)[0]  # the same clip filed as real and as fake
    copies = [(real[0], "real"), (real[0], "real"), (real[1], "real")]
    plan = plan_splits([*copies, (both, "real"), (both, "fake")], 0.2)
    assert plan[both] == "train"  # a labelling mistake is not moved to fix a split
    assert sorted(plan[k] for k in real) == ["train", "val"]  # one content, one split


def test_mixup_and_cutmix_mix_labels_in_the_proportion_of_the_faces():
    import numpy as np
    import torch

    from pipeline.training import mix_batch

    np.random.seed(0)
    torch.manual_seed(0)
    images = torch.cat([torch.zeros(4, 3, 16, 16), torch.ones(4, 3, 16, 16)])  # real 0, fake 1
    labels = torch.tensor([0.0] * 4 + [1.0] * 4)
    for mix in ("mixup", "cutmix"):
        partial = False
        for _ in range(5):
            mixed, targets = mix_batch(images, labels, mix, alpha=1.0)
            # images of 0s and 1s: a face's mean is the share of it that came from a fake
            assert torch.allclose(mixed.mean(dim=(1, 2, 3)), targets, atol=1e-6)
            assert ((targets >= 0) & (targets <= 1)).all()
            partial |= bool(((targets > 0) & (targets < 1)).any())
        assert partial
    assert mix_batch(images, labels, "none", 1.0)[1] is labels


def test_landmarks_are_found_again_only_for_new_or_changed_images(tmp_path):
    from pipeline.trainplan import LandmarkCache, read_landmarks

    images = []
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"image " + name.encode())
        images.append(str(tmp_path / name))
    cache = str(tmp_path / "landmarks.json")
    first = LandmarkCache(cache)
    assert first.missing(images[:2]) == images[:2]
    first.add(images[0], {"eyes": [[1, 2], [3, 4]]})
    first.add(images[1], None)  # no face found: known too, not looked for again
    first.save(images[:2])
    again = LandmarkCache(cache)
    assert again.missing(images) == [images[2]]  # a new image
    (tmp_path / "a.png").write_bytes(b"another picture, longer")  # a changed one
    assert LandmarkCache(cache).missing(images[:2]) == [images[0]]
    assert read_landmarks(cache) == {images[0]: {"eyes": [[1, 2], [3, 4]]}, images[1]: None}
    again.add(images[2], None)
    again.save(images[1:])  # a run without a.png: it drops out of the file
    assert set(read_landmarks(cache)) == set(images[1:])
    assert read_landmarks(None) == {} and read_landmarks(str(tmp_path / "none.json")) == {}


def test_balanced_sources_draw_a_small_source_as_often_as_the_largest(tmp_path):
    # Two sources per class, gathered by links as a user (or the quality benchmark) would:
    # source b has a quarter of a's real faces and as many fakes.
    for name, n_real in (("a", 4), ("b", 1)):
        write_face_images(tmp_path / name, n_real=n_real, n_fake=2, size=48, seed=n_real)
        for label in ("real", "fake"):
            os.makedirs(tmp_path / "data" / "train" / label, exist_ok=True)
            os.symlink(tmp_path / name / label, tmp_path / "data" / "train" / label / name)
    os.symlink(tmp_path / "a", tmp_path / "data" / "val")
    data = str(tmp_path / "data")
    folder = os.path.join(data, "train")
    assert source_repeats(list_images(folder), folder) == {
        "fake/a": 1, "fake/b": 1, "real/a": 1, "real/b": 4
    }  # fmt: skip
    cfg = TrainConfig(data, run_dir=str(tmp_path / "run"), image_size=48, balance_sources=True)
    preprocess = preprocess_for(cfg)
    balanced = training_set(cfg, preprocess, {})
    plain = training_set(dataclasses.replace(cfg, balance_sources=False), preprocess, {})
    assert len(plain) == 9 and len(balanced) == 12  # b's one real face drawn 4 times
    drawn = [os.path.relpath(p, folder) for p, _ in balanced.items]
    assert sum(p.startswith("real/b/") for p in drawn) == 4
    assert sum(p.startswith("real/a/") for p in drawn) == 4
    assert "real/b x4" in describe_balance(cfg)


def test_balancing_a_folder_without_source_folders_changes_nothing(faces, tmp_path):
    os.symlink(faces, tmp_path / "train")
    os.symlink(faces, tmp_path / "val")
    cfg = TrainConfig(str(tmp_path), run_dir=str(tmp_path / "run"), balance_sources=True)
    assert source_repeats(list_images(faces), faces) == {"fake": 1, "real": 1}
    assert "nothing to balance" in describe_balance(cfg)


def test_blend_jpeg_reencodes_a_real_only_runs_validation_faces_of_both_kinds(tmp_path):
    for split in ("train", "val"):
        write_face_images(tmp_path / split, n_real=3, n_fake=0, size=48)
    cfg = TrainConfig(str(tmp_path), run_dir=str(tmp_path / "run"), image_size=48)
    preprocess = preprocess_for(cfg)
    plain = validation_set(cfg, preprocess, {})
    reencoded = validation_set(dataclasses.replace(cfg, blend_jpeg=1.0), preprocess, {})
    assert len(plain) == len(reencoded) == 6  # three real faces and a blend of each
    for i in range(6):
        assert plain[i][1] == reencoded[i][1] and not torch.equal(plain[i][0], reencoded[i][0])
        assert torch.equal(reencoded[i][0], reencoded[i][0])  # seeded: the same every epoch


def test_paired_blends_train_in_batches_of_faces_beside_their_blends(tmp_path):
    from pipeline.model import BoundaryModel
    from pipeline.trainplan import resolve_self_blend

    for split in ("train", "val"):
        write_face_images(tmp_path / split, n_real=6, n_fake=0, size=48)
    cfg = TrainConfig(str(tmp_path), run_dir=str(tmp_path / "run"), recipe="npr",
                      image_size=48, batch_size=4, blend_pairs=True)  # fmt: skip
    logged = []
    cfg, _ = resolve_self_blend(cfg, logged.append)
    assert cfg.self_blend and "beside its face in the same batch" in logged[0]
    options = loader_options(cfg)
    assert options["batch_size"] == 2  # two faces and their two blends: batch_size faces
    loader = torch.utils.data.DataLoader(training_set(cfg, preprocess_for(cfg), {}), **options)
    batches = list(loader)
    assert len(batches) == 3 and all(b[0].shape == (4, 3, 48, 48) for b in batches)
    assert all(b[1].tolist() == [0, 1, 0, 1] for b in batches)
    torch.manual_seed(0)
    model = BoundaryModel(build_model(cfg.arch))
    opt = make_optimizer(model, 1e-3, 0.0)
    sched = make_scheduler(opt, len(batches), 1, 0.0)
    loss = train_one_epoch(model, torch.nn.BCEWithLogitsLoss(), opt, sched, batches, "cpu",
                           boundary_weight=1.0)  # fmt: skip
    assert np.isfinite(loss) and loss > 0
    # without pairs, the loader keeps the batch size and blends come as items of their own
    apart = dataclasses.replace(cfg, blend_pairs=False)
    assert (
        loader_options(apart) == {"batch_size": 4}
        and len(training_set(apart, preprocess_for(apart), {})) == 12
    )
    # by default half the blends paste another real face: said in the log line, made by the
    # training set only; with blend_donors=0, self-blends only
    for donors, said in ((0.5, True), (0.0, False)):
        run = dataclasses.replace(cfg, self_blend=None, blend_donors=donors)
        logged.clear()
        run, _ = resolve_self_blend(run, logged.append)
        assert ("50% of them pasting another real face" in logged[0]) is said
        assert training_set(run, preprocess_for(run), {}).donors == donors
        assert validation_set(run, preprocess_for(run), {}).donors == 0.0
    assert TrainConfig(str(tmp_path), run_dir="x").blend_donors == 0.5
    # with a donor pool the log line says so and the training set draws from it
    run = dataclasses.replace(cfg, self_blend=None, blend_donor_pool=2)
    logged.clear()
    run, _ = resolve_self_blend(run, logged.append)
    assert "pasting another real face (one of the 2 posed most alike)" in logged[0]
    near = training_set(run, preprocess_for(run), {}).near
    assert len(near) == 6 and set(near.values()) == {None}  # no landmarks: any face
