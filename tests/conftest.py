"Shared fixtures: offline hub, a toy seq2seq task on the tiny T5 preset."
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


def toy_task(seed: int = 0, n_train: int = 96, n_eval: int = 32):
    "({'model': tiny-t5}, tokenizer, train examples, eval examples) on the toy comparison task."
    from knife_repro.core import seed_everything
    from knife_repro.data import load as load_data
    from knife_repro.models import load_seq2seq
    seed_everything(seed)
    model, tok = load_seq2seq("tiny-t5", seed=seed)
    dd = load_data("toy", n_train=n_train, n_eval=n_eval)
    enc = lambda split: [{"input_ids": tok(r["question"]).input_ids,
                          "attention_mask": [1] * len(tok(r["question"]).input_ids),
                          "labels": tok(r["choices"][r["answer"]]).input_ids} for r in dd[split]]
    return {"model": model}, tok, enc("train"), enc("validation")


def lm_loss(models, batch):
    out = models["model"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return out.loss, {}


@pytest.fixture
def toy():
    return toy_task


@pytest.fixture(scope="session")
def smollm2():
    "(model, tokenizer) of the pretrained smollm2-135m preset, loaded once per session (a fresh copy per test is"
    " cheap: reloading the cache takes < 1 s, but tests that train must copy it)."
    from knife_repro.models import load_causal
    return load_causal("smollm2-135m")
