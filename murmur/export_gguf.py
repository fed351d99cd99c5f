"""GGUF export: a murmur model directory as one file that llama.cpp, Ollama and LM Studio run as is.

``export_gguf(run_dir, out_file, dtype)`` writes, with the ``gguf`` package (the writer llama.cpp's
own converter uses), what ``convert_hf_to_gguf.py`` would write for the Hugging Face export, without
its pre-tokenizer guess (which identifies a tokenizer by hashing a trained vocabulary's ids, so it
never recognises a newly trained one):

- architecture ``llama``: context length, embedding and feed-forward sizes, block count, head counts,
  head dimension (key, value and RoPE dimension), RoPE theta, RMS norm epsilon, vocabulary size;
- tensors under llama.cpp's names (``token_embd``, ``blk.N.attn_q`` ... ``output_norm``, ``output``
  unless embeddings are tied), Q and K rows permuted from the rotate-half RoPE layout murmur and
  Hugging Face use to the interleaved pairs llama.cpp's ``llama`` graph rotates, exactly as the
  converter's ``LlamaModel.permute`` does;
- the tokenizer: ``gpt2`` (byte-level BPE) with ``tokenizer.ggml.pre = "llama-bpe"`` (murmur's split
  regex is byte-identical to Llama 3's), every token with its type (murmur's specials are control
  tokens), the merges, ``<|doc|>`` as BOS and EOS (a post starts and ends with it), ``<|end|>`` as
  end-of-turn, ``<|pad|>`` as padding, no BOS added automatically (the chat template starts with
  ``<|doc|>`` itself), and the chat template.

``dtype``: ``f32`` (exact), ``f16`` or ``q8_0`` (8-bit blocks of 32; a matrix whose rows do not
split into such blocks stays f16). Norm weights stay f32, as llama.cpp's converter keeps them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from murmur.chat.template import CHAT_TEMPLATE
from murmur.errors import InputError, MurmurError, OutputError
from murmur.export import weight_names
from murmur.io import atomic_path
from murmur.model import ModelConfig
from murmur.modeldir import TOKENIZER_DIR, read_model_dir
from murmur.tokenizer import DOC_ID, END_ID, PAD_ID, TOKENIZER_FILE

GGUF_DTYPES = ("f32", "f16", "q8_0")
PRE_TOKENIZER = "llama-bpe"
_MAGIC = b"GGUF"


def _gguf() -> Any:
    """The ``gguf`` package, or one line saying how to install it."""
    try:
        import gguf
    except ImportError:
        raise MurmurError("GGUF export needs the gguf package: pip install 'murmur-lm[gguf]'") from None
    return gguf


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Rows of a Q or K projection from rotate-half pairs (i, i + d/2) to adjacent pairs (2i, 2i + 1),
    head by head (llama.cpp's ``LlamaModel.permute``)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The inverse of :func:`permute_qk`."""
    return w.reshape(n_heads, w.shape[0] // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(cfg: ModelConfig, state: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(llama.cpp name, float32 array) for every stored weight, Q and K permuted."""
    gguf = _gguf()

    cfg = cfg.resolved()
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.n_layers)
    out = []
    for ours, theirs in weight_names(cfg):
        name = names.get_name(theirs, try_suffixes=(".weight",))
        if name is None:  # pragma: no cover - the map covers every Llama weight
            raise InputError(f"no GGUF name for {theirs}")
        w = state[ours].float().numpy()
        if theirs.endswith("q_proj.weight"):
            w = permute_qk(w, cfg.n_heads)
        elif theirs.endswith("k_proj.weight"):
            w = permute_qk(w, cfg.n_kv_heads)
        out.append((name, np.ascontiguousarray(w, dtype=np.float32)))
    return out


def vocabulary(tokenizer_json: Path, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens (in id order, padded to the model's ``vocab_size``), their GGUF token types and the
    merges (``"a b"``) of a murmur ``tokenizer.json``."""
    gguf = _gguf()

    try:
        data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        model = data["model"]
        vocab: dict[str, int] = model["vocab"]
        raw_merges = model["merges"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"not a byte-level BPE tokenizer.json ({e})", tokenizer_json) from None
    by_id: dict[int, tuple[str, int]] = {i: (t, int(gguf.TokenType.NORMAL)) for t, i in vocab.items()}
    for added in data.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[int(added["id"])] = (added["content"], int(kind))
    if max(by_id, default=-1) >= vocab_size:
        raise InputError(f"the tokenizer has ids up to {max(by_id)} but the model only {vocab_size} embeddings",
                         tokenizer_json)
    tokens, types = [], []
    for i in range(vocab_size):
        tok, kind = by_id.get(i, (f"[PAD{i}]", int(gguf.TokenType.UNUSED)))
        tokens.append(tok)
        types.append(kind)
    merges = [m if isinstance(m, str) else " ".join(m) for m in raw_merges]
    return tokens, types, merges


def _check_target(out_file: Path, overwrite: bool) -> None:
    if out_file.is_dir():
        raise OutputError("is a folder; give the path of the .gguf file to write", out_file)
    if out_file.exists():
        if not overwrite:
            raise OutputError("already exists; pass --overwrite to replace it", out_file)
        with open(out_file, "rb") as f:
            if f.read(4) != _MAGIC:
                raise OutputError("exists and is not a GGUF file; murmur replaces only a GGUF file", out_file)


def export_gguf(run_dir: str | Path, out_file: str | Path, dtype: str = "f16", overwrite: bool = False) -> Path:
    """Write the model directory ``run_dir`` (pretraining or SFT run) as the GGUF file ``out_file``.

    The file is written beside the target and renamed into place. An existing file is replaced only
    with ``overwrite``, and only if it is a GGUF file.
    """
    gguf = _gguf()

    if dtype not in GGUF_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(GGUF_DTYPES)} (got {dtype!r})", field="dtype")
    run_dir, out_file = Path(run_dir), Path(out_file)
    cfg, state = read_model_dir(run_dir)
    cfg = cfg.resolved()
    _check_target(out_file, overwrite)
    tokens, types, merges = vocabulary(run_dir / TOKENIZER_DIR / TOKENIZER_FILE, cfg.vocab_size)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]

    with atomic_path(out_file) as tmp:
        w = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        w.add_name(run_dir.resolve().name)
        w.add_context_length(cfg.max_seq_len)
        w.add_embedding_length(cfg.dim)
        w.add_block_count(cfg.n_layers)
        w.add_feed_forward_length(cfg.ffn_dim)
        w.add_head_count(cfg.n_heads)
        w.add_head_count_kv(cfg.n_kv_heads)
        w.add_key_length(cfg.head_dim)
        w.add_value_length(cfg.head_dim)
        w.add_rope_dimension_count(cfg.head_dim)
        w.add_rope_freq_base(cfg.rope_theta)
        w.add_layer_norm_rms_eps(cfg.norm_eps)
        w.add_vocab_size(cfg.vocab_size)
        w.add_file_type(file_type)
        if dtype == "q8_0":
            w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(PRE_TOKENIZER)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_bos_token_id(DOC_ID)
        w.add_eos_token_id(DOC_ID)
        w.add_eot_token_id(END_ID)
        w.add_pad_token_id(PAD_ID)
        w.add_add_bos_token(False)
        w.add_add_eos_token(False)
        w.add_chat_template(CHAT_TEMPLATE)
        for name, arr in gguf_tensors(cfg, state):
            _add_tensor(w, name, arr, dtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return out_file


def _add_tensor(w: Any, name: str, arr: np.ndarray, dtype: str) -> None:
    gguf = _gguf()

    if arr.ndim == 1 or dtype == "f32":
        w.add_tensor(name, arr)
        return
    if dtype == "q8_0":
        try:
            w.add_tensor(name, gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            return
        except gguf.QuantError:  # rows that do not split into blocks of 32: f16, as the converter does
            pass
    w.add_tensor(name, arr.astype(np.float16))
