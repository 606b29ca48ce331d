"""Tokenize untrusted text so it can never become control tokens.

A tokenizer parses special-token strings such as `<|im_start|>` or `<|endoftext|>` out of any text it is given,
so a seed, a corpus document or a prompt containing one would silently turn into a turn boundary, an end of text
or a BOS token: it could forge a chat turn in a generation prompt, stop generation early, or put an attention
sink in the middle of a document whose features are being read. Everything here tokenizes user text with
`split_special_tokens=True` (the string is spelled out with ordinary tokens) and adds the special tokens the model
needs by id, never by string.

    ids = text_token_ids(tok, ["a seed with <|im_start|> in it"])[0]   # no special ids from the text
    ids = chat_prompt_ids(tok, "a seed with <|im_start|> in it")       # template tokens + the seed as text
"""

from __future__ import annotations

from collections.abc import Sequence

from qscope.errors import InputError

# Private-use code points: no chat template or tokenizer gives them a meaning, and user text is not expected to
# hold this exact sequence (if it does, the check in `chat_prompt_ids` still catches a misplaced split).
_PLACEHOLDER = "\ue000qscope-user-content\ue001"


def text_token_ids(tokenizer, texts: Sequence[str], add_special_tokens: bool = False, **kwargs) -> list[list[int]]:
    """Token ids of each text, special-token strings inside the text spelled out as ordinary tokens.

    add_special_tokens: let the tokenizer add its own BOS/EOS (by id, from its post-processor) around the text.
    kwargs go to the tokenizer (e.g. truncation=True, max_length=...)."""
    enc = tokenizer(list(texts), add_special_tokens=add_special_tokens, split_special_tokens=True, **kwargs)
    return [list(ids) for ids in enc["input_ids"]]


def _template_ids(tokenizer, text: str) -> list[int]:
    # The template's own text: here special-token strings *are* control tokens, so they are parsed.
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=False)["input_ids"]) if text else []


def _render(tokenizer, content: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )


def _markers(tokenizer) -> list[str]:
    """Strings the tokenizer turns into added (special or control) tokens wherever they appear."""
    added = set(getattr(tokenizer, "all_special_tokens", []) or [])
    added.update(tokenizer.get_added_vocab() if hasattr(tokenizer, "get_added_vocab") else {})
    return [m for m in added if m]


def chat_prompt_ids(tokenizer, content: str) -> list[int]:
    """Token ids of a one-turn chat prompt (user message + generation prompt) whose user text stays text.

    The template is rendered around a placeholder (to learn its text before and after the message) and around
    the real message. Tokenizers cut their input at added tokens before anything else, so the rendering splits
    into the template's part up to its last control token before the message, the text between (template
    text + message + template text), and the rest. When that middle text holds no control-token string, the
    whole rendering is tokenized as it always was (ids unchanged for ordinary prompts); when it does, the middle
    is tokenized as text and the template parts with their control tokens."""
    shell = _render(tokenizer, _PLACEHOLDER)
    if shell.count(_PLACEHOLDER) != 1:
        raise InputError(
            "the tokenizer's chat template does not place the user message verbatim; use raw prompts (chat=False)"
        )
    prefix, suffix = shell.split(_PLACEHOLDER)
    rendered = _render(tokenizer, content)
    end = len(rendered) - len(suffix)
    if not (rendered.startswith(prefix) and rendered.endswith(suffix) and end >= len(prefix)):
        raise InputError(
            "the tokenizer's chat template changes its text around the user message depending on "
            "the message; use raw prompts (chat=False)"
        )
    body = rendered[len(prefix) : end]  # the message as the template wrote it (some templates strip it)
    markers = _markers(tokenizer)
    head = max((prefix.rfind(m) + len(m) for m in markers if m in prefix), default=0)
    tail = min((suffix.find(m) for m in markers if m in suffix), default=len(suffix))
    middle = prefix[head:] + body + suffix[:tail]
    if not any(m in middle for m in markers):
        return _template_ids(tokenizer, rendered)
    return (
        _template_ids(tokenizer, prefix[:head])
        + text_token_ids(tokenizer, [middle])[0]
        + _template_ids(tokenizer, suffix[tail:])
    )
