"""A schema-only dump split as psql and the mysql client split it (dbguard.core.sqlscript): no database."""

from __future__ import annotations

import pytest

from dbguard.core.sqlscript import ScriptError, split_script

PG_DUMP = """--
-- PostgreSQL database dump
--

\\restrict Qx9abc

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

CREATE FUNCTION public.touch() RETURNS trigger
    LANGUAGE plpgsql
    AS $fn$ BEGIN NEW.note := 'a;b'; RETURN NEW; END; $fn$;

CREATE TABLE public."we;ird" (
    id integer NOT NULL, -- a comment; with a semicolon
    note text DEFAULT 'it''s; quoted'
);

/* a block ; comment */
\\unrestrict Qx9abc
"""


def test_a_pg_dump_splits_at_the_semicolons_that_end_statements() -> None:
    statements = split_script(PG_DUMP, "postgresql")
    assert [s.line for s in statements] == [7, 8, 10, 14]
    assert statements[0].text.endswith("\nSET statement_timeout = 0")  # the comments before it ride along
    assert statements[2].text.endswith("RETURN NEW; END; $fn$")
    assert "'it''s; quoted'" in statements[3].text


@pytest.mark.parametrize(("text", "line", "what"), [
    ("SELECT 1;\n\\connect other\n", 2, "meta-command"),
    ("CREATE TABLE t (a int);\n\nCOPY public.t (a) FROM stdin;\n1\n\\.\n", 3, "COPY"),
    ("-- header\n\\set ON_ERROR_STOP on\n", 2, "meta-command"),
])
def test_what_only_psql_can_do_is_refused_with_its_line(text: str, line: int, what: str) -> None:
    with pytest.raises(ScriptError) as refused:
        split_script(text, "postgresql")
    assert refused.value.line == line and what in str(refused.value)


MYSQL_DUMP = """/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
-- MariaDB dump
# a hash comment; not a statement
CREATE TABLE `t;x` (
  `a` varchar(10) DEFAULT 'x\\';y',
  PRIMARY KEY (`a`)
) ENGINE=InnoDB;
DELIMITER ;;
CREATE TRIGGER tr BEFORE INSERT ON `t;x` FOR EACH ROW BEGIN SET NEW.a = 'q'; END ;;
DELIMITER ;
SELECT 1;
"""


def test_a_mysqldump_keeps_executable_comments_and_follows_delimiter() -> None:
    statements = split_script(MYSQL_DUMP, "mysql")
    assert [s.line for s in statements] == [1, 4, 9, 11]
    assert statements[0].text.startswith("/*!40101")
    assert statements[1].text.endswith("ENGINE=InnoDB") and "'x\\';y'" in statements[1].text
    assert statements[2].text.endswith("SET NEW.a = 'q'; END")


def test_dollar_signs_that_open_no_quote_and_trailing_text() -> None:
    statements = split_script("SELECT price$ FROM t;\nSELECT 2", "postgresql")
    assert [s.text for s in statements] == ["SELECT price$ FROM t", "SELECT 2"]
