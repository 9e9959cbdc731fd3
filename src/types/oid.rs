//! Type OIDs of the built-in PostgreSQL types that momoko knows by number.
//!
//! This module only names numbers from `pg_type.dat`; it never decides how a type is coded.
//! Types with OIDs assigned at `CREATE EXTENSION` time (hstore) are not here: the
//! connection learns them at run time (see `TypeRegistry`).

/// `boolean`.
pub const BOOL: u32 = 16;
/// `bytea`.
pub const BYTEA: u32 = 17;
/// `"char"`.
pub const CHAR: u32 = 18;
/// `name`.
pub const NAME: u32 = 19;
/// `bigint`.
pub const INT8: u32 = 20;
/// `smallint`.
pub const INT2: u32 = 21;
/// `integer`.
pub const INT4: u32 = 23;
/// `text`.
pub const TEXT: u32 = 25;
/// `oid`.
pub const OID: u32 = 26;
/// `json`.
pub const JSON: u32 = 114;
/// `xml`.
pub const XML: u32 = 142;
/// `real`.
pub const FLOAT4: u32 = 700;
/// `double precision`.
pub const FLOAT8: u32 = 701;
/// `unknown (an untyped literal)`.
pub const UNKNOWN: u32 = 705;
/// `money`.
pub const MONEY: u32 = 790;
/// `character(n)`.
pub const BPCHAR: u32 = 1042;
/// `character varying`.
pub const VARCHAR: u32 = 1043;
/// `date`.
pub const DATE: u32 = 1082;
/// `time`.
pub const TIME: u32 = 1083;
/// `timestamp`.
pub const TIMESTAMP: u32 = 1114;
/// `timestamp with time zone`.
pub const TIMESTAMPTZ: u32 = 1184;
/// `interval`.
pub const INTERVAL: u32 = 1186;
/// `time with time zone`.
pub const TIMETZ: u32 = 1266;
/// `numeric`.
pub const NUMERIC: u32 = 1700;
/// `uuid`.
pub const UUID: u32 = 2950;
/// `jsonb`.
pub const JSONB: u32 = 3802;
/// `pg_lsn`, a WAL position (read it as [`Lsn`](crate::replication::Lsn)).
pub const PG_LSN: u32 = 3220;

/// `inet`.
pub const INET: u32 = 869;
/// `cidr`.
pub const CIDR: u32 = 650;
/// `int4range`.
pub const INT4RANGE: u32 = 3904;
/// `numrange`.
pub const NUMRANGE: u32 = 3906;
/// `tsrange`.
pub const TSRANGE: u32 = 3908;
/// `tstzrange`.
pub const TSTZRANGE: u32 = 3910;
/// `daterange`.
pub const DATERANGE: u32 = 3912;
/// `int8range`.
pub const INT8RANGE: u32 = 3926;

/// `boolean[]`.
pub const BOOL_ARRAY: u32 = 1000;
/// `bytea[]`.
pub const BYTEA_ARRAY: u32 = 1001;
/// `"char"[]`.
pub const CHAR_ARRAY: u32 = 1002;
/// `name[]`.
pub const NAME_ARRAY: u32 = 1003;
/// `smallint[]`.
pub const INT2_ARRAY: u32 = 1005;
/// `integer[]`.
pub const INT4_ARRAY: u32 = 1007;
/// `text[]`.
pub const TEXT_ARRAY: u32 = 1009;
/// `character(n)[]`.
pub const BPCHAR_ARRAY: u32 = 1014;
/// `character varying[]`.
pub const VARCHAR_ARRAY: u32 = 1015;
/// `bigint[]`.
pub const INT8_ARRAY: u32 = 1016;
/// `real[]`.
pub const FLOAT4_ARRAY: u32 = 1021;
/// `double precision[]`.
pub const FLOAT8_ARRAY: u32 = 1022;
/// `oid[]`.
pub const OID_ARRAY: u32 = 1028;
/// `numeric[]`.
pub const NUMERIC_ARRAY: u32 = 1231;
/// `json[]`.
pub const JSON_ARRAY: u32 = 199;
/// `jsonb[]`.
pub const JSONB_ARRAY: u32 = 3807;
/// `date[]`.
pub const DATE_ARRAY: u32 = 1182;
/// `time[]`.
pub const TIME_ARRAY: u32 = 1183;
/// `timestamp[]`.
pub const TIMESTAMP_ARRAY: u32 = 1115;
/// `timestamp with time zone[]`.
pub const TIMESTAMPTZ_ARRAY: u32 = 1185;
/// `interval[]`.
pub const INTERVAL_ARRAY: u32 = 1187;
/// `time with time zone[]`.
pub const TIMETZ_ARRAY: u32 = 1270;
/// `uuid[]`.
pub const UUID_ARRAY: u32 = 2951;
/// `pg_lsn[]`.
pub const PG_LSN_ARRAY: u32 = 3221;
/// `xml[]`.
pub const XML_ARRAY: u32 = 143;
/// `money[]`.
pub const MONEY_ARRAY: u32 = 791;
/// `inet[]`.
pub const INET_ARRAY: u32 = 1041;
/// `cidr[]`.
pub const CIDR_ARRAY: u32 = 651;
/// `int4range[]`.
pub const INT4RANGE_ARRAY: u32 = 3905;
/// `numrange[]`.
pub const NUMRANGE_ARRAY: u32 = 3907;
/// `tsrange[]`.
pub const TSRANGE_ARRAY: u32 = 3909;
/// `tstzrange[]`.
pub const TSTZRANGE_ARRAY: u32 = 3911;
/// `daterange[]`.
pub const DATERANGE_ARRAY: u32 = 3913;
/// `int8range[]`.
pub const INT8RANGE_ARRAY: u32 = 3927;

/// The element type of a built-in array type, `None` for any other OID.
pub fn array_element(array_oid: u32) -> Option<u32> {
    Some(match array_oid {
        BOOL_ARRAY => BOOL,
        BYTEA_ARRAY => BYTEA,
        CHAR_ARRAY => CHAR,
        NAME_ARRAY => NAME,
        INT2_ARRAY => INT2,
        INT4_ARRAY => INT4,
        TEXT_ARRAY => TEXT,
        BPCHAR_ARRAY => BPCHAR,
        VARCHAR_ARRAY => VARCHAR,
        INT8_ARRAY => INT8,
        FLOAT4_ARRAY => FLOAT4,
        FLOAT8_ARRAY => FLOAT8,
        OID_ARRAY => OID,
        NUMERIC_ARRAY => NUMERIC,
        JSON_ARRAY => JSON,
        JSONB_ARRAY => JSONB,
        DATE_ARRAY => DATE,
        TIME_ARRAY => TIME,
        TIMESTAMP_ARRAY => TIMESTAMP,
        TIMESTAMPTZ_ARRAY => TIMESTAMPTZ,
        INTERVAL_ARRAY => INTERVAL,
        TIMETZ_ARRAY => TIMETZ,
        UUID_ARRAY => UUID,
        PG_LSN_ARRAY => PG_LSN,
        XML_ARRAY => XML,
        MONEY_ARRAY => MONEY,
        INET_ARRAY => INET,
        CIDR_ARRAY => CIDR,
        INT4RANGE_ARRAY => INT4RANGE,
        NUMRANGE_ARRAY => NUMRANGE,
        TSRANGE_ARRAY => TSRANGE,
        TSTZRANGE_ARRAY => TSTZRANGE,
        DATERANGE_ARRAY => DATERANGE,
        INT8RANGE_ARRAY => INT8RANGE,
        1040 => 829,  // macaddr
        1561 => 1560, // bit
        1563 => 1562, // varbit
        _ => return None,
    })
}

/// The array type whose elements are `element_oid`, for the built-in types.
pub fn array_of(element_oid: u32) -> Option<u32> {
    Some(match element_oid {
        BOOL => BOOL_ARRAY,
        BYTEA => BYTEA_ARRAY,
        CHAR => CHAR_ARRAY,
        NAME => NAME_ARRAY,
        INT2 => INT2_ARRAY,
        INT4 => INT4_ARRAY,
        TEXT => TEXT_ARRAY,
        BPCHAR => BPCHAR_ARRAY,
        VARCHAR => VARCHAR_ARRAY,
        INT8 => INT8_ARRAY,
        FLOAT4 => FLOAT4_ARRAY,
        FLOAT8 => FLOAT8_ARRAY,
        OID => OID_ARRAY,
        NUMERIC => NUMERIC_ARRAY,
        JSON => JSON_ARRAY,
        JSONB => JSONB_ARRAY,
        DATE => DATE_ARRAY,
        TIME => TIME_ARRAY,
        TIMESTAMP => TIMESTAMP_ARRAY,
        TIMESTAMPTZ => TIMESTAMPTZ_ARRAY,
        INTERVAL => INTERVAL_ARRAY,
        TIMETZ => TIMETZ_ARRAY,
        UUID => UUID_ARRAY,
        PG_LSN => PG_LSN_ARRAY,
        INET => INET_ARRAY,
        CIDR => CIDR_ARRAY,
        INT4RANGE => INT4RANGE_ARRAY,
        NUMRANGE => NUMRANGE_ARRAY,
        TSRANGE => TSRANGE_ARRAY,
        TSTZRANGE => TSTZRANGE_ARRAY,
        DATERANGE => DATERANGE_ARRAY,
        INT8RANGE => INT8RANGE_ARRAY,
        _ => return None,
    })
}

/// Whether momoko decodes `oid`'s binary form (and so asks for it in the results of
/// prepared statements and cached queries): the scalars with a binary reader here, and
/// arrays of them. Every one also reads as a [`Value`](crate::Value) and as a `String`.
pub fn binary_decodable(oid: u32) -> bool {
    let scalar = |o: u32| {
        matches!(
            o,
            BOOL | BYTEA
                | CHAR
                | NAME
                | INT8
                | INT2
                | INT4
                | TEXT
                | OID
                | JSON
                | FLOAT4
                | FLOAT8
                | BPCHAR
                | VARCHAR
                | DATE
                | TIME
                | TIMESTAMP
                | TIMESTAMPTZ
                | INTERVAL
                | NUMERIC
                | UUID
                | PG_LSN
                | JSONB
                | INET
                | CIDR
                | INT4RANGE
                | NUMRANGE
                | TSRANGE
                | TSTZRANGE
                | DATERANGE
                | INT8RANGE
        )
    };
    scalar(oid) || array_element(oid).is_some_and(scalar)
}

/// Types whose text form is the string itself, decoded as `Value::Text`.
pub fn is_text_like(oid: u32) -> bool {
    matches!(oid, TEXT | VARCHAR | BPCHAR | NAME | CHAR | UNKNOWN | XML)
}

/// The SQL name of a built-in scalar type that has no variant of its own in `Value`, used
/// as the cast when such a value is quoted (`'2024-02-29'::date`).
pub fn cast_name(oid: u32) -> Option<&'static str> {
    Some(match oid {
        DATE => "date",
        TIME => "time",
        TIMETZ => "timetz",
        TIMESTAMP => "timestamp",
        TIMESTAMPTZ => "timestamptz",
        INTERVAL => "interval",
        UUID => "uuid",
        PG_LSN => "pg_lsn",
        MONEY => "money",
        XML => "xml",
        INET => "inet",
        CIDR => "cidr",
        INT4RANGE => "int4range",
        NUMRANGE => "numrange",
        TSRANGE => "tsrange",
        TSTZRANGE => "tstzrange",
        DATERANGE => "daterange",
        INT8RANGE => "int8range",
        829 => "macaddr",
        _ => return None,
    })
}
