import os

import pytest

from pipeline.discover import describe_file, discover, find_videos


def touch(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def test_finds_videos_recursively_case_insensitively(tmp_path):
    want = [
        touch(tmp_path / "a.mp4"),
        touch(tmp_path / "deep" / "er" / "b.MOV"),
        touch(tmp_path / "c d é.Mkv"),
        touch(tmp_path / "x.webm"),
        touch(tmp_path / "PRIVATE" / "AVCHD" / "BDMV" / "STREAM" / "00001.MTS"),
        touch(tmp_path / "old phone.3gp"),
        touch(tmp_path / "archive" / "tape.mxf"),
    ]
    touch(tmp_path / "app.ts")  # TypeScript more often than a transport stream
    touch(tmp_path / "notes.txt")
    touch(tmp_path / "mp4")  # a name, not an extension
    assert find_videos(tmp_path) == sorted(want)


APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4000)


def test_macos_metadata_files_are_left_out_by_their_content(tmp_path):
    video = touch(tmp_path / "clip.mp4")
    metadata = touch(tmp_path / "._clip.mp4", APPLEDOUBLE)
    # a video whose name starts with "._" is still a video
    named_alike = touch(tmp_path / "._take2.mp4", b"\x00\x00\x00\x18ftypmp42")
    left_out: list[str] = []
    assert find_videos(tmp_path, metadata=left_out) == [named_alike, video]
    assert left_out == [metadata]
    assert [r.path for r in discover(tmp_path)] == [named_alike, video]


def test_extensions_can_be_overridden(tmp_path):
    touch(tmp_path / "a.mp4")
    ts = touch(tmp_path / "b.TS")
    assert find_videos(tmp_path, [".ts"]) == [ts]


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(NotADirectoryError, match="not found"):
        find_videos(tmp_path / "nope")


def test_file_name_that_is_not_utf8_becomes_an_error_reference(tmp_path):
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.mp4"), "wb") as f:
        f.write(b"x")
    (ref,) = discover(tmp_path)
    assert "not valid UTF-8" in ref.error
    assert ref.path.endswith("caf\\xe9.mp4")
    ref.path.encode("utf-8")  # storable as report text


def test_dangling_symlink_becomes_an_error_reference(tmp_path):
    os.symlink(tmp_path / "gone.mp4", tmp_path / "link.mp4")
    (ref,) = discover(tmp_path)
    assert ref.error == "dangling symlink"
    assert ref.fingerprint == ""


def test_fingerprint_changes_with_content_but_not_without(tmp_path):
    path = touch(tmp_path / "a.mp4", b"a" * 300_000)
    first = describe_file(path)
    assert describe_file(path).fingerprint == first.fingerprint
    st = os.stat(path)
    with open(path, "r+b") as f:  # same size, same mtime, different tail
        f.seek(-10, os.SEEK_END)
        f.write(b"b" * 10)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert describe_file(path).fingerprint != first.fingerprint
    assert describe_file(path).size_bytes == 300_000


def test_unreadable_file_becomes_an_error_reference(tmp_path, monkeypatch):
    path = touch(tmp_path / "secret.mp4", b"data")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", denied)
    ref = describe_file(path)
    assert ref.error == "permission denied: file unreadable"
    assert ref.size_bytes == 4


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_chmod_000_file_becomes_an_error_reference(tmp_path):
    path = touch(tmp_path / "secret.mp4", b"data")
    os.chmod(path, 0)
    assert describe_file(path).error == "permission denied: file unreadable"


def test_folder_that_cannot_be_listed_becomes_an_error_reference(tmp_path, monkeypatch):
    ok = touch(tmp_path / "a.mp4")
    touch(tmp_path / "locked" / "b.mp4")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(tmp_path / "locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # as chmod 000 would, also for root
    refs = discover(tmp_path)
    assert [r.path for r in refs] == [ok, str(tmp_path / "locked")]
    assert refs[0].error == "" and refs[0].fingerprint
    assert refs[1].error == "cannot list folder: Permission denied" and refs[1].fingerprint == ""
    with pytest.raises(PermissionError, match="locked: cannot list folder"):
        find_videos(tmp_path)  # without a list for them, unreadable folders are an error


def test_symlinked_folders_are_followed_once(tmp_path):
    outside = tmp_path / "disk2"
    touch(outside / "cam" / "c.mp4")
    root = tmp_path / "footage"
    own = touch(root / "a.mp4")
    os.symlink(outside / "cam", root / "cam2")  # a folder on another disk, linked in
    os.symlink(root, root / "loop")  # a link back up the tree
    os.symlink(outside / "cam", root / "cam2-again")  # the same folder by a second link
    real = touch(root / "z-real" / "d.mp4")
    os.symlink(root / "z-real", root / "0-shortcut")  # a link into the tree, sorting first
    assert find_videos(root) == [own, str(root / "cam2" / "c.mp4"), real]
