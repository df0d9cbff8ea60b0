//! Statement classification: where a SQL string may run, and what it does to
//! the session.
//!
//! [`classify`] reads a SQL string with a real MySQL/MariaDB lexer (comments,
//! strings, quoted identifiers, `/*! … */` executable comments, optimizer
//! hints, placeholders, several statements separated by `;`) and returns a
//! [`Classification`]: the [`Route`] (primary or replica), why, and whether
//! the statement pins the session to the primary or starts or ends a
//! transaction. Words inside strings, comments and quoted identifiers never
//! count: `SELECT 'FOR UPDATE'` is a plain read. The content of an
//! executable comment is code, as it is to the server:
//! `/*!40101 SET NAMES utf8 */` pins the session. It runs for every query:
//! one pass over the bytes, no allocation, no panic on any input.
//!
//! ```
//! use foobar_db::classify::{classify, Reason, Route};
//!
//! let read = classify("SELECT name FROM users WHERE id = ?");
//! assert_eq!(read.route, Route::Replica);
//!
//! let locking = classify("SELECT * FROM t WHERE id = 1 /* why */ FOR UPDATE");
//! assert_eq!((locking.route, locking.reason), (Route::Primary, Reason::LockingRead));
//!
//! let quoted = classify("SELECT 'FOR UPDATE', `for` FROM t -- FOR UPDATE");
//! assert_eq!(quoted.route, Route::Replica);
//!
//! let set = classify("/*!40101 SET NAMES utf8mb4 */");
//! assert!(set.pins_session);
//!
//! let hinted = classify("/* foobar:primary */ SELECT balance FROM accounts");
//! assert_eq!((hinted.route, hinted.hint), (Route::Primary, Some(Route::Primary)));
//! ```
//!
//! # Rules
//!
//! | statement | route | pins session | transaction |
//! |---|---|---|---|
//! | `SELECT`, `(SELECT …) UNION …`, `VALUES …`, `TABLE t`, `HELP` | replica | | |
//! | `WITH … SELECT` | replica | | |
//! | `SHOW …` (tables, columns, status, variables, create, …) | replica | | |
//! | `DESCRIBE t`, `DESC t`, `EXPLAIN t`, `EXPLAIN [ANALYZE\|FORMAT=…] SELECT …` | replica | | |
//! | a read with `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE` | primary (`LockingRead`) | | |
//! | a read with `INTO OUTFILE`/`DUMPFILE`/`@var` | primary (`SelectInto`) | with `INTO @var` | |
//! | a read calling `LAST_INSERT_ID()`, `ROW_COUNT()`, `FOUND_ROWS()`, using `SQL_CALC_FOUND_ROWS`, reading `@@identity`, `@@last_insert_id`, `@@insert_id`, `@@last_gtid`, `@@warning_count`, `@@error_count` | primary (`SessionFunction`) | | |
//! | `SHOW WARNINGS`, `SHOW ERRORS`, `SHOW COUNT(*) …`, `SHOW PROFILE[S]` | primary (`SessionFunction`) | | |
//! | `SHOW MASTER …`, `SHOW BINARY …`, `SHOW BINLOG …` | primary (`WriterStatus`) | | |
//! | a read calling `GET_LOCK()`, `RELEASE_LOCK()`, `RELEASE_ALL_LOCKS()`, `IS_FREE_LOCK()`, `IS_USED_LOCK()` | primary (`NamedLock`) | with `GET_LOCK` | |
//! | a read calling `NEXTVAL()`, `LASTVAL()`, `SETVAL()`, `NEXT VALUE FOR`, `PREVIOUS VALUE FOR`, `seq.nextval`/`.currval`/`.lastval` | primary (`Sequence`) | | |
//! | any statement with `@var := …` | primary (`SessionState`) | yes | |
//! | `WITH … INSERT/UPDATE/DELETE/REPLACE`, `EXPLAIN` of those, and every other statement (DML, DDL, `CALL`, `DO`, administration) | primary (`Write`) | `CALL p(@out)` | |
//! | `SET` of a session variable, `SET @x`, `SET NAMES`, `SET CHARACTER SET`, `SET ROLE`, `SET SESSION TRANSACTION …` | primary (`SessionState`) | yes | |
//! | `SET GLOBAL x = …` / `SET PERSIST …` (all assignments global), `SET PASSWORD`, `SET DEFAULT ROLE` | primary (`Write`) | | |
//! | `SET TRANSACTION …` (next transaction only) | primary (`Transaction`) | no: [`Classification::sets_next_transaction`] | |
//! | `SET STATEMENT … FOR <statement>` | as the inner statement | as the inner statement | |
//! | `SET autocommit = 0` / `= 1` | primary (`SessionState`) | yes | starts / ends; [`Classification::autocommit`] |
//! | `CREATE [OR REPLACE] TEMPORARY TABLE`, `DROP TEMPORARY TABLE` | primary (`SessionState`) | yes | |
//! | `LOCK TABLES`, `UNLOCK TABLES`, `FLUSH … WITH READ LOCK`, `FLUSH … FOR EXPORT` | primary (`SessionState`) | yes | |
//! | `PREPARE`, `EXECUTE IMMEDIATE`, `USE db`, `HANDLER`, `BACKUP LOCK`/`STAGE` | primary (`SessionState`) | yes | |
//! | `EXECUTE`, `DEALLOCATE PREPARE` | primary (`SessionState`) | | |
//! | `BEGIN [WORK]`, `START TRANSACTION [READ WRITE\|WITH CONSISTENT SNAPSHOT]`, `XA START` | primary (`Transaction`) | | starts |
//! | `START TRANSACTION READ ONLY[, WITH CONSISTENT SNAPSHOT]` | replica (`ReadOnlyTransaction`) | | starts, read-only |
//! | `COMMIT`, `ROLLBACK` `[AND NO CHAIN] [RELEASE]`, `XA COMMIT/ROLLBACK` | primary (`Transaction`) | | ends |
//! | `COMMIT AND CHAIN`, `ROLLBACK AND CHAIN` | primary (`Transaction`) | | ends, then starts |
//! | `SAVEPOINT`, `RELEASE SAVEPOINT`, `ROLLBACK TO [SAVEPOINT]` | primary (`Transaction`) | | |
//! | several statements | primary if any one needs it | if any pins | in order (see [`Classification`]) |
//! | empty input, unknown statements, unbalanced parentheses, an unterminated string, identifier or comment | primary (`Unknown`) | | |
//! | a `foobar:` hint comment | as the hint says (`Hint`) | unchanged | unchanged |
//!
//! Decisions worth knowing:
//! - **`SET TRANSACTION`** (no scope word) only configures the next
//!   transaction, so it does not pin the session, which would cost all read
//!   scaling to clients that set the isolation level before every
//!   transaction. It goes to the primary and sets
//!   [`Classification::sets_next_transaction`]: a router should run the next
//!   transaction, even a `READ ONLY` one, on the primary too.
//! - **`USE db`** pins: the default database is connection state. A router
//!   that replays the schema on replica connections may choose to ignore it.
//! - **`SET GLOBAL`** does not pin (it changes the server, not the session);
//!   a `SET` list pins as soon as one assignment reaches the session.
//! - **Transactions run on the primary**, except `START TRANSACTION READ
//!   ONLY`, which may run on a replica. `COMMIT`/`ROLLBACK` say primary; a
//!   router sends them wherever the open transaction lives.
//! - **Implicit commits** by DDL are not reported as ending a transaction;
//!   a router keeps routing to the primary until `COMMIT`, which is safe.
//! - **Stored functions** are opaque: `SELECT my_func()` goes to a replica
//!   even if the function writes. Use a hint for those.
//! - **Executable comments** count whatever their version number, so that a
//!   statement is never sent to a replica for a clause the server runs.
//! - `CREATE PROCEDURE/FUNCTION/TRIGGER/EVENT … BEGIN … END` and `BEGIN NOT
//!   ATOMIC … END` take the rest of the input as one statement, since their
//!   bodies contain `;`. `BEGIN NOT ATOMIC` runs its body at once, so it
//!   pins the session.
//!
//! # Hints
//!
//! A comment whose content starts with `foobar:primary` or `foobar:replica`
//! forces the route: `/* foobar:replica */ SELECT …`, `-- foobar:primary`,
//! `# foobar:primary`. Case does not matter; text after the route word is
//! ignored (`/* foobar:replica reporting */`). It may sit anywhere in the
//! input, outside strings and quoted identifiers, and applies to the whole
//! input; if both appear, primary wins. A replica hint also overrides
//! statements that need the primary: the caller asked for it. The hint does
//! not change the other fields: a router should still keep a pinned session
//! or an open transaction on its connection. Bare words such as ProxySQL-style
//! `/* master */` are **not** hints: an ordinary comment must never change a
//! route by accident. Optimizer hints (`/*+ … */`) are never route hints.
//!
//! # SQL modes
//!
//! By default strings use backslash escapes and `"…"` is a string, as on a
//! default MySQL/MariaDB server. A server running with `NO_BACKSLASH_ESCAPES`
//! or `ANSI_QUOTES` reads some strings differently; pass a matching
//! [`SqlMode`] to [`classify_with`] so that both read the same tokens.

mod hint;
mod keyword;
mod lexer;
mod statement;

use statement::{Cursor, Txn};

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// The writable primary.
    Primary,
    /// Any healthy replica.
    Replica,
}

impl Route {
    /// A stable lower-case name, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Route::Primary => "primary",
            Route::Replica => "replica",
        }
    }
}

/// Why a statement got its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A plain read: `SELECT`, `SHOW`, `DESCRIBE`, `EXPLAIN SELECT`, `WITH … SELECT`.
    Read,
    /// `START TRANSACTION READ ONLY`.
    ReadOnlyTransaction,
    /// A `foobar:` hint comment.
    Hint,
    /// A write, DDL, administration, or any statement that is not a read.
    Write,
    /// `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`.
    LockingRead,
    /// `SELECT … INTO`.
    SelectInto,
    /// A function, variable or `SHOW` about the connection's own previous
    /// statements: `LAST_INSERT_ID()`, `FOUND_ROWS()`, `@@identity`, `SHOW WARNINGS`.
    SessionFunction,
    /// A named-lock function: `GET_LOCK()`, `RELEASE_LOCK()`, `IS_FREE_LOCK()`, ….
    NamedLock,
    /// A sequence function: `NEXTVAL()`, `NEXT VALUE FOR`, `LASTVAL()`, `SETVAL()`.
    Sequence,
    /// A change to session state: `SET`, `@x :=`, temporary tables, `LOCK TABLES`, `PREPARE`, `USE`.
    SessionState,
    /// Transaction control: `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `SET TRANSACTION`.
    Transaction,
    /// The writer's replication status: `SHOW MASTER STATUS`, `SHOW BINARY LOGS`.
    WriterStatus,
    /// Empty, unknown or malformed input: the primary is the safe choice.
    Unknown,
}

impl Reason {
    /// A stable snake-case name, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Read => "read",
            Reason::ReadOnlyTransaction => "read_only_transaction",
            Reason::Hint => "hint",
            Reason::Write => "write",
            Reason::LockingRead => "locking_read",
            Reason::SelectInto => "select_into",
            Reason::SessionFunction => "session_function",
            Reason::NamedLock => "named_lock",
            Reason::Sequence => "sequence",
            Reason::SessionState => "session_state",
            Reason::Transaction => "transaction",
            Reason::WriterStatus => "writer_status",
            Reason::Unknown => "unknown",
        }
    }
}

/// What a SQL string needs and does, as far as routing is concerned.
///
/// For several statements in one string, the flags combine in order: apply
/// [`ends_transaction`](Self::ends_transaction) first, then
/// [`starts_transaction`](Self::starts_transaction). `BEGIN; INSERT …;
/// COMMIT` ends a transaction and leaves none open; `COMMIT; BEGIN` ends one
/// and starts the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Classification {
    /// Where the string must run. A hint, if any, decides.
    pub route: Route,
    /// Why: the hint, else the first statement that needs the primary, else
    /// the first statement.
    pub reason: Reason,
    /// The route a `foobar:` hint comment asked for.
    pub hint: Option<Route>,
    /// The string changes session state a replica would lose (variables,
    /// temporary tables, table or named locks, prepared statements, the
    /// default database): the session should stay on the primary from now on.
    pub pins_session: bool,
    /// A transaction is open after the string runs, started by it.
    pub starts_transaction: bool,
    /// The string ends a transaction (`COMMIT`, `ROLLBACK`, `SET autocommit = 1`).
    pub ends_transaction: bool,
    /// The transaction the string leaves open is `READ ONLY`.
    pub read_only_transaction: bool,
    /// The string sets `autocommit` to this literal value. While it is off,
    /// every statement runs in a transaction and `COMMIT` opens the next, so
    /// a router keeps such a session on the primary.
    pub autocommit: Option<bool>,
    /// The string configures the next transaction only (`SET TRANSACTION …`)
    /// and starts none: that transaction should run on the primary.
    pub sets_next_transaction: bool,
    /// The number of non-empty statements in the string.
    pub statements: u32,
}

/// How the server reads quotes and backslashes (its `sql_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SqlMode {
    no_backslash_escapes: bool,
    ansi_quotes: bool,
}

impl SqlMode {
    /// The server defaults: backslash escapes, `"…"` is a string.
    pub const fn new() -> Self {
        Self {
            no_backslash_escapes: false,
            ansi_quotes: false,
        }
    }

    /// `NO_BACKSLASH_ESCAPES`: a backslash in a string is an ordinary character.
    pub const fn no_backslash_escapes(mut self, on: bool) -> Self {
        self.no_backslash_escapes = on;
        self
    }

    /// `ANSI_QUOTES`: `"…"` quotes an identifier, not a string.
    pub const fn ansi_quotes(mut self, on: bool) -> Self {
        self.ansi_quotes = on;
        self
    }
}

/// Classifies a SQL string under the default SQL mode.
///
/// See the [module docs](self) for the rules. Never panics, never allocates.
pub fn classify(sql: &str) -> Classification {
    classify_with(sql, SqlMode::new())
}

/// Classifies a SQL string as a server with this `sql_mode` reads it.
pub fn classify_with(sql: &str, mode: SqlMode) -> Classification {
    let mut cursor = Cursor::new(sql.as_bytes(), mode);
    let mut out = Classification {
        route: Route::Replica,
        reason: Reason::Read,
        hint: None,
        pins_session: false,
        starts_transaction: false,
        ends_transaction: false,
        read_only_transaction: false,
        autocommit: None,
        sets_next_transaction: false,
        statements: 0,
    };
    while let Some(effect) = cursor.next_statement() {
        if out.statements == 0 || (out.route == Route::Replica && effect.route == Route::Primary) {
            out.route = effect.route;
            out.reason = effect.reason;
        }
        out.statements = out.statements.saturating_add(1);
        out.pins_session |= effect.pins_session;
        match effect.txn {
            Txn::Unchanged => {}
            Txn::Start { read_only } => {
                out.starts_transaction = true;
                out.read_only_transaction = read_only;
                out.sets_next_transaction = false;
            }
            Txn::End => {
                out.ends_transaction = true;
                out.starts_transaction = false;
                out.read_only_transaction = false;
            }
            Txn::EndAndStart => {
                out.ends_transaction = true;
                out.starts_transaction = true;
                out.read_only_transaction = false;
            }
        }
        if effect.autocommit.is_some() {
            out.autocommit = effect.autocommit;
        }
        out.sets_next_transaction |= effect.sets_next_transaction;
    }
    if out.statements == 0 || cursor.unterminated() {
        out.route = Route::Primary;
        out.reason = Reason::Unknown;
    }
    out.hint = cursor.hint();
    if let Some(route) = out.hint {
        out.route = route;
        out.reason = Reason::Hint;
    }
    out
}
