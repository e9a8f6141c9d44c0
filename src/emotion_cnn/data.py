"""RAVDESS dataset discovery: file names to metadata, bad files to a report.

A RAVDESS file name holds seven two-digit fields,
``modality-vocal_channel-emotion-intensity-statement-repetition-actor``, e.g.
``03-01-05-02-01-01-12.wav`` is audio-only speech, angry, strong, "Kids are talking by the
door", first take, actor 12 (even ids are female).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from emotion_cnn.config import EMOTIONS

AUDIO_SUFFIXES = (".wav", ".flac")
FIELDS = ("modality", "vocal_channel", "emotion", "intensity", "statement", "repetition", "actor")
VALID_CODES: dict[str, range] = {
    "modality": range(1, 4),  # 01 full AV, 02 video only, 03 audio only
    "vocal_channel": range(1, 3),  # 01 speech, 02 song
    "emotion": range(1, 9),
    "intensity": range(1, 3),
    "statement": range(1, 3),
    "repetition": range(1, 3),
    "actor": range(1, 25),
}
_NAME = re.compile(r"^\d\d(-\d\d){6}$")
_ACTOR_DIR = re.compile(r"^actor_(\d+)$", re.IGNORECASE)

# Reasons a file is skipped; the summary counts files by these.
BAD_NAME = "bad name"
UNKNOWN_CODE = "unknown code"
ACTOR_MISMATCH = "actor folder mismatch"
EMPTY_FILE = "empty file"
UNDECODABLE = "undecodable audio"
SILENT = "silent audio"
TOO_SHORT = "too short"
DUPLICATE = "duplicate recording"


class BadClipName(ValueError):
    """A file name that is not a valid RAVDESS name; ``reason`` is one of the reasons above."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ClipName:
    """The seven fields of a RAVDESS file name."""

    modality: int
    vocal_channel: int
    emotion: int
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def clip_id(self) -> str:
        return "-".join(f"{getattr(self, name):02d}" for name in FIELDS)

    @property
    def is_speech_audio(self) -> bool:
        return self.modality == 3 and self.vocal_channel == 1

    @property
    def label(self) -> str:
        return EMOTIONS[self.emotion - 1]

    @property
    def gender(self) -> str:
        return "female" if self.actor % 2 == 0 else "male"


def parse_name(stem: str) -> ClipName:
    """Parse a RAVDESS file stem such as ``"03-01-05-02-01-01-12"``.

    Raises
    ------
    BadClipName
        With reason ``BAD_NAME`` when the stem is not seven two-digit fields, or
        ``UNKNOWN_CODE`` when a field holds a code RAVDESS does not use.
    """
    if not _NAME.match(stem):
        raise BadClipName(BAD_NAME, f"{stem!r} is not seven two-digit fields like 03-01-05-02-01-01-12")
    values = dict(zip(FIELDS, (int(part) for part in stem.split("-"))))
    for name, allowed in VALID_CODES.items():
        if values[name] not in allowed:
            raise BadClipName(UNKNOWN_CODE, f"{name} code {values[name]:02d} is not one of "
                              f"{allowed.start:02d}..{allowed.stop - 1:02d}")
    if values["emotion"] == 1 and values["intensity"] == 2:
        raise BadClipName(UNKNOWN_CODE, "neutral (01) has no strong intensity (02)")
    return ClipName(**values)


@dataclass
class Skipped:
    path: Path
    reason: str
    detail: str

    def message(self, root: Path) -> str:
        return f"skipped {relative_path(self.path, root)}: {self.reason} ({self.detail})"


@dataclass
class Candidate:
    path: Path
    name: ClipName
    size: int
    mtime_ns: int


@dataclass
class Scan:
    """What a walk of a dataset folder found."""

    root: Path
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    not_speech: int = 0  # valid RAVDESS names that are song or video: left out on purpose


def relative_path(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def scan_dataset(root: str | Path) -> Scan:
    """Walk ``root`` for RAVDESS audio-only speech clips (``.wav``/``.flac``).

    Non-audio files and hidden files are ignored quietly. Files whose name is invalid,
    whose actor field disagrees with an ``Actor_NN`` parent folder, or which are empty,
    are returned in ``Scan.skipped`` with a reason; the rest are candidates, in sorted
    path order.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset folder {root} does not exist: run `emotion-cnn fetch`, or set RAVDESS_DIR"
        )
    scan = Scan(root=root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if filename.startswith(".") or path.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            try:
                name = parse_name(path.stem)
            except BadClipName as err:
                scan.skipped.append(Skipped(path, err.reason, err.detail))
                continue
            if not name.is_speech_audio:
                scan.not_speech += 1
                continue
            folder = _ACTOR_DIR.match(path.parent.name)
            if folder and int(folder.group(1)) != name.actor:
                scan.skipped.append(Skipped(
                    path, ACTOR_MISMATCH,
                    f"name says actor {name.actor:02d}, folder is {path.parent.name}"))
                continue
            stat = path.stat()
            if stat.st_size == 0:
                scan.skipped.append(Skipped(path, EMPTY_FILE, "0 bytes"))
                continue
            scan.candidates.append(Candidate(path, name, stat.st_size, stat.st_mtime_ns))
    return scan


def canonical_order(paths: list[Path]) -> list[Path]:
    """Order copies of one recording so that the first is the one to keep.

    The shallowest path wins (``Actor_01/x.wav`` over ``audio_speech_actors_01-24/Actor_01/x.wav``),
    then the alphabetically first.
    """
    return sorted(paths, key=lambda p: (len(p.parts), str(p)))


def find_duplicates(hashes: dict[Path, str]) -> dict[Path, Path]:
    """Map each redundant copy to the copy kept, from ``path -> hash of decoded samples``."""
    groups: dict[str, list[Path]] = {}
    for path, digest in hashes.items():
        groups.setdefault(digest, []).append(path)
    redundant: dict[Path, Path] = {}
    for paths in groups.values():
        keep, *others = canonical_order(paths)
        for other in others:
            redundant[other] = keep
    return redundant


def summarize(skipped: list[Skipped], *, kept: int, not_speech: int) -> dict:
    """Counts for the end-of-run summary: kept clips and skipped files by reason."""
    return {
        "kept": kept,
        "left_out_not_speech": not_speech,
        "skipped": dict(sorted(Counter(s.reason for s in skipped).items())),
    }
