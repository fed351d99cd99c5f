"""Hugging Face export (and import): a murmur model directory as a ``LlamaForCausalLM`` folder.

murmur's model computes what Hugging Face's Llama computes, so export is a renaming of weights plus
configs. ``export_hf(run_dir, out_dir)`` writes, atomically (built in a temporary sibling, swapped in):

- ``config.json``: ``LlamaForCausalLM`` with the model's shape; ``rope_theta`` both at the top level
  (transformers 4) and in ``rope_parameters`` (transformers 5); ``bos_token_id`` = ``<|doc|>``,
  ``eos_token_id`` = [``<|end|>``, ``<|doc|>``], ``pad_token_id`` = ``<|pad|>``;
- ``model.safetensors`` with HF weight names (``lm_head.weight`` left out when embeddings are tied);
- ``tokenizer.json``, ``tokenizer_config.json`` (with the chat template, ``<|end|>`` as EOS) and
  ``special_tokens_map.json``; ``chat_template.jinja`` for tools that read the template from a file;
- ``generation_config.json`` whose ``eos_token_id`` stops at the end of a turn (or of a post).

The folder loads offline with ``LlamaForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``,
and serves with ``vllm serve``; :mod:`murmur.export_gguf` writes the GGUF file for llama.cpp (docs/chat.md).
:func:`load_hf` goes the other way: a Llama folder (ours, or any plain Llama checkpoint) to a murmur
:class:`~murmur.model.Transformer`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from murmur.chat.template import CHAT_TEMPLATE
from murmur.errors import InputError
from murmur.io import atomic_dir, check_output_dir
from murmur.model import ModelConfig, Transformer
from murmur.modeldir import TOKENIZER_DIR, read_model_dir
from murmur.tokenizer import DOC, DOC_ID, END, END_ID, PAD, PAD_ID, SPECIAL_TOKENS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CHAT_TEMPLATE_FILE = "chat_template.jinja"
HF_EXPORT_KIND = "hf-export"  # what an exported folder's completion marker says


# ---------------------------------------------------------------- names and config
def weight_names(cfg: ModelConfig) -> list[tuple[str, str]]:
    """(murmur name, Hugging Face Llama name) for every stored weight of a model of shape ``cfg``."""
    cfg = cfg.resolved()
    pairs = [("tok_embeddings.weight", "model.embed_tokens.weight")]
    per_layer = [("attention.wq", "self_attn.q_proj"), ("attention.wk", "self_attn.k_proj"),
                 ("attention.wv", "self_attn.v_proj"), ("attention.wo", "self_attn.o_proj"),
                 ("feed_forward.w1", "mlp.gate_proj"), ("feed_forward.w3", "mlp.up_proj"),
                 ("feed_forward.w2", "mlp.down_proj"), ("attention_norm", "input_layernorm"),
                 ("ffn_norm", "post_attention_layernorm")]
    for i in range(cfg.n_layers):
        pairs += [(f"layers.{i}.{ours}.weight", f"model.layers.{i}.{theirs}.weight") for ours, theirs in per_layer]
    pairs.append(("norm.weight", "model.norm.weight"))
    if not cfg.tie_embeddings:
        pairs.append(("output.weight", "lm_head.weight"))
    return pairs


def hf_config(cfg: ModelConfig, dtype: str = "float32") -> dict[str, Any]:
    """``config.json`` of a ``LlamaForCausalLM`` with the shape of ``cfg`` (transformers 4 and 5)."""
    c = cfg.resolved()
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.dim,
        "intermediate_size": c.ffn_dim,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "tie_word_embeddings": c.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": c.init_std,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": DOC_ID,
        "eos_token_id": [END_ID, DOC_ID],
        "pad_token_id": PAD_ID,
        "torch_dtype": dtype,
    }


def to_transformers(model: Transformer, attn_implementation: str = "sdpa") -> Any:
    """The same model as a ``transformers.LlamaForCausalLM`` (a copy of the weights, HF names).

    For parity tests and benchmarks against transformers without writing a folder first.
    """
    import transformers

    cfg = model.cfg.resolved()
    hf_cfg = transformers.LlamaConfig(**{k: v for k, v in hf_config(cfg).items()
                                         if k not in ("architectures", "model_type", "torch_dtype")},
                                      attn_implementation=attn_implementation)
    with torch.device(next(model.parameters()).device):
        hf = transformers.LlamaForCausalLM(hf_cfg)
    ours = dict(model.named_parameters(remove_duplicate=False))
    hf.load_state_dict({theirs: ours[name].detach().clone() for name, theirs in weight_names(cfg)}, strict=False)
    if cfg.tie_embeddings:
        hf.tie_weights()
    return hf.to(next(model.parameters()).dtype)


def generation_config() -> dict[str, Any]:
    """Stop at the end of a turn (``<|end|>``) or of a post (``<|doc|>``)."""
    return {"bos_token_id": DOC_ID, "eos_token_id": [END_ID, DOC_ID], "pad_token_id": PAD_ID}


def tokenizer_config(base: dict[str, Any], max_len: int) -> dict[str, Any]:
    """The tokenizer's own ``tokenizer_config.json`` plus the chat template; ``<|end|>`` is the EOS."""
    out = dict(base)
    out.update({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": DOC, "eos_token": END, "pad_token": PAD,
                "chat_template": CHAT_TEMPLATE, "add_bos_token": False, "add_eos_token": False,
                "clean_up_tokenization_spaces": False, "model_max_length": max_len})
    return out


# ---------------------------------------------------------------- export
def export_hf(run_dir: str | Path, out_dir: str | Path, dtype: str = "float32", overwrite: bool = False) -> Path:
    """Write the model directory ``run_dir`` (pretraining or SFT run) as a Hugging Face folder ``out_dir``.

    ``out_dir`` must be new or empty; with ``overwrite`` it may be an earlier export, never anything
    else, and never a folder that is, holds or lies inside ``run_dir`` (:func:`murmur.io.check_output_dir`).
    """
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)} (got {dtype!r})", field="dtype")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    cfg, state = read_model_dir(run_dir)
    check_output_dir(out_dir, HF_EXPORT_KIND, overwrite, [run_dir])
    tok_dir = run_dir / TOKENIZER_DIR
    base_tok_cfg: dict[str, Any] = {}
    if (tok_dir / "tokenizer_config.json").is_file():
        base_tok_cfg = json.loads((tok_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    hf_state = {theirs: state[ours].to(DTYPES[dtype]).contiguous() for ours, theirs in weight_names(cfg)}
    with atomic_dir(out_dir, HF_EXPORT_KIND, overwrite, [run_dir]) as tmp:
        save_file(hf_state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _dump(tmp / "config.json", hf_config(cfg, dtype))
        _dump(tmp / "generation_config.json", generation_config())
        shutil.copy2(tok_dir / "tokenizer.json", tmp / "tokenizer.json")
        _dump(tmp / "tokenizer_config.json", tokenizer_config(base_tok_cfg, cfg.max_seq_len))
        _dump(tmp / "special_tokens_map.json", {"bos_token": DOC, "eos_token": END, "pad_token": PAD,
                                                 "additional_special_tokens": [t for t in SPECIAL_TOKENS
                                                                               if t not in (DOC, END, PAD)]})
        (tmp / CHAT_TEMPLATE_FILE).write_text(CHAT_TEMPLATE, encoding="utf-8")
        for name in ("sft.json",):  # provenance of a fine-tuned model, if any
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, tmp / f"murmur_{name}")
    return out_dir


def _dump(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- import
def model_config_from_hf(config: dict[str, Any], where: Path | None = None) -> ModelConfig:
    """The ModelConfig of a Llama ``config.json``; InputError for what murmur's model cannot compute."""
    def need(key: str) -> Any:
        if key not in config:
            raise InputError("missing from the Llama config", where, field=key)
        return config[key]

    model_type = config.get("model_type")
    if model_type != "llama":
        raise InputError(f"only Llama models can be imported (model_type is {model_type!r})", where,
                         field="model_type")
    if config.get("hidden_act", "silu") != "silu":
        raise InputError(f"hidden_act {config['hidden_act']!r} is not supported (only silu)", where, field="hidden_act")
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            raise InputError("biases are not supported", where, field=key)
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type != "default":
        raise InputError(f"RoPE scaling {rope_type!r} is not supported (only default)", where, field="rope_parameters")
    theta = config.get("rope_theta", rope.get("rope_theta") if isinstance(rope, dict) else None) or 10000.0
    heads = int(need("num_attention_heads"))
    hidden = int(need("hidden_size"))
    return ModelConfig(
        vocab_size=int(need("vocab_size")), dim=hidden, n_layers=int(need("num_hidden_layers")), n_heads=heads,
        n_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads), ffn_dim=int(need("intermediate_size")),
        max_seq_len=int(config.get("max_position_embeddings", 2048)), rope_theta=float(theta),
        norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
    ).resolved()


def _read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of ``model.safetensors`` or of the shards named by ``model.safetensors.index.json``."""
    from safetensors.torch import load_file

    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError) as e:
            raise InputError(f"invalid safetensors index ({e})", index) from None
        state: dict[str, torch.Tensor] = {}
        for name in files:
            state.update(load_file(str(folder / name)))
        return state
    raise InputError("no model.safetensors (or model.safetensors.index.json) in the folder", folder)


def load_hf(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = torch.float32
            ) -> Transformer:
    """A Hugging Face Llama folder as a murmur :class:`Transformer` in eval mode (the inverse of export).

    Weights are cast to ``dtype`` (None keeps the stored dtype). A checkpoint with tied embeddings
    may still store ``lm_head.weight``; it is ignored then.
    """
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise InputError("not a Hugging Face model folder (no config.json)", folder)
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(f"invalid JSON ({e})", cfg_path) from None
    cfg = model_config_from_hf(config, cfg_path)
    hf_state = _read_hf_weights(folder)
    state = {}
    for ours, theirs in weight_names(cfg):
        if theirs not in hf_state:
            raise InputError(f"weight {theirs} is missing", folder)
        state[ours] = hf_state[theirs]
    with torch.device(device):
        model = Transformer(cfg)
    for name, tensor in state.items():
        want = model.state_dict()[name].shape
        if tensor.shape != want:
            raise InputError(f"{name}: shape {tuple(tensor.shape)} does not match the config ({tuple(want)})", folder)
    model.to(dtype if dtype is not None else next(iter(state.values())).dtype)
    model.load_state_dict(state, strict=False)
    return model.eval()
