"Addition: scratchpad arithmetic, the answer extractor, and disjoint deterministic splits."
import random
import re

import pytest

from knife_repro.data import DataError
from knife_repro.data.addition import (columns_target, count_malformed, direct_target, extract_answer, format_input,
                                       load, n_carries, problems, score, scratchpad_target, split_of)

LINE = re.compile(r"([\d ]*\+[\d ]*)?,([\d ]*)C: (\d)")   # "<a rest> + <b rest> , <result> C: <carry>"


def check_scratchpad(text: str, a: int, b: int) -> None:
    "Re-derive every scratchpad step independently of the generator."
    head, _, answer = text.partition("\n</scratch>\n")
    lines = head.split("\n")
    assert lines[0] == "<scratch>"
    steps, final = lines[1:-1], lines[-1]
    ra, rb, out, carry = str(a), str(b), "", 0
    for i, step in enumerate(steps):
        m = LINE.fullmatch(step)
        assert m, step
        got_a, _, got_b = (m.group(1) or "+").replace(" ", "").partition("+")
        got_out, got_carry = m.group(2).replace(" ", ""), int(m.group(3))
        if i > 0:  # one column consumed: digit and carry follow from the previous line
            s = int(ra[-1:] or 0) + int(rb[-1:] or 0) + carry
            ra, rb, out, carry = ra[:-1], rb[:-1], str(s % 10) + out, s // 10
        assert (got_a, got_b, got_out, got_carry) == (ra, rb, out, carry), (step, ra, rb, out, carry)
    assert not ra and not rb
    assert int(final.replace(" ", "")) == a + b == int(answer.replace(" ", ""))
    assert len(steps) == max(len(str(a)), len(str(b))) + 1


CARRY_HEAVY = [(99999999, 1), (1, 99999999), (99999999, 99999999), (55555555, 44444445), (50000000, 50000000),
               (9, 1), (0, 0), (10000000, 0), (12345678, 87654322), (999, 99999999)]


@pytest.mark.parametrize("a,b", CARRY_HEAVY)
def test_scratchpad_carry_heavy(a, b):
    check_scratchpad(scratchpad_target(a, b), a, b)
    assert extract_answer(scratchpad_target(a, b)) == a + b


def test_scratchpad_random():
    rng = random.Random(0)
    for _ in range(500):
        a, b = rng.randrange(10 ** rng.randint(1, 8)), rng.randrange(10 ** rng.randint(1, 8))
        check_scratchpad(scratchpad_target(a, b), a, b)


def test_scratchpad_nye_example():
    assert scratchpad_target(29, 57) == "<scratch>\n2 9 + 5 7 , C: 0\n2 + 5 , 6 C: 1\n, 8 6 C: 0\n0 8 6\n</scratch>\n8 6"
    assert n_carries(99999999, 1) == 8 and n_carries(29, 57) == 1 and n_carries(11, 11) == 0


@pytest.mark.parametrize("spaced", [True, False])
def test_columns_scratchpad_re_derived(spaced):
    "Each line names a column with format_input's letter, its two digits, the incoming carry and the column sum."
    rng = random.Random(2)
    for _ in range(300):
        a, b = rng.randrange(10 ** rng.randint(1, 6)), rng.randrange(10 ** rng.randint(1, 6))
        text = columns_target(a, b, spaced)
        head, _, answer = text.partition("\n</scratch>\n")
        lines = head.split("\n")[1:]
        w = max(len(str(a)), len(str(b)))
        assert len(lines) == w and int(answer.replace(" ", "")) == a + b == extract_answer(text)
        marks = set(re.findall(r"[A-Z]\d", format_input(a, b, mark_positions=True, spaced=spaced)))
        carry = 0
        for i, line in enumerate(lines):                      # lowest column first
            k = w - 1 - i
            da, db = a // 10 ** i % 10, b // 10 ** i % 10
            m = chr(ord("A") + k)
            sep = " " if spaced else ""
            assert line == sep.join([f"{m}{da}", "+", f"{m}{db}", "+", str(carry), "=", sep.join(str(da + db + carry))]), line
            assert {f"{m}{da}", f"{m}{db}"} - {f"{m}0"} <= marks   # the input shows the same marked digits (0: padding)
            carry = (da + db + carry) // 10


@pytest.mark.parametrize("spaced", [True, False])
def test_extractor_round_trips_both_formats(spaced):
    rng = random.Random(1)
    for _ in range(300):
        a, b = rng.randrange(10 ** 8), rng.randrange(10 ** 8)
        assert extract_answer(scratchpad_target(a, b, spaced)) == a + b
        assert extract_answer(direct_target(a, b, spaced)) == a + b


@pytest.mark.parametrize("text", [None, "", "   ", "abc", "8 6 x", "x 8 6", "8  6", "-86", "8.6", "86!", "eighty six",
                                  "<scratch>\n2 9 + 5 7 , C: 0\n2 + 5 , 6 C: 1",            # truncated scratchpad
                                  "<scratch>\n2 9 + 5 7 , C: 0\n</scratch>\n",              # closed, no answer
                                  "<scratch>\n2 9 + 5 7 , C: 0\n</scratch>\n8 6 <scratch>",
                                  "</scratch>", 86, b"86", "\x00", "9" * 10_000 + "x"])
def test_extractor_returns_none_on_garbage(text):
    assert extract_answer(text) is None


def test_extractor_truncated_at_every_point_never_raises():
    t = scratchpad_target(12345678, 87654329)
    for i in range(len(t)):
        got = extract_answer(t[:i])
        if "</scratch>" not in t[:i]:
            assert got is None, t[:i]                                        # cut inside the scratchpad
        else:   # cut inside the answer: a prefix of it (indistinguishable from a short answer)
            assert got is None or str(12345678 + 87654329).startswith(str(got)), t[:i]
    assert extract_answer(t) == 12345678 + 87654329
    assert count_malformed([t, t[:20], "x", None]) == 3
    assert score([t, "1"], [12345678 + 87654329, 2]) == {"accuracy": 0.5, "malformed": 0.0, "n": 2}


def test_position_marks():
    assert format_input(123, 456, mark_positions=True, spaced=False) == "A1B2C3+A4B5C6"
    assert format_input(12, 345, mark_positions=True, spaced=False) == "B1C2+A3B4C5"
    assert format_input(12, 345, mark_positions=True) == "B1 C2 + A3 B4 C5"
    assert format_input(29, 57) == "2 9 + 5 7"


def test_splits_disjoint_and_deterministic():
    dd = load(n_digits=8, n_train=2000, n_validation=500, n_test=2000, seed=0)
    again = load(n_digits=8, n_train=2000, n_validation=500, n_test=2000, seed=0)
    for s in dd:
        assert dd[s][:] == again[s][:]
    pairs = {s: {tuple(sorted((r["a"], r["b"]))) for r in d} for s, d in dd.items()}
    assert not pairs["train"] & pairs["validation"] and not pairs["train"] & pairs["test"]
    assert not pairs["validation"] & pairs["test"]
    for s, d in dd.items():
        assert len(set(zip(d["a"], d["b"]))) == len(d)                       # no duplicates within a split
        assert all(split_of(a, b) == s for a, b in zip(d["a"], d["b"]))
    other = {tuple(sorted(p)) for p in problems(5000, "train", 8, seed=7)}
    assert not other & pairs["test"]                                         # other seeds too
    assert load(n_train=50, n_validation=5, n_test=5, seed=1)["train"][:] != dd["train"].select(range(50))[:]


def test_columns_and_answers():
    d = load(n_digits=4, min_digits=1, n_train=300, n_validation=10, n_test=10, mark_positions=True)["train"]
    assert {"id", "a", "b", "input", "target_direct", "target_scratchpad", "answer"} <= set(d.column_names)
    assert {r for r in d["n_digits"]} == {1, 2, 3, 4}
    for r in d:
        assert r["answer"] == r["a"] + r["b"] == extract_answer(r["target_scratchpad"]) == extract_answer(r["target_direct"])


def test_small_pool_and_bad_options_raise_data_error():
    with pytest.raises(DataError):
        problems(500, "test", n_digits=1)                                     # only ~10 one-digit test pairs exist
    with pytest.raises(DataError):
        load(split="dev")
    with pytest.raises(DataError):
        problems(5, n_digits=0)
