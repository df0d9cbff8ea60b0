//! The SQL statement classifier.
//!
//! It runs on every query an application sends, so no input may make it
//! panic, under any SQL mode. Its route must not change with layout:
//! statements built from a vocabulary of SQL words and literals are
//! classified once with single spaces between the words and once with
//! other whitespace and ordinary comments there, and both answers must be
//! the same. An arbitrary string keeps its classification with blanks
//! before and after it.

use foobar_db::classify::{classify_with, SqlMode};

use crate::Input;

/// Words, literals and whole comments. None is left open (a quote or
/// comment that would swallow what follows), so that a separator never
/// lands inside one.
const VOCABULARY: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "FROM",
    "WHERE",
    "INTO",
    "VALUES",
    "FOR",
    "SHARE",
    "LOCK",
    "IN",
    "MODE",
    "OUTFILE",
    "DUMPFILE",
    "SET",
    "GLOBAL",
    "SESSION",
    "PERSIST",
    "TRANSACTION",
    "READ",
    "ONLY",
    "WRITE",
    "START",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "AND",
    "CHAIN",
    "NO",
    "RELEASE",
    "SAVEPOINT",
    "TO",
    "WITH",
    "AS",
    "UNION",
    "TABLE",
    "SHOW",
    "WARNINGS",
    "MASTER",
    "STATUS",
    "EXPLAIN",
    "ANALYZE",
    "DESCRIBE",
    "DESC",
    "CALL",
    "DO",
    "USE",
    "CREATE",
    "TEMPORARY",
    "DROP",
    "UNLOCK",
    "TABLES",
    "FLUSH",
    "PREPARE",
    "EXECUTE",
    "IMMEDIATE",
    "DEALLOCATE",
    "HANDLER",
    "XA",
    "autocommit",
    "NAMES",
    "utf8mb4",
    "LAST_INSERT_ID",
    "ROW_COUNT",
    "FOUND_ROWS",
    "GET_LOCK",
    "RELEASE_LOCK",
    "NEXTVAL",
    "NEXT",
    "VALUE",
    "SQL_CALC_FOUND_ROWS",
    "PROCEDURE",
    "END",
    "NOT",
    "ATOMIC",
    "STATEMENT",
    "OR",
    "HELP",
    "CONSISTENT",
    "SNAPSHOT",
    "WORK",
    "COUNT",
    "ERRORS",
    "PASSWORD",
    "DEFAULT",
    "ROLE",
    "t",
    "x",
    "id",
    "seq",
    "nextval",
    "(",
    ")",
    ",",
    ";",
    "=",
    ":=",
    ".",
    "*",
    "+",
    "-",
    "?",
    "0",
    "1",
    "42",
    "1.5e3",
    "0x1F",
    "X'0A'",
    "@x",
    "@@identity",
    "@@session.autocommit",
    "@@last_insert_id",
    "@@global.x",
    "'FOR UPDATE'",
    "'it''s'",
    "\"str\"",
    "`t`",
    "`for`",
    "/* c */",
    "/* foobar:primary */",
    "/* foobar:replica */",
    "/*+ MAX_EXECUTION_TIME(1) */",
    "/*!40101 SET NAMES utf8 */",
    "/*M!100100 SELECT 1 */",
    "-- foobar:primary\n",
];

/// What may stand between two words instead of one space.
const SEPARATORS: &[&str] = &[
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\x0b",
    "\x0c",
    " /* c */ ",
    " /**/ ",
    " /* ; */ ",
    " -- c\n",
    " --\t\n",
    " # c\n",
    " #\n",
    "\n\n\t ",
];

fn mode(byte: u8) -> SqlMode {
    SqlMode::new()
        .no_backslash_escapes(byte & 1 == 1)
        .ansi_quotes(byte & 2 == 2)
}

pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = mode(input.byte());
    if input.flag() {
        let words = input.below(24);
        let mut plain = String::new();
        let mut laid_out = String::new();
        for i in 0..words {
            let word = VOCABULARY[usize::from(input.byte()) % VOCABULARY.len()];
            let choice = usize::from(input.byte());
            if i > 0 {
                plain.push(' ');
                // About half the gaps keep their single space.
                laid_out.push_str(
                    SEPARATORS
                        .get(choice % (2 * SEPARATORS.len()))
                        .copied()
                        .unwrap_or(" "),
                );
            }
            plain.push_str(word);
            laid_out.push_str(word);
        }
        let a = classify_with(&plain, mode);
        let b = classify_with(&laid_out, mode);
        assert_eq!(
            a, b,
            "layout changed the classification\n{plain:?}\n{laid_out:?}"
        );
    } else {
        let sql = String::from_utf8_lossy(input.rest());
        let a = classify_with(&sql, mode);
        let b = classify_with(&format!(" \n\t{sql}\n "), mode);
        assert_eq!(
            a, b,
            "blanks around the input changed the classification\n{sql:?}"
        );
    }
}
