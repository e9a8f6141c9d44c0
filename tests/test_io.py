"""Tests of emotion_cnn.io: atomic writes, folders that are never shared."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emotion_cnn.io import (
    atomic_open,
    atomic_save_csv,
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    new_folder,
)


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def folder(tmp_path):
    """An empty folder of its own (the autouse project root lives in pytest's tmp_path)."""
    path = tmp_path / "io"
    path.mkdir()
    return path


def test_atomic_write_bytes_creates_parents_and_replaces(folder):
    target = folder / "a" / "b" / "c.bin"
    atomic_write_bytes(target, b"\x00\x01first")
    assert target.read_bytes() == b"\x00\x01first"
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert _names(target.parent) == ["c.bin"]


def test_atomic_write_text_creates_parents_and_replaces(folder):
    target = folder / "x" / "note.txt"
    atomic_write_text(str(target), "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    atomic_write_text(target, "bye")
    assert target.read_text() == "bye"
    assert _names(target.parent) == ["note.txt"]


def test_atomic_write_json_round_trips(folder):
    target = folder / "j" / "d.json"
    obj = {"b": [1, 2, 3], "a": {"x": "y"}}
    atomic_write_json(target, obj)
    text = target.read_text()
    assert json.loads(text) == obj
    assert text.endswith("\n")
    assert text.index('"b"') < text.index('"a"')  # key order kept
    atomic_write_json(target, [1])
    assert json.loads(target.read_text()) == [1]


def test_atomic_save_npy_round_trips(folder):
    target = folder / "n" / "arr.npy"
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    atomic_save_npy(target, arr)
    loaded = np.load(target)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, arr)
    atomic_save_npy(target, np.zeros(2, np.int64))
    np.testing.assert_array_equal(np.load(target), [0, 0])
    assert _names(target.parent) == ["arr.npy"]


def test_atomic_save_npy_refuses_object_arrays(folder):
    target = folder / "obj.npy"
    atomic_save_npy(target, np.arange(3))
    with pytest.raises(ValueError):
        atomic_save_npy(target, np.array([{"a": 1}], dtype=object))
    np.testing.assert_array_equal(np.load(target), [0, 1, 2])
    assert _names(folder) == ["obj.npy"]


def test_atomic_save_csv(folder):
    target = folder / "c" / "t.csv"
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    atomic_save_csv(target, frame)
    assert target.read_text().splitlines() == ["a,b", "1,x", "2,y"]
    pd.testing.assert_frame_equal(pd.read_csv(target), frame)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_exception_inside_atomic_open_keeps_old_file(folder, error):
    target = folder / "keep.txt"
    target.write_text("old content")
    with pytest.raises(error):
        with atomic_open(target, "w") as handle:
            handle.write("new, half written")
            handle.flush()
            raise error("boom")
    assert target.read_text() == "old content"
    assert _names(folder) == ["keep.txt"]  # no temp file left


def test_exception_inside_atomic_open_creates_nothing(folder):
    target = folder / "sub" / "new.bin"
    with pytest.raises(ValueError):
        with atomic_open(target) as handle:
            handle.write(b"partial")
            raise ValueError("boom")
    assert not target.exists()
    assert _names(target.parent) == []


def test_atomic_open_writes_temp_beside_target_until_done(folder):
    target = folder / "t.bin"
    with atomic_open(target) as handle:
        handle.write(b"data")
        assert not target.exists()  # nothing under the final name yet
        [tmp] = list(folder.iterdir())
        assert tmp.name.startswith(".t.bin.") and tmp.name.endswith(".tmp")
    assert target.read_bytes() == b"data"
    assert _names(folder) == ["t.bin"]


def test_outputs_get_normal_permissions_not_mkstemps_private_ones(tmp_path):
    import os
    import stat

    from emotion_cnn.io import FILE_MODE, atomic_write_text

    atomic_write_text(tmp_path / "shared.txt", "x")
    assert stat.S_IMODE(os.stat(tmp_path / "shared.txt").st_mode) == FILE_MODE


def test_new_folder_never_hands_out_a_taken_name(tmp_path):
    base = tmp_path / "reports" / "2026-12-03-abc1234"
    first = new_folder(base)
    (first / "metrics.json").write_text("{}")
    assert first == base and new_folder(base) == tmp_path / "reports" / "2026-12-03-abc1234-2"
    assert new_folder(base).name == "2026-12-03-abc1234-3"
    assert (first / "metrics.json").read_text() == "{}"
