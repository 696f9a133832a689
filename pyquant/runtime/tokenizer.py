"""Tokenizer built from GGUF metadata (`tokenizer.ggml.*`) on top of the `tokenizers` library.

Two vocabulary families, as in llama.cpp's src/llama-vocab.cpp:

- ``gpt2``: byte-level BPE with `merges`. The text is first split by the regexes llama.cpp uses for
  `tokenizer.ggml.pre` (applied one after another; matches and the text between them both become
  pieces, i.e. `Split(behavior="isolated")`), then each piece is byte-level encoded and merged.
- ``llama``: SentencePiece-style vocabulary with `scores`: spaces become U+2581, a space is prepended
  to every text fragment that starts the input or follows a special token (`add_space_prefix`), pieces
  merge highest-score-first, unknown bytes fall back to `<0xXX>` tokens. A score-greedy merge is a
  BPE whose merge ranks are the scores of the merged pieces, which is how we express it here.

Control tokens (token_type 3) are only matched in the text when `parse_special=True` (llama.cpp's
`parse_special`); user-defined tokens (type 4) always are.
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from ..errors import FormatError

# token_type values of tokenizer.ggml.token_type (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_LETTER_CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
# Pre-tokenizer regexes per tokenizer.ggml.pre, from llama.cpp's llm_tokenizer_bpe constructor.
# The llama3/qwen2 forms replace "(?i:'s|...)" by explicit case classes, as llama.cpp does.
PRE_TOKENIZER_REGEXES: dict[str, list[str]] = {
    "llama-bpe": [_LETTER_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "qwen2": [_LETTER_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "smollm": [r"\p{N}", _GPT2],
    "gpt2": [_GPT2],
    # llama.cpp's fallback for an unknown `pre` (it warns, so do we)
    "default": [r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
}
for _alias, _same in {"llama3": "llama-bpe", "dbrx": "llama-bpe", "smaug-bpe": "llama-bpe",
                      "stablelm2": "qwen2", "starcoder": "smollm", "refact": "smollm",
                      "command-r": "smollm", "codeshell": "smollm", "exaone": "smollm",
                      "minerva-7b": "smollm", "mpt": "gpt2", "olmo": "gpt2", "jais": "gpt2"}.items():
    PRE_TOKENIZER_REGEXES[_alias] = PRE_TOKENIZER_REGEXES[_same]
# llama.cpp sets tokenizer_ignore_merges for these: a piece already in the vocab is one token.
_IGNORE_MERGES = {"llama-bpe", "llama3", "dbrx", "smaug-bpe"}

# Texts llama.cpp treats as end-of-generation when they are control tokens (llama-vocab.cpp).
_EOG_TEXTS = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
              "<EOT>", "_<EOT>", "<|end▁of▁sentence|>", "<|return|>", "<|call|>"}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 byte values onto printable unicode characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


@dataclass
class Tokenizer:
    """Text <-> token ids for one GGUF model. `encode` matches llama.cpp's `llama_tokenize`."""
    backend: object                       # tokenizers.Tokenizer (owns the vocabulary strings)
    token_types: bytes                    # token_type per id (kept compact: 49k ids -> 49 kB)
    piece_bytes: list[bytes]              # what each token contributes to the output text
    model: str                            # "gpt2" | "llama"
    bos_id: int | None
    eos_id: int | None
    add_bos: bool
    add_eos: bool = False
    eog_ids: frozenset = field(default_factory=frozenset)
    chat_template: str | None = None

    @property
    def n_vocab(self) -> int:
        return len(self.piece_bytes)

    def token_text(self, token_id: int) -> str:
        """The vocabulary string of a token as stored in the GGUF (e.g. 'Ġthe', '<|im_end|>')."""
        return self.backend.id_to_token(int(token_id))

    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = False) -> list[int]:
        """Token ids of `text`; BOS first when the model asks for it (add_bos=None) or when add_bos."""
        self.backend.encode_special_tokens = not parse_special
        ids = self.backend.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id] + ids
        if self.add_eos and self.eos_id is not None:
            ids = ids + [self.eos_id]
        return ids

    def token_to_bytes(self, token_id: int, special: bool = False) -> bytes:
        """Output bytes of one token; control tokens render as empty unless `special` (llama.cpp)."""
        if not special and self.token_types[token_id] == CONTROL:
            return b""
        return self.piece_bytes[token_id]

    def decode(self, ids, special: bool = False) -> str:
        return b"".join(self.token_to_bytes(int(i), special) for i in ids).decode("utf-8", "replace")

    def stream_decoder(self, special: bool = False) -> "StreamDecoder":
        return StreamDecoder(self, special)

    def is_eog(self, token_id: int) -> bool:
        return token_id in self.eog_ids

    @classmethod
    def from_gguf(cls, metadata: dict, path=None) -> "Tokenizer":
        """Build from GGUF metadata (a plain key -> value dict, e.g. GGUFReader.metadata)."""
        model = metadata.get("tokenizer.ggml.model")
        tokens = metadata.get("tokenizer.ggml.tokens")
        if tokens is None or model is None:
            raise FormatError(path, "no tokenizer: 'tokenizer.ggml.model' / 'tokenizer.ggml.tokens' missing")
        tokens = [str(t) for t in tokens]
        types = metadata.get("tokenizer.ggml.token_type")
        types = [int(t) for t in types] if types is not None else [NORMAL] * len(tokens)
        if len(types) != len(tokens):
            raise FormatError(path, f"'tokenizer.ggml.token_type' has {len(types)} entries, "
                                    f"tokens has {len(tokens)}")
        if model == "gpt2":
            backend, piece_bytes = _build_bpe(metadata, tokens, types, path)
            add_bos_default = False
        elif model == "llama":
            backend, piece_bytes = _build_spm(metadata, tokens, types, path)
            add_bos_default = True
        else:
            raise FormatError(path, f"'tokenizer.ggml.model' = {model!r} is not supported (gpt2, llama)")

        def token_id(key):
            v = metadata.get(f"tokenizer.ggml.{key}")
            if v is None:
                return None
            if not 0 <= int(v) < len(tokens):
                raise FormatError(path, f"'tokenizer.ggml.{key}' = {v} outside the vocabulary ({len(tokens)})")
            return int(v)

        bos, eos = token_id("bos_token_id"), token_id("eos_token_id")
        eog = {i for i in (eos, token_id("eot_token_id"), token_id("eom_token_id")) if i is not None}
        eog |= {i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == CONTROL and t in _EOG_TEXTS}
        return cls(backend=backend, token_types=bytes(t & 0xFF for t in types), piece_bytes=piece_bytes, model=model,
                   bos_id=bos, eos_id=eos,
                   add_bos=bool(metadata.get("tokenizer.ggml.add_bos_token", add_bos_default)),
                   add_eos=bool(metadata.get("tokenizer.ggml.add_eos_token", False)),
                   eog_ids=frozenset(eog), chat_template=metadata.get("tokenizer.chat_template"))

    @classmethod
    def from_hf(cls, directory, n_vocab: int = 0) -> "Tokenizer":
        """Build from a Hugging Face directory: tokenizer.json (run by `tokenizers` as written),
        tokenizer_config.json (BOS/EOS, add_bos_token, chat_template; or chat_template.jinja) and
        generation_config.json (its eos_token_id list ends generation too). n_vocab: the model's
        vocabulary size, when it pads past the tokenizer's (those ids decode to nothing)."""
        from pathlib import Path

        from tokenizers import Tokenizer as HFTokenizer

        d = Path(directory)
        tj = d / "tokenizer.json"
        if not tj.is_file():
            raise FormatError(d, "no tokenizer.json (pyquant reads fast-tokenizer files; save the tokenizer "
                                 "with transformers' save_pretrained to write one)")
        try:
            backend = HFTokenizer.from_file(str(tj))
        except Exception as e:
            raise FormatError(tj, f"cannot build the tokenizer: {e}") from None
        from ..formats.hf.checkpoint import read_json

        tc = read_json(d / "tokenizer_config.json", "tokenizer_config.json") \
            if (d / "tokenizer_config.json").is_file() else {}
        gc = read_json(d / "generation_config.json", "generation_config.json") \
            if (d / "generation_config.json").is_file() else {}
        vocab = backend.get_vocab(with_added_tokens=True)
        n = max(max(vocab.values()) + 1, int(n_vocab))
        texts = [""] * n
        for t, i in vocab.items():
            texts[i] = t
        del vocab   # (not parsing tokenizer.json ourselves: its Python objects cost ~40 MB of peak RSS)
        types = [NORMAL if t else UNUSED for t in texts]
        for i, a in backend.get_added_tokens_decoder().items():
            if 0 <= i < n:
                types[i] = CONTROL if a.special else USER_DEFINED
        byte_level = "ByteLevel" in repr(backend.decoder)
        unbyte = {c: b for b, c in _bytes_to_unicode().items()}
        pieces = []
        for i, t in enumerate(texts):
            if types[i] != NORMAL:
                pieces.append(b"" if types[i] == UNUSED else t.encode("utf-8"))
            elif byte_level and all(c in unbyte for c in t):
                pieces.append(bytes(unbyte[c] for c in t))
            elif len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
                types[i] = BYTE
                pieces.append(bytes([int(t[3:5], 16)]))
            else:
                pieces.append(t.replace("\u2581", " ").encode("utf-8"))

        def token(key):
            v = tc.get(key)
            v = v.get("content") if isinstance(v, dict) else v
            return backend.token_to_id(v) if isinstance(v, str) else None

        bos, eos = token("bos_token"), token("eos_token")
        gen_eos = gc.get("eos_token_id")
        gen_eos = gen_eos if isinstance(gen_eos, list) else [gen_eos]
        eog = {i for i in [eos, *gen_eos] if isinstance(i, int) and 0 <= i < n}
        eog |= {i for i, t in enumerate(texts) if types[i] == CONTROL and t in _EOG_TEXTS}
        if eos is None and eog:
            eos = min(eog)
        add_bos = tc.get("add_bos_token")
        if add_bos is None and bos is not None:   # what the post-processor does
            backend.encode_special_tokens = False
            add_bos = backend.encode("a", add_special_tokens=True).ids[:1] == [bos]
        template = tc.get("chat_template")
        if isinstance(template, list):   # named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        if template is None and (d / "chat_template.jinja").is_file():
            template = (d / "chat_template.jinja").read_text(encoding="utf-8")
        return cls(backend=backend, token_types=bytes(types), piece_bytes=pieces,
                   model="gpt2" if byte_level else "llama", bos_id=bos, eos_id=eos, add_bos=bool(add_bos),
                   eog_ids=frozenset(eog), chat_template=template)


def _add_tokens(backend, tokens, types) -> None:
    """Tokens matched as wholes in the raw text, before the model splits it: control tokens only when
    encode(parse_special=True), user-defined ones always (llama.cpp's tokenizer_st_partition skips
    only control/unknown tokens without parse_special). Gemma's whitespace runs and newlines are
    user-defined: registered as special, 31 spaces became 31 one-space tokens instead of 1."""
    from tokenizers import AddedToken

    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, ty in zip(tokens, types) if ty == CONTROL])
    backend.add_tokens([AddedToken(t, special=False, normalized=False)
                        for t, ty in zip(tokens, types) if ty == USER_DEFINED])


def _build_bpe(metadata, tokens, types, path):
    from tokenizers import Regex, Tokenizer as HFTokenizer, models, pre_tokenizers

    merges = metadata.get("tokenizer.ggml.merges")
    if merges is None:
        raise FormatError(path, "gpt2 tokenizer without 'tokenizer.ggml.merges'")
    pairs = []
    for m in merges:
        left, sep, right = str(m).partition(" ")
        if not sep:
            raise FormatError(path, f"'tokenizer.ggml.merges' entry {m!r} is not 'left right'")
        pairs.append((left, right))
    pre = metadata.get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZER_REGEXES:
        import warnings

        warnings.warn(f"{path}: tokenizer.ggml.pre = {pre!r} unknown; using llama.cpp's default regexes")
        pre = "default"
    vocab = {t: i for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=pairs, ignore_merges=pre in _IGNORE_MERGES)
    backend = HFTokenizer(bpe)
    splits = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in PRE_TOKENIZER_REGEXES[pre]]
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    _add_tokens(backend, tokens, types)

    unbyte = {c: b for b, c in _bytes_to_unicode().items()}
    piece_bytes = []
    for t, ty in zip(tokens, types):
        if ty in (CONTROL, USER_DEFINED) or any(c not in unbyte for c in t):
            piece_bytes.append(t.encode("utf-8"))  # added tokens are stored as plain text
        else:
            piece_bytes.append(bytes(unbyte[c] for c in t))
    return backend, piece_bytes


def _build_spm(metadata, tokens, types, path):
    from tokenizers import Tokenizer as HFTokenizer, models, normalizers

    scores = metadata.get("tokenizer.ggml.scores")
    if scores is None:
        raise FormatError(path, "llama (SentencePiece) tokenizer without 'tokenizer.ggml.scores'")
    scores = [float(s) for s in scores]
    vocab = {t: i for i, t in enumerate(tokens)}
    # Score-greedy merging as BPE: every split of a normal piece into two vocab pieces is a merge,
    # ranked by the merged piece's score (highest first), then by its id.
    merges = []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty != NORMAL or len(t) < 2:
            continue
        for cut in range(1, len(t)):
            left, right = t[:cut], t[cut:]
            li, ri = vocab.get(left), vocab.get(right)
            if li is not None and ri is not None and types[li] == NORMAL and types[ri] == NORMAL:
                merges.append((-scores[i], i, left, right))
    merges.sort()
    unk = next((t for t, ty in zip(tokens, types) if ty == UNKNOWN), None)
    bpe = models.BPE(vocab=vocab, merges=[(m[2], m[3]) for m in merges], unk_token=unk,
                     byte_fallback=True, fuse_unk=True)
    backend = HFTokenizer(bpe)
    norm = [normalizers.Replace(" ", "\u2581")]
    if metadata.get("tokenizer.ggml.add_space_prefix", True):
        norm.insert(0, normalizers.Prepend("\u2581"))
    backend.normalizer = normalizers.Sequence(norm)
    _add_tokens(backend, tokens, types)

    piece_bytes = []
    for t, ty in zip(tokens, types):
        if ty == BYTE and len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            piece_bytes.append(bytes([int(t[3:5], 16)]))
        else:
            piece_bytes.append(t.replace("\u2581", " ").encode("utf-8"))
    return backend, piece_bytes


class StreamDecoder:
    """Turns a stream of token ids into text pieces; a UTF-8 character split across tokens is held
    back until its last byte arrives (an incremental UTF-8 decoder does exactly that)."""

    def __init__(self, tokenizer: Tokenizer, special: bool = False):
        self.tokenizer = tokenizer
        self.special = special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self.tokenizer.token_to_bytes(token_id, self.special))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
