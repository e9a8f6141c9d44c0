"""Tests of emotion_cnn.data: RAVDESS names, dataset scan, duplicates, summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ravdess_name, synth_signal, write_clip
from emotion_cnn import data
from emotion_cnn.data import (
    ACTOR_MISMATCH,
    BAD_NAME,
    DUPLICATE,
    EMPTY_FILE,
    SILENT,
    UNDECODABLE,
    UNKNOWN_CODE,
    BadClipName,
    ClipName,
    Skipped,
    canonical_order,
    find_duplicates,
    parse_name,
    scan_dataset,
    summarize,
)

# --------------------------------------------------------------------------- parse_name


def test_parse_name_all_fields():
    name = parse_name("03-01-05-02-01-02-12")
    assert name == ClipName(modality=3, vocal_channel=1, emotion=5, intensity=2, statement=1,
                            repetition=2, actor=12)
    assert name.clip_id == "03-01-05-02-01-02-12"
    assert name.label == "angry"
    assert name.gender == "female"
    assert name.is_speech_audio


@pytest.mark.parametrize("emotion, label", [
    (1, "neutral"), (2, "calm"), (3, "happy"), (4, "sad"), (5, "angry"), (6, "fearful"),
    (7, "disgust"), (8, "surprised"),
])
def test_parse_name_labels(emotion, label):
    assert parse_name(ravdess_name(emotion=emotion, actor=1)).label == label


@pytest.mark.parametrize("actor, gender", [(1, "male"), (2, "female"), (23, "male"), (24, "female")])
def test_parse_name_gender(actor, gender):
    name = parse_name(ravdess_name(emotion=3, actor=actor))
    assert name.actor == actor
    assert name.gender == gender


def test_clip_id_round_trips_the_stem():
    stem = "03-02-08-02-02-01-24"
    name = parse_name(stem)
    assert name.clip_id == stem
    assert not name.is_speech_audio  # song
    assert parse_name("01-01-01-01-01-01-01").is_speech_audio is False  # audio-video


@pytest.mark.parametrize("stem", [
    "03-01-05-02-01-12",  # 6 fields
    "03-01-05-02-01-01-12-01",  # 8 fields
    "03-01-0a-02-01-01-12",  # letters
    "ab-01-05-02-01-01-12",
    "03-01-005-02-01-01-12",  # 3-digit field
    "03-01-5-02-01-01-12",  # 1-digit field
    "03_01_05_02_01_01_12",
    "03-01-05-02-01-01-12 copy",
    "",
])
def test_parse_name_bad_name(stem):
    with pytest.raises(BadClipName) as info:
        parse_name(stem)
    assert info.value.reason == BAD_NAME
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(BAD_NAME + ": ")


@pytest.mark.parametrize("stem, field", [
    ("03-01-09-01-01-01-01", "emotion"),
    ("03-01-00-01-01-01-01", "emotion"),
    ("03-01-05-01-01-01-25", "actor"),
    ("03-01-05-01-01-01-00", "actor"),
    ("04-01-05-01-01-01-01", "modality"),
    ("03-03-05-01-01-01-01", "vocal_channel"),
    ("03-01-05-03-01-01-01", "intensity"),
    ("03-01-05-01-03-01-01", "statement"),
    ("03-01-05-01-01-03-01", "repetition"),
])
def test_parse_name_unknown_code(stem, field):
    with pytest.raises(BadClipName) as info:
        parse_name(stem)
    assert info.value.reason == UNKNOWN_CODE
    assert field in info.value.detail


def test_parse_name_neutral_has_no_strong_intensity():
    with pytest.raises(BadClipName) as info:
        parse_name("03-01-01-02-01-01-01")
    assert info.value.reason == UNKNOWN_CODE
    assert "neutral" in info.value.detail
    # strong intensity is fine for the other emotions, and normal neutral is fine
    assert parse_name("03-01-02-02-01-01-01").intensity == 2
    assert parse_name("03-01-01-01-01-01-01").emotion == 1


# --------------------------------------------------------------------------- scan_dataset


def _clip(root: Path, rel: str, rng, *, sr: int = 16000) -> Path:
    return write_clip(root / rel, synth_signal(rng, emotion=3, sr=sr, seconds=0.2, silence=0.05),
                      sr=sr)


def _touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_scan_finds_clips_in_sorted_order(tmp_path, rng):
    root = tmp_path / "ds"
    names = [ravdess_name(emotion=e, actor=a) for a in (2, 1) for e in (5, 3)]
    for n in names:
        _clip(root, f"Actor_{int(n[-2:]):02d}/{n}.wav", rng)
    scan = scan_dataset(root)
    assert scan.root == root
    assert [c.path.name for c in scan.candidates] == [
        "03-01-03-01-01-01-01.wav", "03-01-05-01-01-01-01.wav",
        "03-01-03-01-01-01-02.wav", "03-01-05-01-01-01-02.wav"]
    first = scan.candidates[0]
    assert first.name == parse_name("03-01-03-01-01-01-01")
    assert first.size == first.path.stat().st_size > 44
    assert first.mtime_ns == first.path.stat().st_mtime_ns
    assert scan.skipped == [] and scan.not_speech == 0


def test_scan_accepts_flac_and_upper_case_suffix_and_no_actor_folder(tmp_path, rng):
    root = tmp_path / "ds"
    _clip(root, "Actor_01/03-01-03-01-01-01-01.flac", rng)
    _clip(root, "Actor_01/03-01-04-01-01-01-01.WAV", rng)
    _clip(root, "loose/03-01-05-01-01-01-07.wav", rng)  # no Actor_NN folder: no check
    _clip(root, "actor_2/03-01-05-01-01-01-02.wav", rng)  # case and width of the folder vary
    scan = scan_dataset(root)
    assert sorted(c.path.name for c in scan.candidates) == [
        "03-01-03-01-01-01-01.flac", "03-01-04-01-01-01-01.WAV",
        "03-01-05-01-01-01-02.wav", "03-01-05-01-01-01-07.wav"]
    assert scan.skipped == []


def test_scan_ignores_non_audio_and_hidden_files_quietly(tmp_path, rng):
    root = tmp_path / "ds"
    good = _clip(root, "Actor_01/03-01-03-01-01-01-01.wav", rng)
    _touch(root / "Actor_01" / ".DS_Store")
    _touch(root / "readme.txt")
    _touch(root / "Actor_01" / "picture.png")
    _touch(root / "Actor_01" / "03-01-03-01-01-01-01.png")
    _touch(root / "Actor_01" / "._03-01-03-01-01-01-01.wav")  # macOS resource fork
    _touch(root / "Actor_01" / "._x.wav")
    _touch(root / ".hidden" / "03-01-03-01-01-02-01.wav")  # hidden folder
    _touch(root / "__MACOSX" / "Actor_01" / "03-01-03-01-01-02-01.wav")
    scan = scan_dataset(root)
    assert [c.path for c in scan.candidates] == [good]
    assert scan.skipped == []
    assert scan.not_speech == 0


def test_scan_skips_bad_name_and_names_the_file(tmp_path, rng):
    root = tmp_path / "ds"
    _clip(root, "Actor_01/03-01-03-01-01-01-01.wav", rng)
    bad = _clip(root, "Actor_01/03-01-03-01-01-01.wav", rng)
    scan = scan_dataset(root)
    assert len(scan.candidates) == 1
    [skip] = scan.skipped
    assert skip.path == bad
    assert skip.reason == BAD_NAME
    message = skip.message(root)
    assert message.startswith("skipped Actor_01/03-01-03-01-01-01.wav: bad name (")
    assert "03-01-03-01-01-01" in message


def test_scan_skips_unknown_code(tmp_path, rng):
    root = tmp_path / "ds"
    bad = _clip(root, "Actor_01/03-01-09-01-01-01-01.wav", rng)
    scan = scan_dataset(root)
    assert scan.candidates == []
    assert [(s.path, s.reason) for s in scan.skipped] == [(bad, UNKNOWN_CODE)]
    assert "emotion code 09" in scan.skipped[0].message(root)


def test_scan_skips_actor_folder_mismatch(tmp_path, rng):
    root = tmp_path / "ds"
    bad = _clip(root, "Actor_02/03-01-03-01-01-01-01.wav", rng)
    _clip(root, "Actor_02/03-01-03-01-01-01-02.wav", rng)
    scan = scan_dataset(root)
    assert [c.name.actor for c in scan.candidates] == [2]
    [skip] = scan.skipped
    assert (skip.path, skip.reason) == (bad, ACTOR_MISMATCH)
    assert skip.detail == "name says actor 01, folder is Actor_02"
    assert "Actor_02/03-01-03-01-01-01-01.wav" in skip.message(root)


def test_scan_skips_empty_file(tmp_path, rng):
    root = tmp_path / "ds"
    empty = _touch(root / "Actor_01" / "03-01-03-01-01-01-01.wav", b"")
    scan = scan_dataset(root)
    assert scan.candidates == []
    assert [(s.path, s.reason) for s in scan.skipped] == [(empty, EMPTY_FILE)]
    assert skip_message(scan, root) == ["skipped Actor_01/03-01-03-01-01-01-01.wav: empty file (0 bytes)"]


def skip_message(scan, root):
    return [s.message(root) for s in scan.skipped]


def test_scan_counts_song_and_video_in_not_speech(tmp_path, rng):
    root = tmp_path / "ds"
    _clip(root, "Actor_01/03-01-03-01-01-01-01.wav", rng)
    _clip(root, "Actor_01/03-02-03-01-01-01-01.wav", rng)  # song
    _clip(root, "Actor_01/03-02-05-01-01-01-01.wav", rng)  # song
    _clip(root, "Actor_01/01-01-03-01-01-01-01.wav", rng)  # audio-video
    scan = scan_dataset(root)
    assert [c.path.name for c in scan.candidates] == ["03-01-03-01-01-01-01.wav"]
    assert scan.not_speech == 3
    assert scan.skipped == []


def test_scan_missing_folder_mentions_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="emotion-cnn fetch") as info:
        scan_dataset(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


def test_scan_file_instead_of_folder_raises(tmp_path):
    path = _touch(tmp_path / "file.wav")
    with pytest.raises(FileNotFoundError):
        scan_dataset(path)


def test_skipped_message_outside_root_uses_full_path(tmp_path):
    skip = Skipped(tmp_path / "a" / "b.wav", UNDECODABLE, "cannot decode")
    assert skip.message(tmp_path / "a") == "skipped b.wav: undecodable audio (cannot decode)"
    assert skip.message(tmp_path / "z") == f"skipped {tmp_path / 'a' / 'b.wav'}: undecodable audio (cannot decode)"


# --------------------------------------------------------------------------- duplicates


def test_canonical_order_keeps_shallowest_then_alphabetical():
    deep = Path("r/audio_speech_actors_01-24/Actor_01/03-01-03-01-01-01-01.wav")
    shallow = Path("r/Actor_01/03-01-03-01-01-01-01.wav")
    other = Path("r/Actor_01/03-01-03-01-01-02-01.wav")
    assert canonical_order([deep, other, shallow]) == [shallow, other, deep]
    assert canonical_order([other, shallow]) == [shallow, other]


def test_find_duplicates_maps_copies_to_the_kept_one():
    deep_a = Path("r/audio_speech_actors_01-24/Actor_01/a.wav")
    shallow_a = Path("r/Actor_01/a.wav")
    deep_b = Path("r/audio_speech_actors_01-24/Actor_01/b.wav")
    shallow_b = Path("r/Actor_01/b.wav")
    unique = Path("r/Actor_01/c.wav")
    hashes = {deep_a: "A", deep_b: "A", shallow_b: "A", shallow_a: "A", unique: "C"}
    assert find_duplicates(hashes) == {deep_a: shallow_a, deep_b: shallow_a, shallow_b: shallow_a}
    assert find_duplicates({deep_a: "1", shallow_a: "1", deep_b: "2", shallow_b: "2"}) == {
        deep_a: shallow_a, deep_b: shallow_b}
    assert find_duplicates({unique: "C"}) == {}
    assert find_duplicates({}) == {}


# --------------------------------------------------------------------------- summarize


def test_summarize_counts_by_reason():
    p = Path("x.wav")
    skipped = [Skipped(p, DUPLICATE, ""), Skipped(p, BAD_NAME, ""), Skipped(p, DUPLICATE, ""),
               Skipped(p, SILENT, ""), Skipped(p, DUPLICATE, "")]
    summary = summarize(skipped, kept=10, not_speech=4)
    assert summary == {
        "kept": 10,
        "left_out_not_speech": 4,
        "skipped": {BAD_NAME: 1, DUPLICATE: 3, SILENT: 1},
    }
    assert list(summary["skipped"]) == sorted(summary["skipped"])
    assert summarize([], kept=0, not_speech=0) == {"kept": 0, "left_out_not_speech": 0,
                                                   "skipped": {}}


def test_reason_strings_are_distinct():
    reasons = [BAD_NAME, UNKNOWN_CODE, ACTOR_MISMATCH, EMPTY_FILE, UNDECODABLE, SILENT, DUPLICATE]
    assert len(set(reasons)) == 7
    assert data.FIELDS == ("modality", "vocal_channel", "emotion", "intensity", "statement",
                           "repetition", "actor")
