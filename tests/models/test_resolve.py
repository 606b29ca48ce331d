"""Model resolution: the GGUF conversion cache is keyed by content and converts once under concurrency; hub specs
pin revisions and honour HF_HUB_OFFLINE; an SAE is read on its own model unless a mismatch is asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from qscope.errors import InputError, ModelLoadError, SAELoadError
from qscope.models import resolve
from qscope.models.match import model_aliases, model_for_sae

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _fake_convert(source, target, digest, size, hf_name):
    """Stands in for the 35-s dequantization: the 'weights' are the GGUF's bytes, the marker as the real one."""
    from qscope.paths import atomic_path

    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "weights.bin").write_bytes(Path(source).read_bytes())
        (tmp / resolve.COMPLETE_MARKER).write_text(json.dumps({"source": str(source), "sha256": digest, "size": size}))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("QSCOPE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(resolve, "_convert", _fake_convert)
    return tmp_path / "home"


def test_gguf_cache_is_keyed_by_content_not_by_file_name(tmp_path, home):
    a, b = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    for path, data in ((a, b"GGUF weights of model A"), (b, b"GGUF weights of model B, other size")):
        path.parent.mkdir()
        path.write_bytes(data)
    dir_a, name_a = resolve.resolve_model_dir(str(a))
    dir_b, _ = resolve.resolve_model_dir(str(b))
    assert dir_a != dir_b, "two different model.gguf files must not share a conversion"
    assert (dir_a / "weights.bin").read_bytes() == a.read_bytes() and (
        dir_b / "weights.bin"
    ).read_bytes() == b.read_bytes()
    assert name_a == str(a)


def test_updated_gguf_is_converted_again(tmp_path, home):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"version one")
    first, _ = resolve.resolve_model_dir(str(path))
    path.write_bytes(b"version two")  # same size, same name: only the content tells them apart
    second, _ = resolve.resolve_model_dir(str(path))
    assert first != second and (second / "weights.bin").read_bytes() == b"version two"
    assert resolve.resolve_model_dir(str(path))[0] == second  # and then reused


def test_a_marker_for_other_content_is_not_trusted(tmp_path, home):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"real content")
    target, _ = resolve.resolve_model_dir(str(path))
    marker = target / resolve.COMPLETE_MARKER
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "sha256": "0" * 64}))
    (target / "weights.bin").write_bytes(b"stale")
    again, _ = resolve.resolve_model_dir(str(path))
    assert (again / "weights.bin").read_bytes() == b"real content"


def test_concurrent_first_loads_convert_once(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x" * 4096)
    log = tmp_path / "conversions.log"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from qscope.models import resolve
        from test_resolve import _fake_convert

        def slow_convert(*args):
            with open({str(log)!r}, "a") as f:
                f.write("converted\\n")
            time.sleep(1.0)  # long enough that the other process arrives while this one converts
            _fake_convert(*args)

        resolve._convert = slow_convert
        print(resolve.convert_gguf(Path({str(tmp_path)!r}), "m.gguf", cache_name="m"))
    """)
    env = {**os.environ, "QSCOPE_HOME": str(tmp_path / "home")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert len({o[0].strip() for o in outs}) == 1
    assert log.read_text().count("converted") == 1


def test_fingerprint_is_memoised_and_sees_rewrites(tmp_path, home, monkeypatch):
    path = tmp_path / "big.gguf"
    path.write_bytes(b"a" * 100_000)
    digest, size = resolve.gguf_fingerprint(path)
    reads = []
    real_open = open

    def counting_open(file, *a, **kw):
        if Path(file) == path:
            reads.append(file)
        return real_open(file, *a, **kw)

    monkeypatch.setattr("builtins.open", counting_open)
    assert resolve.gguf_fingerprint(path) == (digest, size) and reads == [], "an unchanged file is not re-hashed"
    path.write_bytes(b"b" * 100_000)
    assert resolve.gguf_fingerprint(path)[0] != digest and len(reads) == 1


# --- hub revisions and offline mode ------------------------------------------------------------------------
def _hub_cache(
    root: Path, repo: str, files: dict[str, bytes | Path], commit: str = COMMIT, refs: dict[str, str] | None = None
) -> Path:
    """A hand-made hub cache in the layout huggingface_hub writes: models--org--name/{refs,snapshots/<commit>}."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data.read_bytes() if isinstance(data, Path) else data)
    (repo_dir / "refs").mkdir()
    for ref, sha in (refs or {"main": commit}).items():
        (repo_dir / "refs" / ref).write_text(sha)
    return snap


@pytest.fixture
def tiny_hub_model(tmp_path, monkeypatch):
    """A tiny random Llama (the embedded tokenizer) cached as acme/tiny at COMMIT, HF_HUB_OFFLINE on."""
    from qscope.models.tiny import make_tiny_lm

    # make_tiny_lm saves the weights and the embedded tokenizer side by side: the snapshot a hub download leaves.
    src = make_tiny_lm(tmp_path / "src", hidden_size=32, layers=2)
    files = {p.name: p for p in src.iterdir() if p.is_file()}
    hub = tmp_path / "hub"
    _hub_cache(hub, "acme/tiny", files, refs={"main": COMMIT, "v1.0": COMMIT})
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub


@pytest.mark.parametrize("spec", ["acme/tiny", f"acme/tiny@{COMMIT}", "acme/tiny@v1.0", "acme/tiny@main"])
def test_hub_model_loads_offline_at_a_pinned_revision(tiny_hub_model, spec):
    from qscope.models import LanguageModel

    source, name = resolve.resolve_model_dir(spec)
    assert Path(source) == tiny_hub_model / "models--acme--tiny" / "snapshots" / COMMIT
    assert name == spec  # the pin is part of the provenance name
    lm = LanguageModel.load(spec)
    assert (lm.n_layers, lm.d_model) == (2, 32)


@pytest.mark.parametrize("spec", ["acme/tiny@v2.0", "acme/tiny@" + "f" * 40, "acme/missing"])
def test_uncached_hub_revision_offline_is_a_clear_error(tiny_hub_model, spec):
    with pytest.raises(ModelLoadError, match="not in the local hub cache .*HF_HUB_OFFLINE is set"):
        resolve.resolve_model_dir(spec)


def test_empty_revision_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="empty revision"):
        resolve.resolve_model_dir("acme/tiny@")


def test_hub_sae_at_a_pinned_revision_offline(tmp_path, monkeypatch):
    import torch

    torch.manual_seed(0)
    state = {
        "W_enc": torch.randn(64, 16),
        "W_dec": torch.randn(16, 64),
        "b_enc": torch.zeros(64),
        "b_dec": torch.zeros(16),
    }
    buf = tmp_path / "layer3.sae.pt"
    torch.save(state, buf)
    repo = "acme/SAE-Res-Tiny-W1K-L0_8"
    other = "1" * 40
    _hub_cache(tmp_path / "hub", repo, {"layer3.sae.pt": buf}, refs={"main": COMMIT, "v1": COMMIT})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from qscope.sae import load_sae

    sae = load_sae(f"{repo}@v1", layer=3)
    assert (sae.d_in, sae.d_sae, sae.cfg.k) == (16, 64, 8)
    assert sae.sae_id == f"{repo}@v1/layer3" and sae.cfg.metadata["hub_commit"] == COMMIT
    assert load_sae(repo, layer=3).sae_id == f"{repo}/layer3"
    with pytest.raises(SAELoadError, match="not in the local hub cache"):
        load_sae(f"{repo}@{other}", layer=3)
    with pytest.raises(SAELoadError, match="not in the local hub cache"):
        load_sae(repo, layer=4)


# --- the SAE's own model ----------------------------------------------------------------------------------
def _sae(model_name):
    return SimpleNamespace(cfg=SimpleNamespace(model_name=model_name), sae_id="test/sae", d_in=576)


@pytest.mark.parametrize(
    "recorded,expected",
    [
        ("smollm2-135m", "smollm2-135m"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m"),  # the embedded copy loads offline
        (None, "smollm2-135m"),  # nothing recorded: the embedded default
        ("Qwen/Qwen3-1.7B-Base", "Qwen/Qwen3-1.7B-Base"),  # not the embedded default of another width
    ],
)
def test_default_model_is_the_saes_own(recorded, expected):
    assert model_for_sae(None, _sae(recorded)) == expected


@pytest.mark.parametrize(
    "given", ["smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct@main"]
)
def test_the_same_model_under_another_name_is_accepted(given):
    assert model_for_sae(given, _sae("smollm2-135m")) == given


def test_local_copy_naming_the_hub_id_is_the_same_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}))
    assert "smollm2-135m" in model_aliases(str(tmp_path))
    assert model_for_sae(str(tmp_path), _sae("smollm2-135m")) == str(tmp_path)


def test_another_model_is_refused_unless_asked_for(tmp_path):
    with pytest.raises(InputError, match="trained on model 'smollm2-135m'.*allow-model-mismatch"):
        model_for_sae("Qwen/Qwen3-0.6B", _sae("smollm2-135m"))
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"hidden_size": 576}))  # same width, no provenance
    with pytest.raises(InputError, match="trained on model"):
        model_for_sae(str(other), _sae("smollm2-135m"))
    assert model_for_sae(str(other), _sae("smollm2-135m"), allow_model_mismatch=True) == str(other)
    assert model_for_sae("anything/else", _sae(None)) == "anything/else"  # nothing recorded: nothing to check


def test_recorded_model_that_is_nowhere_is_a_clear_error():
    with pytest.raises(InputError, match="records its model as '/nowhere/model'.*pass the model explicitly"):
        model_for_sae(None, _sae("/nowhere/model"))


def test_quickstart_refuses_another_model_before_loading_it(tmp_path, monkeypatch):
    from qscope.models import LanguageModel
    from qscope.quickstart import SAEModel

    def no_load(*a, **k):
        raise AssertionError("the model must not be loaded when it does not match the SAE")

    monkeypatch.setattr(LanguageModel, "load", classmethod(no_load))
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text("{}")
    with pytest.raises(InputError, match="trained on model 'smollm2-135m'"):
        SAEModel.from_pretrained(model=str(other))


def test_model_name_needs_no_conversion_or_download(tmp_path, home, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("model_name must not convert or download")

    monkeypatch.setattr(resolve, "_convert", forbidden)
    monkeypatch.setattr(resolve, "gguf_fingerprint", forbidden)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    assert resolve.model_name(None) == "smollm2-135m"
    assert resolve.model_name(str(gguf)) == str(gguf)
    assert resolve.model_name("org/name@v1") == "org/name@v1"
    with pytest.raises(ModelLoadError, match="unknown model"):
        resolve.model_name("no-such-model")
