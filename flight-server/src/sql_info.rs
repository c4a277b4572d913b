//! The server's self-description: GetSqlInfo and GetXdbcTypeInfo.
//!
//! Every id the Flight SQL JDBC driver reads is answered, each with the union branch the driver
//! casts it to (a wrong branch is a `ClassCastException` in Java): strings, booleans, `bigint`
//! for the `SQL_MAX_*` limits and the default isolation level, `int32_bitmask` for bitmasks and
//! enums, `string_list` for keyword and function lists, and the int32-to-list map for
//! `SQL_SUPPORTS_CONVERT`.

use std::collections::BTreeMap;

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedGroupBy, SqlSupportedResultSetConcurrency,
    SqlSupportedResultSetType, SqlSupportedSubqueries, SqlSupportedTransaction, SqlSupportedUnions,
    SqlSupportsConvert, SqlTransactionIsolationLevel, SupportedSqlGrammar, XdbcDataType,
    XdbcDatetimeSubcode,
};
use tonic::Status;

/// `FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT` and `..._TRANSACTION_TIMEOUT` (not in arrow-rs 59's
/// enum): 0 means no server-side timeout.
const STATEMENT_TIMEOUT: u32 = 100;
const TRANSACTION_TIMEOUT: u32 = 101;

/// A bitmask with one bit set per enum value.
fn bits(values: &[i32]) -> i32 {
    values.iter().fold(0, |acc, v| acc | (1 << v))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Builds the SqlInfo table served for every GetSqlInfo request.
pub(crate) fn sql_info_data() -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    // Server.
    b.append(SqlInfo::FlightSqlServerName, "meshql");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(STATEMENT_TIMEOUT, 0i32);
    b.append(TRANSACTION_TIMEOUT, 0i32);

    // SQL language.
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    // Every table a caller is shown (GetTables is filtered per principal) is selectable.
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, strings(KEYWORDS));
    b.append(SqlInfo::SqlNumericFunctions, strings(NUMERIC_FUNCTIONS));
    b.append(SqlInfo::SqlStringFunctions, strings(STRING_FUNCTIONS));
    b.append(SqlInfo::SqlSystemFunctions, strings(SYSTEM_FUNCTIONS));
    b.append(SqlInfo::SqlDatetimeFunctions, strings(DATETIME_FUNCTIONS));
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsConvert, supports_convert());
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(
        SqlInfo::SqlSupportedGroupBy,
        bits(&[
            SqlSupportedGroupBy::SqlGroupByUnrelated as i32,
            SqlSupportedGroupBy::SqlGroupByBeyondSelect as i32,
        ]),
    );
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        bits(&[
            SupportedSqlGrammar::SqlMinimumGrammar as i32,
            SupportedSqlGrammar::SqlCoreGrammar as i32,
        ]),
    );
    b.append(
        SqlInfo::SqlAnsi92SupportedLevel,
        // ANSI92_ENTRY_SQL (0) and ANSI92_INTERMEDIATE_SQL (1); arrow-rs does not export the enum.
        bits(&[0, 1]),
    );
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        bits(&[
            SqlOuterJoinsSupportLevel::SqlLimitedOuterJoins as i32,
            SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
        ]),
    );
    // Schema = domain (SPEC section 4).
    b.append(SqlInfo::SqlSchemaTerm, "domain");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(
        SqlInfo::SqlSupportedSubqueries,
        bits(&[
            SqlSupportedSubqueries::SqlSubqueriesInComparisons as i32,
            SqlSupportedSubqueries::SqlSubqueriesInExists as i32,
            SqlSupportedSubqueries::SqlSubqueriesInIns as i32,
        ]),
    );
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(
        SqlInfo::SqlSupportedUnions,
        bits(&[
            SqlSupportedUnions::SqlUnion as i32,
            SqlSupportedUnions::SqlUnionAll as i32,
        ]),
    );
    // Limits: 0 means "no limit or unknown" (JDBC reads these as Long).
    for id in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        b.append(id, 0i64);
    }
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, false);
    b.append(
        SqlInfo::SqlDefaultTransactionIsolation,
        SqlTransactionIsolationLevel::SqlTransactionNone as i64,
    );
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(
        SqlInfo::SqlSupportedTransactionsIsolationLevels,
        bits(&[SqlTransactionIsolationLevel::SqlTransactionNone as i32]),
    );
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    b.append(
        SqlInfo::SqlSupportedResultSetTypes,
        bits(&[SqlSupportedResultSetType::SqlResultSetTypeForwardOnly as i32]),
    );
    let read_only =
        bits(&[SqlSupportedResultSetConcurrency::SqlResultSetConcurrencyReadOnly as i32]);
    for id in [
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
    ] {
        b.append(id, read_only);
    }
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build()
        .map_err(|e| Status::internal(format!("building SqlInfo: {e}")))
}

/// Which conversions `CAST` supports, by JDBC type.
fn supports_convert() -> BTreeMap<i32, Vec<i32>> {
    use SqlSupportsConvert as C;
    let numeric = [
        C::SqlConvertBigint,
        C::SqlConvertBit,
        C::SqlConvertDecimal,
        C::SqlConvertFloat,
        C::SqlConvertInteger,
        C::SqlConvertNumeric,
        C::SqlConvertReal,
        C::SqlConvertSmallint,
        C::SqlConvertTinyint,
        C::SqlConvertChar,
        C::SqlConvertVarchar,
        C::SqlConvertLongvarchar,
    ];
    let text = [
        C::SqlConvertBigint,
        C::SqlConvertBit,
        C::SqlConvertChar,
        C::SqlConvertDate,
        C::SqlConvertDecimal,
        C::SqlConvertFloat,
        C::SqlConvertInteger,
        C::SqlConvertLongvarchar,
        C::SqlConvertNumeric,
        C::SqlConvertReal,
        C::SqlConvertSmallint,
        C::SqlConvertTime,
        C::SqlConvertTimestamp,
        C::SqlConvertTinyint,
        C::SqlConvertVarchar,
        C::SqlConvertBinary,
        C::SqlConvertVarbinary,
        C::SqlConvertLongvarbinary,
    ];
    let temporal = [
        C::SqlConvertDate,
        C::SqlConvertTimestamp,
        C::SqlConvertChar,
        C::SqlConvertVarchar,
        C::SqlConvertLongvarchar,
    ];
    let binary = [
        C::SqlConvertBinary,
        C::SqlConvertVarbinary,
        C::SqlConvertLongvarbinary,
    ];
    let mut m = BTreeMap::new();
    let list = |xs: &[C]| xs.iter().map(|c| *c as i32).collect::<Vec<_>>();
    for from in [
        C::SqlConvertBigint,
        C::SqlConvertBit,
        C::SqlConvertDecimal,
        C::SqlConvertFloat,
        C::SqlConvertInteger,
        C::SqlConvertNumeric,
        C::SqlConvertReal,
        C::SqlConvertSmallint,
        C::SqlConvertTinyint,
    ] {
        m.insert(from as i32, list(&numeric));
    }
    for from in [
        C::SqlConvertChar,
        C::SqlConvertVarchar,
        C::SqlConvertLongvarchar,
    ] {
        m.insert(from as i32, list(&text));
    }
    for from in [C::SqlConvertDate, C::SqlConvertTimestamp] {
        m.insert(from as i32, list(&temporal));
    }
    m.insert(
        C::SqlConvertTime as i32,
        list(&[C::SqlConvertTime, C::SqlConvertChar, C::SqlConvertVarchar]),
    );
    for from in [
        C::SqlConvertBinary,
        C::SqlConvertVarbinary,
        C::SqlConvertLongvarbinary,
    ] {
        m.insert(from as i32, list(&binary));
    }
    m
}

/// Keywords of meshql's SQL (DataFusion) beyond SQL:2003.
const KEYWORDS: &[&str] = &[
    "ANALYZE",
    "ARRAY_AGG",
    "DESCRIBE",
    "EXPLAIN",
    "ILIKE",
    "LIMIT",
    "OFFSET",
    "QUALIFY",
    "SHOW",
    "TABLES",
    "UNNEST",
    "VERBOSE",
    "WINDOW",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "cbrt",
    "ceil",
    "cos",
    "cosh",
    "cot",
    "degrees",
    "exp",
    "factorial",
    "floor",
    "gcd",
    "isnan",
    "iszero",
    "lcm",
    "ln",
    "log",
    "log10",
    "log2",
    "nanvl",
    "pi",
    "pow",
    "power",
    "radians",
    "random",
    "round",
    "signum",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
];
const STRING_FUNCTIONS: &[&str] = &[
    "ascii",
    "bit_length",
    "btrim",
    "char_length",
    "character_length",
    "chr",
    "concat",
    "concat_ws",
    "ends_with",
    "initcap",
    "instr",
    "left",
    "length",
    "levenshtein",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "octet_length",
    "overlay",
    "position",
    "regexp_like",
    "regexp_match",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substring",
    "to_hex",
    "translate",
    "trim",
    "upper",
    "uuid",
];
const SYSTEM_FUNCTIONS: &[&str] = &["arrow_typeof", "coalesce", "nullif", "nvl", "version"];
const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "current_timestamp",
    "date_bin",
    "date_part",
    "date_trunc",
    "datepart",
    "datetrunc",
    "extract",
    "from_unixtime",
    "make_date",
    "now",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_timestamp_micros",
    "to_timestamp_millis",
    "to_timestamp_nanos",
    "to_timestamp_seconds",
    "to_unixtime",
];

#[allow(clippy::too_many_arguments)]
fn xdbc(
    type_name: &str,
    data_type: XdbcDataType,
    sql_data_type: XdbcDataType,
    subcode: Option<XdbcDatetimeSubcode>,
    column_size: Option<i32>,
    literal: Option<(&str, &str)>,
    case_sensitive: bool,
    unsigned: Option<bool>,
    scale: Option<(i32, i32)>,
    radix: Option<i32>,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: type_name.to_string(),
        data_type,
        column_size,
        literal_prefix: literal.map(|(p, _)| p.to_string()),
        literal_suffix: literal.map(|(_, s)| s.to_string()),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive,
        searchable: if case_sensitive {
            Searchable::Full
        } else {
            Searchable::Basic
        },
        unsigned_attribute: unsigned,
        fixed_prec_scale: false,
        auto_increment: unsigned.map(|_| false),
        local_type_name: Some(type_name.to_string()),
        minimum_scale: scale.map(|(min, _)| min),
        maximum_scale: scale.map(|(_, max)| max),
        sql_data_type,
        datetime_subcode: subcode,
        num_prec_radix: radix,
        interval_precision: None,
    }
}

/// The SQL types meshql returns, for GetXdbcTypeInfo (JDBC `getTypeInfo`).
pub(crate) fn xdbc_type_info_data() -> Result<XdbcTypeInfoData, Status> {
    use XdbcDataType as T;
    let mut b = XdbcTypeInfoDataBuilder::new();
    let int = |name: &str, t: T, size: i32| {
        xdbc(
            name,
            t,
            t,
            None,
            Some(size),
            None,
            false,
            Some(false),
            Some((0, 0)),
            Some(10),
        )
    };
    b.append(xdbc(
        "BOOLEAN",
        T::XdbcBit,
        T::XdbcBit,
        None,
        Some(1),
        None,
        false,
        None,
        None,
        None,
    ));
    b.append(int("TINYINT", T::XdbcTinyint, 3));
    b.append(int("SMALLINT", T::XdbcSmallint, 5));
    b.append(int("INTEGER", T::XdbcInteger, 10));
    b.append(int("BIGINT", T::XdbcBigint, 19));
    b.append(xdbc(
        "REAL",
        T::XdbcReal,
        T::XdbcReal,
        None,
        Some(7),
        None,
        false,
        Some(false),
        None,
        Some(2),
    ));
    b.append(xdbc(
        "DOUBLE",
        T::XdbcDouble,
        T::XdbcDouble,
        None,
        Some(15),
        None,
        false,
        Some(false),
        None,
        Some(2),
    ));
    b.append(xdbc(
        "DECIMAL",
        T::XdbcDecimal,
        T::XdbcDecimal,
        None,
        Some(38),
        None,
        false,
        Some(false),
        Some((0, 38)),
        Some(10),
    ));
    b.append(xdbc(
        "VARCHAR",
        T::XdbcVarchar,
        T::XdbcVarchar,
        None,
        None,
        Some(("'", "'")),
        true,
        None,
        None,
        None,
    ));
    b.append(xdbc(
        "VARBINARY",
        T::XdbcVarbinary,
        T::XdbcVarbinary,
        None,
        None,
        Some(("X'", "'")),
        false,
        None,
        None,
        None,
    ));
    b.append(xdbc(
        "DATE",
        T::XdbcDate,
        T::XdbcDatetime,
        Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
        Some(10),
        Some(("DATE '", "'")),
        false,
        None,
        None,
        None,
    ));
    b.append(xdbc(
        "TIME",
        T::XdbcTime,
        T::XdbcDatetime,
        Some(XdbcDatetimeSubcode::XdbcSubcodeTime),
        Some(18),
        Some(("TIME '", "'")),
        false,
        None,
        Some((0, 9)),
        None,
    ));
    b.append(xdbc(
        "TIMESTAMP",
        T::XdbcTimestamp,
        T::XdbcDatetime,
        Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        Some(29),
        Some(("TIMESTAMP '", "'")),
        false,
        None,
        Some((0, 9)),
        None,
    ));
    b.build()
        .map_err(|e| Status::internal(format!("building XdbcTypeInfo: {e}")))
}
