"Model loading: offline presets, local folders, errors."
import pytest
import torch

from knife_repro import core, models
from knife_repro.models import ModelNotFoundError, build_tokenizer, load_causal, load_encoder, load_seq2seq, n_params


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("name,lo,hi", [("tiny-t5", 1e6, 3e6), ("small-t5", 7e6, 12e6)])
def test_seq2seq_presets_build_offline(name, lo, hi):
    m, tok = load_seq2seq(name)
    assert lo < n_params(m) < hi
    x = tok(["Is 41 bigger than 17?"], return_tensors="pt")
    out = m(**x, labels=tok(["yes"], return_tensors="pt").input_ids)
    assert torch.isfinite(out.loss)
    assert m.config.vocab_size == len(tok) and tok.pad_token_id == 0 and tok.eos_token_id == 1


def test_causal_preset_pads_left_and_generates():
    m, tok = load_causal("tiny-gpt2")
    b = tok(["a", "a longer prompt"], padding=True, return_tensors="pt")
    assert tok.padding_side == "left" and b.attention_mask[0, 0] == 0
    g = m.generate(**b, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert g.shape == (2, b.input_ids.shape[1] + 3)


def test_minilm_encoder_is_pretrained():
    enc, tok = load_encoder("minilm")
    x = tok(["A dog runs in the park.", "A puppy is running on the grass.", "Stocks fell sharply."],
            padding=True, return_tensors="pt")
    with torch.no_grad():
        e = torch.nn.functional.normalize(models.mean_pool(enc(**x).last_hidden_state, x["attention_mask"]), dim=-1)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.3          # a random encoder would not separate these


def test_local_folder_loads_with_from_pretrained(tmp_path):
    m, tok = load_seq2seq("tiny-t5", seed=5)
    m.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    m2, tok2 = load_seq2seq(str(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    assert tok2("Is 12 bigger than 3?").input_ids == tok("Is 12 bigger than 3?").input_ids


def test_unknown_model_lists_presets():
    with pytest.raises(ModelNotFoundError) as e:
        load_seq2seq("no-such-org/no-such-model-xyz")
    assert "tiny-t5" in str(e.value) and "small-t5" in str(e.value)
    with pytest.raises(ModelNotFoundError, match="tiny-gpt2"):
        load_causal("no-such-org/no-such-model-xyz")


def test_seeded_presets_leave_global_rng_alone():
    torch.manual_seed(0); a = torch.rand(1)
    torch.manual_seed(0); load_seq2seq("tiny-t5", seed=9); b = torch.rand(1)
    assert torch.equal(a, b)
    w1 = next(load_seq2seq("tiny-t5", seed=1)[0].parameters())
    w2 = next(load_seq2seq("tiny-t5", seed=1)[0].parameters())
    assert torch.equal(w1, w2)


def test_bpe_keeps_digits_single_and_roundtrips():
    tok = build_tokenizer("bpe")
    ids = tok("12345+678", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(ids) == list("12345+678")
    text = "Was Aristotle's teacher older than Plato? 🤔 café"
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


def test_byte_fallback_without_data(monkeypatch):
    def nodata(*a, **k): raise core.DataNotFoundError("none")
    monkeypatch.setattr(models, "data_root", nodata)
    with pytest.warns(UserWarning, match="byte-level"):
        tok = build_tokenizer("bpe")
    assert len(tok) == 260 and tok.decode(tok("héllo").input_ids, skip_special_tokens=True) == "héllo"
