"""Every risk rule against its cases in tests/risk_cases/*.toml: must fire / must not fire, per
engine (PostgreSQL, MySQL 8, MariaDB), from SQL or from Alembic ops rendered offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot

from dbguard.errors import ExitCode, StatementParseError
from dbguard.risk import parse as risk_parse
from dbguard.risk import rules
from tests.risk_support import judge, judge_all, statements

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CASES_DIR = Path(__file__).parent / "risk_cases"


def _cases() -> list:
    params = []
    for path in sorted(CASES_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        for case in data["case"]:
            engine = case.get("engine", data["engine"])
            verdict = "fires" if case["fires"] else "silent"
            params.append(pytest.param(case, engine, id=f"{case['rule']}-{engine}-{verdict}-{case['name']}"))
    return params


@pytest.mark.parametrize(("case", "engine"), _cases())
def test_rule_case(case: dict, engine: str) -> None:
    # ``later``: the statements of a second pending revision (its own transaction).
    revisions = [statements(case, engine, "pending")] + ([case["later"]] if "later" in case else [])
    plans, _ = judge_all(revisions, engine, history=statements(case, engine, "history"), facts=case.get("facts"),
                         version=case.get("version"))
    findings = [f for plan in plans for f in plan.findings]
    hits = [f for f in findings if f.code == case["rule"]]
    detail = "\n".join(f"{f.code} {f.severity} {f.message}" for f in findings) or "no findings"
    if case["fires"]:
        sql = [s.sql for plan in plans for s in plan.statements]
        assert hits, f"{case['rule']} should fire; got:\n{detail}\nSQL: {sql}"
        if "severity" in case:
            assert max(h.level for h in hits).label == case["severity"], detail
    else:
        assert not hits, f"{case['rule']} should not fire; got:\n{detail}"


def test_every_rule_has_cases_that_fire_and_that_do_not() -> None:
    seen: dict[str, set[bool]] = {}
    engines: dict[str, set[str]] = {}
    for param in _cases():
        case, engine = param.values
        seen.setdefault(case["rule"], set()).add(case["fires"])
        engines.setdefault(case["rule"], set()).add("postgresql" if engine == "postgresql" else "mysql")
    for rule in rules.RULES:
        assert seen.get(rule.code) == {True, False}, f"{rule.code} needs cases that fire and that do not"
        assert engines[rule.code] == {"postgresql", "mysql"}, f"{rule.code} needs PostgreSQL and MySQL cases"


def test_rules_document_themselves() -> None:
    codes = [r.code for r in rules.RULES]
    assert len(codes) == len(set(codes))
    for rule in rules.RULES:
        doc = rule.fn.__doc__ or ""
        assert "Anti-pattern" in doc and "Best practice" in doc, rule.code
        assert rule.code.startswith("DG1") and len(rule.code) == 5


# statements sqlglot cannot read --------------------------------------------------------------------

# Unbalanced: no sqlglot parses it, and no fallback pattern in dbguard.risk.parse matches it.
UNPARSABLE = "UPDATE widgets SET label = 'x' WHERE id IN (1, 2"


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_statement_sqlglot_cannot_parse_is_an_error_naming_it(engine: str) -> None:
    with pytest.raises(StatementParseError) as raised:
        risk_parse.parse(UNPARSABLE, engine)
    error = raised.value
    assert error.exit_code == ExitCode.USAGE and error.statement == UNPARSABLE
    assert "\n" not in error.message and f'"{UNPARSABLE}"' in error.message
    assert f"sqlglot {sqlglot.__version__} cannot parse" in error.message and "fail_on = none" in error.message


def test_the_plan_names_the_revision_and_an_applied_one_does_not_stop_it() -> None:
    with pytest.raises(StatementParseError, match=r"^revision r1: sqlglot .* cannot parse"):
        judge(["CREATE TABLE t (id INT)", UNPARSABLE], "postgresql")
    # Applied revisions are only read for the tables they made: later plans go on.
    plan = judge(["DROP TABLE t"], "postgresql", history=["CREATE TABLE t (id INT)", UNPARSABLE])
    assert [f.code for f in plan.findings] == ["DG107"]


def test_what_sqlglot_keeps_as_a_command_and_the_patterns_read_are_no_error() -> None:
    assert [o.kind for o in risk_parse.parse("ALTER TABLE t OWNER TO app", "postgresql")] == ["unknown"]
    assert [o.kind for o in risk_parse.parse(
        "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ LANGUAGE plpgsql", "postgresql")] == [
        "other_ddl"]


def test_a_tree_in_a_shape_dbguard_does_not_know_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """How an unsupported sqlglot shows up: the statement parses, but its tree is not where dbguard
    looks (here a DROP TABLE whose table is in no argument dbguard reads)."""
    statement = "DROP TABLE legacy_in_an_unknown_shape"
    monkeypatch.setattr(sqlglot, "parse_one", lambda sql, read=None: sqlglot.exp.Drop(kind="TABLE"))
    with pytest.raises(StatementParseError, match=r"cannot read sqlglot .*'s tree of \"DROP TABLE legacy_in_an"):
        risk_parse.parse(statement, "postgresql")


# every table a statement locks, and locks held across a transaction ------------------------------

PARENTS = ["CREATE TABLE users (id SERIAL PRIMARY KEY)",
           "CREATE TABLE orders (id SERIAL PRIMARY KEY, user_id INTEGER, status TEXT)",
           "CREATE INDEX ix_orders_status ON orders (status)",
           "CREATE TABLE payments (id SERIAL PRIMARY KEY, user_id INTEGER REFERENCES users (id))"]


def _tables(revisions: list[list[str]]) -> dict[str, tuple[str, bool, tuple[str, ...]]]:
    _, summary = judge_all(revisions, "postgresql", history=PARENTS)
    return {t.table: (t.strongest_lock, t.new, t.taken_by) for t in summary.tables}


def test_a_new_tables_foreign_key_locks_the_referenced_table_under_its_own_name() -> None:
    tables = _tables([["CREATE TABLE invoices (id SERIAL PRIMARY KEY, user_id INTEGER REFERENCES users (id))"]])
    assert tables == {"invoices": ("ACCESS EXCLUSIVE", True, ("r1 #1",)),
                      "users": ("SHARE ROW EXCLUSIVE", False, ("r1 #1",))}


def test_adding_and_validating_a_foreign_key_lock_the_referenced_table() -> None:
    add = "ALTER TABLE orders ADD CONSTRAINT fk_orders_user FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID"
    assert _tables([[add]])["users"] == ("SHARE ROW EXCLUSIVE", False, ("r1 #1",))
    # Alone in its revision, VALIDATE takes ROW SHARE on the referenced table: found from the ADD.
    tables = _tables([[add], ["ALTER TABLE orders VALIDATE CONSTRAINT fk_orders_user"]])
    assert tables["orders"][0] == "SHARE ROW EXCLUSIVE"  # the ADD's, stronger than VALIDATE's
    _, summary = judge_all([["ALTER TABLE orders VALIDATE CONSTRAINT fk_orders_user"]], "postgresql",
                           history=[*PARENTS, add])
    assert {t.table: t.strongest_lock for t in summary.tables} == {"orders": "SHARE UPDATE EXCLUSIVE",
                                                                   "users": "ROW SHARE"}


def test_dropping_a_referencing_table_locks_its_parent_and_drop_index_its_table() -> None:
    tables = _tables([["DROP TABLE payments", "DROP INDEX ix_orders_status"]])
    assert tables == {"payments": ("ACCESS EXCLUSIVE", False, ("r1 #1",)),
                      "users": ("ACCESS EXCLUSIVE", False, ("r1 #1",)),
                      "orders": ("ACCESS EXCLUSIVE", False, ("r1 #2",))}


def test_a_table_locked_by_several_statements_is_listed_once_with_each() -> None:
    tables = _tables([["ALTER TABLE orders ADD COLUMN a TEXT"], ["ALTER TABLE orders ADD COLUMN b TEXT"]])
    assert tables == {"orders": ("ACCESS EXCLUSIVE", False, ("r1 #1", "r2 #1"))}


def test_drop_index_of_an_unknown_table_says_so() -> None:
    [finding] = judge(["DROP INDEX ix_nowhere"], "postgresql").findings
    assert finding.code == "DG102" and finding.table is None
    assert "table of index ix_nowhere unknown" in finding.message


def test_held_lock_finding_names_the_lock_both_statements_and_the_split() -> None:
    add = "ALTER TABLE orders ADD CONSTRAINT fk_orders_user FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID"
    validate = "ALTER TABLE orders VALIDATE CONSTRAINT fk_orders_user"
    plan = judge([add, validate], "postgresql", history=PARENTS)
    held = {f.table: f for f in plan.findings if f.code == "DG115"}
    assert set(held) == {"orders", "users"}  # SHARE ROW EXCLUSIVE on both tables through the scan
    f = held["users"]
    assert (f.statement_index, f.taken_at, f.taken_by, f.statement) == (2, 1, add, validate)
    assert f.lock is not None and f.lock.startswith("SHARE ROW EXCLUSIVE")
    assert "autocommit_block()" in f.alternative and validate in f.alternative
    from dbguard.output import _finding_lines

    assert any("taken by #1: ALTER TABLE orders ADD CONSTRAINT fk_orders_user" in line for line in _finding_lines(f))


def test_each_held_lock_is_reported_once_per_transaction() -> None:
    plan = judge(["ALTER TABLE orders ADD COLUMN plan TEXT", "UPDATE orders SET plan = 'a'",
                  "UPDATE orders SET plan = 'b'"], "postgresql", history=PARENTS)
    assert [(f.code, f.statement_index) for f in plan.findings] == [("DG115", 2)]


# DG113 by the conflict matrix --------------------------------------------------------------------


def test_conflicting_holders_follow_postgresqls_matrix() -> None:
    from dbguard.risk.lock_modes import conflicting_holders
    from dbguard.risk.model import LockHolder, LockInfo

    reader, writer = LockHolder("1", mode="AccessShareLock"), LockHolder("2", mode="RowExclusiveLock")
    vacuum, unknown = LockHolder("3", mode="ShareUpdateExclusiveLock"), LockHolder("4")
    both = LockHolder("5", mode="AccessShareLock, RowExclusiveLock")
    holders = (reader, writer, vacuum, unknown, both)

    def ids(mode: str) -> list[str]:
        lock = LockInfo(mode=mode, blocks_reads=mode == "ACCESS EXCLUSIVE", blocks_writes=True)
        return [h.session_id for h in conflicting_holders(lock, holders, "postgresql")]

    assert ids("ACCESS EXCLUSIVE") == ["1", "2", "3", "4", "5"]  # an unknown mode conflicts only with this
    assert ids("SHARE") == ["2", "3", "5"]
    assert ids("SHARE UPDATE EXCLUSIVE") == ["3"]
    assert ids("SHARE ROW EXCLUSIVE on users") == ["2", "3", "5"]
    assert ids("ROW EXCLUSIVE + row locks") == []
    assert ids("none") == []


def test_conflicting_holders_for_metadata_locks() -> None:
    from dbguard.risk.lock_modes import conflicting_holders
    from dbguard.risk.model import LockHolder, LockInfo

    holders = (LockHolder("1", mode="MDL_SHARED_READ"), LockHolder("2", mode="MDL_INTENTION_EXCLUSIVE"),
               LockHolder("3"))
    ddl = LockInfo(mode="metadata lock (exclusive at start and end), LOCK=NONE", blocks_reads=False,
                   blocks_writes=False, exclusive_briefly=True)
    assert [h.session_id for h in conflicting_holders(ddl, holders, "mysql")] == ["1", "3"]
    dml = LockInfo(mode="row locks", blocks_reads=False, blocks_writes=False, work="dml")
    assert conflicting_holders(dml, holders, "mysql") == ()


def test_dg113_names_only_the_conflicting_sessions() -> None:
    facts = {"orders": {"rows": 10, "size": 16384, "holders": [
        {"session": "11", "state": "active", "age": 3.0, "mode": "AccessShareLock"},
        {"session": "12", "state": "idle in transaction", "age": 400.0, "mode": "RowExclusiveLock"}]}}
    plan = judge(["CREATE INDEX ix_orders_status ON orders (status)"], "postgresql", history=PARENTS, facts=facts)
    [finding] = [f for f in plan.findings if f.code == "DG113"]
    assert "12 (idle in transaction, RowExclusiveLock)" in finding.message and "11 (" not in finding.message
    assert finding.message.startswith("1 session(s)")


def test_the_live_facts_are_read_for_every_table_the_plan_locks() -> None:
    from dbguard.risk.plan import tables_touched
    from tests.risk_support import Rev

    pending = [Rev("r1", ["DROP INDEX ix_orders_status", "DROP TABLE payments",
                          "ALTER TABLE sessions VALIDATE CONSTRAINT fk_sessions_user"])]
    history = [Rev("h", [*PARENTS, "CREATE TABLE sessions (id SERIAL PRIMARY KEY, user_id INTEGER)",
                         ("ALTER TABLE sessions ADD CONSTRAINT fk_sessions_user FOREIGN KEY (user_id) "
                          "REFERENCES users (id) NOT VALID")])]
    assert tables_touched(pending, "postgresql") == {"payments", "sessions"}
    assert tables_touched(pending, "postgresql", history=history) == {"orders", "payments", "users", "sessions"}


def test_a_lock_held_through_a_long_statement_is_the_plans_worst_hold() -> None:
    facts = {"users": {"rows": 2_000_000, "size": 400_000_000}}
    _, summary = judge_all([["ALTER TABLE users ADD COLUMN plan TEXT", "UPDATE users SET plan = 'free'"]],
                           "postgresql", history=PARENTS, facts=facts)
    assert summary.worst_hold_s == 100.0  # 2M rows at ~20k rows/s, under the ADD's ACCESS EXCLUSIVE
    assert summary.worst_hold_at is not None and summary.worst_hold_at.startswith("r1 #2: UPDATE users")


# the safe form: Alembic code to paste ---------------------------------------------------------------

SAFE_HISTORY = ["CREATE TABLE users (id SERIAL PRIMARY KEY, email VARCHAR(100), tenant_id INTEGER)",
                "CREATE TABLE orders (id SERIAL PRIMARY KEY, user_id INTEGER, status TEXT, total INTEGER)"]


def _compiles(code: str) -> None:
    compile("def upgrade():\n" + "\n".join(f"    {line}" for line in code.splitlines()), "<alt>", "exec")


@pytest.mark.parametrize(("engine", "sql", "code", "names"), [
    ("postgresql", "CREATE INDEX ix_orders_status ON orders (status)", "DG102",
     ["autocommit_block()", "op.create_index('ix_orders_status', 'orders', ['status'], postgresql_concurrently=True)"]),
    ("postgresql", "DROP INDEX ix_gone", "DG102", ["op.drop_index('ix_gone', postgresql_concurrently=True)"]),
    ("postgresql", "ALTER TABLE orders ADD CONSTRAINT fk_orders_user FOREIGN KEY(user_id) REFERENCES users (id)",
     "DG105", [("op.create_foreign_key('fk_orders_user', 'orders', 'users', ['user_id'], ['id'], "
                "postgresql_not_valid=True)"), "ALTER TABLE orders VALIDATE CONSTRAINT fk_orders_user"]),
    ("postgresql", "ALTER TABLE users ALTER COLUMN tenant_id SET NOT NULL", "DG104",
     ["CHECK (tenant_id IS NOT NULL) NOT VALID", "VALIDATE CONSTRAINT ck_users_tenant_id_not_null",
      "op.alter_column('users', 'tenant_id', nullable=False)"]),
    ("postgresql", "ALTER TABLE users ADD COLUMN plan TEXT NOT NULL", "DG103",
     ["ADD COLUMN plan TEXT'", "UPDATE users SET plan", "op.alter_column('users', 'plan', nullable=False)"]),
    ("postgresql", "ALTER TABLE users ADD CONSTRAINT uq_users_email UNIQUE (email)", "DG106",
     ["op.create_index('uq_users_email', 'users', ['email'], unique=True, postgresql_concurrently=True)",
      "ADD CONSTRAINT uq_users_email UNIQUE USING INDEX uq_users_email"]),
    ("postgresql", "ALTER TABLE orders ALTER COLUMN total TYPE BIGINT", "DG101",
     ["ADD COLUMN total_new BIGINT", "SET total_new = total"]),
    ("mariadb", "ALTER TABLE orders MODIFY total BIGINT", "DG101", ["ADD COLUMN total_new BIGINT"]),
    ("mariadb", "ALTER TABLE users ADD COLUMN plan INTEGER NOT NULL", "DG103",
     ["MODIFY plan INT NOT NULL, ALGORITHM=INPLACE, LOCK=NONE"]),
    ("mariadb", "CREATE FULLTEXT INDEX ft_orders_status ON orders (status)", "DG102",
     ["CREATE FULLTEXT INDEX ft_orders_status ON orders (status)"]),
])
def test_the_alternative_is_alembic_code_with_the_real_names(engine: str, sql: str, code: str,
                                                             names: list[str]) -> None:
    history = SAFE_HISTORY if engine == "postgresql" else \
        [s.replace("SERIAL", "INTEGER NOT NULL AUTO_INCREMENT") for s in SAFE_HISTORY]
    hits = [f for f in judge([sql], engine, history=history).findings if f.code == code]
    assert hits, code
    for name in names:
        assert name in hits[0].alternative, hits[0].alternative
    _compiles(hits[0].alternative)


def test_the_alternative_falls_back_to_placeholders_and_compiles() -> None:
    from dbguard.risk import safe_forms
    from dbguard.risk.model import Context, LockInfo, Op
    from tests.risk_support import server_for

    ctx = Context(server=server_for("postgresql"))
    lock = LockInfo(mode="ACCESS EXCLUSIVE", blocks_reads=True, blocks_writes=True, work="scan")
    op = Op("add_constraint", "ALTER TABLE t ADD FOREIGN KEY (a + 1) REFERENCES p", constraint="foreign_key")
    code = safe_forms.validate_later(op, lock, ctx)
    assert "'<table>'" in code and "'<constraint>'" in code and "['<column>']" in code
    _compiles(code)


def test_text_output_indents_the_code_under_the_finding() -> None:
    from dbguard.output import _finding_lines

    plan = judge(["CREATE INDEX ix_orders_status ON orders (status)"], "postgresql", history=SAFE_HISTORY)
    lines = _finding_lines(plan.findings[0])
    start = lines.index("      instead:")
    assert lines[start + 1] == "          with op.get_context().autocommit_block():"
    assert lines[start + 2].startswith("              op.create_index('ix_orders_status'")


def test_a_view_locks_the_tables_its_query_reads_and_a_refresh_those_it_was_built_from() -> None:
    """Verified on PostgreSQL 15: CREATE [MATERIALIZED] VIEW and REFRESH take ACCESS SHARE on each table
    the query reads; the summary lists them, and a new view as new."""
    from dbguard.risk.model import ServerInfo
    from dbguard.risk.plan import analyse, tables_touched

    class Rev:
        def __init__(self, revision: str, statements: list[str]) -> None:
            self.revision, self.statements, self.notes, self.error = revision, statements, (), None

    history = [Rev("h", ["CREATE TABLE orders (id int PRIMARY KEY)", "CREATE TABLE users (id int PRIMARY KEY)",
                         "CREATE MATERIALIZED VIEW order_ids AS SELECT id FROM orders"])]
    pending = [Rev("p", ["CREATE VIEW pairs AS SELECT o.id FROM orders o JOIN users u ON u.id = o.id",
                         "REFRESH MATERIALIZED VIEW order_ids"])]
    server = ServerInfo(engine="postgresql", flavor="postgresql", version=(15, 0), version_text="15")
    _, summary = analyse(pending, server, history=history)
    by_table = {t.table: t for t in summary.tables}
    assert by_table["users"].strongest_lock == "ACCESS SHARE" and by_table["users"].taken_by == ("p #1",)
    assert by_table["pairs"].new and not by_table["order_ids"].new
    assert by_table["order_ids"].strongest_lock == "ACCESS EXCLUSIVE"
    assert {"orders", "users", "pairs", "order_ids"} <= tables_touched(pending, "postgresql", history=history)


_PER_REVISION = ("with connectable.connect() as connection:\n    context.configure(connection=connection)\n"
                 "    with context.begin_transaction():\n        context.run_migrations()\n")
_ASYNC = "async def run():\n    async with engine.{}() as connection:\n        await connection.run_sync(go)\n"


@pytest.mark.parametrize(("source", "found"), [
    (_PER_REVISION, None),
    (_PER_REVISION.replace("connect()", "begin()"), "line 1"),
    (_ASYNC.format("begin"), "line 2"),
    (_ASYNC.format("connect"), None),
    ("with engine.begin() as conn:\n    conn.execute(text('SELECT 1'))\n", None),  # not around the migrations
    ("def broken(:\n", None),
])
def test_env_py_holding_one_transaction_around_the_migrations_is_read_from_its_source(
        tmp_path, source: str, found: str | None) -> None:
    from dbguard.migrations.envpy import one_transaction

    env_py = tmp_path / "env.py"
    env_py.write_text(source)
    seen = one_transaction(env_py)
    assert (seen is None) if found is None else (seen is not None and seen.startswith(found)), seen


def test_only_a_tables_first_fulltext_index_is_predicted_to_rebuild_it() -> None:
    """Verified on MariaDB 10.11 (INNODB_SYS_TABLES.TABLE_ID): the first FULLTEXT index gives the table
    a new id (InnoDB adds FTS_DOC_ID), a second does not; both need LOCK=SHARED."""
    from dbguard.risk.model import ServerInfo
    from dbguard.risk.plan import analyse

    class Rev:
        def __init__(self, revision: str, statements: list[str]) -> None:
            self.revision, self.statements, self.notes, self.error = revision, statements, (), None

    server = ServerInfo(engine="mysql", flavor="mariadb", version=(10, 11, 0), version_text="10.11.0-MariaDB")
    history = [Rev("h", ["CREATE TABLE posts (id INTEGER NOT NULL PRIMARY KEY, body TEXT, title TEXT)"])]
    plans, _ = analyse([Rev("p1", ["CREATE FULLTEXT INDEX ft_body ON posts (body)"]),
                        Rev("p2", ["CREATE FULLTEXT INDEX ft_title ON posts (title)"])], server, history=history)
    first, second = ({t[0]: t for t in p.table_algorithms}["posts"] for p in plans)
    assert first[1:] == ("INPLACE", True, True) and second[1:] == ("INPLACE", True, False), (first, second)
    assert "first FULLTEXT index rebuilds it" in plans[0].findings[0].message


# A routine's compound body stays whole, however its blocks nest and end (END IF, END CASE, CASE
# expressions, labels); the statement after it is one of its own.
NESTED_ROUTINE = ("CREATE DEFINER=`root`@`%` PROCEDURE p() lbl: BEGIN DECLARE x INT DEFAULT 0; "
                  "IF x = 0 THEN BEGIN SET x = CASE WHEN x > 1 THEN 2 ELSE 3 END; END; ELSE SELECT 1; END IF; "
                  "CASE x WHEN 1 THEN SELECT 2; END CASE; END lbl")
TRIGGER = "CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; END"
PLPGSQL = "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql"
CASE_UPDATE = "UPDATE t SET a = CASE WHEN b THEN 1 ELSE 2 END"


@pytest.mark.parametrize(("sql", "expected"), [
    (f"{NESTED_ROUTINE}; CALL p()", [NESTED_ROUTINE, "CALL p()"]),
    (f"{TRIGGER}; SELECT 1", [TRIGGER, "SELECT 1"]),
    # BEGIN and END outside a routine definition end nothing early or late.
    (f"BEGIN; {CASE_UPDATE}; COMMIT", ["BEGIN", CASE_UPDATE, "COMMIT"]),
    ("SELECT 'BEGIN'; SELECT legend FROM t WHERE begin_at > 1", ["SELECT 'BEGIN'", "SELECT legend FROM t WHERE begin_at > 1"]),
    (f"{PLPGSQL}; SELECT 1", [PLPGSQL, "SELECT 1"]),
])
def test_statements_split_around_a_stored_routine_body(sql: str, expected: list[str]) -> None:
    from dbguard.risk.parse import split_statements

    assert split_statements(sql) == expected
