//! `min_protocol_version` and `max_protocol_version`: which versions of the frontend/backend
//! protocol a connection may speak, read as libpq 18 reads them.
//!
//! This module owns the two keywords' values, their defaults and their checks; it never looks
//! at a server. The StartupMessage asks for the maximum, and a server that offers less
//! (NegotiateProtocolVersion) is accepted down to the minimum: the protocol core decides that.
//! The default stays 3.0, as in libpq 18, because poolers still mishandle a request for 3.2:
//! a PgBouncer without protocol negotiation (Debian 12's 1.18) refuses it with `bad packet
//! header`, and newer ones can answer it with two NegotiateProtocolVersion messages, which
//! libpq and momoko refuse (pgbouncer#1459).

use std::fmt;

use super::Config;
use crate::error::Error;

/// A version of the PostgreSQL frontend/backend protocol that momoko speaks.
///
/// 3.1 was never used (some old poolers wrongly claim it), so it is no value here, as in
/// libpq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ProtocolVersion {
    /// 3.0: every server since PostgreSQL 7.4 and every pooler; cancel keys of 4 bytes. The
    /// default, as in libpq.
    #[default]
    V3_0,
    /// 3.2: PostgreSQL 18 and later; cancel keys of up to 256 bytes (the server sends 32).
    V3_2,
}

impl ProtocolVersion {
    /// The newest version momoko speaks: what `latest` means.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V3_2;

    /// `(major, minor)`: `(3, 2)` for 3.2.
    pub fn pair(self) -> (u16, u16) {
        match self {
            ProtocolVersion::V3_0 => (3, 0),
            ProtocolVersion::V3_2 => (3, 2),
        }
    }

    /// As a connection string writes it: `"3.0"` or `"3.2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V3_0 => "3.0",
            ProtocolVersion::V3_2 => "3.2",
        }
    }

    /// The version as the StartupMessage and NegotiateProtocolVersion carry it: the major
    /// version in the high 16 bits, the minor in the low (3.2 = 196610).
    pub(crate) fn code(self) -> i32 {
        let (major, minor) = self.pair();
        (i32::from(major) << 16) | i32::from(minor)
    }

    /// The version a protocol code names, if momoko speaks it.
    pub(crate) fn from_code(code: i32) -> Option<ProtocolVersion> {
        [ProtocolVersion::V3_0, ProtocolVersion::V3_2]
            .into_iter()
            .find(|v| v.code() == code)
    }

    /// libpq 18 takes exactly `3.0`, `3.2` and `latest`: no spaces, no other spelling, and
    /// (unlike most keywords) not the empty string.
    fn parse(keyword: &str, value: &str) -> Result<ProtocolVersion, Error> {
        match value {
            "3.0" => Ok(ProtocolVersion::V3_0),
            "3.2" => Ok(ProtocolVersion::V3_2),
            "latest" => Ok(ProtocolVersion::LATEST),
            _ => Err(Error::usage(format!(
                "invalid {keyword} value: \"{value}\""
            ))),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two keywords as given: the minimum (3.0 unless set) and the maximum if it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct ProtocolRange {
    min: ProtocolVersion,
    max: Option<ProtocolVersion>,
}

impl ProtocolRange {
    /// Reads the two values (from the string, else `PGMINPROTOCOLVERSION` and
    /// `PGMAXPROTOCOLVERSION`) and refuses a minimum above the maximum.
    pub(super) fn parse(min: Option<String>, max: Option<String>) -> Result<ProtocolRange, Error> {
        let range = ProtocolRange {
            min: match min {
                Some(v) => ProtocolVersion::parse("min_protocol_version", &v)?,
                None => ProtocolVersion::V3_0,
            },
            max: match max {
                Some(v) => Some(ProtocolVersion::parse("max_protocol_version", &v)?),
                None => None,
            },
        };
        range.check()?;
        Ok(range)
    }

    /// The maximum: as set, else 3.0, unless the minimum is higher, when libpq takes the
    /// newest (a caller who demands 3.2 must not have to repeat it).
    fn max(self) -> ProtocolVersion {
        match self.max {
            Some(v) => v,
            None if self.min > ProtocolVersion::V3_0 => ProtocolVersion::LATEST,
            None => ProtocolVersion::V3_0,
        }
    }

    fn check(self) -> Result<(), Error> {
        if self.min > self.max() {
            return Err(Error::usage(
                "\"min_protocol_version\" is greater than \"max_protocol_version\"",
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Sets `min_protocol_version`: a server that offers less fails the connect. With no
    /// maximum set, a minimum of 3.2 also asks for 3.2, as in libpq.
    pub fn min_protocol_version(mut self, version: ProtocolVersion) -> Config {
        self.protocol.min = version;
        self
    }

    /// Sets `max_protocol_version`: the version the StartupMessage asks for (libpq's
    /// default, kept here, is 3.0). A minimum above it fails the connect as a usage error.
    pub fn max_protocol_version(mut self, version: ProtocolVersion) -> Config {
        self.protocol.max = Some(version);
        self
    }

    /// `min_protocol_version` (3.0 unless set).
    pub fn get_min_protocol_version(&self) -> ProtocolVersion {
        self.protocol.min
    }

    /// `max_protocol_version` as a connect uses it: as set, else 3.0, or the newest when the
    /// minimum is above 3.0.
    pub fn get_max_protocol_version(&self) -> ProtocolVersion {
        self.protocol.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(min: Option<&str>, max: Option<&str>) -> Result<ProtocolRange, Error> {
        ProtocolRange::parse(min.map(str::to_owned), max.map(str::to_owned))
    }

    #[test]
    fn only_3_0_3_2_and_latest_are_versions_in_libpq_18s_words() {
        for (value, version) in [
            ("3.0", ProtocolVersion::V3_0),
            ("3.2", ProtocolVersion::V3_2),
            ("latest", ProtocolVersion::V3_2),
        ] {
            assert_eq!(range(None, Some(value)).unwrap().max(), version);
        }
        // What psql 18.6 refuses, each in its words.
        for bad in [
            "3.1", "3.3", "2.0", "3", "3.02", "03.2", " 3.2", "3.2 ", "3.x", "", "LATEST",
        ] {
            let e = range(None, Some(bad)).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Usage);
            assert_eq!(
                e.to_string(),
                format!("usage error: invalid max_protocol_version value: \"{bad}\"")
            );
            let e = range(Some(bad), None).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("usage error: invalid min_protocol_version value: \"{bad}\"")
            );
        }
    }

    #[test]
    fn the_defaults_are_libpq_18s() {
        let r = range(None, None).unwrap();
        assert_eq!(
            (r.min, r.max()),
            (ProtocolVersion::V3_0, ProtocolVersion::V3_0)
        );
        // A minimum above 3.0 with no maximum asks for the newest.
        let r = range(Some("3.2"), None).unwrap();
        assert_eq!(
            (r.min, r.max()),
            (ProtocolVersion::V3_2, ProtocolVersion::V3_2)
        );
        let r = range(Some("latest"), None).unwrap();
        assert_eq!(r.max(), ProtocolVersion::LATEST);
    }

    #[test]
    fn a_minimum_above_the_maximum_is_refused() {
        for (min, max) in [("3.2", "3.0"), ("latest", "3.0")] {
            let e = range(Some(min), Some(max)).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Usage);
            assert_eq!(
                e.to_string(),
                "usage error: \"min_protocol_version\" is greater than \"max_protocol_version\""
            );
        }
        range(Some("3.2"), Some("3.2")).unwrap();
        range(Some("3.0"), Some("latest")).unwrap();
    }

    fn parse_env(s: &str, vars: &[(&str, &str)]) -> Result<Config, Error> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::parse_with_env(s, &move |name| {
            if name == "USER" {
                return Some("u".to_owned());
            }
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn versions(c: &Config) -> (ProtocolVersion, ProtocolVersion) {
        (c.get_min_protocol_version(), c.get_max_protocol_version())
    }

    #[test]
    fn the_keywords_act_in_strings_uris_and_the_environment() {
        use ProtocolVersion::{V3_0, V3_2};
        let c = parse_env("host=h max_protocol_version=3.2", &[]).unwrap();
        assert_eq!(versions(&c), (V3_0, V3_2));
        let c = parse_env("postgresql://h/db?min_protocol_version=latest", &[]).unwrap();
        assert_eq!(versions(&c), (V3_2, V3_2));
        let c = parse_env("host=h", &[("PGMAXPROTOCOLVERSION", "latest")]).unwrap();
        assert_eq!(versions(&c), (V3_0, V3_2));
        let c = parse_env("host=h", &[("PGMINPROTOCOLVERSION", "3.2")]).unwrap();
        assert_eq!(versions(&c), (V3_2, V3_2));
        // The string hides the variable, as every keyword's does.
        let c = parse_env(
            "host=h max_protocol_version=3.0",
            &[("PGMAXPROTOCOLVERSION", "3.2")],
        )
        .unwrap();
        assert_eq!(versions(&c), (V3_0, V3_0));
        // Nothing given: libpq 18's default, 3.0 only.
        assert_eq!(versions(&parse_env("host=h", &[]).unwrap()), (V3_0, V3_0));
        assert_eq!(versions(&Config::new()), (V3_0, V3_0));
    }

    #[test]
    fn bad_values_are_usage_errors_at_parse_time_from_every_source() {
        let words = |r: Result<Config, Error>| {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Usage);
            e.to_string()
        };
        assert_eq!(
            words(parse_env("host=h max_protocol_version=3.1", &[])),
            "usage error: invalid max_protocol_version value: \"3.1\""
        );
        assert_eq!(
            words(parse_env("postgresql://h/?min_protocol_version=4.0", &[])),
            "usage error: invalid min_protocol_version value: \"4.0\""
        );
        assert_eq!(
            words(parse_env("host=h", &[("PGMAXPROTOCOLVERSION", "")])),
            "usage error: invalid max_protocol_version value: \"\""
        );
        assert_eq!(
            words(parse_env(
                "host=h min_protocol_version=3.2 max_protocol_version=3.0",
                &[]
            )),
            "usage error: \"min_protocol_version\" is greater than \"max_protocol_version\""
        );
        assert_eq!(
            words(parse_env(
                "host=h",
                &[
                    ("PGMINPROTOCOLVERSION", "latest"),
                    ("PGMAXPROTOCOLVERSION", "3.0")
                ]
            )),
            "usage error: \"min_protocol_version\" is greater than \"max_protocol_version\""
        );
    }

    #[test]
    fn the_builder_sets_what_the_string_would() {
        use ProtocolVersion::{V3_0, V3_2};
        let built = Config::new().max_protocol_version(V3_2);
        assert_eq!(versions(&built), (V3_0, V3_2));
        assert_eq!(
            versions(&built),
            versions(&parse_env("max_protocol_version=3.2", &[]).unwrap())
        );
        let built = Config::new().min_protocol_version(V3_2);
        assert_eq!(versions(&built), (V3_2, V3_2));
        // A crossed pair is kept as given; the connect refuses it (see the protocol core).
        let crossed = Config::new()
            .min_protocol_version(V3_2)
            .max_protocol_version(V3_0);
        assert_eq!(versions(&crossed), (V3_2, V3_0));
        let shown = format!("{crossed:?}");
        assert!(shown.contains("min_protocol_version: V3_2"), "{shown}");
        assert!(shown.contains("max_protocol_version: V3_0"), "{shown}");
    }

    #[test]
    fn versions_travel_as_major_shifted_by_16_plus_minor() {
        assert_eq!(ProtocolVersion::V3_0.code(), 196_608);
        assert_eq!(ProtocolVersion::V3_2.code(), 196_610);
        assert_eq!(
            ProtocolVersion::from_code(0x0003_0002),
            Some(ProtocolVersion::V3_2)
        );
        assert_eq!(ProtocolVersion::from_code(0x0003_0001), None);
        assert_eq!(ProtocolVersion::V3_2.pair(), (3, 2));
        assert_eq!(ProtocolVersion::V3_2.to_string(), "3.2");
    }
}
