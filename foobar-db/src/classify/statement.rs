//! The rules: what one statement does, read from its tokens.
//!
//! A [`Cursor`] walks the significant tokens of one statement at a time
//! (comments are skipped, hints collected, `;` ends the statement). While it
//! walks, it watches every token for the markers that send an otherwise
//! plain read to the primary (`FOR UPDATE`, `INTO`, `LAST_INSERT_ID(`,
//! `@x :=`, …), wherever they are: in subqueries, CTEs or executable
//! comments. The statement's head (its first few tokens) decides its kind.

use super::keyword::{keyword, Kw};
use super::lexer::{Kind, Lexer, Token};
use super::{hint, Reason, Route, SqlMode};

/// How deep `EXPLAIN …` and `SET STATEMENT … FOR …` may nest before the
/// input is treated as unknown (bounds the recursion on hostile input).
const MAX_NESTING: u8 = 4;

/// What one statement does to a session's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Txn {
    /// Nothing.
    Unchanged,
    /// Starts one (`BEGIN`, `START TRANSACTION`, `SET autocommit = 0`).
    Start { read_only: bool },
    /// Ends one (`COMMIT`, `ROLLBACK`, `SET autocommit = 1`).
    End,
    /// Ends one and starts the next (`COMMIT AND CHAIN`).
    EndAndStart,
}

/// The classification of one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Effect {
    pub(crate) route: Route,
    pub(crate) reason: Reason,
    pub(crate) pins_session: bool,
    pub(crate) txn: Txn,
    pub(crate) autocommit: Option<bool>,
    pub(crate) sets_next_transaction: bool,
}

impl Effect {
    fn read() -> Self {
        Self {
            route: Route::Replica,
            reason: Reason::Read,
            pins_session: false,
            txn: Txn::Unchanged,
            autocommit: None,
            sets_next_transaction: false,
        }
    }

    fn primary(reason: Reason) -> Self {
        Self {
            route: Route::Primary,
            reason,
            ..Self::read()
        }
    }

    fn pins() -> Self {
        Self {
            pins_session: true,
            ..Self::primary(Reason::SessionState)
        }
    }

    fn transaction(txn: Txn) -> Self {
        Self {
            txn,
            ..Self::primary(Reason::Transaction)
        }
    }
}

/// A significant token with its keyword, if it is one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tok<'a> {
    kind: Kind,
    text: &'a [u8],
    kw: Kw,
}

impl Tok<'_> {
    fn is_punct(&self, p: &[u8]) -> bool {
        self.kind == Kind::Punct && self.text == p
    }
}

/// What the token watch found in the current statement.
#[derive(Debug, Clone, Copy, Default)]
struct Markers {
    /// The first marker that needs the primary.
    primary: Option<Reason>,
    /// A marker that changes session state (`@x :=`, `INTO @x`, `GET_LOCK(`).
    pins_session: bool,
    /// A `)` without its `(`, or a `(` left open.
    unbalanced: bool,
}

/// Walks the input one statement at a time.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    lexer: Lexer<'a>,
    hint: Option<Route>,
    /// The current statement's `;` (or the end of input) was reached.
    ended: bool,
    eof: bool,
    depth: u32,
    prev_kind: Kind,
    prev_kw: Kw,
    prev_dot: bool,
    markers: Markers,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(sql: &'a [u8], mode: SqlMode) -> Self {
        Self {
            lexer: Lexer::new(sql, mode),
            hint: None,
            ended: true,
            eof: false,
            depth: 0,
            prev_kind: Kind::Punct,
            prev_kw: Kw::Other,
            prev_dot: false,
            markers: Markers::default(),
        }
    }

    /// The route hint found in any comment so far; `primary` wins over
    /// `replica` when both appear.
    pub(crate) fn hint(&self) -> Option<Route> {
        self.hint
    }

    /// Whether a string, quoted identifier or comment was left open.
    pub(crate) fn unterminated(&self) -> bool {
        self.lexer.unterminated()
    }

    /// Classifies the next non-empty statement, or `None` at the end.
    pub(crate) fn next_statement(&mut self) -> Option<Effect> {
        loop {
            if self.eof {
                return None;
            }
            self.ended = false;
            self.depth = 0;
            self.prev_kind = Kind::Punct;
            self.prev_kw = Kw::Other;
            self.prev_dot = false;
            self.markers = Markers::default();
            let Some(first) = self.next() else {
                continue; // an empty statement, or the end
            };
            let effect = statement(self, first, 0);
            while self.next().is_some() {}
            return Some(self.apply_markers(effect));
        }
    }

    fn apply_markers(&self, mut effect: Effect) -> Effect {
        let markers = self.markers;
        if markers.unbalanced || self.depth != 0 {
            effect.route = Route::Primary;
            effect.reason = Reason::Unknown;
        }
        if markers.pins_session {
            effect.pins_session = true;
        }
        if effect.route == Route::Replica {
            if let Some(reason) = markers.primary {
                effect.route = Route::Primary;
                effect.reason = reason;
            } else if effect.pins_session {
                effect.route = Route::Primary;
                effect.reason = Reason::SessionState;
            }
        }
        effect
    }

    fn depth(&self) -> u32 {
        self.depth
    }

    /// The next significant token of the current statement.
    fn next(&mut self) -> Option<Tok<'a>> {
        if self.ended {
            return None;
        }
        loop {
            let Some(token) = self.lexer.next() else {
                self.ended = true;
                self.eof = true;
                return None;
            };
            match token.kind {
                Kind::Comment => {
                    self.note_comment(token);
                    continue;
                }
                Kind::OptimizerHint => continue,
                Kind::Punct if token.text == b";" => {
                    self.ended = true;
                    return None;
                }
                _ => {}
            }
            let kw = if token.kind == Kind::Word {
                keyword(token.text)
            } else {
                Kw::Other
            };
            let tok = Tok {
                kind: token.kind,
                text: token.text,
                kw,
            };
            self.watch(tok);
            return Some(tok);
        }
    }

    /// Consumes the rest of the input as one statement: the body of a
    /// stored routine or compound statement has `;` of its own.
    fn swallow_rest(&mut self) {
        while let Some(token) = self.lexer.next() {
            if token.kind == Kind::Comment {
                self.note_comment(token);
            }
        }
        self.ended = true;
        self.eof = true;
        self.depth = 0;
    }

    fn note_comment(&mut self, token: Token<'_>) {
        match hint::parse(token.text) {
            Some(Route::Primary) => self.hint = Some(Route::Primary),
            Some(Route::Replica) if self.hint.is_none() => self.hint = Some(Route::Replica),
            _ => {}
        }
    }

    fn mark(&mut self, reason: Reason) {
        self.markers.primary.get_or_insert(reason);
    }

    /// Looks at each token with the one before it for the markers that need
    /// the primary.
    fn watch(&mut self, tok: Tok<'_>) {
        match tok.kind {
            Kind::Punct => match tok.text {
                b"(" => {
                    self.depth += 1;
                    if self.prev_kind == Kind::Word && self.prev_kw.is_writer_function() {
                        self.mark(function_reason(self.prev_kw));
                        if self.prev_kw == Kw::GetLock {
                            self.markers.pins_session = true;
                        }
                    }
                }
                b")" => match self.depth.checked_sub(1) {
                    Some(depth) => self.depth = depth,
                    None => self.markers.unbalanced = true,
                },
                b":=" if self.prev_kind == Kind::UserVar => {
                    self.mark(Reason::SessionState);
                    self.markers.pins_session = true;
                }
                _ => {}
            },
            Kind::Word => match tok.kw {
                Kw::Update | Kw::Share if self.prev_kw == Kw::For => self.mark(Reason::LockingRead),
                Kw::In if self.prev_kw == Kw::Lock => self.mark(Reason::LockingRead),
                Kw::Value if matches!(self.prev_kw, Kw::Next | Kw::Previous) => {
                    self.mark(Reason::Sequence);
                }
                kw if kw.is_sequence_function() && self.prev_dot => self.mark(Reason::Sequence),
                Kw::SqlCalcFoundRows => self.mark(Reason::SessionFunction),
                Kw::Into => self.mark(Reason::SelectInto),
                _ => {}
            },
            Kind::UserVar if self.prev_kw == Kw::Into => self.markers.pins_session = true,
            Kind::SysVar if is_writer_variable(tok.text) => self.mark(Reason::SessionFunction),
            _ => {}
        }
        self.prev_kind = tok.kind;
        self.prev_kw = tok.kw;
        self.prev_dot = tok.is_punct(b".");
    }
}

fn function_reason(kw: Kw) -> Reason {
    match kw {
        Kw::GetLock | Kw::ReleaseLock | Kw::ReleaseAllLocks | Kw::IsFreeLock | Kw::IsUsedLock => {
            Reason::NamedLock
        }
        kw if kw.is_sequence_function() => Reason::Sequence,
        _ => Reason::SessionFunction,
    }
}

/// Splits `@@scope.name` into its scope (if written) and name.
fn system_variable(text: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let name = text.strip_prefix(b"@@").unwrap_or(text);
    match name.iter().position(|&b| b == b'.') {
        Some(dot) => (Some(&name[..dot]), &name[dot + 1..]),
        None => (None, name),
    }
}

/// System variables that report on the connection's last statements or
/// writes: only the primary connection that ran them knows.
fn is_writer_variable(text: &[u8]) -> bool {
    let (_, name) = system_variable(text);
    [
        &b"identity"[..],
        b"last_insert_id",
        b"insert_id",
        b"last_gtid",
        b"warning_count",
        b"error_count",
    ]
    .iter()
    .any(|v| name.eq_ignore_ascii_case(v))
}

/// Classifies the statement that starts with `first`.
fn statement(cur: &mut Cursor<'_>, first: Tok<'_>, nesting: u8) -> Effect {
    if nesting > MAX_NESTING {
        return Effect::primary(Reason::Unknown);
    }
    match first.kw {
        Kw::Select | Kw::Values | Kw::Table | Kw::Help => Effect::read(),
        Kw::With => with(cur),
        Kw::Other if first.is_punct(b"(") => parenthesised(cur),
        Kw::Show => show(cur),
        Kw::Explain | Kw::Describe | Kw::Desc | Kw::Analyze => explain(cur, first.kw, nesting),
        Kw::Begin => begin(cur),
        Kw::Start => start(cur),
        Kw::Commit | Kw::Rollback => end_transaction(cur),
        Kw::Savepoint | Kw::Release => Effect::primary(Reason::Transaction),
        Kw::Xa => xa(cur),
        Kw::Set => set(cur, nesting),
        Kw::Use | Kw::Lock | Kw::Unlock | Kw::Prepare | Kw::Handler | Kw::Backup => Effect::pins(),
        Kw::Execute => execute(cur),
        Kw::Deallocate => Effect::primary(Reason::SessionState),
        Kw::Create | Kw::Alter => create_or_alter(cur, first.kw),
        Kw::Drop => drop(cur),
        Kw::Flush => flush(cur),
        Kw::Call => call(cur),
        Kw::Insert
        | Kw::Update
        | Kw::Delete
        | Kw::Replace
        | Kw::Load
        | Kw::Truncate
        | Kw::Rename
        | Kw::Grant
        | Kw::Revoke
        | Kw::Optimize
        | Kw::Repair
        | Kw::Install
        | Kw::Uninstall
        | Kw::Kill
        | Kw::Purge
        | Kw::Reset
        | Kw::Change
        | Kw::Stop
        | Kw::Binlog
        | Kw::Checksum
        | Kw::Check
        | Kw::Cache
        | Kw::Do => Effect::primary(Reason::Write),
        _ => Effect::primary(Reason::Unknown),
    }
}

/// `(SELECT …) UNION (SELECT …)`, `((SELECT …))`, `(WITH …)`.
fn parenthesised(cur: &mut Cursor<'_>) -> Effect {
    while let Some(tok) = cur.next() {
        match tok.kw {
            Kw::Select | Kw::Values | Kw::Table => return Effect::read(),
            Kw::With => return with(cur),
            _ if tok.is_punct(b"(") => continue,
            _ => break,
        }
    }
    Effect::primary(Reason::Unknown)
}

/// `WITH [RECURSIVE] name [(cols)] AS (…) [, …] <statement>`: skips the
/// CTE list (its bodies are still watched for markers) and classifies by the
/// main statement's first keyword.
fn with(cur: &mut Cursor<'_>) -> Effect {
    let base = cur.depth();
    let mut after_body = false;
    loop {
        let depth = cur.depth();
        let Some(tok) = cur.next() else {
            return Effect::primary(Reason::Unknown);
        };
        if depth != base {
            after_body = tok.is_punct(b")") && cur.depth() == base;
            continue;
        }
        match tok.kw {
            Kw::Select | Kw::Values | Kw::Table => return Effect::read(),
            Kw::Insert | Kw::Update | Kw::Delete | Kw::Replace => {
                return Effect::primary(Reason::Write)
            }
            // `WITH a AS (…) (SELECT …)`: a parenthesised main query.
            _ if tok.is_punct(b"(") && after_body => return Effect::read(),
            _ => after_body = false,
        }
    }
}

fn show(cur: &mut Cursor<'_>) -> Effect {
    let Some(tok) = cur.next() else {
        return Effect::primary(Reason::Unknown);
    };
    match tok.kw {
        // About the connection's previous statements.
        Kw::Warnings | Kw::Errors | Kw::Count | Kw::Profile | Kw::Profiles => {
            Effect::primary(Reason::SessionFunction)
        }
        // The writer's binary log.
        Kw::Master | Kw::Binary | Kw::Binlog => Effect::primary(Reason::WriterStatus),
        _ => Effect::read(),
    }
}

/// `EXPLAIN`, `DESCRIBE`, `DESC` and MariaDB's `ANALYZE <statement>` (which
/// runs the statement); `ANALYZE TABLE` writes statistics.
fn explain(cur: &mut Cursor<'_>, head: Kw, nesting: u8) -> Effect {
    while let Some(tok) = cur.next() {
        match tok.kw {
            Kw::Extended | Kw::Partitions | Kw::Analyze => continue,
            Kw::Format => {
                // FORMAT = JSON
                if cur.next().is_some_and(|t| t.is_punct(b"=")) {
                    cur.next();
                }
                continue;
            }
            Kw::Table if head == Kw::Analyze => return Effect::primary(Reason::Write),
            Kw::Select
            | Kw::Values
            | Kw::Table
            | Kw::With
            | Kw::Insert
            | Kw::Update
            | Kw::Delete
            | Kw::Replace => return statement(cur, tok, nesting + 1),
            Kw::Other if tok.is_punct(b"(") => return statement(cur, tok, nesting + 1),
            // `EXPLAIN FOR CONNECTION n`: a connection id of one server;
            // `EXPLAIN EXPLAIN …` is not SQL.
            Kw::For | Kw::Explain | Kw::Describe | Kw::Desc => break,
            // `DESCRIBE t`, `EXPLAIN db.t`.
            _ if head != Kw::Analyze && matches!(tok.kind, Kind::Word | Kind::QuotedIdent) => {
                return Effect::read()
            }
            _ => break,
        }
    }
    Effect::primary(if head == Kw::Analyze {
        Reason::Write
    } else {
        Reason::Unknown
    })
}

/// `BEGIN [WORK]` starts a transaction; `BEGIN NOT ATOMIC …` is a compound
/// statement.
fn begin(cur: &mut Cursor<'_>) -> Effect {
    match cur.next().map(|t| t.kw) {
        None | Some(Kw::Work) => Effect::transaction(Txn::Start { read_only: false }),
        // Its body runs and may change anything, variables included.
        Some(Kw::Not) => {
            cur.swallow_rest();
            Effect {
                pins_session: true,
                ..Effect::primary(Reason::Write)
            }
        }
        Some(_) => Effect::primary(Reason::Unknown),
    }
}

/// `START TRANSACTION [READ ONLY | READ WRITE | WITH CONSISTENT SNAPSHOT], …`;
/// `START SLAVE`/`START REPLICA` are administration.
fn start(cur: &mut Cursor<'_>) -> Effect {
    match cur.next().map(|t| t.kw) {
        Some(Kw::Transaction) => {}
        Some(_) => return Effect::primary(Reason::Write),
        None => return Effect::primary(Reason::Unknown),
    }
    let (mut read_only, mut read_write, mut after_read) = (false, false, false);
    while let Some(tok) = cur.next() {
        match tok.kw {
            Kw::Read => after_read = true,
            Kw::Only if after_read => read_only = true,
            Kw::Write if after_read => read_write = true,
            _ => after_read = false,
        }
    }
    if read_only && !read_write {
        Effect {
            route: Route::Replica,
            reason: Reason::ReadOnlyTransaction,
            txn: Txn::Start { read_only: true },
            ..Effect::read()
        }
    } else {
        Effect::transaction(Txn::Start { read_only: false })
    }
}

/// `COMMIT`/`ROLLBACK [WORK] [AND [NO] CHAIN] [[NO] RELEASE]`;
/// `ROLLBACK [WORK] TO [SAVEPOINT] s` keeps the transaction.
fn end_transaction(cur: &mut Cursor<'_>) -> Effect {
    let (mut after_and, mut no_chain, mut chain) = (false, false, false);
    while let Some(tok) = cur.next() {
        match tok.kw {
            Kw::To => return Effect::primary(Reason::Transaction),
            Kw::And => after_and = true,
            Kw::No if after_and => no_chain = true,
            Kw::Chain if after_and && !no_chain => chain = true,
            _ => {}
        }
    }
    Effect::transaction(if chain { Txn::EndAndStart } else { Txn::End })
}

/// `XA START|BEGIN` starts a transaction; `XA COMMIT|ROLLBACK` ends it.
fn xa(cur: &mut Cursor<'_>) -> Effect {
    match cur.next().map(|t| t.kw) {
        Some(Kw::Start | Kw::Begin) => Effect::transaction(Txn::Start { read_only: false }),
        Some(Kw::Commit | Kw::Rollback) => Effect::transaction(Txn::End),
        _ => Effect::primary(Reason::Transaction),
    }
}

/// `SET …`: see the module docs for which forms pin the session.
fn set(cur: &mut Cursor<'_>, nesting: u8) -> Effect {
    let Some(first) = cur.next() else {
        return Effect::primary(Reason::Unknown);
    };
    match first.kw {
        // Only the next transaction: no pin, but it must run where that
        // transaction will.
        Kw::Transaction => Effect {
            sets_next_transaction: true,
            ..Effect::primary(Reason::Transaction)
        },
        // MariaDB `SET STATEMENT var = value [, …] FOR <statement>`: the
        // settings last for that one statement.
        Kw::Statement => loop {
            let depth = cur.depth();
            let Some(tok) = cur.next() else {
                return Effect::primary(Reason::Unknown);
            };
            if depth == 0 && tok.kw == Kw::For {
                return match cur.next() {
                    Some(inner) => statement(cur, inner, nesting + 1),
                    None => Effect::primary(Reason::Unknown),
                };
            }
        },
        Kw::Password | Kw::Default => Effect::primary(Reason::Write),
        _ => assignments(cur, first),
    }
}

/// The value an assignment to `autocommit` gives, if it is a literal.
fn autocommit_value(tok: Tok<'_>) -> Option<bool> {
    match (tok.kind, tok.kw) {
        (Kind::Number, _) if tok.text == b"0" => Some(false),
        (Kind::Number, _) if tok.text == b"1" => Some(true),
        (Kind::Word, Kw::Off | Kw::False) => Some(false),
        (Kind::Word, Kw::On | Kw::True) => Some(true),
        _ => None,
    }
}

/// `SET [GLOBAL|SESSION|…] target = value [, …]`. A scope word applies to
/// the assignments after it until the next one (MySQL's rule); `@@global.x`
/// and `@@session.x` name their own. Any assignment to session state pins.
fn assignments(cur: &mut Cursor<'_>, first: Tok<'_>) -> Effect {
    let mut global_default = false;
    let mut touches_session = false;
    let mut autocommit = None;
    let mut next = Some(first);
    while let Some(mut tok) = next {
        let mut global = global_default;
        match tok.kw {
            Kw::Global | Kw::Persist | Kw::PersistOnly | Kw::Session | Kw::Local => {
                global_default = !matches!(tok.kw, Kw::Session | Kw::Local);
                global = global_default;
                match cur.next() {
                    Some(t) => tok = t,
                    None => break,
                }
            }
            _ => {}
        }
        let mut is_autocommit = false;
        match tok.kind {
            Kind::UserVar => global = false,
            Kind::SysVar => {
                let (scope, name) = system_variable(tok.text);
                global = scope.is_some_and(|s| {
                    s.eq_ignore_ascii_case(b"global")
                        || s.eq_ignore_ascii_case(b"persist")
                        || s.eq_ignore_ascii_case(b"persist_only")
                });
                is_autocommit = name.eq_ignore_ascii_case(b"autocommit");
            }
            Kind::Word => match tok.kw {
                Kw::Autocommit => is_autocommit = true,
                Kw::Names | Kw::Character | Kw::Charset | Kw::Role => global = false,
                _ => {}
            },
            _ => {}
        }
        touches_session |= !global;

        // The value, up to the next top-level comma.
        let mut value: Option<Tok<'_>> = None;
        let mut value_tokens = 0usize;
        let mut after_assign = false;
        next = None;
        loop {
            let depth = cur.depth();
            let Some(t) = cur.next() else { break };
            if depth == 0 && t.is_punct(b",") {
                next = cur.next();
                break;
            }
            if after_assign {
                value_tokens += 1;
                value = Some(t);
            } else if t.is_punct(b"=") || t.is_punct(b":=") {
                after_assign = true;
            }
        }
        if is_autocommit && !global {
            autocommit = match value {
                Some(v) if value_tokens == 1 => autocommit_value(v),
                _ => None,
            };
        }
    }
    if !touches_session {
        return Effect::primary(Reason::Write);
    }
    Effect {
        autocommit,
        txn: match autocommit {
            Some(false) => Txn::Start { read_only: false },
            Some(true) => Txn::End,
            None => Txn::Unchanged,
        },
        ..Effect::pins()
    }
}

/// `CREATE [OR REPLACE] TEMPORARY TABLE` pins; routines, triggers and events
/// with a `BEGIN … END` body take the rest of the input as their own.
fn create_or_alter(cur: &mut Cursor<'_>, head: Kw) -> Effect {
    let mut effect = Effect::primary(Reason::Write);
    let mut routine = false;
    let mut position = 0usize;
    loop {
        let depth = cur.depth();
        let Some(tok) = cur.next() else { break };
        position += 1;
        if depth != 0 {
            continue;
        }
        match tok.kw {
            Kw::Temporary if head == Kw::Create && position <= 3 => effect = Effect::pins(),
            Kw::Procedure | Kw::Function | Kw::Trigger | Kw::Event => routine = true,
            Kw::Begin if routine => {
                cur.swallow_rest();
                break;
            }
            _ => {}
        }
    }
    effect
}

/// `DROP TEMPORARY TABLE` pins (the table lived in this session).
fn drop(cur: &mut Cursor<'_>) -> Effect {
    match cur.next().map(|t| t.kw) {
        Some(Kw::Temporary) => Effect::pins(),
        _ => Effect::primary(Reason::Write),
    }
}

/// `FLUSH TABLES WITH READ LOCK` and `… FOR EXPORT` hold locks in the session.
fn flush(cur: &mut Cursor<'_>) -> Effect {
    while let Some(tok) = cur.next() {
        if matches!(tok.kw, Kw::Lock | Kw::Export) {
            return Effect::pins();
        }
    }
    Effect::primary(Reason::Write)
}

/// `EXECUTE s` runs a statement prepared on the primary; MariaDB's
/// `EXECUTE IMMEDIATE '…'` runs SQL the classifier cannot see, so it pins.
fn execute(cur: &mut Cursor<'_>) -> Effect {
    match cur.next().map(|t| t.kw) {
        Some(Kw::Immediate) => Effect::pins(),
        _ => Effect::primary(Reason::SessionState),
    }
}

/// `CALL p(@out)` sets user variables through `OUT` parameters.
fn call(cur: &mut Cursor<'_>) -> Effect {
    while let Some(tok) = cur.next() {
        if tok.kind == Kind::UserVar {
            return Effect::pins();
        }
    }
    Effect::primary(Reason::Write)
}
