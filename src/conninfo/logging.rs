//! momoko's own connection-string keywords, which libpq does not know: the statement log's
//! settings (see the README's "Observing momoko"), so that a deployment can turn the log up
//! or down without a rebuild. libpq refuses them, so a string that uses them is momoko's
//! alone. They never reach the server.
//!
//! - `momoko_log_statements`: the level of every statement's line (`off`, `error`,
//!   `warn`, `info`, `debug` (the default), `trace`);
//! - `momoko_log_slow_statements`: the level of a slow statement's line (default `warn`);
//! - `momoko_slow_statement_ms`: from how many milliseconds a statement is slow (default
//!   1000).
//!
//! What a builder sets in code wins over these.

use std::time::Duration;

use log::LevelFilter;

use super::Kw;
use crate::error::Error;
use crate::observe::LogOverrides;

/// The keywords' values, each checked (a Usage error names the keyword and the value).
pub(super) fn parse(value: &dyn Fn(Kw) -> Option<String>) -> Result<LogOverrides, Error> {
    let level = |kw: Kw| -> Result<Option<LevelFilter>, Error> {
        value(kw)
            .map(|v| {
                v.parse::<LevelFilter>().map_err(|_| {
                    Error::usage(format!(
                        "invalid {} value: \"{v}\" (off, error, warn, info, debug or trace)",
                        kw.name()
                    ))
                })
            })
            .transpose()
    };
    let slow_threshold = value(Kw::MomokoSlowStatementMs)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| {
                    Error::usage(format!(
                        "invalid momoko_slow_statement_ms value: \"{v}\" (milliseconds, 0 or more)"
                    ))
                })
        })
        .transpose()?;
    Ok(LogOverrides {
        statements: level(Kw::MomokoLogStatements)?,
        slow_statements: level(Kw::MomokoLogSlowStatements)?,
        slow_threshold,
        rendered_sql: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn parse(s: &str) -> Result<LogOverrides, Error> {
        Config::parse_with_env(&format!("host=h user=u {s}"), &|_| None).map(|c| c.statement_log)
    }

    #[test]
    fn the_statement_log_keywords_set_levels_and_the_threshold() {
        assert_eq!(
            parse("momoko_log_statements=info momoko_log_slow_statements=ERROR momoko_slow_statement_ms=250")
                .unwrap(),
            LogOverrides {
                statements: Some(LevelFilter::Info),
                slow_statements: Some(LevelFilter::Error),
                slow_threshold: Some(Duration::from_millis(250)),
                rendered_sql: None,
            }
        );
        assert_eq!(parse("").unwrap(), LogOverrides::default());
        assert_eq!(
            parse("momoko_log_statements=off").unwrap().statements,
            Some(LevelFilter::Off)
        );
    }

    #[test]
    fn a_bad_statement_log_value_is_a_usage_error_naming_the_keyword() {
        let e = parse("momoko_log_statements=loud").unwrap_err();
        assert_eq!(
            e.to_string(),
            "usage error: invalid momoko_log_statements value: \"loud\" \
             (off, error, warn, info, debug or trace)"
        );
        let e = parse("momoko_slow_statement_ms=1s").unwrap_err();
        assert_eq!(
            e.to_string(),
            "usage error: invalid momoko_slow_statement_ms value: \"1s\" (milliseconds, 0 or more)"
        );
    }

    #[test]
    fn the_statement_log_keywords_stay_in_a_redacted_string_and_out_of_the_startup() {
        let c =
            Config::parse_with_env("host=h user=u momoko_log_statements=info", &|_| None).unwrap();
        assert!(!c
            .startup_params()
            .iter()
            .any(|(k, _)| k.starts_with("momoko")));
        assert_eq!(
            super::super::redacted("host=h momoko_slow_statement_ms=5"),
            "host=h momoko_slow_statement_ms=5"
        );
    }
}
