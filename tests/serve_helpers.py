"""Shared pieces for the serving tests: a small real tokenizer and micro models (random or scripted)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import trainers

from murmur.model import ModelConfig, Transformer
from murmur.tokenizer import MurmurTokenizer, new_tokenizer, save_tokenizer, special_added_tokens

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is murmur speaking to you today",
    "posts about cats, dogs, coffee and the weather in the city",
    "a social network wants its own language model for chat and search",
    "numbers 123 456 and punctuation! right? yes: of course.",
] * 20


def make_tokenizer(out_dir: Path, vocab_size: int = 400, extra: list[str] | None = None) -> MurmurTokenizer:
    """A byte-level BPE trained in well under a second on an English-only corpus, so emoji and CJK
    text falls apart into single-byte tokens (what the UTF-8 streaming tests need). ``extra`` texts
    are added to the corpus 50 times each, so their words become single tokens."""
    from tokenizers import pre_tokenizers

    inner = new_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=special_added_tokens(),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    inner.train_from_iterator(CORPUS + (extra or []) * 50, trainer)
    return save_tokenizer(inner, Path(out_dir))


def micro_model(vocab_size: int, seed: int = 0, max_seq_len: int = 128, std: float = 0.5) -> Transformer:
    """A random two-layer model; a large init std spreads the logits so greedy choices are clear-cut."""
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=max_seq_len,
                      init_std=std)
    return Transformer(cfg).eval()


def scripted_model(vocab_size: int, cycle: list[int], seed: int = 0, max_seq_len: int = 128) -> Transformer:
    """A real Transformer whose greedy output walks ``cycle``: after ``cycle[i]`` comes ``cycle[i + 1]``
    (and after the last, the first); any other token is followed by itself.

    Each block's output projections are zero, so the final hidden state is the (normalised) input
    embedding, and the untied output matrix is the embedding table with rows permuted along the
    cycle; random 64-d embeddings are nearly orthogonal, so the intended token wins by a wide margin.
    """
    if len(set(cycle)) != len(cycle):
        raise ValueError("the cycle must not repeat a token")
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab_size, dim=64, n_layers=1, n_heads=4, max_seq_len=max_seq_len,
                      tie_embeddings=False)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        emb = torch.randn(vocab_size, 64)
        emb = emb / emb.norm(dim=-1, keepdim=True) * 8.0
        model.tok_embeddings.weight.copy_(emb)
        for block in model.layers.values():
            block.attention.wo.weight.zero_()
            block.feed_forward.w2.weight.zero_()
        out = emb.clone()
        for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True):
            out[b] = emb[a]
        model.output.weight.copy_(out)
    return model


class ServerThread:
    """A real uvicorn server on a free 127.0.0.1 port, in a thread: ``with ServerThread(app) as url:``."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = None

    def __enter__(self) -> str:
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
