"The SQL sandbox: destructive or runaway queries fail with SQLExecutionError and change no file."
import hashlib
import shutil
import sqlite3
import time

import pytest

from knife_repro.core import DataNotFoundError
from knife_repro.data.spider_eval import SQLExecutionError, execute

try:
    from knife_repro.data.spider import db_path
    SHARED_DB = db_path("concert_singer")
except DataNotFoundError:
    SHARED_DB = None
needs_data = pytest.mark.skipif(SHARED_DB is None, reason="Spider data not found")

RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def db(tmp_path):
    "A copy of a real Spider DB (or a small stand-in without the data) in tmp_path."
    dst = tmp_path / "concert_singer.sqlite"
    if SHARED_DB is not None:
        shutil.copyfile(SHARED_DB, dst)
    else:
        with sqlite3.connect(dst) as c:
            c.executescript("CREATE TABLE singer (Singer_ID INT, Name TEXT); INSERT INTO singer VALUES (1, 'a');"
                            "CREATE TABLE concert (concert_ID INT, Year TEXT);")
        c.close()
    return dst


ATTACKS = {
    "drop": ("DROP TABLE singer", "denied"),
    "insert": ("INSERT INTO singer (Singer_ID, Name) VALUES (99, 'x')", "denied"),
    "update": ("UPDATE singer SET Name = 'x'", "denied"),
    "delete": ("DELETE FROM singer", "denied"),
    "create": ("CREATE TABLE t (x)", "denied"),
    "attach": ("ATTACH DATABASE '{tmp}/evil.db' AS evil", "denied"),
    "attach_uri": ("ATTACH DATABASE 'file:{tmp}/evil2.db?mode=rwc' AS evil", "denied"),
    "pragma_user_version": ("PRAGMA user_version = 5", "denied"),
    "pragma_journal_mode": ("PRAGMA journal_mode = delete", "denied"),
    "pragma_query_only_off": ("PRAGMA query_only = OFF", "denied"),
    "pragma_writable_schema": ("PRAGMA writable_schema = ON", "denied"),
    "vacuum": ("VACUUM", "denied"),
    "vacuum_into": ("VACUUM INTO '{tmp}/copy.db'", "denied"),
    "begin": ("BEGIN IMMEDIATE", "denied"),
    "multiple_statements": ("SELECT 1; DROP TABLE singer", "multiple_statements"),
    "multiple_statements_2": ("SELECT count(*) FROM singer; DELETE FROM singer;", "multiple_statements"),
    "load_extension": ("SELECT load_extension('/tmp/x.so')", "denied"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_fails_cleanly_and_changes_nothing(db, tmp_path, name):
    sql, kind = ATTACKS[name]
    shared_before = sha256(SHARED_DB) if SHARED_DB else None
    before = sha256(db)
    with pytest.raises(SQLExecutionError) as e:
        execute(db, sql.format(tmp=tmp_path))
    assert e.value.kind == kind, e.value
    assert sha256(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [db.name]      # no new file (attach, vacuum into, journal)
    assert execute(db, "SELECT count(*) FROM singer")[0][0] >= 1      # still readable
    if SHARED_DB: assert sha256(SHARED_DB) == shared_before


def test_runaway_query_times_out(db):
    before = sha256(db)
    t0 = time.perf_counter()
    with pytest.raises(SQLExecutionError) as e:
        execute(db, RUNAWAY, timeout_s=0.5)
    elapsed = time.perf_counter() - t0
    assert e.value.kind == "timeout" and elapsed < 2.0, (e.value, elapsed)
    assert sha256(db) == before


def test_row_cap(db):
    with pytest.raises(SQLExecutionError) as e:
        execute(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 50) SELECT x FROM c", max_rows=20)
    assert e.value.kind == "too_many_rows"
    assert len(execute(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 20) SELECT x FROM c", max_rows=20)) == 20


def test_other_failures_use_the_same_error_type(db, tmp_path):
    for sql, kind in [("SELEC 1", "syntax"), ("SELECT nope FROM singer", "error"), ("SELECT * FROM nope", "error"),
                      ("", "syntax"), (" ; ", "syntax"), ("-- comment only", "syntax")]:   # no query is no result
        with pytest.raises(SQLExecutionError) as e:
            execute(db, sql)
        assert e.value.kind == kind, (sql, e.value)
    with pytest.raises(SQLExecutionError) as e:
        execute(tmp_path / "absent.sqlite", "SELECT 1")
    assert e.value.kind == "missing_db" and not (tmp_path / "absent.sqlite").exists()


def test_odd_bytes_are_decoded_not_fatal(tmp_path):
    p = tmp_path / "odd.sqlite"
    with sqlite3.connect(p) as c:
        c.execute("CREATE TABLE t (x TEXT)")
        c.execute("INSERT INTO t VALUES (CAST(X'41FF42' AS TEXT))")   # invalid UTF-8
    c.close()
    assert execute(p, "SELECT x FROM t") == [("A\ufffdB",)]


@needs_data
def test_shared_db_read_and_unchanged():
    before = sha256(SHARED_DB)
    assert execute(SHARED_DB, "SELECT count(*) FROM singer") == [(6,)]
    for sql, _ in ATTACKS.values():
        with pytest.raises(SQLExecutionError):
            execute(SHARED_DB, sql.format(tmp="/nonexistent"))
    with pytest.raises(SQLExecutionError):
        execute(SHARED_DB, RUNAWAY, timeout_s=0.2)
    assert sha256(SHARED_DB) == before
