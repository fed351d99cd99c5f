"""The model computes exactly what transformers' LlamaForCausalLM computes, and its counts are exact."""

import pytest
import torch

from murmur.model import PRESETS, KVCache, ModelConfig, Transformer, flops_per_token, num_params, preset

transformers = pytest.importorskip("transformers")
from murmur.export import to_transformers  # noqa: E402


@pytest.mark.parametrize("tied,n_kv", [(True, 4), (False, 2)])
def test_logits_match_transformers(tied, n_kv):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=300, dim=64, n_layers=3, n_heads=4, n_kv_heads=n_kv, max_seq_len=64,
                      tie_embeddings=tied, rope_theta=500000.0, norm_eps=1e-6)
    ours = Transformer(cfg).eval()
    ref = to_transformers(ours).eval()
    tokens = torch.randint(0, 300, (2, 37))
    with torch.no_grad():
        a = ours(tokens)
        b = ref(tokens).logits
    torch.testing.assert_close(a, b.float(), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_kv_cache_decoding_matches_full_forward():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)
    model = Transformer(cfg).eval()
    tokens = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        full = model(tokens)
        cache = KVCache(cfg, batch=2, max_len=32)
        pos = torch.arange(8)[None].expand(2, 8)
        out = [model(tokens[:, :8], positions=pos, cache=cache)]
        for t in range(8, 12):
            out.append(model(tokens[:, t:t + 1], positions=torch.full((2, 1), t), cache=cache))
    torch.testing.assert_close(torch.cat(out, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cache_rows_at_different_positions():
    """Two sequences of different lengths share one cache, each at its own position."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, dim=32, n_layers=2, n_heads=2, max_seq_len=16)
    model = Transformer(cfg).eval()
    a, b = torch.randint(0, 50, (1, 6)), torch.randint(0, 50, (1, 3))
    with torch.no_grad():
        cache = KVCache(cfg, batch=4, max_len=16)
        model(a[:, :5], positions=torch.arange(5)[None], cache=cache, rows=torch.tensor([2]))
        model(b[:, :2], positions=torch.arange(2)[None], cache=cache, rows=torch.tensor([0]))
        step = model(torch.cat([a[:, 5:6], b[:, 2:3]]), positions=torch.tensor([[5], [2]]), cache=cache,
                     rows=torch.tensor([2, 0]))
        torch.testing.assert_close(step[0, -1], model(a)[0, -1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(step[1, -1], model(b)[0, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["tiny", "20m", "124m"])
def test_num_params_is_exact(name):
    cfg = preset(name, vocab_size=1000)
    with torch.device("meta"):
        model = Transformer(cfg)
    assert num_params(cfg) == sum(p.numel() for p in model.parameters())


def test_preset_sizes_and_flops():
    assert 3e6 < num_params(preset("tiny")) < 8e6
    assert 1.1e9 < num_params(PRESETS["1b"]) < 1.4e9
    assert 7.5e9 < num_params(PRESETS["8b"]) < 8.5e9
    assert 68e9 < num_params(PRESETS["70b"]) < 72e9
    cfg = preset("124m")
    assert flops_per_token(cfg, 1024) > 6 * num_params(cfg, include_embedding=False)


def test_bad_shape_is_refused():
    from murmur.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of"):
        ModelConfig(n_heads=4, n_kv_heads=3).resolved()
    with pytest.raises(ConfigError, match="unknown model preset"):
        preset("huge")
