"Exact set match agrees with execution on hand-checked pairs of SPIDER dev queries."
import pytest

from knife_repro.core import DataNotFoundError

spider = pytest.importorskip("knife_repro.data.spider")
ev = pytest.importorskip("knife_repro.data.spider_eval")   # the metrics, one level above the loader

try:
    SCHEMAS = spider.load_schemas()
except (DataNotFoundError, spider.DataError):
    SCHEMAS = None
pytestmark = pytest.mark.skipif(SCHEMAS is None, reason="Spider data not found")

# (db_id, prediction, gold): the same query written differently; both metrics say "match"
EQUIVALENT = [
    ("concert_singer", "SELECT name, country, age FROM singer ORDER BY age DESC",
     "SELECT Name, Country, Age FROM singer ORDER BY Age DESC"),                                      # case
    ("concert_singer", "SELECT country, name, age FROM singer ORDER BY age DESC",
     "SELECT name, country, age FROM singer ORDER BY age DESC"),                                      # column order
    ("concert_singer", "SELECT count(*) FROM singer WHERE age > 20 AND country = 'France'",
     "SELECT count(*) FROM singer WHERE country = 'France' AND age > 20"),                           # condition order
    ("concert_singer", "SELECT s.name FROM singer_in_concert AS sic JOIN singer AS s ON sic.singer_id = s.singer_id",
     "SELECT T2.name FROM singer_in_concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.singer_id"),  # aliases
    ("concert_singer", "SELECT singer.name FROM singer_in_concert JOIN singer ON singer_in_concert.singer_id = singer.singer_id",
     "SELECT T2.name FROM singer_in_concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.singer_id"),  # no aliases
    ("concert_singer", 'SELECT avg(age) FROM singer WHERE country = "France"',
     "SELECT avg(age) FROM singer WHERE country = 'France'"),                                         # quoting
    ("concert_singer", "SELECT count(*) FROM concert WHERE year = 2014 OR year = 2015",
     "SELECT count(*) FROM concert WHERE year = 2015 OR year = 2014"),
    ("pets_1", "SELECT count(*) FROM pets WHERE weight > 10.5", "SELECT count(*) FROM pets WHERE weight > 10"),  # value
    ("pets_1", "SELECT count(*) FROM pets WHERE 10 < weight", "SELECT count(*) FROM pets WHERE weight > 10"),    # flipped
    ("pets_1", "SELECT pettype, max(weight) FROM pets GROUP BY pettype",
     "SELECT max(weight), petType FROM pets GROUP BY petType"),
    ("pets_1", "SELECT count(*), T1.stuid FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid GROUP BY T1.stuid",
     "select count(*), t1.stuid from student as t1 join has_pet as t2 on t1.stuid = t2.stuid group by t1.stuid"),
    ("pets_1", "select t1.fname from student as t1 join has_pet as t2 on t1.stuid = t2.stuid join pets as t3 on t3.petid = t2.petid"
               " where t3.pettype = 'cat' intersect select t1.fname from student as t1 join has_pet as t2 on t1.stuid = t2.stuid"
               " join pets as t3 on t3.petid = t2.petid where t3.pettype = 'dog'",
     "SELECT T1.Fname FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid JOIN pets AS T3 ON T3.petid = T2.petid"
     " WHERE T3.pettype = 'cat' INTERSECT SELECT T1.Fname FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid"
     " JOIN pets AS T3 ON T3.petid = T2.petid WHERE T3.pettype = 'dog'"),
    ("pets_1", "SELECT avg(age) FROM student WHERE stuid NOT IN (SELECT stuid FROM has_pet)",
     "select avg(age) from student where stuid not in (select stuid from has_pet)"),
    ("car_1", "SELECT T1.Model FROM CAR_NAMES AS T1 JOIN CARS_DATA AS T2 ON T1.MakeId = T2.Id ORDER BY T2.mpg DESC LIMIT 1",
     "select t1.model from car_names as t1 join cars_data as t2 on t1.makeid = t2.id order by t2.mpg desc limit 1"),
    ("car_1", "SELECT count(*) FROM cars_data WHERE cylinders > 4 AND horsepower > 150",
     "SELECT count(*) FROM cars_data WHERE horsepower > 150 AND cylinders > 4"),
]

# (db_id, prediction, gold, component that differs): a different query; neither metric says "match"
DIFFERENT = [
    ("concert_singer", "SELECT name FROM singer WHERE age > 40", "SELECT country FROM singer WHERE age > 40", "select"),
    ("concert_singer", "SELECT count(*) FROM singer", "SELECT count(*) FROM singer WHERE country = 'France'", "where"),
    ("concert_singer", "SELECT max(capacity) FROM stadium", "SELECT avg(capacity) FROM stadium", "select"),
    ("concert_singer", "SELECT name FROM singer ORDER BY age", "SELECT name FROM singer ORDER BY age DESC", "order_by"),
    ("pets_1", "SELECT count(*) FROM pets", "SELECT count(*), pettype FROM pets GROUP BY pettype", "select"),
    ("pets_1", "SELECT pettype, count(*) FROM pets", "SELECT pettype, count(*) FROM pets GROUP BY pettype", "group_by"),
    ("pets_1", "SELECT min(weight) FROM pets", "SELECT max(weight) FROM pets", "select"),
    ("pets_1", "SELECT weight FROM pets ORDER BY pet_age DESC LIMIT 1", "SELECT weight FROM pets ORDER BY pet_age LIMIT 1", "order_by"),
    ("car_1", "SELECT count(*) FROM cars_data WHERE cylinders > 4", "SELECT count(*) FROM cars_data WHERE cylinders < 4", "where"),
    ("car_1", "SELECT avg(mpg) FROM cars_data", "SELECT avg(mpg) FROM cars_data WHERE cylinders = 4", "where"),
    ("car_1", "SELECT count(*) FROM model_list", "SELECT count(DISTINCT maker) FROM model_list", "select"),
    ("car_1", "SELECT maker FROM car_makers WHERE id IN (SELECT maker FROM model_list)",
     "SELECT maker FROM car_makers EXCEPT SELECT maker FROM car_makers WHERE id IN (SELECT maker FROM model_list)", "set_op"),
]


def _db(db_id):
    p = spider.db_path(db_id)
    if p is None: pytest.skip(f"database {db_id} not in the data")
    return p


@pytest.mark.parametrize("db_id,pred,gold", EQUIVALENT)
def test_equivalent_pairs_match_on_both_metrics(db_id, pred, gold):
    assert ev.exact_set_diff(pred, gold, SCHEMAS[db_id]) == []
    assert ev.execution_match(pred, gold, _db(db_id))


@pytest.mark.parametrize("db_id,pred,gold,component", DIFFERENT)
def test_different_pairs_fail_on_both_metrics(db_id, pred, gold, component):
    assert component in ev.exact_set_diff(pred, gold, SCHEMAS[db_id])
    assert not ev.execution_match(pred, gold, _db(db_id))


def test_values_ignored_but_execution_sees_them():
    "The one place the metrics disagree by design: literal values."
    pred, gold = "SELECT count(*) FROM pets WHERE weight > 1", "SELECT count(*) FROM pets WHERE weight > 10"
    assert ev.exact_set_match(pred, gold, SCHEMAS["pets_1"])
    assert not ev.execution_match(pred, gold, _db("pets_1"))


def test_evaluate_counts_missing_db_and_errors(shipped_data):   # wta_1 absent, even where a user has added it
    dev = spider.load("validation")["validation"]
    rows = [r for r in dev if r["db_id"] == "wta_1"][:3] + [r for r in dev if r["db_id"] == "pets_1"][:4]
    preds = [r["query"] for r in rows]
    preds[-1] = "SELECT nope FROM pets"            # runs into an error: wrong, counted
    res = ev.evaluate(preds, rows)
    n_missing = sum(r["db_id"] == "wta_1" for r in rows)
    assert n_missing > 0 and res["skipped_missing_db"] == n_missing
    assert res["n_executed"] == len(rows) - n_missing and res["n_execution_match"] == res["n_executed"] - 1
    assert res["pred_errors"] == {"error": 1} and res["n_exact_set_match"] == len(rows) - 1
