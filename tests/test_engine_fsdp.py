"""The engine over a model sharded by FSDP2 (what training's sample posts generate from): the same
tokens as the plain model. One gloo process, so it runs anywhere; several processes run the same
steps in training."""

from __future__ import annotations

import copy

import pytest
import torch.distributed as dist
from serve_helpers import make_tokenizer, micro_model

from murmur.engine import SamplingParams, generate

pytestmark = pytest.mark.usefixtures("one_thread")


def test_engine_on_an_fsdp_model_matches_the_plain_model(tmp_path):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    tok = make_tokenizer(tmp_path / "tok")
    plain = micro_model(tok.vocab_size)
    prompts = [[tok.doc_id, *tok.encode(t)] for t in ("hello", "the quick brown fox", "coffee")]
    params = [SamplingParams(temperature=0, max_tokens=12, ignore_eos=True),
              SamplingParams(temperature=1.0, top_k=20, seed=3, max_tokens=12, ignore_eos=True),
              SamplingParams(temperature=0.8, top_p=0.9, seed=4, max_tokens=12, ignore_eos=True)]
    want = [c.token_ids for c in generate(plain, tok, prompts, params)]
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        sharded = copy.deepcopy(plain)
        mesh = init_device_mesh("cpu", (1,))
        for block in sharded.layers.values():
            fully_shard(block, mesh=mesh)
        fully_shard(sharded, mesh=mesh)
        assert isinstance(sharded, FSDPModule)
        sharded.train()
        got = [c.token_ids for c in generate(sharded, tok, prompts, params)]
        assert sharded.training  # the caller's mode is kept
    finally:
        dist.destroy_process_group()
    assert got == want
