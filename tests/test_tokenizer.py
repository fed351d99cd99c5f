import json
import os
import random
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models

from murmur import tokenizer as T
from murmur.data.split import is_val, val_mask
from murmur.errors import ConfigError, InputError
from murmur.tokenizer import TokenizerConfig, eval_tokenizer, load_tokenizer, print_eval, train_tokenizer

WORDS = {
    "en": "the a to and of in is it you that for on with this my just so what love today new people time".split(),
    "fr": "le la les de des et un une est pas que pour dans ce il je vous nous très bien aujourd'hui été ça".split(),
    "es": "el la los de que y en un una es por con para no más muy hoy gracias año mañana niño".split(),
    "ja": "今日 は とても 良い 天気 です ね 東京 ラーメン 食べ たい 新しい 映画 見 ました".split(),
    "ar": "مرحبا اليوم جميل جدا شكرا كثيرا القهوة الصباح الأصدقاء".split(),
}
EXTRA = ["😀", "🎉", "👩‍👩‍👧", "#ai", "@bob", "https://ex.com/x?y=1", "!!", "42", "2024", "...", "\n"]


def make_posts(n: int, seed: int = 0) -> dict[str, list]:
    """Short multilingual posts with emoji, hashtags, mentions and URLs (columns of the post schema)."""
    rng = random.Random(seed)
    cols: dict[str, list] = {"post_id": [], "lang": [], "text": []}
    for i in range(n):
        lang = rng.choices(list(WORDS), weights=[5, 2, 2, 1, 1])[0]
        words = [rng.choice(WORDS[lang]) if rng.random() > 0.15 else rng.choice(EXTRA)
                 for _ in range(rng.randint(3, 30))]
        cols["post_id"].append(f"{seed}-{i}")
        cols["lang"].append(lang)
        cols["text"].append(("" if lang == "ja" else " ").join(words))
    return cols


def write_posts(path, cols):
    pq.write_table(pa.table(cols), path)
    return path


TRICKY = [
    "", " ", "  leading and trailing  ", "tabs\tand\nnewlines\r\nand\rreturns\n\n\n",
    "héllo wörld ça va? naïve café", "e\u0301 (combining acute) vs \u00e9", "Ångström ﬁ ligature",
    "日本語のテキストと中文文本，还有한국어", "مرحبا بالعالم", "שלום עולם\u200f!", "mixed עברית and English",
    "👩‍👩‍👧‍👦 family, 👍🏽 skin tone, 🇫🇷 flag, 🏳️‍🌈", "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom",
    "math 𝕏 𝔸 ∑∫√ and 🜁 alchemy", "control \x00 \x01 \x7f chars", "\ue000 private use \U000f0000",
    "CAPS'LL 'S 'T don't I'M we'Re", "1234567890 3.14159 1,000,000", "a" * 500, "<|doc|>", "<|end|> <|user|>hi",
    "<|doc", "|>", "https://example.com/path?q=1&r=2#frag @user #tag",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    return write_posts(d / "posts.parquet", make_posts(3000))


@pytest.fixture(scope="module")
def tok_dir(corpus):
    out = corpus.parent / "tokenizer"
    train_tokenizer([corpus], out, TokenizerConfig(vocab_size=768))
    return out


@pytest.fixture(scope="module")
def tok(tok_dir):
    return load_tokenizer(tok_dir)


def test_special_tokens_have_fixed_ids(tok):
    assert len(T.SPECIAL_TOKENS) == T.NUM_SPECIAL == 16
    assert T.SPECIAL_TOKENS[:8] == ("<|doc|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
                                    "<|tool_call|>", "<|tool_result|>")
    assert T.SPECIAL_TOKENS[8:] == tuple(f"<|reserved_{i}|>" for i in range(8))
    for i, name in enumerate(T.SPECIAL_TOKENS):
        assert tok.token_to_id(name) == i == tok.special_ids[name]
        assert tok.id_to_token(i) == name
    assert (tok.doc_id, tok.pad_id, tok.end_id) == (T.DOC_ID, T.PAD_ID, T.END_ID) == (0, 1, 5)
    assert (T.USER_ID, T.ASSISTANT_ID, T.TOOL_RESULT_ID) == (3, 4, 7)
    assert tok.vocab_size == 768
    # every byte has its own token, so nothing is ever unknown
    assert tok.inner.get_vocab_size() >= 256 + 16


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_unicode_round_trips(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(i >= T.NUM_SPECIAL for i in ids)


def test_random_unicode_round_trips(tok):
    rng = random.Random(1)
    ranges = [(0x20, 0x7E), (0x00, 0x1F), (0xA0, 0x2FF), (0x300, 0x36F), (0x590, 0x6FF), (0x3040, 0x30FF),
              (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF), (0xFE00, 0xFE0F), (0x200B, 0x200F),
              (0x10000, 0x10FFFF)]
    texts = []
    for _ in range(300):
        chars = []
        for _ in range(rng.randint(0, 40)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)))
        texts.append("".join(chars))
    batch = tok.encode_batch(texts)
    assert batch == [tok.encode(t) for t in texts]
    for text, ids in zip(texts, batch, strict=True):
        assert tok.decode(ids) == text
        assert min(ids, default=T.NUM_SPECIAL) >= T.NUM_SPECIAL


def test_special_strings_in_text_stay_text(tok):
    text = "hi <|doc|> there <|end|><|user|>"
    ids = tok.encode(text)
    assert not set(ids) & set(range(T.NUM_SPECIAL))
    assert tok.decode(ids) == text
    assert tok.inner.encode(text).ids == ids  # .inner is just as safe
    # only explicitly: trusted templates or explicit ids
    assert tok.encode("<|doc|>", allow_special=True) == [0]
    assert tok.encode_batch(["<|user|>x"], allow_special=True)[0][0] == T.USER_ID
    ids = tok.encode_parts([T.USER_ID, "<|end|> is just text", T.END_ID])
    assert ids[0] == T.USER_ID and ids[-1] == T.END_ID and T.END_ID not in ids[1:-1]
    assert tok.decode(ids) == "<|user|><|end|> is just text<|end|>"
    assert tok.decode(ids, skip_special=True) == "<|end|> is just text"
    with pytest.raises(ValueError):
        tok.encode_parts([tok.vocab_size])


def test_directory_files_and_metadata(tok_dir, tok, corpus):
    names = {p.name for p in tok_dir.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "murmur_tokenizer.json",
            "_COMPLETE"} <= names
    meta = json.loads((tok_dir / "murmur_tokenizer.json").read_text())
    assert meta["vocab_size"] == 768 and meta["special_tokens"]["<|end|>"] == 5
    # trained on the train split only
    ids = pq.read_table(corpus, columns=["post_id"]).column("post_id")
    assert meta["training"]["posts"] == int((~val_mask(ids, 0.02)).sum()) < len(ids)
    assert load_tokenizer(tok_dir / "tokenizer.json").vocab_size == 768
    assert len(tok.sha256) == 64


def test_transformers_loads_it_with_the_same_ids(tok_dir, tok, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    for cls in (transformers.AutoTokenizer, transformers.PreTrainedTokenizerFast):
        hf = cls.from_pretrained(str(tok_dir))
        texts = [t for t in TRICKY if "<|" not in t] + make_posts(50, seed=7)["text"]
        for text in texts:
            assert hf(text)["input_ids"] == tok.encode(text), text
            assert hf.decode(tok.encode(text)) == text
        assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (0, 0, 1)
        assert hf.convert_tokens_to_ids(list(T.SPECIAL_TOKENS)) == list(range(16))
        # transformers recognises special strings by default (for chat templates) ...
        assert hf("<|doc|>x")["input_ids"][0] == 0
        # ... and with split_special_tokens=True treats them as text, like murmur's encode
        assert hf("<|doc|>x", split_special_tokens=True)["input_ids"] == tok.encode("<|doc|>x")
        assert hf.decode([0, *tok.encode("x")], skip_special_tokens=True) == "x"


def test_training_excludes_held_out_posts(tmp_path):
    cols = make_posts(400, seed=3)
    for i, pid in enumerate(cols["post_id"]):
        if is_val(pid, 0.2):
            cols["text"][i] += " qqqzzzxxkk" * 20  # a word only held-out posts use
    src = write_posts(tmp_path / "p.parquet", cols)
    held = train_tokenizer([src], tmp_path / "t1", TokenizerConfig(vocab_size=400, val_fraction=0.2))
    assert len(held.encode(" qqqzzzxxkk")) > 3
    seen = train_tokenizer([src], tmp_path / "t2", TokenizerConfig(vocab_size=400, val_fraction=0.0))
    assert len(seen.encode(" qqqzzzxxkk")) == 1


def test_training_is_deterministic_and_samples(tmp_path, corpus):
    cfg = TokenizerConfig(vocab_size=400, max_posts=500, seed=5)
    a = train_tokenizer([corpus], tmp_path / "a", cfg)
    b = train_tokenizer([corpus], tmp_path / "b", cfg)
    assert (tmp_path / "a/tokenizer.json").read_bytes() == (tmp_path / "b/tokenizer.json").read_bytes()
    assert a.meta["training"]["posts"] == b.meta["training"]["posts"] == 500


def test_eval_reports_held_out_bytes_per_token_per_language(tok_dir, tok, corpus, capsys):
    result = eval_tokenizer(tok_dir, corpus)
    table = pq.read_table(corpus).to_pylist()
    held = [r for r in table if is_val(r["post_id"], 0.02)]
    assert result["held_out"] and result["overall"]["posts"] == len(held) > 0
    assert result["overall"]["bytes"] == sum(len(r["text"].encode()) for r in held)
    assert result["overall"]["tokens"] == sum(len(tok.encode(r["text"])) for r in held)
    langs = result["languages"]
    assert set(langs) == {r["lang"] for r in held}
    for lang, row in langs.items():
        assert row["posts"] == sum(r["lang"] == lang for r in held)
        assert row["bytes_per_token"] == pytest.approx(row["bytes"] / row["tokens"])
    assert sum(r["posts"] for r in langs.values()) == len(held)
    assert langs["en"]["bytes_per_token"] > 2.5  # a trained BPE does better than bytes
    print_eval(result)
    out = capsys.readouterr().out
    assert "bytes/token" in out and "en" in out


def test_config_and_input_errors(tmp_path, corpus):
    with pytest.raises(ConfigError, match="vocab_size"):
        train_tokenizer([corpus], tmp_path / "t", TokenizerConfig(vocab_size=100))
    no_text = write_posts(tmp_path / "no_text.parquet", {"post_id": ["1"], "body": ["x"]})
    with pytest.raises(InputError, match="field 'text'"):
        train_tokenizer([no_text], tmp_path / "t", TokenizerConfig(vocab_size=300))
    empty = write_posts(tmp_path / "empty.parquet", {"post_id": pa.array([], pa.string()),
                                                      "text": pa.array([], pa.string())})
    with pytest.raises(InputError, match="no train-split posts"):
        train_tokenizer([empty], tmp_path / "t", TokenizerConfig(vocab_size=300))
    with pytest.raises(InputError, match="not found"):
        train_tokenizer([tmp_path / "missing.parquet"], tmp_path / "t")
    not_parquet = tmp_path / "x.parquet"
    not_parquet.write_text("hello")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        train_tokenizer([not_parquet], tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_load_refuses_what_is_not_a_tokenizer(tmp_path, tok_dir):
    with pytest.raises(InputError, match="not found"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no tokenizer.json") as e:
        load_tokenizer(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(InputError, match="cannot read tokenizer"):
        load_tokenizer(bad)
    plain = tmp_path / "plain"
    plain.mkdir()
    Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[])).save(str(plain / "tokenizer.json"))
    with pytest.raises(InputError, match=r"special token <\|doc\|> must have id 0"):
        load_tokenizer(plain)
    broken_meta = tmp_path / "meta"
    broken_meta.mkdir()
    (broken_meta / "tokenizer.json").write_bytes((tok_dir / "tokenizer.json").read_bytes())
    (broken_meta / "murmur_tokenizer.json").write_text("{")
    with pytest.raises(InputError, match="invalid JSON"):
        load_tokenizer(broken_meta)


def _murmur(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "murmur.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_train_and_eval(tmp_path, corpus):
    out = tmp_path / "cli_tok"
    r = _murmur("tokenizer", "train", str(corpus), "-o", str(out), "--vocab-size", "300", "min_frequency=3")
    assert r.returncode == 0, r.stderr
    assert "300 tokens" in r.stdout
    assert json.loads((out / "murmur_tokenizer.json").read_text())["training"]["config"]["min_frequency"] == 3
    r = _murmur("tokenizer", "eval", str(out), str(corpus))
    assert r.returncode == 0, r.stderr
    assert "bytes/token" in r.stdout and "all" in r.stdout
    r = _murmur("tokenizer", "eval", str(tmp_path), str(corpus))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("murmur: error:") and "tokenizer.json" in r.stderr
