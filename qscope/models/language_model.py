"""`LanguageModel`: a causal LM whose residual stream can be read at chosen layers, stopping early.

Hook point convention (as Qwen-Scope): layer L = the residual stream *after* decoder block L, which equals
`hidden_states[L + 1]` of a full forward with output_hidden_states=True.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from qscope.errors import InputError, ModelLoadError
from qscope.models.resolve import DEFAULT_MODEL, resolve_model_dir


def find_module_list(root: torch.nn.Module, paths: Sequence[str]) -> torch.nn.ModuleList | None:
    """The first of `paths` (dotted attribute paths below `root`, e.g. "model.layers") that is a ModuleList: where
    a model keeps its decoder blocks differs between plain, multimodal, HF and vLLM model classes."""
    for path in paths:
        obj = root
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    return None


class _StopForward(Exception):
    """Raised from a hook on the deepest requested block to skip the rest of the network."""


@dataclass
class Residuals:
    """Residual-stream activations for a batch of texts (right-padded)."""

    hidden: dict[int, torch.Tensor]  # layer -> [batch, seq, d_model]
    input_ids: torch.Tensor  # [batch, seq]
    attention_mask: torch.Tensor  # [batch, seq], 1 = real token
    truncated: list[bool]  # per text: was it cut at max_length?

    def tokens_of(self, i: int) -> torch.Tensor:
        return self.input_ids[i, self.attention_mask[i].bool()]


def _block_output(output) -> torch.Tensor:
    # Decoder blocks return a tensor (transformers ≥ 5) or a tuple whose first item is the hidden state.
    return output[0] if isinstance(output, (tuple, list)) else output


_DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
}


def resolve_device(device: str | None) -> str:
    """ "auto" / None → "cuda" when this process sees a GPU (Ray gives a GPU actor its own), else "cpu"."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: torch.dtype | str | None, device: str) -> torch.dtype:
    """ "auto" / None → bfloat16 on a GPU, float32 on the CPU; or a torch dtype or its name."""
    if dtype in (None, "auto"):
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(sorted(_DTYPES))}")
    return _DTYPES[dtype]


def _keep_blocks(config, max_layer: int) -> int:
    """Shorten a model config to blocks 0..max_layer (per-layer lists such as Qwen3.5's `layer_types` too)."""
    cfg = getattr(config, "text_config", None) or config
    n = int(cfg.num_hidden_layers)
    if not 0 <= max_layer < n:
        raise InputError(f"layer {max_layer} out of range: the model has layers 0..{n - 1}")
    keep = max_layer + 1
    for key, value in list(vars(cfg).items()):
        if isinstance(value, list) and len(value) == n and key.endswith(("layer_types", "_layers_block_type")):
            setattr(cfg, key, value[:keep])
    cfg.num_hidden_layers = keep
    return keep


@contextlib.contextmanager
def _quiet_load_report(quiet: bool):
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    if quiet:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


class LanguageModel:
    """Wraps a Hugging Face causal LM + tokenizer for feature reading and generation."""

    blocks_kept: int | None = None
    """Set by `load(max_layer=...)`: only blocks 0..blocks_kept-1 exist (feature reading, not generation)."""

    def __init__(self, model, tokenizer, name: str, max_length: int = 512, prepend_bos: bool = True):
        self.model = model.eval()
        # The first position of every sequence is an attention sink whose residual norm is ~100x the others
        # (SmolLM2 layer 15: 22735 vs ~170), whatever the token. Feature reading therefore drops position 0, and
        # prepends the BOS token (when the tokenizer has one but does not add it) so no user token is lost.
        self.prepend_bos = prepend_bos and tokenizer.bos_token is not None and not self._adds_bos(tokenizer)
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"

    @staticmethod
    def _adds_bos(tokenizer) -> bool:
        ids = tokenizer("a")["input_ids"]
        return bool(ids) and ids[0] == tokenizer.bos_token_id

    @classmethod
    def load(
        cls,
        spec: str | None = None,
        dtype: torch.dtype | str | None = torch.float32,
        device: str | None = "cpu",
        max_length: int = 512,
        max_layer: int | None = None,
    ) -> LanguageModel:
        """Load by embedded name (default `smollm2-135m`), local HF directory, GGUF file, or hub id.

        device None / "auto": the GPU when this process sees one, else the CPU; dtype None / "auto": bfloat16 on a
        GPU, float32 on the CPU (or a name: "bfloat16", "float16", "float32"). max_layer: load only the decoder
        blocks 0..max_layer — what reading features at that layer needs (the deeper blocks never run, so they
        are never materialised: about half the weights for a middle layer). Such a model cannot generate."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        spec = spec or DEFAULT_MODEL
        device, dtype = resolve_device(device), resolve_dtype(dtype, device)
        source, name = resolve_model_dir(spec)
        try:
            config = AutoConfig.from_pretrained(source)
            kept = _keep_blocks(config, max_layer) if max_layer is not None else None
            with _quiet_load_report(kept is not None):  # the deeper blocks' weights are left out on purpose
                model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=dtype).to(device)
            tokenizer = AutoTokenizer.from_pretrained(source)
        except OSError as exc:
            raise ModelLoadError(f"could not load model {spec!r} from {source}: {exc}") from exc
        lm = cls(model, tokenizer, name=name, max_length=max_length)
        lm.blocks_kept = kept
        return lm

    # --- structure ----------------------------------------------------------------------------------
    @property
    def layers(self) -> torch.nn.ModuleList:
        blocks = find_module_list(getattr(self.model, "model", self.model), ("layers", "language_model.layers"))
        if blocks is not None:
            return blocks
        raise ModelLoadError(f"{self.name}: cannot find the decoder blocks (model.model.layers)")

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def check_layer(self, layer: int) -> int:
        if not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise InputError(f"layer {layer} out of range: {self.name} has layers 0..{self.n_layers - 1}")
        return layer

    # --- input ----------------------------------------------------------------------------------------
    @staticmethod
    def validate_texts(texts: Sequence[str] | str) -> list[str]:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise InputError("no texts given (empty input)")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"text #{i} is {type(t).__name__}, expected str")
            if not t.strip():
                raise InputError(f"text #{i} is empty or whitespace only")
        return texts

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> tuple[dict, list[bool]]:
        """Right-padded `input_ids` / `attention_mask` and, per text, whether it was cut at `max_length`.

        Texts are data, never markup: a special-token string inside a text (`<|im_start|>`, `<|endoftext|>`)
        is spelled out with ordinary tokens (see `qscope.models.text_tokens`); the BOS token is added by id."""
        from qscope.models.text_tokens import text_token_ids

        max_length = max_length or self.max_length
        bos = [self.tokenizer.bos_token_id] if self.prepend_bos else []
        full = text_token_ids(self.tokenizer, texts, add_special_tokens=True)
        # Count truncation explicitly: we never drop a text, but the user must know it was cut.
        truncated = [len(bos) + len(ids) > max_length for ids in full]
        long = [i for i, cut in enumerate(truncated) if cut]
        if long:  # re-tokenized with the tokenizer's truncation, which keeps its own special tokens at the ends
            cut_ids = text_token_ids(
                self.tokenizer,
                [texts[i] for i in long],
                add_special_tokens=True,
                truncation=True,
                max_length=max(1, max_length - len(bos)),
            )
            full = list(full)
            for i, ids in zip(long, cut_ids):
                full[i] = ids
        rows = [bos + ids for ids in full]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), int(self.tokenizer.pad_token_id), dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            attention_mask[i, : len(r)] = 1
        return {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}, truncated

    # --- reading the residual stream -----------------------------------------------------------------
    @torch.no_grad()
    def residuals(self, texts: Sequence[str] | str, layers: Sequence[int], max_length: int | None = None) -> Residuals:
        """Residual stream after each block in `layers`, running the network only up to the deepest one."""
        texts = self.validate_texts(texts)
        layers = sorted({self.check_layer(int(layer)) for layer in layers})
        if not layers:
            raise InputError("no layers requested")
        enc, truncated = self.tokenize(texts, max_length)
        captured: dict[int, torch.Tensor] = {}
        deepest = layers[-1]

        def make_hook(layer: int):
            def hook(_module, _inputs, output):
                captured[layer] = _block_output(output)
                if layer == deepest:
                    raise _StopForward

            return hook

        handles = [self.layers[layer].register_forward_hook(make_hook(layer)) for layer in layers]
        try:
            self.model.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], use_cache=False)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        return Residuals(captured, enc["input_ids"], enc["attention_mask"], truncated)

    @torch.no_grad()
    def full_hidden_states(self, texts: Sequence[str] | str, max_length: int | None = None) -> tuple:
        """Reference path: every hidden state of a full forward (used by tests and benchmarks)."""
        enc, _ = self.tokenize(self.validate_texts(texts), max_length)
        out = self.model(**enc, output_hidden_states=True, use_cache=False)
        return out.hidden_states

    def token_strings(self, ids: torch.Tensor) -> list[str]:
        """Readable token strings (with leading spaces kept) for highlighting."""
        return [self.tokenizer.decode([int(i)]) for i in ids]
