"""Tests of the fetch stage against a loopback HTTP server; no real network."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import stat
import threading
import wave
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion_cnn.fetch import (
    ChecksumError,
    FetchError,
    download,
    fetch,
    import_local,
    safe_extract,
)

WAV_NAMES = ["Actor_01/03-01-01-01-01-01-01.wav", "Actor_01/03-01-05-01-02-01-01.wav"]


# --------------------------------------------------------------------------- fixtures


def _wav_bytes(seed: int, n: int = 2000) -> bytes:
    samples = np.random.default_rng(seed).integers(-3000, 3000, n, dtype=np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(samples.tobytes())
    return buffer.getvalue()


def _zip_bytes(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def wavs() -> dict[str, bytes]:
    return {name: _wav_bytes(seed) for seed, name in enumerate(WAV_NAMES)}


@pytest.fixture
def zip_data(wavs) -> bytes:
    junk = [("__MACOSX/Actor_01/._x.wav", b"junk"), ("Actor_01/._y.wav", b"junk")]
    return _zip_bytes([*wavs.items(), *junk])


class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.drop_after: int | None = None  # send this many body bytes, then hang up (once)
        self.ignore_range = False
        self.base = ""

    def url(self, path: str) -> str:
        return self.base + path


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state: _State = self.server.state  # type: ignore[attr-defined]
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if range_header and not state.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header)[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.drop_after is not None:
            body, state.drop_after = body[: state.drop_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """Fail any connection that is not to this machine, and bypass proxies."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        if address[0] not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"test tried to reach the network: {address}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


@pytest.fixture
def server():
    state = _State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.daemon = True
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_port}"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --------------------------------------------------------------------------- download


def test_download_verify_extract(server, zip_data, wavs, tmp_path):
    server.files["/data.zip"] = zip_data
    dest = download(
        server.url("/data.zip"),
        tmp_path / "dl" / "data.zip",
        expected_size=len(zip_data),
        expected_md5=_md5(zip_data),
        chunk_size=256,
        progress=False,
    )
    assert dest.read_bytes() == zip_data
    assert not (tmp_path / "dl" / "data.zip.part").exists()

    target = tmp_path / "dataset"
    extracted = safe_extract(dest, target)
    assert sorted(str(p.relative_to(target)) for p in extracted) == sorted(WAV_NAMES)
    assert _tree(target) == {"Actor_01", *WAV_NAMES}  # macOS junk skipped
    for name, data in wavs.items():
        assert (target / name).read_bytes() == data
        assert sf.info(target / name).samplerate == 16000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "dl"]  # staging removed


def test_md5_mismatch_leaves_nothing(server, zip_data, tmp_path):
    server.files["/Audio.zip"] = zip_data
    dest = tmp_path / "dl" / "Audio.zip"
    with pytest.raises(ChecksumError, match=r"Audio\.zip.*expected MD5 0{32}, got " + _md5(zip_data)):
        download(server.url("/Audio.zip"), dest, expected_md5="0" * 32, progress=False)
    assert not dest.exists()
    assert not dest.with_name("Audio.zip.part").exists()

    target = tmp_path / "dataset"
    with pytest.raises(ChecksumError):
        fetch(target, url=server.url("/Audio.zip"), md5="0" * 32, size=None, progress=False)
    assert not target.exists()
    assert not (tmp_path / ".downloads" / "Audio.zip").exists()


def test_size_mismatch_raises(server, zip_data, tmp_path):
    server.files["/data.zip"] = zip_data
    dest = tmp_path / "data.zip"
    with pytest.raises(ChecksumError, match=f"expected {len(zip_data) + 1} bytes, got {len(zip_data)}"):
        download(server.url("/data.zip"), dest, expected_size=len(zip_data) + 1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_resume_sends_range(server, zip_data, tmp_path):
    server.files["/data.zip"] = zip_data
    half = len(zip_data) // 2
    dest = tmp_path / "data.zip"
    dest.with_name("data.zip.part").write_bytes(zip_data[:half])
    download(server.url("/data.zip"), dest, expected_md5=_md5(zip_data), progress=False)
    assert server.requests == [("/data.zip", f"bytes={half}-")]
    assert dest.read_bytes() == zip_data


def test_interrupted_download_resumes_on_rerun(server, zip_data, tmp_path):
    server.files["/data.zip"] = zip_data
    server.drop_after = len(zip_data) // 3
    dest = tmp_path / "data.zip"
    part = dest.with_name("data.zip.part")
    kwargs = dict(expected_size=len(zip_data), expected_md5=_md5(zip_data), progress=False)

    with pytest.raises(FetchError, match="interrupted") as info:
        download(server.url("/data.zip"), dest, chunk_size=128, **kwargs)
    assert not isinstance(info.value, ChecksumError)
    assert not dest.exists()
    assert part.read_bytes() == zip_data[: len(zip_data) // 3]

    download(server.url("/data.zip"), dest, chunk_size=128, **kwargs)
    assert server.requests[-1] == ("/data.zip", f"bytes={len(zip_data) // 3}-")
    assert dest.read_bytes() == zip_data
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, zip_data, tmp_path):
    server.files["/data.zip"] = zip_data
    server.ignore_range = True
    dest = tmp_path / "data.zip"
    # Garbage in the part: appending the full 200 body to it would fail the MD5.
    dest.with_name("data.zip.part").write_bytes(b"x" * (len(zip_data) // 2))
    download(server.url("/data.zip"), dest, expected_md5=_md5(zip_data), progress=False)
    assert server.requests[0][1] is not None
    assert dest.read_bytes() == zip_data


def test_complete_part_answered_416_is_verified(server, zip_data, tmp_path):
    server.files["/data.zip"] = zip_data
    dest = tmp_path / "data.zip"
    dest.with_name("data.zip.part").write_bytes(zip_data)
    download(server.url("/data.zip"), dest, expected_md5=_md5(zip_data), progress=False)
    assert server.requests == [("/data.zip", f"bytes={len(zip_data)}-")]
    assert dest.read_bytes() == zip_data


def test_existing_complete_file_is_not_downloaded(server, zip_data, tmp_path):
    server.files["/data.zip"] = b"different bytes"
    dest = tmp_path / "data.zip"
    dest.write_bytes(zip_data)
    out = download(server.url("/data.zip"), dest, expected_md5=_md5(zip_data), progress=False)
    assert out == dest
    assert server.requests == []
    assert dest.read_bytes() == zip_data


def test_http_error_raises_fetch_error(server, tmp_path):
    with pytest.raises(FetchError, match="404"):
        download(server.url("/missing.zip"), tmp_path / "missing.zip", progress=False)


# --------------------------------------------------------------------------- extract


def _symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("Actor_01/link.wav")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    "evil",
    [
        zipfile.ZipInfo("../evil.wav"),
        zipfile.ZipInfo("Actor_01/../../evil.wav"),
        zipfile.ZipInfo("/tmp/evil.wav"),
        zipfile.ZipInfo("C:/evil.wav"),
        zipfile.ZipInfo("..\\evil.wav"),
        _symlink_entry(),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "drive", "backslash", "symlink"],
)
def test_escaping_zip_is_refused_and_writes_nothing(evil, wavs, tmp_path):
    good = next(iter(wavs.items()))
    zip_path = tmp_path / "in" / "evil.zip"
    zip_path.parent.mkdir()
    zip_path.write_bytes(_zip_bytes([good, (evil, b"/etc/passwd")]))
    target = tmp_path / "out" / "dataset"
    before = _tree(tmp_path)

    with pytest.raises(FetchError, match=r"evil\.zip.*refusing"):
        safe_extract(zip_path, target)
    assert _tree(tmp_path) == before
    assert not target.exists()


@pytest.mark.parametrize("damage", ["truncated", "not-a-zip", "bad-crc"])
def test_corrupt_zip_raises(damage, zip_data, wavs, tmp_path):
    if damage == "truncated":
        data = zip_data[: int(len(zip_data) * 0.6)]
    elif damage == "not-a-zip":
        data = b"<html>rate limited</html>"
    else:
        first = next(iter(wavs.values()))
        pos = zip_data.index(first) + len(first) // 2  # stored, so the payload is verbatim
        data = zip_data[:pos] + bytes([zip_data[pos] ^ 0xFF]) + zip_data[pos + 1 :]
    zip_path = tmp_path / "bad.zip"
    zip_path.write_bytes(data)
    target = tmp_path / "dataset"
    with pytest.raises(FetchError, match=r"bad\.zip"):
        safe_extract(zip_path, target)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


# --------------------------------------------------------------------------- import


def test_import_local_folder(wavs, tmp_path):
    source = tmp_path / "src"
    for name, data in wavs.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    (source / "Actor_02").mkdir()
    sf.write(source / "Actor_02" / "03-01-02-01-01-01-02.flac", np.zeros(800, "float32"), 16000)
    (source / "README.txt").write_text("not audio")
    (source / "Actor_01" / "._03-01-01-01-01-01-01.wav").write_bytes(b"resource fork")

    target = tmp_path / "dataset"
    copied = import_local(source, target)
    expected = {*WAV_NAMES, "Actor_02/03-01-02-01-01-01-02.flac"}
    assert {str(p.relative_to(target)) for p in copied} == expected
    assert {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()} == expected
    for name, data in wavs.items():
        assert (target / name).read_bytes() == data


def test_import_local_zip(zip_data, wavs, tmp_path):
    zip_path = tmp_path / "ravdess.zip"
    zip_path.write_bytes(zip_data)
    target = tmp_path / "dataset"
    copied = import_local(zip_path, target)
    assert sorted(str(p.relative_to(target)) for p in copied) == sorted(WAV_NAMES)
    for name, data in wavs.items():
        assert (target / name).read_bytes() == data


def test_import_local_errors(tmp_path):
    with pytest.raises(FetchError, match="does not exist"):
        import_local(tmp_path / "nope", tmp_path / "dataset")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(FetchError, match="no .wav"):
        import_local(tmp_path / "empty", tmp_path / "dataset")
    (tmp_path / "text.zip").write_bytes(_zip_bytes([("notes.txt", b"x")]))
    with pytest.raises(FetchError, match="no .wav"):
        import_local(tmp_path / "text.zip", tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()


# --------------------------------------------------------------------------- fetch


def test_fetch_skips_when_a_finished_fetch_left_audio(server, tmp_path, capsys):
    target = tmp_path / "dataset"
    (target / "Actor_01").mkdir(parents=True)
    (target / "Actor_01" / "03-01-01-01-01-01-01.wav").write_bytes(_wav_bytes(0))
    (target / ".fetch-complete").write_text("earlier run\n")
    assert fetch(target, url=server.url("/Audio.zip"), progress=False) == target
    assert server.requests == []
    assert "already holds 1 audio files" in capsys.readouterr().out


def test_fetch_resumes_a_partial_extraction(server, zip_data, tmp_path, capsys):
    """Audio without the completion marker is what an interrupted extraction leaves."""
    server.files["/Audio.zip"] = zip_data
    target = tmp_path / "dataset"
    (target / "Actor_01").mkdir(parents=True)
    (target / "Actor_01" / "03-01-01-01-01-01-01.wav").write_bytes(_wav_bytes(0))
    fetch(target, url=server.url("/Audio.zip"), md5=_md5(zip_data), size=len(zip_data), progress=False)
    assert len(server.requests) == 1
    assert "no record of a finished fetch" in capsys.readouterr().out
    assert _tree(target) >= {"Actor_01", *WAV_NAMES}
    assert (target / ".fetch-complete").exists()


def test_fetch_end_to_end(server, zip_data, wavs, tmp_path, capsys):
    server.files["/records/1/files/Audio_Speech_Actors_01-24.zip"] = zip_data
    url = server.url("/records/1/files/Audio_Speech_Actors_01-24.zip")
    target = tmp_path / "dataset"
    out = fetch(target, url=url, md5=_md5(zip_data), size=len(zip_data), progress=False)
    assert out == target
    assert _tree(target) == {"Actor_01", *WAV_NAMES, ".fetch-complete"}
    for name, data in wavs.items():
        assert (target / name).read_bytes() == data
    assert (tmp_path / ".downloads" / "Audio_Speech_Actors_01-24.zip").read_bytes() == zip_data
    assert "now holds 2 audio files" in capsys.readouterr().out
    assert len(server.requests) == 1

    fetch(target, url=url, md5=_md5(zip_data), size=len(zip_data), progress=False)
    assert len(server.requests) == 1  # second run: nothing to do


def test_fetch_force_reuses_verified_archive(server, zip_data, tmp_path):
    server.files["/Audio.zip"] = zip_data
    target = tmp_path / "dataset"
    kwargs = dict(url=server.url("/Audio.zip"), md5=_md5(zip_data), size=len(zip_data), progress=False)
    fetch(target, **kwargs)
    (target / WAV_NAMES[0]).unlink()
    fetch(target, force=True, **kwargs)
    assert (target / WAV_NAMES[0]).is_file()
    assert len(server.requests) == 1


def test_fetch_from_local_source(zip_data, tmp_path):
    zip_path = tmp_path / "local.zip"
    zip_path.write_bytes(zip_data)
    target = tmp_path / "dataset"
    fetch(target, source=zip_path, progress=False)
    assert _tree(target) == {"Actor_01", *WAV_NAMES, ".fetch-complete"}
    assert not (tmp_path / ".downloads").exists()
