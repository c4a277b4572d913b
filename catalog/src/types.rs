//! The contract type language: the column types a data product may declare.

use std::fmt;
use std::str::FromStr;

/// A column type as written in a product contract.
///
/// The names follow SQL and Delta Lake: `boolean`, `tinyint`, `smallint`, `int`, `bigint`,
/// `float`, `double`, `decimal(p,s)`, `string`, `binary`, `date`, `timestamp` (microseconds,
/// UTC-adjusted) and `timestamp_ntz` (microseconds, no time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal { precision: u8, scale: i8 },
    String,
    Binary,
    Date,
    Timestamp,
    TimestampNtz,
}

impl FromStr for ColumnType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let simple = match t.as_str() {
            "boolean" | "bool" => Some(ColumnType::Boolean),
            "tinyint" | "byte" => Some(ColumnType::TinyInt),
            "smallint" | "short" => Some(ColumnType::SmallInt),
            "int" | "integer" => Some(ColumnType::Int),
            "bigint" | "long" => Some(ColumnType::BigInt),
            "float" | "real" => Some(ColumnType::Float),
            "double" => Some(ColumnType::Double),
            "string" | "varchar" | "text" => Some(ColumnType::String),
            "binary" => Some(ColumnType::Binary),
            "date" => Some(ColumnType::Date),
            "timestamp" => Some(ColumnType::Timestamp),
            "timestamp_ntz" => Some(ColumnType::TimestampNtz),
            _ => None,
        };
        if let Some(t) = simple {
            return Ok(t);
        }
        if let Some(args) = t.strip_prefix("decimal(").and_then(|r| r.strip_suffix(')')) {
            let mut parts = args.split(',').map(str::trim);
            let (p_text, s_text) = (parts.next(), parts.next());
            if parts.next().is_none() {
                if let (Some(Ok(precision)), Some(Ok(scale))) =
                    (p_text.map(str::parse::<u8>), s_text.map(str::parse::<i8>))
                {
                    if (1..=38).contains(&precision) && scale >= 0 && scale as u8 <= precision {
                        return Ok(ColumnType::Decimal { precision, scale });
                    }
                }
            }
            return Err(format!(
                "invalid decimal type `{s}`: expected decimal(p,s) with 1 <= p <= 38 and 0 <= s <= p"
            ));
        }
        Err(format!(
            "unknown type `{s}`: expected one of boolean, tinyint, smallint, int, bigint, float, \
             double, decimal(p,s), string, binary, date, timestamp, timestamp_ntz"
        ))
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::TinyInt => f.write_str("tinyint"),
            ColumnType::SmallInt => f.write_str("smallint"),
            ColumnType::Int => f.write_str("int"),
            ColumnType::BigInt => f.write_str("bigint"),
            ColumnType::Float => f.write_str("float"),
            ColumnType::Double => f.write_str("double"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::String => f.write_str("string"),
            ColumnType::Binary => f.write_str("binary"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::TimestampNtz => f.write_str("timestamp_ntz"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_type() {
        for s in [
            "boolean",
            "tinyint",
            "smallint",
            "int",
            "bigint",
            "float",
            "double",
            "decimal(12,2)",
            "string",
            "binary",
            "date",
            "timestamp",
            "timestamp_ntz",
        ] {
            let t: ColumnType = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
        assert_eq!("VARCHAR".parse::<ColumnType>(), Ok(ColumnType::String));
    }

    #[test]
    fn rejects_bad_types_with_a_clear_message() {
        assert!("decimal(40,2)"
            .parse::<ColumnType>()
            .unwrap_err()
            .contains("decimal(40,2)"));
        assert!("decimal(5,6)".parse::<ColumnType>().is_err());
        assert!("strng"
            .parse::<ColumnType>()
            .unwrap_err()
            .contains("unknown type `strng`"));
    }
}
