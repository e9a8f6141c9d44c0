"""Get the RAVDESS speech audio: download from Zenodo, or import a local copy.

Every step is safe to interrupt and to run again. A download resumes from its ``.part``
file and only becomes the real file once its size and MD5 match; an archive is checked
member by member before anything is written, and is extracted beside the target folder
before being moved in, so the dataset folder never holds half-written files.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from emotion_cnn.data import AUDIO_SUFFIXES
from emotion_cnn.io import atomic_open, atomic_write_text

ZENODO_URL = "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip"
ZIP_NAME = "Audio_Speech_Actors_01-24.zip"
ZIP_SIZE = 208_468_073
ZIP_MD5 = "bc696df654c87fed845eb13823edef8a"

TIMEOUT_S = 60.0
RAVDESS_SPEECH_FILES = 1440  # a folder with this many is a complete copy, however it got there
COMPLETE_MARKER = ".fetch-complete"


class FetchError(Exception):
    """The dataset could not be fetched; the message names the file and the problem."""


class ChecksumError(FetchError):
    """A downloaded file does not have the expected size or MD5."""


# --------------------------------------------------------------------------- download


def download(
    url: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    expected_md5: str | None = None,
    chunk_size: int = 1 << 20,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, resuming an earlier partial download.

    Parameters
    ----------
    url : str
        HTTP(S) address of the file.
    dest : Path
        Final path. Bytes go to ``dest`` + ``".part"`` first, which is renamed onto
        ``dest`` only once it passes the checks.
    expected_size : int, optional
        Size in bytes the file must have.
    expected_md5 : str, optional
        Hex MD5 the whole file must have.
    chunk_size : int
        Bytes read per network call.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    ChecksumError
        The finished download has the wrong size or MD5; the ``.part`` file is deleted.
    FetchError
        The server refused or the transfer broke off; a ``.part`` file is kept so that
        running again resumes.
    """
    dest = Path(dest)
    if dest.is_file() and _mismatch(dest, expected_size, expected_md5) is None:
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and offset > expected_size:
        # More bytes than the whole file: not a prefix of it, so there is nothing to resume.
        part.unlink()
        offset = 0

    _transfer(url, part, offset, expected_size, chunk_size, progress)

    problem = _mismatch(part, expected_size, expected_md5)
    if problem is not None:
        part.unlink()
        raise ChecksumError(f"{dest.name}: {problem} (download deleted; run again)")
    os.replace(part, dest)
    return dest


def _transfer(
    url: str, part: Path, offset: int, expected_size: int | None, chunk_size: int, progress: bool
) -> None:
    """Append the bytes after ``offset`` to ``part`` (or rewrite it if the server insists)."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S
        )
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            total = _range_total(err.headers.get("Content-Range", ""))
            if total is None or total == offset:
                return  # the part is already whole; the size/MD5 check decides
            part.unlink()  # the file on the server changed size: start over
            return _transfer(url, part, 0, expected_size, chunk_size, progress)
        raise FetchError(f"{part.name}: {url} answered HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise FetchError(f"{part.name}: cannot reach {url}: {reason}") from err

    with response:
        if response.status != 206:
            offset = 0  # the server ignored the Range header and sends the whole file
        length_header = response.headers.get("Content-Length")
        promised = offset + int(length_header) if length_header else expected_size
        received = 0
        with open(part, "ab" if offset else "wb") as out, tqdm(
            total=expected_size or promised,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=not progress,
        ) as bar:
            try:
                while chunk := response.read(chunk_size):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise FetchError(
                    f"{part.name}: download interrupted after {offset + received} bytes "
                    f"({err}); run again to resume"
                ) from err

    # http.client reports a dropped connection as a quiet end of data, so compare counts.
    if promised is not None and offset + received < promised:
        raise FetchError(
            f"{part.name}: download interrupted at {offset + received} of {promised} bytes; "
            "run again to resume"
        )


def _range_total(content_range: str) -> int | None:
    match = re.fullmatch(r"bytes [^/]+/(\d+)", content_range.strip())
    return int(match[1]) if match else None


def _mismatch(path: Path, size: int | None, md5: str | None) -> str | None:
    """Describe how ``path`` differs from the expected size/MD5, or None if it does not."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"expected {size} bytes, got {actual_size}"
    if md5 is not None:
        actual_md5 = _md5(path)
        if actual_md5 != md5.lower():
            return f"expected MD5 {md5.lower()}, got {actual_md5}"
    return None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- extract


def safe_extract(zip_path: Path, target_dir: Path) -> list[Path]:
    """Extract a zip archive into ``target_dir``, refusing members that would escape it.

    Parameters
    ----------
    zip_path : Path
        The archive.
    target_dir : Path
        Folder to extract into; created if missing. Existing files of the same name are
        replaced.

    Returns
    -------
    list of Path
        The extracted files, under ``target_dir``, sorted.

    Raises
    ------
    FetchError
        The file is not a readable zip, a member fails its CRC, or a member is an
        absolute path, holds a ``..`` or a drive letter, or is a symlink. Nothing is
        written in these cases.
    """
    zip_path, target_dir = Path(zip_path), Path(target_dir)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise FetchError(f"{zip_path.name}: not a readable zip archive ({err})") from err

    with archive:
        members = [info for info in archive.infolist() if not _is_junk(info.filename)]
        for info in members:
            _check_member(zip_path, info)
        try:
            bad = archive.testzip()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise FetchError(f"{zip_path.name}: corrupt archive ({err})") from err
        if bad is not None:
            raise FetchError(f"{zip_path.name}: member {bad!r} fails its CRC check")

        target_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target_dir.parent, prefix=f".{target_dir.name}."))
        try:
            for info in members:
                if not info.is_dir():
                    archive.extract(info, staging)
            return _move_tree(staging, target_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _is_junk(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return "__MACOSX" in parts or (bool(parts) and parts[-1].startswith("._"))


def _check_member(zip_path: Path, info: zipfile.ZipInfo) -> None:
    # Checked on the raw name, before zipfile's own silent clean-up, so that a hostile
    # archive is rejected instead of half-extracted somewhere unexpected.
    name = info.filename.replace("\\", "/")
    if name.startswith("/"):
        problem = "is an absolute path"
    elif re.match(r"[A-Za-z]:", name):
        problem = "has a drive letter"
    elif ".." in PurePosixPath(name).parts:
        problem = "contains '..'"
    elif stat.S_ISLNK(info.external_attr >> 16):
        problem = "is a symbolic link"
    else:
        return
    raise FetchError(f"{zip_path.name}: refusing member {info.filename!r}: it {problem}")


def _move_tree(source: Path, target_dir: Path) -> list[Path]:
    moved = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        out = target_dir / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, out)
        moved.append(out)
    return moved


# --------------------------------------------------------------------------- import


def import_local(source: Path, target_dir: Path) -> list[Path]:
    """Copy audio from a local folder or zip into ``target_dir``.

    Parameters
    ----------
    source : Path
        A folder (its ``.wav``/``.flac`` files are copied, keeping their layout relative
        to it, e.g. ``Actor_01/03-01-01-01-01-01-01.wav``) or a ``.zip`` archive
        (extracted with :func:`safe_extract`).
    target_dir : Path
        Destination folder; created if missing.

    Returns
    -------
    list of Path
        The files written under ``target_dir``.

    Raises
    ------
    FetchError
        ``source`` is missing, is neither a folder nor a zip, or holds no audio.
    """
    source, target_dir = Path(source), Path(target_dir)
    if not source.exists():
        raise FetchError(f"{source}: does not exist")

    if source.is_file():
        if source.suffix.lower() != ".zip":
            raise FetchError(f"{source}: expected a folder or a .zip archive")
        try:
            with zipfile.ZipFile(source) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise FetchError(f"{source.name}: not a readable zip archive ({err})") from err
        if not any(_is_audio(name) and not _is_junk(name) for name in names):
            raise FetchError(f"{source}: holds no {'/'.join(AUDIO_SUFFIXES)} files")
        return safe_extract(source, target_dir)

    files = sorted(p for p in source.rglob("*") if _is_audio(p.name) and p.is_file())
    if not files:
        raise FetchError(f"{source}: holds no {'/'.join(AUDIO_SUFFIXES)} files")
    copied = []
    for path in files:
        out = target_dir / path.relative_to(source)
        with open(path, "rb") as src, atomic_open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        shutil.copystat(path, out)
        copied.append(out)
    return copied


def _is_audio(name: str) -> bool:
    # macOS writes "._x.wav" resource forks on non-Apple disks; they are not audio.
    return name.lower().endswith(AUDIO_SUFFIXES) and not Path(name).name.startswith("._")


def _audio_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if _is_audio(p.name) and p.is_file()]


# --------------------------------------------------------------------------- fetch


def fetch(
    target_dir: Path,
    *,
    source: Path | None = None,
    url: str = ZENODO_URL,
    md5: str | None = ZIP_MD5,
    size: int | None = ZIP_SIZE,
    force: bool = False,
    progress: bool = True,
    download_dir: Path | None = None,
) -> Path:
    """Make sure ``target_dir`` holds the RAVDESS speech audio.

    Parameters
    ----------
    target_dir : Path
        Dataset folder; ends up holding ``Actor_XX/*.wav``.
    source : Path, optional
        A local folder or zip to import instead of downloading.
    url : str
        Where to download the archive from.
    md5, size : str or int, optional
        Expected MD5 and size of the archive; None skips that check.
    force : bool
        Fetch even if ``target_dir`` already holds audio.
    progress : bool
        Show a download progress bar.
    download_dir : Path, optional
        Where the archive is kept; defaults to ``target_dir.parent / ".downloads"`` so a
        later run does not download it again.

    Returns
    -------
    Path
        ``target_dir``.
    """
    target_dir = Path(target_dir)
    existing = _audio_files(target_dir)
    marker = target_dir / COMPLETE_MARKER
    if existing and not force:
        if marker.exists() or len(existing) >= RAVDESS_SPEECH_FILES:
            print(f"{target_dir} already holds {len(existing)} audio files; skipping fetch")
            return target_dir
        # files moved in one by one: without the marker, an earlier run may have stopped midway
        print(f"{target_dir} holds {len(existing)} audio files but no record of a finished fetch; "
              "fetching again")

    if source is not None:
        import_local(Path(source), target_dir)
    else:
        download_dir = Path(download_dir) if download_dir else target_dir.parent / ".downloads"
        name = PurePosixPath(urllib.parse.urlparse(url).path).name or ZIP_NAME
        archive = download(
            url, download_dir / name, expected_size=size, expected_md5=md5, progress=progress
        )
        safe_extract(archive, target_dir)

    count = len(_audio_files(target_dir))
    atomic_write_text(marker, f"{source or url}\n{count} audio files\n")
    print(f"{target_dir} now holds {count} audio files")
    return target_dir
