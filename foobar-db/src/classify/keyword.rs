//! The keywords and function names the classifier looks at.
//!
//! A word is upper-cased into a small stack buffer and matched once, so the
//! classifier compares enum values instead of strings.

macro_rules! keywords {
    ($($name:ident = $text:literal,)*) => {
        /// A keyword the classifier cares about; `Other` for any other word.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Kw {
            Other,
            $($name,)*
        }

        /// Every keyword's spelling, for tests.
        #[cfg(test)]
        const SPELLINGS: &[&[u8]] = &[$($text,)*];

        fn lookup(upper: &[u8]) -> Kw {
            match upper {
                $($text => Kw::$name,)*
                _ => Kw::Other,
            }
        }
    };
}

keywords! {
    // Statement heads.
    Alter = b"ALTER",
    Analyze = b"ANALYZE",
    Backup = b"BACKUP",
    Begin = b"BEGIN",
    Binlog = b"BINLOG",
    Cache = b"CACHE",
    Call = b"CALL",
    Change = b"CHANGE",
    Check = b"CHECK",
    Checksum = b"CHECKSUM",
    Commit = b"COMMIT",
    Create = b"CREATE",
    Deallocate = b"DEALLOCATE",
    Delete = b"DELETE",
    Desc = b"DESC",
    Describe = b"DESCRIBE",
    Do = b"DO",
    Drop = b"DROP",
    Execute = b"EXECUTE",
    Explain = b"EXPLAIN",
    Flush = b"FLUSH",
    Grant = b"GRANT",
    Handler = b"HANDLER",
    Help = b"HELP",
    Insert = b"INSERT",
    Install = b"INSTALL",
    Kill = b"KILL",
    Load = b"LOAD",
    Lock = b"LOCK",
    Optimize = b"OPTIMIZE",
    Prepare = b"PREPARE",
    Purge = b"PURGE",
    Release = b"RELEASE",
    Rename = b"RENAME",
    Repair = b"REPAIR",
    Replace = b"REPLACE",
    Reset = b"RESET",
    Revoke = b"REVOKE",
    Rollback = b"ROLLBACK",
    Savepoint = b"SAVEPOINT",
    Select = b"SELECT",
    Set = b"SET",
    Show = b"SHOW",
    Start = b"START",
    Stop = b"STOP",
    Table = b"TABLE",
    Truncate = b"TRUNCATE",
    Uninstall = b"UNINSTALL",
    Unlock = b"UNLOCK",
    Update = b"UPDATE",
    Use = b"USE",
    Values = b"VALUES",
    With = b"WITH",
    Xa = b"XA",

    // Other keywords.
    And = b"AND",
    As = b"AS",
    Atomic = b"ATOMIC",
    Autocommit = b"AUTOCOMMIT",
    Binary = b"BINARY",
    Chain = b"CHAIN",
    Character = b"CHARACTER",
    Charset = b"CHARSET",
    Connection = b"CONNECTION",
    Consistent = b"CONSISTENT",
    Count = b"COUNT",
    Default = b"DEFAULT",
    End = b"END",
    Errors = b"ERRORS",
    Event = b"EVENT",
    Export = b"EXPORT",
    Extended = b"EXTENDED",
    False = b"FALSE",
    For = b"FOR",
    Format = b"FORMAT",
    Function = b"FUNCTION",
    Global = b"GLOBAL",
    Immediate = b"IMMEDIATE",
    In = b"IN",
    Into = b"INTO",
    Local = b"LOCAL",
    Master = b"MASTER",
    Names = b"NAMES",
    Next = b"NEXT",
    No = b"NO",
    Not = b"NOT",
    Off = b"OFF",
    On = b"ON",
    Only = b"ONLY",
    Or = b"OR",
    Partitions = b"PARTITIONS",
    Password = b"PASSWORD",
    Persist = b"PERSIST",
    PersistOnly = b"PERSIST_ONLY",
    Previous = b"PREVIOUS",
    Procedure = b"PROCEDURE",
    Profile = b"PROFILE",
    Profiles = b"PROFILES",
    Read = b"READ",
    Recursive = b"RECURSIVE",
    Role = b"ROLE",
    Session = b"SESSION",
    Share = b"SHARE",
    Snapshot = b"SNAPSHOT",
    SqlCalcFoundRows = b"SQL_CALC_FOUND_ROWS",
    Statement = b"STATEMENT",
    Temporary = b"TEMPORARY",
    To = b"TO",
    Transaction = b"TRANSACTION",
    Trigger = b"TRIGGER",
    True = b"TRUE",
    Value = b"VALUE",
    Warnings = b"WARNINGS",
    Work = b"WORK",
    Write = b"WRITE",

    // Functions bound to the writer or to one connection.
    Currval = b"CURRVAL",
    FoundRows = b"FOUND_ROWS",
    GetLock = b"GET_LOCK",
    IsFreeLock = b"IS_FREE_LOCK",
    IsUsedLock = b"IS_USED_LOCK",
    LastInsertId = b"LAST_INSERT_ID",
    Lastval = b"LASTVAL",
    Nextval = b"NEXTVAL",
    ReleaseAllLocks = b"RELEASE_ALL_LOCKS",
    ReleaseLock = b"RELEASE_LOCK",
    RowCount = b"ROW_COUNT",
    Setval = b"SETVAL",
}

/// The length of the longest keyword above (`SQL_CALC_FOUND_ROWS`).
const MAX_KEYWORD_LEN: usize = 19;

/// The keyword a word spells, case-insensitively.
pub(crate) fn keyword(word: &[u8]) -> Kw {
    if word.len() < 2 || word.len() > MAX_KEYWORD_LEN {
        return Kw::Other;
    }
    let mut buf = [0u8; MAX_KEYWORD_LEN];
    for (upper, b) in buf.iter_mut().zip(word) {
        *upper = b.to_ascii_uppercase();
    }
    lookup(&buf[..word.len()])
}

impl Kw {
    /// Functions whose result depends on the connection or the writer, so a
    /// statement calling them must run on the primary.
    pub(crate) fn is_writer_function(self) -> bool {
        matches!(
            self,
            Kw::FoundRows
                | Kw::GetLock
                | Kw::IsFreeLock
                | Kw::IsUsedLock
                | Kw::LastInsertId
                | Kw::Lastval
                | Kw::Nextval
                | Kw::ReleaseAllLocks
                | Kw::ReleaseLock
                | Kw::RowCount
                | Kw::Setval
        )
    }

    /// Functions that read or advance a sequence.
    pub(crate) fn is_sequence_function(self) -> bool {
        matches!(self, Kw::Nextval | Kw::Lastval | Kw::Setval | Kw::Currval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_is_found_in_any_case() {
        for spelling in SPELLINGS {
            assert_ne!(keyword(spelling), Kw::Other, "{spelling:?}");
            assert_ne!(
                keyword(&spelling.to_ascii_lowercase()),
                Kw::Other,
                "{spelling:?}"
            );
        }
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(keyword(b"select"), Kw::Select);
        assert_eq!(keyword(b"SeLeCt"), Kw::Select);
        assert_eq!(keyword(b"sql_calc_found_rows"), Kw::SqlCalcFoundRows);
        assert_eq!(keyword(b"selects"), Kw::Other);
        assert_eq!(keyword(b""), Kw::Other);
        assert_eq!(keyword("sélect".as_bytes()), Kw::Other);
        assert_eq!(keyword(&[b'a'; 100]), Kw::Other);
    }
}
