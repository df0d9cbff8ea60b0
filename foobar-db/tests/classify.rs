//! The statement classifier against a table of statements: routes, session
//! pins, reasons, transaction effects, hints, SQL modes, and a seeded fuzz
//! loop that feeds it random and truncated input.

use foobar_db::classify::{classify, classify_with, Classification, Reason, Route, SqlMode};

const P: Route = Route::Primary;
const R: Route = Route::Replica;
const PIN: bool = true;
const NO: bool = false;

/// One row: the SQL, where it goes, whether it pins the session, and why.
struct Row {
    sql: &'static str,
    route: Route,
    pins: bool,
    reason: Reason,
}

const fn row(sql: &'static str, route: Route, pins: bool, reason: Reason) -> Row {
    Row {
        sql,
        route,
        pins,
        reason,
    }
}

use Reason::{
    Hint, LockingRead, NamedLock, Read, ReadOnlyTransaction, SelectInto, Sequence, SessionFunction,
    SessionState, Transaction, Unknown, Write, WriterStatus,
};

#[rustfmt::skip]
const ROUTES: &[Row] = &[
    // Plain reads.
    row("SELECT 1", R, NO, Read),
    row("select * from users where id = ?", R, NO, Read),
    row("SELECT a, b FROM t1 JOIN t2 USING (id) WHERE c IN (1, 2, 3) ORDER BY a LIMIT 10", R, NO, Read),
    row("Select Count(*) From t", R, NO, Read),
    row("SELECT ?, ? FROM t WHERE a = ? AND b > ?", R, NO, Read),
    row("SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = 1)", R, NO, Read),
    row("SELECT EXISTS(SELECT 1 FROM t WHERE x = 1)", R, NO, Read),
    row("SELECT a FROM t UNION ALL SELECT b FROM u", R, NO, Read),
    row("(SELECT 1) UNION (SELECT 2)", R, NO, Read),
    row("((SELECT a FROM t))", R, NO, Read),
    row("SELECT * FROM information_schema.tables", R, NO, Read),
    row("SELECT JSON_EXTRACT(doc, '$.a') FROM t", R, NO, Read),
    row("SELECT SLEEP(0)", R, NO, Read),
    row("SELECT @x", R, NO, Read),
    row("SELECT @x = 1", R, NO, Read),
    row("SELECT @@version, @@session.sql_mode, @@global.read_only", R, NO, Read),
    row("SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2024-01-01 00:00:00'", R, NO, Read),
    row("VALUES (1, 2), (3, 4)", R, NO, Read),
    row("TABLE t", R, NO, Read),
    row("HELP 'SELECT'", R, NO, Read),
    row("SELECT 1;", R, NO, Read),
    row(";;SELECT 1;;", R, NO, Read),
    row("SELECT 1; SELECT 2", R, NO, Read),
    row("SELECT 1;\nSELECT 2;\n", R, NO, Read),
    // Words that only look like markers.
    row("SELECT 'FOR UPDATE'", R, NO, Read),
    row("SELECT \"FOR UPDATE\" FROM t", R, NO, Read),
    row("SELECT `for` FROM t", R, NO, Read),
    row("SELECT `update` FROM `delete`", R, NO, Read),
    row("SELECT * FROM t /* FOR UPDATE */", R, NO, Read),
    row("SELECT * FROM t -- FOR UPDATE", R, NO, Read),
    row("SELECT * FROM t # FOR UPDATE", R, NO, Read),
    row("SELECT * FROM t /*+ FOR UPDATE */", R, NO, Read),
    row("SELECT 'it''s FOR UPDATE' FROM t", R, NO, Read),
    row("SELECT 'a\\' FOR UPDATE' FROM t", R, NO, Read),
    row("SELECT \"a\\\" FOR UPDATE\" FROM t", R, NO, Read),
    row("SELECT \"a\"\" FOR UPDATE\" FROM t", R, NO, Read),
    row("SELECT `a``FOR UPDATE` FROM t", R, NO, Read),
    row("SELECT 1 FROM t WHERE c = '\\\\' AND d = 2", R, NO, Read),
    row("SELECT 'LAST_INSERT_ID()', 'GET_LOCK(1)', '@x := 1'", R, NO, Read),
    row("SELECT `last_insert_id`() FROM t", R, NO, Read),
    row("SELECT for_update, into_x, last_insert_id, nextval FROM t", R, NO, Read),
    row("SELECT t.last_insert_id, t.get_lock FROM t", R, NO, Read),
    row("SELECT a AS `FOR UPDATE` FROM t", R, NO, Read),
    row("SELECT \"it's\" FROM t WHERE b = 'say \"hi\"'", R, NO, Read),
    row("SELECT * FROM t WHERE a = /* ; INSERT INTO t VALUES (1) */ 1", R, NO, Read),
    row("SELECT * FROM t WHERE a = 'x;y'; SELECT 2", R, NO, Read),
    row("SELECT 1 /* mentions master and primary */", R, NO, Read),
    row("SELECT '/* foobar:primary */'", R, NO, Read),
    row("SELECT `-- foobar:primary` FROM t", R, NO, Read),
    row("SELECT 1--1", R, NO, Read),
    // Comments and executable comments.
    row("/* leading */ SELECT 1", R, NO, Read),
    row("-- leading\nSELECT 1", R, NO, Read),
    row("# leading\nSELECT 1", R, NO, Read),
    row("SELECT/**/1", R, NO, Read),
    row("SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t", R, NO, Read),
    row("SELECT /*!40001 SQL_NO_CACHE */ * FROM t", R, NO, Read),
    row("SELECT /*M!100100 1, */ 2", R, NO, Read),
    row("/*!50700 SELECT 1 */", R, NO, Read),
    // Literals and unicode.
    row("SELECT X'4D7953514C', x'0a', B'0101', b'1', 0x1F, 0b11, 1.5e-3, .5", R, NO, Read),
    row("SELECT N'abc', _utf8mb4'x' COLLATE utf8mb4_bin", R, NO, Read),
    row("SELECT café FROM tëst WHERE nom = 'Zoë — FOR UPDATE'", R, NO, Read),
    row("SELECT '日本語', `列` FROM `表` WHERE 名前 = ?", R, NO, Read),
    row("SELECT \"🙂 FOR UPDATE\"", R, NO, Read),
    row("SELECT 'ünïcödé\\' FOR UPDATE'", R, NO, Read),
    // SHOW, DESCRIBE, EXPLAIN.
    row("SHOW TABLES", R, NO, Read),
    row("show full processlist", R, NO, Read),
    row("SHOW CREATE TABLE t", R, NO, Read),
    row("SHOW VARIABLES LIKE 'autocommit'", R, NO, Read),
    row("SHOW GLOBAL STATUS LIKE 'Questions'", R, NO, Read),
    row("SHOW SLAVE STATUS", R, NO, Read),
    row("SHOW COLUMNS FROM t LIKE 'warnings'", R, NO, Read),
    row("DESCRIBE users", R, NO, Read),
    row("DESC `order`", R, NO, Read),
    row("DESCRIBE db.users", R, NO, Read),
    row("EXPLAIN users", R, NO, Read),
    row("EXPLAIN SELECT * FROM t", R, NO, Read),
    row("EXPLAIN FORMAT=JSON SELECT 1", R, NO, Read),
    row("EXPLAIN EXTENDED SELECT 1", R, NO, Read),
    row("EXPLAIN ANALYZE SELECT * FROM t", R, NO, Read),
    row("DESCRIBE SELECT * FROM t", R, NO, Read),
    row("ANALYZE FORMAT=JSON SELECT * FROM t", R, NO, Read),
    row("ANALYZE SELECT * FROM t", R, NO, Read),
    // CTEs.
    row("WITH cte AS (SELECT 1 AS a) SELECT * FROM cte", R, NO, Read),
    row("WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT n FROM r", R, NO, Read),
    row("WITH a AS (SELECT 1), b AS (SELECT 2) SELECT * FROM a, b", R, NO, Read),
    row("WITH a AS (SELECT 1) (SELECT * FROM a)", R, NO, Read),
    row("with `update` as (select 1) select * from `update`", R, NO, Read),
    row("WITH a (x, y) AS (SELECT 1, 2) SELECT x FROM a", R, NO, Read),
    row("EXPLAIN WITH a AS (SELECT 1) SELECT * FROM a", R, NO, Read),
    row("(WITH a AS (SELECT 1) SELECT * FROM a)", R, NO, Read),
    // Read-only transactions and per-statement settings.
    row("START TRANSACTION READ ONLY", R, NO, ReadOnlyTransaction),
    row("start transaction read only, with consistent snapshot", R, NO, ReadOnlyTransaction),
    row("START TRANSACTION READ ONLY; SELECT 1", R, NO, ReadOnlyTransaction),
    row("SET STATEMENT max_statement_time = 1 FOR SELECT * FROM t", R, NO, Read),

    // Writes and everything else.
    row("INSERT INTO t VALUES (1)", P, NO, Write),
    row("insert into t select * from u", P, NO, Write),
    row("INSERT INTO t VALUES ('SELECT')", P, NO, Write),
    row("INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 1", P, NO, Write),
    row("/* SELECT */ INSERT INTO t VALUES (1)", P, NO, Write),
    row("UPDATE t SET a = 1", P, NO, Write),
    row("DELETE FROM t WHERE id = ?", P, NO, Write),
    row("REPLACE INTO t VALUES (1)", P, NO, Write),
    row("LOAD DATA INFILE '/tmp/x' INTO TABLE t", P, NO, Write),
    row("TRUNCATE TABLE t", P, NO, Write),
    row("CREATE TABLE t (id INT, `begin` INT)", P, NO, Write),
    row("ALTER TABLE t ADD COLUMN x INT", P, NO, Write),
    row("DROP TABLE t", P, NO, Write),
    row("RENAME TABLE a TO b", P, NO, Write),
    row("GRANT SELECT ON db.* TO 'u'@'%'", P, NO, Write),
    row("CALL p(1)", P, NO, Write),
    row("DO 1", P, NO, Write),
    row("OPTIMIZE TABLE t", P, NO, Write),
    row("ANALYZE TABLE t", P, NO, Write),
    row("ANALYZE NO_WRITE_TO_BINLOG TABLE t", P, NO, Write),
    row("KILL 42", P, NO, Write),
    row("START SLAVE", P, NO, Write),
    row("EXPLAIN UPDATE t SET a = 1", P, NO, Write),
    row("EXPLAIN DELETE FROM t", P, NO, Write),
    row("ANALYZE UPDATE t SET a = 1", P, NO, Write),
    row("/*!40000 ALTER TABLE t DISABLE KEYS */", P, NO, Write),
    row("WITH a AS (SELECT 1) UPDATE t SET x = 1", P, NO, Write),
    row("WITH a AS (SELECT id FROM t) DELETE FROM u WHERE id IN (SELECT id FROM a)", P, NO, Write),
    row("WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a", P, NO, Write),
    row("SELECT 1; INSERT INTO t VALUES (1)", P, NO, Write),
    row("SELECT 1 FROM DUAL; UPDATE t SET a = 1; SELECT 2", P, NO, Write),
    row("SELECT ';'; DELETE FROM t", P, NO, Write),
    row("CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END", P, NO, Write),
    row("CREATE DEFINER=`root`@`localhost` TRIGGER trg BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; END", P, NO, Write),
    row("BEGIN NOT ATOMIC SELECT 1; SET @x = 1; END", P, PIN, Write),
    row("SET STATEMENT max_statement_time = 1 FOR UPDATE t SET a = 1", P, NO, Write),
    row("SET GLOBAL max_connections = 100", P, NO, Write),
    row("SET @@global.read_only = 1", P, NO, Write),
    row("SET PERSIST max_connections = 100", P, NO, Write),
    row("SET GLOBAL a = 1, b = 2", P, NO, Write),
    row("SET GLOBAL autocommit = 0", P, NO, Write),
    row("SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED", P, NO, Write),
    row("SET PASSWORD = 'x'", P, NO, Write),
    row("SET PASSWORD FOR 'u'@'h' = PASSWORD('x')", P, NO, Write),
    row("SET DEFAULT ROLE admin FOR u", P, NO, Write),
    row("FLUSH PRIVILEGES", P, NO, Write),
    row("INSERT INTO t VALUES (NEXT VALUE FOR s)", P, NO, Write),

    // Locking reads.
    row("SELECT * FROM t WHERE id = 1 FOR UPDATE", P, NO, LockingRead),
    row("select * from t for update nowait", P, NO, LockingRead),
    row("SELECT * FROM t FOR UPDATE SKIP LOCKED", P, NO, LockingRead),
    row("SELECT * FROM t FOR UPDATE OF t WAIT 5", P, NO, LockingRead),
    row("SELECT * FROM t FOR SHARE", P, NO, LockingRead),
    row("SELECT * FROM t LOCK IN SHARE MODE", P, NO, LockingRead),
    row("SELECT * FROM t /*!50000 FOR UPDATE */", P, NO, LockingRead),
    row("SELECT * FROM t /*!FOR UPDATE*/", P, NO, LockingRead),
    row("SELECT * FROM t FOR/* c */UPDATE", P, NO, LockingRead),
    row("SELECT * FROM t FOR -- c\n UPDATE", P, NO, LockingRead),
    row("SELECT * FROM (SELECT * FROM t FOR UPDATE) x", P, NO, LockingRead),
    row("WITH c AS (SELECT * FROM t FOR UPDATE) SELECT * FROM c", P, NO, LockingRead),
    row("SELECT 1--1 FOR UPDATE", P, NO, LockingRead),
    row("SELECT * FROM t WHERE a = 'x' FOR UPDATE", P, NO, LockingRead),
    row("(SELECT * FROM t) FOR UPDATE", P, NO, LockingRead),
    row("SELECT 1; SELECT * FROM t FOR UPDATE", P, NO, LockingRead),
    row("SELECT * FROM t WHERE a = '\\'' FOR UPDATE", P, NO, LockingRead),

    // SELECT … INTO.
    row("SELECT * INTO OUTFILE '/tmp/x' FROM t", P, NO, SelectInto),
    row("SELECT * FROM t INTO DUMPFILE '/tmp/y'", P, NO, SelectInto),
    row("SELECT a INTO @a FROM t", P, PIN, SelectInto),
    row("SELECT a, b FROM t INTO @a, @b", P, PIN, SelectInto),

    // Functions and variables bound to one connection.
    row("SELECT LAST_INSERT_ID()", P, NO, SessionFunction),
    row("select last_insert_id ( )", P, NO, SessionFunction),
    row("SELECT ROW_COUNT()", P, NO, SessionFunction),
    row("SELECT FOUND_ROWS()", P, NO, SessionFunction),
    row("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10", P, NO, SessionFunction),
    row("SELECT @@identity", P, NO, SessionFunction),
    row("SELECT @@IDENTITY", P, NO, SessionFunction),
    row("SELECT @@last_insert_id", P, NO, SessionFunction),
    row("SELECT @@session.last_insert_id", P, NO, SessionFunction),
    row("SELECT @@last_gtid", P, NO, SessionFunction),
    row("SELECT @@warning_count, @@error_count", P, NO, SessionFunction),
    row("SELECT * FROM t WHERE id = LAST_INSERT_ID()", P, NO, SessionFunction),
    row("SHOW WARNINGS", P, NO, SessionFunction),
    row("SHOW ERRORS LIMIT 1", P, NO, SessionFunction),
    row("SHOW COUNT(*) WARNINGS", P, NO, SessionFunction),
    row("SHOW PROFILES", P, NO, SessionFunction),

    // Named locks.
    row("SELECT GET_LOCK('job', 10)", P, PIN, NamedLock),
    row("SELECT get_lock /* why */ ('job', 10)", P, PIN, NamedLock),
    row("SELECT RELEASE_LOCK('job')", P, NO, NamedLock),
    row("SELECT RELEASE_ALL_LOCKS()", P, NO, NamedLock),
    row("SELECT IS_FREE_LOCK('job')", P, NO, NamedLock),
    row("SELECT IS_USED_LOCK('job')", P, NO, NamedLock),
    row("DO GET_LOCK('x', 0)", P, PIN, Write),

    // Sequences.
    row("SELECT NEXTVAL(s)", P, NO, Sequence),
    row("SELECT NEXT VALUE FOR s", P, NO, Sequence),
    row("SELECT PREVIOUS VALUE FOR s", P, NO, Sequence),
    row("SELECT LASTVAL(s)", P, NO, Sequence),
    row("SELECT SETVAL(s, 100)", P, NO, Sequence),
    row("SELECT s.nextval", P, NO, Sequence),
    row("SELECT s.currval", P, NO, Sequence),

    // The writer's replication state.
    row("SHOW MASTER STATUS", P, NO, WriterStatus),
    row("SHOW BINARY LOGS", P, NO, WriterStatus),
    row("SHOW BINLOG EVENTS", P, NO, WriterStatus),

    // Session state.
    row("SET NAMES utf8mb4", P, PIN, SessionState),
    row("/*!40101 SET NAMES utf8 */", P, PIN, SessionState),
    row("/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;", P, PIN, SessionState),
    row("/*!40103 SET TIME_ZONE='+00:00' */", P, PIN, SessionState),
    row("SET @x = 1", P, PIN, SessionState),
    row("SET @x := 1", P, PIN, SessionState),
    row("SET @`odd name` = 1", P, PIN, SessionState),
    row("SELECT @x := 1", P, PIN, SessionState),
    row("SELECT @row := @row + 1 AS n FROM t", P, PIN, SessionState),
    row("SELECT @'quoted' := 2", P, PIN, SessionState),
    row("UPDATE t SET a = (@x := a)", P, PIN, Write),
    row("SET sql_mode = 'ANSI'", P, PIN, SessionState),
    row("SET sql_mode = CONCAT(@@sql_mode, ',ANSI'), time_zone = '+00:00'", P, PIN, SessionState),
    row("SET SESSION sql_mode = ''", P, PIN, SessionState),
    row("SET @@session.time_zone = '+00:00'", P, PIN, SessionState),
    row("SET @@time_zone = '+00:00'", P, PIN, SessionState),
    row("SET LOCAL wait_timeout = 10", P, PIN, SessionState),
    row("SET CHARACTER SET utf8", P, PIN, SessionState),
    row("SET ROLE admin", P, PIN, SessionState),
    row("SET GLOBAL a = 1, SESSION b = 2", P, PIN, SessionState),
    row("SET GLOBAL a = 1, @x = 2", P, PIN, SessionState),
    row("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE", P, PIN, SessionState),
    row("SET STATEMENT x = 1 FOR SELECT @y := 1", P, PIN, SessionState),
    row("SELECT * FROM t; SET NAMES utf8", P, PIN, SessionState),
    row("CREATE TEMPORARY TABLE tmp (id INT)", P, PIN, SessionState),
    row("create or replace temporary table tmp as select 1", P, PIN, SessionState),
    row("DROP TEMPORARY TABLE IF EXISTS tmp", P, PIN, SessionState),
    row("LOCK TABLES t WRITE, u READ", P, PIN, SessionState),
    row("UNLOCK TABLES", P, PIN, SessionState),
    row("FLUSH TABLES WITH READ LOCK", P, PIN, SessionState),
    row("FLUSH TABLES t FOR EXPORT", P, PIN, SessionState),
    row("PREPARE s FROM 'SELECT 1'", P, PIN, SessionState),
    row("EXECUTE s USING @a", P, NO, SessionState),
    row("DEALLOCATE PREPARE s", P, NO, SessionState),
    row("EXECUTE IMMEDIATE 'SET @x = 1'", P, PIN, SessionState),
    row("BACKUP LOCK t", P, PIN, SessionState),
    row("USE shop", P, PIN, SessionState),
    row("HANDLER t OPEN", P, PIN, SessionState),
    row("CALL p(@out)", P, PIN, SessionState),

    // Transaction control.
    row("BEGIN", P, NO, Transaction),
    row("begin work", P, NO, Transaction),
    row("START TRANSACTION", P, NO, Transaction),
    row("START TRANSACTION READ WRITE", P, NO, Transaction),
    row("START TRANSACTION WITH CONSISTENT SNAPSHOT", P, NO, Transaction),
    row("COMMIT", P, NO, Transaction),
    row("ROLLBACK", P, NO, Transaction),
    row("ROLLBACK TO SAVEPOINT a", P, NO, Transaction),
    row("SAVEPOINT a", P, NO, Transaction),
    row("RELEASE SAVEPOINT a", P, NO, Transaction),
    row("XA START 'x'", P, NO, Transaction),
    row("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", P, NO, Transaction),
    row("SET autocommit = 0", P, PIN, SessionState),

    // Unknown, empty and malformed input.
    row("", P, NO, Unknown),
    row("   \n\t ", P, NO, Unknown),
    row("/* only a comment */", P, NO, Unknown),
    row(";", P, NO, Unknown),
    row("FOO BAR", P, NO, Unknown),
    row("DELIMITER //", P, NO, Unknown),
    row("SELECT 'unterminated", P, NO, Unknown),
    row("SELECT \"unterminated FOR UPDATE", P, NO, Unknown),
    row("SELECT `unterminated", P, NO, Unknown),
    row("SELECT 'a\\'", P, NO, Unknown),
    row("SELECT * FROM t /* unterminated", P, NO, Unknown),
    row("/*!50700 SELECT 1", P, NO, Unknown),
    row("SELECT 1; SELECT 'x", P, NO, Unknown),
    row("SELECT (1", P, NO, Unknown),
    row("SELECT 1)", P, NO, Unknown),
    row("( )", P, NO, Unknown),
    row("EXPLAIN", P, NO, Unknown),
    row("EXPLAIN FOR CONNECTION 5", P, NO, Unknown),
    row("SHOW", P, NO, Unknown),
    row("WITH a AS (SELECT 1)", P, NO, Unknown),
    row("BEGIN SELECT", P, NO, Unknown),

    // Hints.
    row("/* foobar:primary */ SELECT 1", P, NO, Hint),
    row("SELECT 1 /* foobar:primary */", P, NO, Hint),
    row("-- foobar:primary\nSELECT 1", P, NO, Hint),
    row("SELECT 1 -- foobar:primary", P, NO, Hint),
    row("# foobar:primary\nSELECT 1", P, NO, Hint),
    row("/* FOOBAR:PRIMARY */ select 1", P, NO, Hint),
    row("/* foobar:replica */ SELECT LAST_INSERT_ID()", R, NO, Hint),
    row("/* foobar:replica */ INSERT INTO t VALUES (1)", R, NO, Hint),
    row("/* foobar:replica reporting job */ SELECT * FROM big", R, NO, Hint),
    row("/* foobar:replica */ /* foobar:primary */ SELECT 1", P, NO, Hint),
    row("/* foobar:replica */ SET NAMES utf8", R, PIN, Hint),
    row("/* master */ SELECT 1", R, NO, Read),
    row("/*+ foobar:primary */ SELECT 1", R, NO, Read),
    row("/* foobar:writer */ SELECT 1", R, NO, Read),
];

fn check(
    failures: &mut Vec<String>,
    sql: &str,
    what: &str,
    got: impl std::fmt::Debug,
    want: impl std::fmt::Debug,
) {
    let (got, want) = (format!("{got:?}"), format!("{want:?}"));
    if got != want {
        failures.push(format!("{sql:?}: {what} is {got}, expected {want}"));
    }
}

fn report(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn routes_pins_and_reasons_follow_the_table() {
    assert!(ROUTES.len() >= 150, "the table has {} rows", ROUTES.len());
    let mut failures = Vec::new();
    for row in ROUTES {
        let c = classify(row.sql);
        check(&mut failures, row.sql, "route", c.route, row.route);
        check(
            &mut failures,
            row.sql,
            "pins_session",
            c.pins_session,
            row.pins,
        );
        check(&mut failures, row.sql, "reason", c.reason, row.reason);
    }
    report(&failures);
}

#[test]
fn every_statement_that_pins_goes_to_the_primary_unless_hinted() {
    for row in ROUTES {
        let c = classify(row.sql);
        if c.pins_session && c.hint.is_none() {
            assert_eq!(c.route, Route::Primary, "{:?}", row.sql);
        }
    }
}

/// SQL, starts, ends, read-only, autocommit, sets the next transaction.
type TransactionRow = (&'static str, bool, bool, bool, Option<bool>, bool);

#[rustfmt::skip]
const TRANSACTIONS: &[TransactionRow] = &[
    ("SELECT 1", false, false, false, None, false),
    ("BEGIN", true, false, false, None, false),
    ("BEGIN WORK", true, false, false, None, false),
    ("START TRANSACTION", true, false, false, None, false),
    ("START TRANSACTION READ WRITE", true, false, false, None, false),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT", true, false, false, None, false),
    ("START TRANSACTION READ ONLY", true, false, true, None, false),
    ("START TRANSACTION READ ONLY, READ WRITE", true, false, false, None, false),
    ("COMMIT", false, true, false, None, false),
    ("COMMIT WORK AND NO CHAIN NO RELEASE", false, true, false, None, false),
    ("COMMIT AND CHAIN", true, true, false, None, false),
    ("ROLLBACK", false, true, false, None, false),
    ("ROLLBACK WORK AND CHAIN", true, true, false, None, false),
    ("ROLLBACK TO SAVEPOINT a", false, false, false, None, false),
    ("ROLLBACK WORK TO a", false, false, false, None, false),
    ("SAVEPOINT a", false, false, false, None, false),
    ("XA START 'x'", true, false, false, None, false),
    ("XA BEGIN 'x'", true, false, false, None, false),
    ("XA END 'x'", false, false, false, None, false),
    ("XA COMMIT 'x'", false, true, false, None, false),
    ("XA ROLLBACK 'x'", false, true, false, None, false),
    ("SET autocommit = 0", true, false, false, Some(false), false),
    ("SET autocommit=1", false, true, false, Some(true), false),
    ("set AUTOCOMMIT = OFF", true, false, false, Some(false), false),
    ("SET @@autocommit = ON", false, true, false, Some(true), false),
    ("SET SESSION autocommit = 0", true, false, false, Some(false), false),
    ("SET @@session.autocommit = FALSE", true, false, false, Some(false), false),
    ("SET autocommit = @saved", false, false, false, None, false),
    ("SET GLOBAL autocommit = 0", false, false, false, None, false),
    ("SET names utf8, autocommit = 0", true, false, false, Some(false), false),
    ("/*!40101 SET autocommit = 0 */", true, false, false, Some(false), false),
    ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", false, false, false, None, true),
    ("SET TRANSACTION READ ONLY", false, false, false, None, true),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; START TRANSACTION", true, false, false, None, false),
    ("BEGIN; INSERT INTO t VALUES (1); COMMIT", false, true, false, None, false),
    ("COMMIT; BEGIN", true, true, false, None, false),
    ("START TRANSACTION READ ONLY; SELECT 1", true, false, true, None, false),
    ("BEGIN NOT ATOMIC START TRANSACTION; COMMIT; END", false, false, false, None, false),
    ("CREATE PROCEDURE p() BEGIN START TRANSACTION; COMMIT; END", false, false, false, None, false),
    ("SELECT 'BEGIN'", false, false, false, None, false),
    ("/* BEGIN */ SELECT 1", false, false, false, None, false),
];

#[test]
fn transaction_effects_follow_the_table() {
    let mut failures = Vec::new();
    for &(sql, starts, ends, read_only, autocommit, next) in TRANSACTIONS {
        let c = classify(sql);
        check(
            &mut failures,
            sql,
            "starts_transaction",
            c.starts_transaction,
            starts,
        );
        check(
            &mut failures,
            sql,
            "ends_transaction",
            c.ends_transaction,
            ends,
        );
        check(
            &mut failures,
            sql,
            "read_only_transaction",
            c.read_only_transaction,
            read_only,
        );
        check(&mut failures, sql, "autocommit", c.autocommit, autocommit);
        check(
            &mut failures,
            sql,
            "sets_next_transaction",
            c.sets_next_transaction,
            next,
        );
    }
    report(&failures);
}

#[test]
fn hints_are_reported_and_counted_statements_are_right() {
    let c = classify("/* foobar:replica */ SELECT 1; SELECT 2;; SELECT 3");
    assert_eq!(
        (c.hint, c.route, c.statements),
        (Some(Route::Replica), Route::Replica, 3)
    );
    let c = classify("SELECT 1");
    assert_eq!((c.hint, c.statements), (None, 1));
    assert_eq!(classify("").statements, 0);
    assert_eq!(
        classify("CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END; SELECT 3").statements,
        1
    );
    assert_eq!(Route::Replica.as_str(), "replica");
    assert_eq!(Reason::LockingRead.as_str(), "locking_read");
}

#[test]
fn sql_mode_decides_how_quotes_are_read() {
    // Default mode: the backslash escapes the quote, everything after is string.
    let sql = r"SELECT 'a\' FOR UPDATE -- '";
    assert_eq!(classify(sql).route, Route::Replica);
    let nbe = SqlMode::new().no_backslash_escapes(true);
    let c = classify_with(sql, nbe);
    assert_eq!((c.route, c.reason), (Route::Primary, Reason::LockingRead));

    let sql = r#"SELECT "a\" FOR UPDATE -- ""#;
    assert_eq!(classify(sql).route, Route::Replica);
    let ansi = SqlMode::new().ansi_quotes(true);
    let c = classify_with(sql, ansi);
    assert_eq!((c.route, c.reason), (Route::Primary, Reason::LockingRead));
    // Under ANSI_QUOTES "…" is an identifier, still never a keyword.
    assert_eq!(
        classify_with(r#"SELECT "for" FROM t"#, ansi).route,
        Route::Replica
    );
}

/// A small seeded xorshift generator: reproducible without dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Properties every classification has, whatever the input.
fn assert_sane(sql: &str, c: &Classification) {
    if c.pins_session && c.hint.is_none() {
        assert_eq!(c.route, Route::Primary, "pinned but not primary: {sql:?}");
    }
    if c.route == Route::Replica && c.hint.is_none() {
        assert!(
            matches!(c.reason, Reason::Read | Reason::ReadOnlyTransaction),
            "{sql:?}: {c:?}"
        );
    }
    if c.read_only_transaction {
        assert!(c.starts_transaction, "{sql:?}");
    }
    assert!(
        c.statements as usize <= sql.matches(';').count() + 1,
        "{sql:?}"
    );
}

#[test]
fn truncated_statements_never_panic() {
    for row in ROUTES {
        for (end, _) in row.sql.char_indices() {
            let sql = &row.sql[..end];
            assert_sane(sql, &classify(sql));
        }
    }
}

#[test]
fn random_input_never_panics() {
    const PIECES: &[&str] = &[
        "SELECT",
        "select",
        " ",
        " ",
        "\n",
        "FOR",
        "UPDATE",
        "'",
        "\"",
        "`",
        "\\",
        "--",
        "-- ",
        "#",
        "/*",
        "*/",
        "/*!",
        "/*!50700",
        "/*M!",
        "/*+",
        "(",
        ")",
        ";",
        ",",
        ".",
        "@",
        "@@",
        ":=",
        "=",
        "?",
        "INTO",
        "@x",
        "SET",
        "WITH",
        "AS",
        "BEGIN",
        "NOT",
        "ATOMIC",
        "END",
        "START",
        "TRANSACTION",
        "READ",
        "ONLY",
        "EXPLAIN",
        "CREATE",
        "TEMPORARY",
        "PROCEDURE",
        "GET_LOCK",
        "NEXT",
        "VALUE",
        "0x",
        "X'",
        "1",
        "0",
        "autocommit",
        "GLOBAL",
        "STATEMENT",
        "é",
        "🙂",
        "foobar:primary",
        "foobar:replica",
        "LOCK",
        "IN",
        "SHARE",
        "*",
        "!",
        "M",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut sql = String::new();
    let mut bytes = Vec::new();
    for _ in 0..20_000 {
        sql.clear();
        for _ in 0..rng.below(40) {
            sql.push_str(PIECES[rng.below(PIECES.len())]);
        }
        assert_sane(&sql, &classify(&sql));
        assert_sane(
            &sql,
            &classify_with(
                &sql,
                SqlMode::new().no_backslash_escapes(true).ansi_quotes(true),
            ),
        );

        bytes.clear();
        for _ in 0..rng.below(64) {
            bytes.push(rng.next() as u8);
        }
        let lossy = String::from_utf8_lossy(&bytes);
        assert_sane(&lossy, &classify(&lossy));
    }
}

#[test]
fn deep_nesting_and_long_input_do_not_overflow() {
    let parens = "(".repeat(100_000) + "SELECT 1" + &")".repeat(100_000);
    assert_eq!(classify(&parens).route, Route::Replica);
    let explains = "EXPLAIN ".repeat(10_000) + "SELECT 1";
    assert_eq!(classify(&explains).route, Route::Primary);
    let statements = "SET STATEMENT a = 1 FOR ".repeat(10_000) + "SELECT 1";
    assert_eq!(classify(&statements).route, Route::Primary);
    let many = "SELECT 1;".repeat(100_000);
    assert_eq!(classify(&many).statements, 100_000);
    let long_word = "a".repeat(1_000_000);
    assert_eq!(classify(&long_word).route, Route::Primary);
}

/// The fields a rewrite that keeps the meaning must not change.
fn outcome(c: &Classification) -> (Route, Reason, bool, bool, bool, Option<Route>) {
    (
        c.route,
        c.reason,
        c.pins_session,
        c.starts_transaction,
        c.ends_transaction,
        c.hint,
    )
}

#[test]
fn keyword_case_does_not_matter() {
    for row in ROUTES {
        let want = outcome(&classify(row.sql));
        assert_eq!(
            outcome(&classify(&row.sql.to_lowercase())),
            want,
            "{:?}",
            row.sql
        );
        assert_eq!(
            outcome(&classify(&row.sql.to_uppercase())),
            want,
            "{:?}",
            row.sql
        );
    }
}

#[test]
fn comments_between_tokens_do_not_matter() {
    for row in ROUTES {
        // Rows that play with comments or quotes would have them cut apart.
        if ["/*", "--", "#", "'", "\"", "`"]
            .iter()
            .any(|s| row.sql.contains(s))
        {
            continue;
        }
        let want = outcome(&classify(row.sql));
        for comment in [" /* FOR UPDATE; INSERT */ ", " -- x;\n", "\t# '\n"] {
            let sql = row.sql.replace(' ', comment);
            assert_eq!(outcome(&classify(&sql)), want, "{sql:?}");
        }
    }
}
