"Rationale sources, the resumable cache, the API-key hygiene of the chat source, and the filter."
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from knife_repro.rationales import (FileSource, HFCausalSource, OpenAIChatSource, RationaleCache, RationaleError,
                                    filter_rationales, generate_rationales, kard_prompt, verifier_ids, verifier_input)

EXS = [{"id": f"q{i}", "question": f"Is {i} even?", "choices": ["yes", "no"], "answer": i % 2} for i in range(10)]


class Counting:
    "A source that records which ids it was asked for and can fail after some batches."
    name = "counting"
    def __init__(self, fail_after=None):
        self.asked, self.calls, self.fail_after = [], 0, fail_after
    def generate(self, examples, n):
        if self.fail_after is not None and self.calls >= self.fail_after: raise KeyboardInterrupt
        self.calls += 1
        self.asked += [e["id"] for e in examples]
        return [[f"r{k} for {e['id']}" for k in range(n)] for e in examples]


def test_cache_resumes_after_interruption_without_duplicates(tmp_path):
    p = tmp_path / "c.jsonl"
    first = Counting(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        generate_rationales(EXS, first, p, n=2, batch_size=3)
    assert RationaleCache(p).done_ids() == {"q0", "q1", "q2", "q3", "q4", "q5"}   # two batches were flushed
    with open(p, "ab") as f: f.write(b'{"id": "q6", "ration')                       # and a torn line
    second = Counting()
    out = generate_rationales(EXS, second, p, n=2, batch_size=3)
    assert second.asked == ["q6", "q7", "q8", "q9"]                                 # only the missing ones
    ids = [json.loads(l)["id"] for l in p.read_text().splitlines()]
    assert ids == [e["id"] for e in EXS]                                            # no duplicates, torn line gone
    assert out["q7"] == ["r0 for q7", "r1 for q7"]
    third = Counting()
    generate_rationales(EXS, third, p, n=2)
    assert third.asked == []


def test_cache_rejects_corrupt_middle_line(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": "a", "rationales": ["x"]}\nnot json\n{"id": "b", "rationales": []}\n')
    with pytest.raises(RationaleError, match="line 2"):
        RationaleCache(p)


def test_file_source_reads_user_jsonl_by_id_or_question(tmp_path):
    p = tmp_path / "mine.jsonl"
    p.write_text(json.dumps({"id": "q1", "rationales": ["one", "two", "three"]}) + "\n"
                 + json.dumps({"question": "Is 2 even?", "rationales": ["two is even"]}) + "\n")
    src = FileSource(p)
    assert src.generate(EXS[1:3], 2) == [["one", "two"], ["two is even"]]
    assert src.generate(EXS[3:4], 2) == [[]]
    assert FileSource().generate([{"id": "z", "llm_rationales": ["a", " ", "b"]}], 0) == [["a", "b"]]
    bad = tmp_path / "bad.jsonl"; bad.write_text('{"id": "q1", "rationales": "oops"}\n')
    with pytest.raises(RationaleError, match="line 1.*rationales"):
        FileSource(bad)


def test_hf_causal_source_gives_n_per_question_deterministically():
    src = HFCausalSource("tiny-gpt2", kard_prompt("strategyqa", shots=1), n=3, max_new_tokens=6, seed=0)
    a = src.generate(EXS[:2], 3)
    assert [len(x) for x in a] == [3, 3]
    assert a == HFCausalSource("tiny-gpt2", kard_prompt("strategyqa", shots=1), n=3, max_new_tokens=6,
                               seed=0).generate(EXS[:2], 3)


@pytest.mark.parametrize("name", ["tiny-gpt2", pytest.param("smollm2-135m", marks=pytest.mark.slow)])
def test_hf_source_shares_the_demonstrations_prefix_with_the_same_tokens(name):
    "Greedy rationales are token-for-token those of whole-row decoding; the shared demonstrations are encoded once."
    from knife_repro.models import load_causal
    pair = load_causal(name, seed=0)
    prompt = kard_prompt("strategyqa", shots=1 if name.startswith("tiny") else 5)
    shared = HFCausalSource(pair, prompt, n=1, max_new_tokens=8, temperature=0, batch_size=3)
    whole = HFCausalSource(pair, prompt, n=1, max_new_tokens=8, temperature=0, batch_size=3, share_prefix=False)
    shapes = []
    hook = pair[0].register_forward_pre_hook(lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    try: got = shared.generate(EXS[:3])
    finally: hook.remove()
    assert got == whole.generate(EXS[:3]) and all(len(g) == 1 for g in got)
    demo = len(pair[1](prompt.split("{question}")[0], add_special_tokens=False).input_ids)
    assert shapes[0][0] == 1 and shapes[0][1] >= demo - 2      # the demonstrations, once, batch 1
    assert shapes[1][0] == 3 and shapes[1][1] < shapes[0][1]   # then only each question's own suffix


def test_kard_prompt_ends_with_the_gold_letter():
    from knife_repro.rationales import fill_prompt
    p = fill_prompt(kard_prompt("openbookqa", shots=5), {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 2})
    assert p.endswith("Question: Q?\nA. a\nB. b\nC. c\nD. d\nAnswer: (C)\nExplanation:")
    assert p.count("\nExplanation:") == 6


SECRET = "sk-test-DO-NOT-LEAK-4f1c9a"


class _Handler(BaseHTTPRequestHandler):
    fail_first = 0
    seen = []
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.headers.get("Authorization"), body))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503); self.end_headers(); return
        out = {"choices": [{"message": {"content": f" because {k}. "}} for k in range(body["n"])]}
        data = json.dumps(out).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    _Handler.seen, _Handler.fail_first = [], 0
    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    yield srv
    srv.shutdown(); srv.server_close()


def test_openai_source_uses_env_key_and_never_writes_it(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KARD_TEST_KEY", SECRET)
    _Handler.fail_first = 2                                   # two 503s, retried with backoff
    src = OpenAIChatSource(f"http://127.0.0.1:{server.server_port}/v1", "teacher", api_key_env="KARD_TEST_KEY",
                           backoff=0.01)
    out = generate_rationales(EXS[:3], src, tmp_path / "chat.jsonl", n=2, batch_size=2)
    assert out["q0"] == ["because 0.", "because 1."]
    assert all(h == f"Bearer {SECRET}" for h, _ in _Handler.seen) and len(_Handler.seen) == 5
    assert _Handler.seen[-1][1]["n"] == 2 and "Is 2 even?" in _Handler.seen[-1][1]["messages"][0]["content"]
    for f in tmp_path.rglob("*"):
        if f.is_file(): assert SECRET not in f.read_text()
    assert SECRET not in repr(src) and SECRET not in json.dumps(vars(src), default=str)
    assert SECRET not in capsys.readouterr().out


def test_openai_source_clear_errors(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]    # a port nobody listens on
    src = OpenAIChatSource(f"http://127.0.0.1:{port}/v1", "m", api_key_env=None, retries=2, backoff=0.01, timeout=2)
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}.*unreachable after 2 attempts"):
        src.generate(EXS[:1], 1)
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(RationaleError, match="NO_SUCH_KEY_VAR"):
        OpenAIChatSource(f"http://127.0.0.1:{port}/v1", "m", api_key_env="NO_SUCH_KEY_VAR").generate(EXS[:1], 1)


def test_filter_keeps_and_drops_on_constructed_example():
    # verifier: scores an option 1 when the rationale (before the cue) ends with that option's text
    def fake(inputs, choices):
        return [[float(x.split(" So, the answer is")[0].rstrip(". ").endswith(c)) for c in cs]
                for x, cs in zip(inputs, choices)]
    exs = [{"id": "a", "question": "Q?", "choices": ["red", "blue", "green"], "answer": 2},
           {"id": "b", "question": "R?", "choices": ["yes", "no"], "answer": 0}]
    rats = {"a": ["it is green.", "it is blue.", "so green"], "b": ["no"]}
    assert filter_rationales(exs, rats, fake, answer_as="text") == {"a": ["it is green.", "so green"], "b": []}


def test_filter_with_a_real_verifier_matches_direct_scoring():
    from knife_repro.qa import score_choices
    from knife_repro.models import load_seq2seq
    m, tok = load_seq2seq("tiny-t5", seed=3)
    exs = EXS[:6]
    rats = {e["id"]: [f"{e['id']} is odd", "numbers are numbers"] for e in exs}
    kept = filter_rationales(exs, rats, (m, tok))
    for e in exs:
        s = score_choices(m, tok, [verifier_input(e, r) for r in rats[e["id"]]], [["A", "B"]] * 2, eos=False)
        assert kept[e["id"]] == [r for r, sc in zip(rats[e["id"]], s) if max((0, 1), key=sc.__getitem__) == e["answer"]]


def test_filter_reading_option_texts_scores_them_length_normalised():
    "answer_as='text': the verifier scores each option's text after the cue by its mean token log-likelihood."
    from knife_repro.qa import score_choices
    from knife_repro.models import load_causal
    m, tok = load_causal("tiny-gpt2", seed=3)
    exs = [{"id": "a", "question": "Which is a star?", "choices": ["the sun", "a very small grey pebble"], "answer": 0},
           {"id": "b", "question": "Which is wet?", "choices": ["dry sand", "water"], "answer": 1}]
    rats = {"a": ["The sun is a star.", "Pebbles are rocks."], "b": ["Water is wet."]}
    ids = lambda e: [verifier_ids(tok, verifier_input(e, r), 512, True) for r in rats[e["id"]]]   # as the filter reads them
    kept = filter_rationales(exs, rats, (m, tok), answer_as="text")
    for e in exs:
        s = score_choices(m, tok, ids(e), [e["choices"]] * len(rats[e["id"]]), eos=False, length_norm=True)
        assert kept[e["id"]] == [r for r, sc in zip(rats[e["id"]], s) if max((0, 1), key=sc.__getitem__) == e["answer"]]
    raw = filter_rationales(exs, rats, (m, tok), answer_as="text", length_norm=False)
    for e in exs:
        s = score_choices(m, tok, ids(e), [e["choices"]] * len(rats[e["id"]]), eos=False)
        assert raw[e["id"]] == [r for r, sc in zip(rats[e["id"]], s) if max((0, 1), key=sc.__getitem__) == e["answer"]]


# --- fidelity with KARD's released code (issue 16) ---------------------------------------------------------

def test_corrupt_cache_is_moved_aside_and_rebuilt(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": "q0", "rationales": ["old"]}\nnot json\n{"id": "q1", "rationales": ["old"]}\n')
    with pytest.raises(RationaleError, match="line 2"):
        generate_rationales(EXS[:2], Counting(), p, n=1)                   # by default: an error naming the line
    src = Counting()
    out = generate_rationales(EXS[:2], src, p, n=1, rebuild_corrupt=True)
    assert src.asked == ["q0", "q1"] and out == {"q0": ["r0 for q0"], "q1": ["r0 for q1"]}   # nothing trusted from it
    assert (tmp_path / "c.jsonl.corrupt-0").read_text().splitlines()[1] == "not json"        # kept for inspection
    assert [json.loads(l)["id"] for l in p.read_text().splitlines()] == ["q0", "q1"]


def test_file_source_gold_only_keeps_samples_whose_own_answer_is_gold():
    ex = {"id": "z", "answer": 1, "llm_rationales": ["argues A", "argues B", "also B", "no label"], "llm_answers": [0, 1, 1]}
    assert FileSource().generate([ex], 0) == [["argues A", "argues B", "also B", "no label"]]
    assert FileSource(gold_only=True).generate([ex], 0) == [["argues B", "also B"]]
    assert FileSource(gold_only=True).generate([ex], 1) == [["argues B"]]        # filter first, then the first n
    assert FileSource(gold_only=True).name != FileSource().name                   # cached apart


# by hand from prompts/medqa_usmle_hf/template_cot_5shot.txt: each explanation ends "So, the answer is C/D/D/D/D";
# template_5shot.txt holds five other questions (answers D, A, A, C, A)
@pytest.mark.parametrize("dataset, letters", [("medqa", "CDDDD"), ("openbookqa", "DDCCD"), ("strategyqa", "BBABB")])
def test_kard_prompt_demonstrations_read_the_letter_they_explain(dataset, letters):
    import re
    p = kard_prompt(dataset)
    assert re.findall(r"\nAnswer: \((.)\)\nExplanation", p) == list(letters) and p.endswith("Answer: ({letter})\nExplanation:")
    assert re.findall(r"So, the answer is (.)\n", p) == list(letters)
    if dataset == "medqa":
        assert p.split("\n\n")[1].startswith("Question: A 22-year-old male marathon runner")


def test_kard_prompt_demonstration_without_a_conclusion_is_named(tmp_path):
    d = tmp_path / "obqa"; d.mkdir()
    (d / "template_cot_5shot.txt").write_text("Q?\\nA. x\\nB. y\\nAnswer: because.\n")
    with pytest.raises(RationaleError, match="template_cot_5shot.txt, demonstration 1"):
        kard_prompt("openbookqa", root=tmp_path)


def test_verifier_cuts_long_inputs_from_the_left_keeping_the_cue():
    from knife_repro.models import load_seq2seq
    from knife_repro.qa import score_choices
    from knife_repro.rationales import verifier_ids
    m, tok = load_seq2seq("tiny-t5", seed=3)
    ex = EXS[1]
    long = "Odd numbers are not even. " * 150 + "One is odd"
    text = verifier_input(ex, long)
    ids = verifier_ids(tok, text, max_len=64)
    cue = tok(" So, the answer is", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert len(ids) == 64 and ids[-len(cue):] == cue                       # the end survives, with the cue
    assert ids == tok(text).input_ids[-64:]                                # exactly the last 64 tokens
    assert verifier_ids(tok, verifier_input(ex, "short"), 64) == tok(verifier_input(ex, "short")).input_ids
    rats = {ex["id"]: [long, long.replace("One is odd", "One is even")]}
    kept = filter_rationales([ex], rats, (m, tok), max_len=64)
    s = score_choices(m, tok, [verifier_ids(tok, verifier_input(ex, r), 64) for r in rats[ex["id"]]], [["A", "B"]] * 2,
                      eos=False)
    assert kept[ex["id"]] == [r for r, sc in zip(rats[ex["id"]], s) if max((0, 1), key=sc.__getitem__) == ex["answer"]]


def test_causal_verifier_scores_the_letter_right_after_the_cue(monkeypatch):
    "A decoder-only verifier reads '... So, the answer is' and scores ' A' / ' B' next, as the seq2seq one scores 'A'."
    import torch
    from knife_repro import qa
    from knife_repro.models import load_causal
    m, tok = load_causal("tiny-gpt2", seed=0)
    ex = EXS[1]
    text = verifier_input(ex, "One is odd.")
    seen, real = {}, qa.score_choices
    def spy(model, tok_, inputs, *a, **kw):
        seen["inputs"] = inputs; return real(model, tok_, inputs, *a, **kw)
    monkeypatch.setattr(qa, "score_choices", spy)
    filter_rationales([ex], {ex["id"]: ["One is odd."]}, (m, tok))
    assert seen["inputs"] == [tok(text).input_ids]           # the cue is the prompt's end: no '\nAnswer:' after it
    monkeypatch.undo()
    kept = filter_rationales([ex], {ex["id"]: ["One is odd."]}, (m, tok))
    ids = tok(text).input_ids
    with torch.no_grad():                                   # by hand: log p(" A"), log p(" B") after the cue
        lp = torch.log_softmax(m(torch.tensor([ids])).logits[0, -1], -1)
    a, b = (lp[tok(" " + c, add_special_tokens=False).input_ids[0]].item() for c in "AB")
    assert len(tok(" A", add_special_tokens=False).input_ids) == 1
    assert kept[ex["id"]] == (["One is odd."] if (b > a) == (ex["answer"] == 1) else [])
