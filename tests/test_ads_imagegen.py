"""Generated ad pictures through diffusers, on a tiny Stable Diffusion pipeline built here from configs
(random weights, two steps, 64-pixel canvases): the plumbing a network's real image model goes through."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from murmur.ads.creatives import SIZES, palette
from murmur.errors import InputError

diffusers = pytest.importorskip("diffusers", reason="pip install 'murmur[images]'")


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    root = tmp_path_factory.mktemp("tinysd")
    chars = list(bytes_to_unicode().values())  # a byte-level CLIP vocabulary with no merges
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=77)
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37,
                                        num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
                                        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                                        pad_token_id=1))
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=32)
    vae = diffusers.AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32)
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                             scheduler=diffusers.DDIMScheduler(), safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "pipe")
    return root / "pipe"


def test_generated_creatives_in_every_size(pipeline_dir, tmp_path):
    from murmur.ads.imagegen import canvas, image_prompt, load_pipeline, write_generated_creatives

    pipe = load_pipeline(pipeline_dir, device="cpu")
    pal = palette("#c81e1e", "cooking")
    copy = "The Kalo pan for weeknight dinners. #cooking https://kalo.example/p"
    prompt = image_prompt(copy, "Kalo", ["cooking", "recipes"])
    assert "http" not in prompt and "#" not in prompt and "Kalo" in prompt and "cooking" in prompt
    assert canvas("image", 128) == (128, 64) and canvas("card_square", 128) == (128, 128)
    paths = write_generated_creatives(pipe, copy, "Kalo", pal, tmp_path / "out", ["cooking"], steps=2,
                                      long_side=64, sizes=("card", "image_square"))
    assert [p.name for p in paths] == ["card.png", "image_square.png"]
    for p in paths:
        with Image.open(p) as img:
            assert img.format == "PNG" and img.size == SIZES[p.stem]
            assert len(set(img.convert("RGB").getdata())) > 50  # a painted picture under the text, not a flat fill


def test_bad_pipeline_input(tmp_path):
    from murmur.ads.imagegen import load_pipeline, write_generated_creatives

    with pytest.raises(InputError, match="model_index.json"):
        load_pipeline(tmp_path)
    with pytest.raises(InputError) as e:
        write_generated_creatives(None, "copy", "Kalo", palette("#112233", "a"), tmp_path / "o",
                                  logo=tmp_path / "missing.png")
    assert e.value.field == "image"
