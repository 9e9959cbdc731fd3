use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::error::ErrorKind;

/// A fixed environment: user alice, a home without a password file, plus `vars`.
fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let mut all: Vec<(String, String)> = vec![
        ("USER".into(), "alice".into()),
        ("HOME".into(), "/nonexistent/momoko-test-home".into()),
    ];
    for (k, v) in vars {
        all.retain(|(name, _)| name != k);
        all.push((k.to_string(), v.to_string()));
    }
    move |name: &str| all.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn parse_env(s: &str, vars: &[(&str, &str)]) -> Result<Config, Error> {
    Config::parse_with_env(s, &env_of(vars))
}

fn parse(s: &str) -> Config {
    parse_env(s, &[]).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

/// The message of the Usage error that parsing `s` must give.
fn parse_err(s: &str) -> String {
    usage_message(parse_env(s, &[]).expect_err(s))
}

fn usage_message(e: Error) -> String {
    assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
    e.to_string()
        .strip_prefix("usage error: ")
        .expect("usage prefix")
        .to_owned()
}

fn tcp(host: &str, port: u16) -> Target {
    Target::Tcp {
        host: host.into(),
        addr: None,
        port,
    }
}

fn unix(dir: &str, port: u16) -> Target {
    Target::Unix {
        path: PathBuf::from(format!("{dir}/.s.PGSQL.{port}")),
        port,
    }
}

fn targets(s: &str) -> Vec<Target> {
    parse(s).targets().unwrap()
}

/// A password file with the given content and mode, under a name no other test uses.
struct TempFile(PathBuf);

impl TempFile {
    fn new(content: &str, mode: u32) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "momoko-conninfo-{}-{}.pgpass",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---- key=value form ----

#[test]
fn key_value_pairs_set_every_field() {
    let c = parse(
        "host=db.example.com port=5433 dbname=app user=bob password=secret \
         application_name=web options=-cgeqo=off",
    );
    assert_eq!(c.get_hosts(), ["db.example.com"]);
    assert_eq!(c.get_ports(), [5433]);
    assert_eq!(c.get_dbname(), Some("app"));
    assert_eq!(c.get_user(), Some("bob"));
    assert_eq!(c.get_password(), Some("secret"));
    assert_eq!(c.get_application_name(), Some("web"));
    assert_eq!(c.get_options(), Some("-cgeqo=off"));
    assert_eq!(c.targets().unwrap(), [tcp("db.example.com", 5433)]);
}

#[test]
fn key_value_allows_whitespace_around_equals() {
    let c = parse("  host = h1 \t port= 5433\ndbname =app\x0buser\x0c=\rbob  ");
    assert_eq!(c.targets().unwrap(), [tcp("h1", 5433)]);
    assert_eq!(c.get_dbname(), Some("app"));
    assert_eq!(c.get_user(), Some("bob"));
}

#[test]
fn key_value_quoted_values_unescape_quote_and_backslash() {
    let c = parse(r"password='it\'s a \\ secret' options = '-c search_path=x'");
    assert_eq!(c.get_password(), Some(r"it's a \ secret"));
    assert_eq!(c.get_options(), Some("-c search_path=x"));
}

#[test]
fn key_value_backslash_escapes_outside_quotes_too() {
    let c = parse(r"password=a\ b\'c user=bob");
    assert_eq!(c.get_password(), Some("a b'c"));
    assert_eq!(c.get_user(), Some("bob"));
}

#[test]
fn key_value_empty_quoted_value_means_default() {
    let c = parse("dbname='' user=bob application_name=''");
    assert_eq!(c.get_dbname(), Some("bob"));
    assert_eq!(c.get_application_name(), None);
}

#[test]
fn key_value_needs_no_space_after_closing_quote() {
    assert_eq!(targets("host='h'port=5433"), [tcp("h", 5433)]);
}

#[test]
fn key_value_later_occurrence_wins() {
    assert_eq!(parse("port=1 port=2").get_ports(), [2]);
}

#[test]
fn key_value_non_ascii_values_survive() {
    let c = parse("password='pässwörd' application_name=日本");
    assert_eq!(c.get_password(), Some("pässwörd"));
    assert_eq!(c.get_application_name(), Some("日本"));
}

#[test]
fn key_value_unterminated_quote_is_an_error() {
    assert_eq!(
        parse_err("host='localhost port=5432"),
        "unterminated quoted string in connection info string"
    );
    assert_eq!(
        parse_err(r"password='abc\'"),
        "unterminated quoted string in connection info string"
    );
}

#[test]
fn key_value_missing_equals_is_an_error() {
    assert_eq!(
        parse_err("host localhost"),
        "missing \"=\" after \"host\" in connection info string"
    );
    assert_eq!(
        parse_err("mydb"),
        "missing \"=\" after \"mydb\" in connection info string"
    );
    assert_eq!(
        parse_err("host=a port"),
        "missing \"=\" after \"port\" in connection info string"
    );
}

#[test]
fn key_value_unknown_keyword_error_names_it() {
    assert_eq!(parse_err("foo=bar"), "invalid connection option \"foo\"");
    assert_eq!(
        parse_err("host=h Port=1"),
        "invalid connection option \"Port\""
    );
}

#[test]
fn unknown_keyword_is_reported_before_a_later_syntax_error() {
    assert_eq!(
        parse_err("foo=1 host='x"),
        "invalid connection option \"foo\""
    );
}

#[test]
fn libpq_keyword_momoko_lacks_is_refused_by_name() {
    assert_eq!(
        parse_err("sslcrl=/etc/crl.pem"),
        "connection option \"sslcrl\" is not supported by momoko"
    );
    assert_eq!(
        parse_err("postgresql://h/db?service=x"),
        "connection option \"service\" is not supported by momoko"
    );
}

#[test]
fn empty_string_gives_libpq_defaults() {
    for s in ["", "  \t\n"] {
        let c = parse(s);
        assert_eq!(c.targets().unwrap(), [unix("/var/run/postgresql", 5432)]);
        assert_eq!(c.get_user(), Some("alice"));
        assert_eq!(c.get_dbname(), Some("alice"));
        assert_eq!(c.get_password(), None);
        assert_eq!(c.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(c.get_connect_timeout(), None);
        assert!(c.get_keepalives());
        assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::Any);
        assert_eq!(
            c.get_passfile(),
            Some(std::path::Path::new(
                "/nonexistent/momoko-test-home/.pgpass"
            ))
        );
    }
}

// ---- URI form ----

#[test]
fn uri_user_password_host_port_dbname() {
    for scheme in ["postgresql", "postgres"] {
        let c = parse(&format!("{scheme}://bob:secret@db.example.com:5433/app"));
        assert_eq!(c.get_user(), Some("bob"));
        assert_eq!(c.get_password(), Some("secret"));
        assert_eq!(c.get_dbname(), Some("app"));
        assert_eq!(c.targets().unwrap(), [tcp("db.example.com", 5433)]);
    }
}

#[test]
fn uri_user_without_password() {
    let c = parse("postgresql://bob@h");
    assert_eq!(c.get_user(), Some("bob"));
    assert_eq!(c.get_password(), None);
    assert_eq!(c.get_dbname(), Some("bob"));
    assert_eq!(c.targets().unwrap(), [tcp("h", 5432)]);
}

#[test]
fn uri_percent_decoding_applies_to_every_part() {
    let c = parse(
        "postgresql://b%6Fb%40corp:p%3Ass%2Fw%40rd@h%6Fst:54%333/my%20db\
         ?application%5Fname=my%20app%26co&options=-c%20x%3D1",
    );
    assert_eq!(c.get_user(), Some("bob@corp"));
    assert_eq!(c.get_password(), Some("p:ss/w@rd"));
    assert_eq!(c.get_dbname(), Some("my db"));
    assert_eq!(c.targets().unwrap(), [tcp("host", 5433)]);
    assert_eq!(c.get_application_name(), Some("my app&co"));
    assert_eq!(c.get_options(), Some("-c x=1"));
}

#[test]
fn uri_plus_is_not_a_space() {
    assert_eq!(parse("postgresql://u:a+b@h").get_password(), Some("a+b"));
}

#[test]
fn uri_ipv6_host_in_brackets() {
    assert_eq!(targets("postgresql://[::1]:5433/db"), [tcp("::1", 5433)]);
    assert_eq!(
        targets("postgresql://u@[2001:db8::7]/db"),
        [tcp("2001:db8::7", 5432)]
    );
    assert_eq!(targets("postgresql://[::1]?port=6000"), [tcp("::1", 6000)]);
}

#[test]
fn uri_ipv6_errors() {
    assert_eq!(
        parse_err("postgresql://[::1:5432/db"),
        "end of string reached when looking for matching \"]\" in IPv6 host address in \
         URI: \"postgresql://[::1:5432/db\""
    );
    assert_eq!(
        parse_err("postgresql://[]/db"),
        "IPv6 host address may not be empty in URI: \"postgresql://[]/db\""
    );
    assert_eq!(
        parse_err("postgresql://[::1]x/db"),
        "unexpected character \"x\" at position 19 in URI (expected \":\" or \"/\"): \
         \"postgresql://[::1]x/db\""
    );
}

#[test]
fn uri_percent_encoded_path_host_is_a_unix_socket_directory() {
    let c = parse("postgresql://%2Fvar%2Frun%2Fpostgresql/db");
    assert_eq!(c.targets().unwrap(), [unix("/var/run/postgresql", 5432)]);
    assert_eq!(c.get_dbname(), Some("db"));
    assert_eq!(targets("postgresql://%2Ftmp:5433"), [unix("/tmp", 5433)]);
}

#[test]
fn uri_query_gives_host_and_port() {
    let c = parse("postgresql:///mydb?host=/tmp&port=5433");
    assert_eq!(c.targets().unwrap(), [unix("/tmp", 5433)]);
    assert_eq!(c.get_dbname(), Some("mydb"));
}

#[test]
fn uri_query_overrides_the_authority() {
    assert_eq!(
        targets("postgresql://h:1/db?host=other&port=2"),
        [tcp("other", 2)]
    );
}

#[test]
fn uri_multiple_hosts_with_and_without_ports() {
    let c = parse("postgresql://h1:5433,h2,[::1]:5435/db");
    assert_eq!(c.get_hosts(), ["h1", "h2", "::1"]);
    assert_eq!(c.get_ports(), [5433, 5432, 5435]);
    assert_eq!(
        c.targets().unwrap(),
        [tcp("h1", 5433), tcp("h2", 5432), tcp("::1", 5435)]
    );
}

#[test]
fn uri_multiple_hosts_sharing_one_port() {
    assert_eq!(
        targets("postgresql://h1,h2/db?port=7000"),
        [tcp("h1", 7000), tcp("h2", 7000)]
    );
}

#[test]
fn uri_empty_is_all_defaults() {
    for s in [
        "postgresql://",
        "postgres://",
        "postgresql:///",
        "postgresql://?",
    ] {
        let c = parse(s);
        assert_eq!(
            c.targets().unwrap(),
            [unix("/var/run/postgresql", 5432)],
            "{s}"
        );
        assert_eq!(c.get_user(), Some("alice"));
        assert_eq!(c.get_dbname(), Some("alice"));
    }
}

#[test]
fn uri_empty_path_keeps_pgdatabase() {
    let c = parse_env("postgresql://h/", &[("PGDATABASE", "envdb")]).unwrap();
    assert_eq!(c.get_dbname(), Some("envdb"));
}

#[test]
fn uri_unknown_query_key_is_an_error() {
    assert_eq!(
        parse_err("postgresql://h/db?foo=bar"),
        "invalid URI query parameter: \"foo\""
    );
}

#[test]
fn uri_query_syntax_errors() {
    assert_eq!(
        parse_err("postgresql://h/db?sslmode"),
        "missing key/value separator \"=\" in URI query parameter: \"sslmode\""
    );
    assert_eq!(
        parse_err("postgresql://h/db?options=a=b"),
        "extra key/value separator \"=\" in URI query parameter: \"options\""
    );
    // A trailing '&' is allowed, as in libpq.
    assert_eq!(parse("postgresql://h/db?port=1&").get_ports(), [1]);
}

#[test]
fn no_uri_error_shows_the_password() {
    assert_eq!(
        parse_err("postgresql://u:s3cr%zzet@h/db"),
        "invalid percent-encoded token: \"***\" (the password)"
    );
    assert_eq!(
        parse_err("postgresql://h/db?password=s3cr%zzet"),
        "invalid percent-encoded token: \"***\" (the password)"
    );
    assert_eq!(
        parse_err("postgresql://u:s3cret@[::1/db?sslpassword=k3y"),
        "end of string reached when looking for matching \"]\" in IPv6 host address in \
         URI: \"postgresql://u:***@[::1/db?sslpassword=***\""
    );
    assert_eq!(
        parse_err("postgresql://u:s3cret@[::1]x/db"),
        "unexpected character \"x\" at position 28 in URI (expected \":\" or \"/\"): \
         \"postgresql://u:***@[::1]x/db\""
    );
    assert_eq!(
        super::redacted("host=h password=s3cret user='a b' sslpassword=k3y"),
        "host=h user='a b' password=*** sslpassword=***"
    );
    assert_eq!(
        super::redacted("postgresql://u:s3cret@h:5/db?application_name=x"),
        "host=h port=5 dbname=db user=u password=*** application_name=x"
    );
}

#[test]
fn uri_bad_percent_encoding_is_an_error() {
    assert_eq!(
        parse_err("postgresql://h/%zzdb"),
        "invalid percent-encoded token: \"%zzdb\""
    );
    assert_eq!(
        parse_err("postgresql://h/db%4"),
        "invalid percent-encoded token: \"db%4\""
    );
    assert_eq!(
        parse_err("postgresql://u:a%00b@h"),
        "forbidden value %00 in percent-encoded value: \"***\" (the password)"
    );
    assert_eq!(
        parse_err("postgresql://h/%ff"),
        "percent-encoded value is not valid UTF-8: \"%ff\""
    );
}

#[test]
fn uri_ssl_true_means_sslmode_require() {
    assert_eq!(
        parse("postgresql://h/db?ssl=true").get_ssl_mode(),
        SslMode::Require
    );
}

#[test]
fn uri_scheme_is_case_sensitive_like_libpq() {
    assert_eq!(
        parse_err("POSTGRESQL://h/db"),
        "missing \"=\" after \"POSTGRESQL://h/db\" in connection info string"
    );
}

// ---- environment ----

#[test]
fn environment_fills_keywords_the_string_leaves_out() {
    let c = parse_env(
        "",
        &[
            ("PGHOST", "envhost"),
            ("PGPORT", "6543"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGAPPNAME", "envapp"),
            ("PGCONNECT_TIMEOUT", "9"),
            ("PGSSLMODE", "disable"),
            ("PGOPTIONS", "-c geqo=off"),
            ("PGPASSFILE", "/etc/momoko-pgpass"),
            ("PGTARGETSESSIONATTRS", "any"),
        ],
    )
    .unwrap();
    assert_eq!(c.targets().unwrap(), [tcp("envhost", 6543)]);
    assert_eq!(c.get_user(), Some("envuser"));
    assert_eq!(c.get_password(), Some("envpw"));
    assert_eq!(c.get_dbname(), Some("envdb"));
    assert_eq!(c.get_application_name(), Some("envapp"));
    assert_eq!(c.get_connect_timeout(), Some(Duration::from_secs(9)));
    assert_eq!(c.get_ssl_mode(), SslMode::Disable);
    assert_eq!(c.get_options(), Some("-c geqo=off"));
    assert_eq!(
        c.get_passfile(),
        Some(std::path::Path::new("/etc/momoko-pgpass"))
    );
    assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::Any);
}

#[test]
fn environment_never_overrides_the_string() {
    let vars = [
        ("PGHOST", "envhost"),
        ("PGPORT", "6543"),
        ("PGUSER", "envuser"),
        ("PGDATABASE", "envdb"),
        ("PGSSLMODE", "require"),
    ];
    let c = parse_env("host=h port=1 user=u dbname=d sslmode=disable", &vars).unwrap();
    assert_eq!(c.targets().unwrap(), [tcp("h", 1)]);
    assert_eq!(c.get_user(), Some("u"));
    assert_eq!(c.get_dbname(), Some("d"));
    assert_eq!(c.get_ssl_mode(), SslMode::Disable);
    let c = parse_env("postgresql://u@h:1/d", &vars).unwrap();
    assert_eq!(c.targets().unwrap(), [tcp("h", 1)]);
    assert_eq!(c.get_user(), Some("u"));
    assert_eq!(c.get_ssl_mode(), SslMode::Require);
}

#[test]
fn empty_keyword_blocks_its_environment_variable_and_means_default() {
    let c = parse_env(
        "host='' port=''",
        &[("PGHOST", "envhost"), ("PGPORT", "6543")],
    )
    .unwrap();
    assert_eq!(c.targets().unwrap(), [unix("/var/run/postgresql", 5432)]);
}

#[test]
fn hostaddr_from_environment() {
    let c = parse_env("host=db", &[("PGHOSTADDR", "10.1.2.3")]).unwrap();
    assert_eq!(
        c.targets().unwrap(),
        [Target::Tcp {
            host: "db".into(),
            addr: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
            port: 5432
        }]
    );
}

#[test]
fn default_user_comes_from_user_then_logname() {
    let only_logname = |name: &str| (name == "LOGNAME").then(|| "carol".to_owned());
    let c = Config::parse_with_env("", &only_logname).unwrap();
    assert_eq!(c.get_user(), Some("carol"));
    assert_eq!(c.get_dbname(), Some("carol"));
    let c = parse_env("", &[("LOGNAME", "carol")]).unwrap();
    assert_eq!(c.get_user(), Some("alice"));
}

#[test]
fn invalid_environment_values_are_errors() {
    let e = parse_env("", &[("PGPORT", "x")]).unwrap_err();
    assert_eq!(
        usage_message(e),
        "invalid integer value \"x\" for connection option \"port\""
    );
    let e = parse_env("", &[("PGSSLMODE", "sometimes")]).unwrap_err();
    assert_eq!(usage_message(e), "invalid sslmode value: \"sometimes\"");
}

// ---- password file ----

#[test]
fn pgpass_star_matches_any_field() {
    let file = b"*:*:*:*:starpw\n";
    assert_eq!(
        pgpass::find(file, "h", "5432", "db", "u"),
        Some("starpw".into())
    );
    let file = b"h:*:db:*:pw\n";
    assert_eq!(
        pgpass::find(file, "h", "6000", "db", "x"),
        Some("pw".into())
    );
    assert_eq!(pgpass::find(file, "other", "6000", "db", "x"), None);
    // Only a whole field of '*' is a wildcard.
    assert_eq!(
        pgpass::find(b"h*:5432:db:u:pw\n", "hx", "5432", "db", "u"),
        None
    );
    assert_eq!(
        pgpass::find(b"\\*:5432:db:u:pw\n", "*", "5432", "db", "u"),
        Some("pw".into())
    );
}

#[test]
fn pgpass_escapes_colon_and_backslash() {
    let file = br"h\:x:5432:d\\b:u:pa\:ss\\w:ignored";
    assert_eq!(
        pgpass::find(file, "h:x", "5432", r"d\b", "u"),
        Some(r"pa:ss\w".into())
    );
    assert_eq!(pgpass::find(file, "h", "5432", r"d\b", "u"), None);
}

#[test]
fn pgpass_skips_comments_and_handles_crlf() {
    let file = b"# h:5432:db:u:commented\r\nh:5432:db:u:real\r\n";
    assert_eq!(
        pgpass::find(file, "h", "5432", "db", "u"),
        Some("real".into())
    );
}

#[test]
fn pgpass_first_matching_line_wins() {
    let file = b"h:5432:db:u:first\n*:*:*:*:second\nh:5432:db:u:third\n";
    assert_eq!(
        pgpass::find(file, "h", "5432", "db", "u"),
        Some("first".into())
    );
    assert_eq!(
        pgpass::find(file, "x", "1", "y", "z"),
        Some("second".into())
    );
}

#[test]
fn pgpass_fields_must_match_exactly() {
    let file = b"host:5432:db:user:pw";
    assert_eq!(pgpass::find(file, "hos", "5432", "db", "user"), None);
    assert_eq!(pgpass::find(file, "hostx", "5432", "db", "user"), None);
    assert_eq!(pgpass::find(file, "host", "5433", "db", "user"), None);
    assert_eq!(
        pgpass::find(file, "host", "5432", "db", "user"),
        Some("pw".into())
    );
    // Too few fields is no match.
    assert_eq!(
        pgpass::find(b"host:5432:db:user", "host", "5432", "db", "user"),
        None
    );
}

#[test]
fn pgpass_used_through_config_when_no_password_given() {
    let f = TempFile::new("db.example.com:5433:app:bob:filepw\n", 0o600);
    let c = parse_env(
        "host=db.example.com port=5433 dbname=app user=bob",
        &[("PGPASSFILE", f.path())],
    )
    .unwrap();
    let t = &c.targets().unwrap()[0];
    assert_eq!(c.password_for(t), Some("filepw".into()));
    assert_eq!(c.get_password(), None);
}

#[test]
fn pgpass_not_used_when_a_password_is_given() {
    let f = TempFile::new("*:*:*:*:filepw\n", 0o600);
    let c = parse_env("password=given", &[("PGPASSFILE", f.path())]).unwrap();
    let t = &c.targets().unwrap()[0];
    assert_eq!(c.password_for(t), Some("given".into()));
    // An empty password is no password, so the file is used.
    let c = parse_env("password=''", &[("PGPASSFILE", f.path())]).unwrap();
    assert_eq!(
        c.password_for(&c.targets().unwrap()[0]),
        Some("filepw".into())
    );
}

#[test]
fn pgpass_localhost_matches_the_default_socket_directory() {
    let f = TempFile::new(
        "localhost:5432:*:alice:localpw\n/tmp:5432:*:*:tmppw\n",
        0o600,
    );
    let c = parse_env("", &[("PGPASSFILE", f.path())]).unwrap();
    assert_eq!(
        c.password_for(&c.targets().unwrap()[0]),
        Some("localpw".into())
    );
    let c = parse_env("host=/var/run/postgresql", &[("PGPASSFILE", f.path())]).unwrap();
    assert_eq!(
        c.password_for(&c.targets().unwrap()[0]),
        Some("localpw".into())
    );
    // Another socket directory is matched by its path, not as localhost.
    let c = parse_env("host=/tmp user=bob", &[("PGPASSFILE", f.path())]).unwrap();
    assert_eq!(
        c.password_for(&c.targets().unwrap()[0]),
        Some("tmppw".into())
    );
}

#[test]
fn pgpass_is_read_per_host() {
    let f = TempFile::new(
        "h1:5432:*:*:pw1\nh2:5432:*:*:pw2\n10.0.0.9:5432:*:*:pw3\n",
        0o600,
    );
    let c = parse_env("host=h1,h2", &[("PGPASSFILE", f.path())]).unwrap();
    let ts = c.targets().unwrap();
    assert_eq!(c.password_for(&ts[0]), Some("pw1".into()));
    assert_eq!(c.password_for(&ts[1]), Some("pw2".into()));
    // With only hostaddr, the address is the name looked up.
    let c = parse_env("hostaddr=10.0.0.9", &[("PGPASSFILE", f.path())]).unwrap();
    assert_eq!(c.password_for(&c.targets().unwrap()[0]), Some("pw3".into()));
}

#[test]
fn pgpass_ignored_when_group_or_world_can_access_it() {
    for (mode, expected) in [
        (0o600, Some("pw".to_owned())),
        (0o400, Some("pw".to_owned())),
        (0o644, None),
        (0o640, None),
        (0o604, None),
        (0o610, None),
    ] {
        let f = TempFile::new("*:*:*:*:pw\n", mode);
        let c = parse_env("host=h", &[("PGPASSFILE", f.path())]).unwrap();
        assert_eq!(
            c.password_for(&c.targets().unwrap()[0]),
            expected,
            "mode {mode:o}"
        );
    }
}

#[test]
fn pgpass_defaults_to_home_dot_pgpass() {
    let dir = std::env::temp_dir().join(format!("momoko-conninfo-home-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(".pgpass");
    std::fs::write(&file, "*:*:*:*:homepw\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = parse_env("host=h", &[("HOME", dir.to_str().unwrap())]).unwrap();
    let got = c.password_for(&c.targets().unwrap()[0]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(got, Some("homepw".into()));
}

#[test]
fn pgpass_missing_file_gives_no_password() {
    let c = parse_env("host=h", &[("PGPASSFILE", "/nonexistent/momoko/pgpass")]).unwrap();
    assert_eq!(c.password_for(&c.targets().unwrap()[0]), None);
}

// ---- connect_timeout ----

#[test]
fn connect_timeout_rules() {
    for (value, expected) in [
        ("10", Some(10)),
        ("2", Some(2)),
        ("1", Some(2)),
        ("0", None),
        ("-5", None),
        ("''", None),
        ("' 7 '", Some(7)),
        ("+3", Some(3)),
    ] {
        assert_eq!(
            parse(&format!("connect_timeout={value}")).get_connect_timeout(),
            expected.map(Duration::from_secs),
            "connect_timeout={value}"
        );
    }
    assert_eq!(
        parse_err("connect_timeout=abc"),
        "invalid integer value \"abc\" for connection option \"connect_timeout\""
    );
    assert_eq!(
        parse_err("connect_timeout=2.5"),
        "invalid integer value \"2.5\" for connection option \"connect_timeout\""
    );
    assert_eq!(
        parse_err("connect_timeout=99999999999"),
        "invalid integer value \"99999999999\" for connection option \"connect_timeout\""
    );
}

#[test]
fn connect_timeout_from_environment_and_builder() {
    let c = parse_env("", &[("PGCONNECT_TIMEOUT", "1")]).unwrap();
    assert_eq!(c.get_connect_timeout(), Some(Duration::from_secs(2)));
    let c = Config::new().connect_timeout(Duration::from_millis(500));
    assert_eq!(c.get_connect_timeout(), Some(Duration::from_millis(500)));
    let c = Config::new().connect_timeout(Duration::ZERO);
    assert_eq!(c.get_connect_timeout(), None);
}

// ---- sslmode ----

#[test]
fn every_sslmode_parses_and_tls_keywords_come_from_the_string_and_the_environment() {
    for (mode, expected) in [
        ("disable", SslMode::Disable),
        ("allow", SslMode::Allow),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ] {
        assert_eq!(parse(&format!("sslmode={mode}")).get_ssl_mode(), expected);
    }
    assert_eq!(parse("").get_ssl_mode(), SslMode::Prefer);
    let c = parse("sslrootcert=/etc/ca.pem sslcert=/c.crt sslkey=/c.key sslsni=0");
    let t = c.get_tls();
    assert_eq!(
        t.root_cert(),
        &crate::conninfo::RootCert::File {
            path: "/etc/ca.pem".into(),
            explicit: true
        }
    );
    assert_eq!(t.cert(), Some((std::path::Path::new("/c.crt"), true)));
    assert_eq!(t.key(), Some((std::path::Path::new("/c.key"), true)));
    assert!(!t.sni());
    let c = parse_env(
        "host=h",
        &[
            ("PGSSLROOTCERT", "system"),
            ("PGCHANNELBINDING", "require"),
            ("PGSSLMINPROTOCOLVERSION", "TLSv1.3"),
        ],
    )
    .unwrap();
    // sslrootcert=system makes verify-full the default.
    assert_eq!(c.get_ssl_mode(), SslMode::VerifyFull);
    assert_eq!(
        c.get_tls().channel_binding(),
        crate::conninfo::ChannelBinding::Require
    );
    assert_eq!(c.get_tls().min_version(), crate::conninfo::TlsVersion::V1_3);
}

#[test]
fn sslmode_invalid_value_is_an_error() {
    assert_eq!(parse_err("sslmode=on"), "invalid sslmode value: \"on\"");
    assert_eq!(parse_err("sslmode=''"), "invalid sslmode value: \"\"");
}

#[test]
fn gssencmode_require_is_refused_others_accepted() {
    parse("gssencmode=disable");
    parse("gssencmode=prefer");
    assert_eq!(
        parse_err("gssencmode=require"),
        "GSSAPI encryption is not supported (gssencmode=require)"
    );
}

// ---- client_encoding ----

#[test]
fn client_encoding_accepts_only_utf8() {
    for ok in ["UTF8", "utf8", "UTF-8", "utf_8", "unicode", "auto", "''"] {
        let c = parse(&format!("client_encoding={ok}"));
        assert_eq!(
            c.startup_params().last(),
            Some(&("client_encoding".to_owned(), "UTF8".to_owned()))
        );
    }
    assert_eq!(
        parse_err("client_encoding=LATIN1"),
        "client_encoding \"LATIN1\" is not supported: momoko always uses UTF8"
    );
    let e = parse_env("", &[("PGCLIENTENCODING", "SQL_ASCII")]).unwrap_err();
    assert_eq!(
        usage_message(e),
        "client_encoding \"SQL_ASCII\" is not supported: momoko always uses UTF8"
    );
}

// ---- Debug ----

#[test]
fn debug_output_hides_the_password() {
    let c = parse("user=bob password=hunter2");
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("password: Some(\"***\")"), "{shown}");
    assert!(shown.contains("user: Some(\"bob\")"), "{shown}");
    let shown = format!("{:?}", parse("user=bob"));
    assert!(shown.contains("password: None"), "{shown}");
}

// ---- targets ----

#[test]
fn targets_one_port_serves_every_host() {
    assert_eq!(
        targets("host=a,b,c port=6000"),
        [tcp("a", 6000), tcp("b", 6000), tcp("c", 6000)]
    );
}

#[test]
fn targets_one_port_per_host() {
    assert_eq!(
        targets("host=a,/tmp,c port=1,2,"),
        [tcp("a", 1), unix("/tmp", 2), tcp("c", 5432)]
    );
}

#[test]
fn targets_port_count_mismatch_is_an_error() {
    assert_eq!(
        parse_err("host=a,b,c port=1,2"),
        "could not match 2 port numbers to 3 hosts"
    );
    assert_eq!(
        parse_err("port=1,2"),
        "could not match 2 port numbers to 1 hosts"
    );
    let c = Config::new().host("a").port(1).port(2).port(3);
    assert_eq!(
        usage_message(c.targets().unwrap_err()),
        "could not match 3 port numbers to 1 hosts"
    );
}

#[test]
fn targets_pair_hosts_with_hostaddrs() {
    assert_eq!(
        targets("host=db.example.com,/tmp hostaddr=10.0.0.5,::1 port=5433"),
        [
            Target::Tcp {
                host: "db.example.com".into(),
                addr: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))),
                port: 5433
            },
            // hostaddr wins over a socket directory, as in libpq.
            Target::Tcp {
                host: "/tmp".into(),
                addr: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                port: 5433
            },
        ]
    );
    assert_eq!(
        targets("hostaddr=127.0.0.1"),
        [Target::Tcp {
            host: "127.0.0.1".into(),
            addr: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port: 5432
        }]
    );
    // An empty hostaddr entry falls back to its host.
    assert_eq!(
        targets("host=a,b hostaddr=,10.0.0.2"),
        [
            tcp("a", 5432),
            Target::Tcp {
                host: "b".into(),
                addr: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
                port: 5432
            },
        ]
    );
}

#[test]
fn targets_host_and_hostaddr_count_mismatch_is_an_error() {
    assert_eq!(
        parse_err("host=a,b hostaddr=10.0.0.1"),
        "could not match 2 host names to 1 hostaddr values"
    );
}

#[test]
fn targets_bad_hostaddr_is_an_error() {
    assert_eq!(
        parse_err("hostaddr=db.example.com"),
        "could not parse network address \"db.example.com\""
    );
}

#[test]
fn targets_empty_host_entry_means_default_socket() {
    assert_eq!(
        targets("host=,h2"),
        [unix("/var/run/postgresql", 5432), tcp("h2", 5432)]
    );
}

#[test]
fn targets_abstract_socket_is_refused() {
    assert_eq!(
        parse_err("host=@pg"),
        "abstract Unix-domain sockets are not supported (host \"@pg\")"
    );
}

#[test]
fn targets_socket_path_too_long_is_an_error() {
    let dir = format!("/{}", "d".repeat(92));
    assert_eq!(targets(&format!("host={dir}")), [unix(&dir, 5432)]);
    let dir = format!("/{}", "d".repeat(93));
    assert_eq!(
        parse_err(&format!("host={dir}")),
        format!("Unix-domain socket path \"{dir}/.s.PGSQL.5432\" is too long (maximum 107 bytes)")
    );
}

#[test]
fn invalid_ports_are_errors() {
    assert_eq!(parse_err("port=0"), "invalid port number: \"0\"");
    assert_eq!(parse_err("port=65536"), "invalid port number: \"65536\"");
    assert_eq!(parse_err("port=-1"), "invalid port number: \"-1\"");
    assert_eq!(
        parse_err("port=5432x"),
        "invalid integer value \"5432x\" for connection option \"port\""
    );
    assert_eq!(
        targets("port=' 6000 '"),
        [unix("/var/run/postgresql", 6000)]
    );
}

#[test]
fn target_display_for_messages() {
    assert_eq!(tcp("h", 1).to_string(), "h:1");
    assert_eq!(tcp("::1", 5433).to_string(), "[::1]:5433");
    assert_eq!(unix("/tmp", 5432).to_string(), "/tmp/.s.PGSQL.5432");
}

// ---- startup parameters ----

#[test]
fn startup_params_in_libpq_order() {
    let c = parse("user=bob dbname=app options='-c geqo=off' application_name=web host=h");
    let expected: Vec<(String, String)> = [
        ("user", "bob"),
        ("database", "app"),
        ("options", "-c geqo=off"),
        ("application_name", "web"),
        ("client_encoding", "UTF8"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(c.startup_params(), expected);
}

#[test]
fn startup_params_use_fallback_application_name_and_default_database() {
    let pairs = |c: &Config| {
        c.startup_params()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    let c = parse("fallback_application_name=momoko");
    assert_eq!(
        pairs(&c),
        [
            "user=alice",
            "database=alice",
            "application_name=momoko",
            "client_encoding=UTF8"
        ]
    );
    let c = parse("fallback_application_name=momoko application_name=mine");
    assert_eq!(pairs(&c)[2], "application_name=mine");
}

// ---- other keywords ----

#[test]
fn keepalive_and_tcp_settings_left_out_are_bounded_by_default() {
    for ok in [
        "",
        "keepalives=1",
        "keepalives=' 1 '",
        "keepalives=2",
        "keepalives=''",
        "tcp_user_timeout=''",
        "keepalives_idle='' keepalives_interval='' keepalives_count=''",
        "postgresql://h/db?keepalives=1&keepalives_count=",
    ] {
        let c = parse(ok);
        assert!(c.get_keepalives(), "{ok}");
        assert_eq!(
            c.get_keepalives_idle(),
            Some(Duration::from_secs(15)),
            "{ok}"
        );
        assert_eq!(
            c.get_keepalives_interval(),
            Some(Duration::from_secs(5)),
            "{ok}"
        );
        assert_eq!(c.get_keepalives_count(), Some(3), "{ok}");
        assert_eq!(
            c.get_tcp_user_timeout(),
            Some(Duration::from_secs(30)),
            "{ok}"
        );
    }
    let c = Config::new();
    assert_eq!(c.get_keepalives_idle(), Some(Duration::from_secs(15)));
    assert_eq!(c.get_tcp_user_timeout(), Some(Duration::from_secs(30)));
}

#[test]
fn keepalive_and_tcp_settings_of_zero_keep_the_systems_values() {
    let c = parse("keepalives_idle=0 keepalives_interval=-1 keepalives_count=0 tcp_user_timeout=0");
    assert!(c.get_keepalives());
    assert_eq!(c.get_keepalives_idle(), None);
    assert_eq!(c.get_keepalives_interval(), None);
    assert_eq!(c.get_keepalives_count(), None);
    assert_eq!(c.get_tcp_user_timeout(), None);
    // Each keyword alone: the others keep momoko's defaults.
    let c = parse("postgresql://h/db?tcp_user_timeout=-5");
    assert_eq!(c.get_tcp_user_timeout(), None);
    assert_eq!(c.get_keepalives_idle(), Some(Duration::from_secs(15)));
    let c = parse("keepalives=0");
    assert!(!c.get_keepalives());
    assert_eq!(c.get_tcp_user_timeout(), Some(Duration::from_secs(30)));
    let c = Config::new()
        .keepalives_idle(Duration::ZERO)
        .keepalives_interval(Duration::ZERO)
        .keepalives_count(0)
        .tcp_user_timeout(Duration::ZERO);
    assert_eq!(c.get_keepalives_idle(), None);
    assert_eq!(c.get_keepalives_interval(), None);
    assert_eq!(c.get_keepalives_count(), None);
    assert_eq!(c.get_tcp_user_timeout(), None);
    let c = Config::new()
        .keepalives_idle(Duration::from_secs(2))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_count(4)
        .tcp_user_timeout(Duration::from_millis(2500));
    assert_eq!(c.get_keepalives_idle(), Some(Duration::from_secs(2)));
    assert_eq!(c.get_keepalives_interval(), Some(Duration::from_secs(1)));
    assert_eq!(c.get_keepalives_count(), Some(4));
    assert_eq!(c.get_tcp_user_timeout(), Some(Duration::from_millis(2500)));
}

#[test]
fn keepalive_and_tcp_settings_given_are_read_as_libpq_reads_them() {
    let c =
        parse("keepalives_idle=30 keepalives_interval=5 keepalives_count=3 tcp_user_timeout=1500");
    assert!(c.get_keepalives());
    assert_eq!(c.get_keepalives_idle(), Some(Duration::from_secs(30)));
    assert_eq!(c.get_keepalives_interval(), Some(Duration::from_secs(5)));
    assert_eq!(c.get_keepalives_count(), Some(3));
    assert_eq!(c.get_tcp_user_timeout(), Some(Duration::from_millis(1500)));
    assert!(!parse("keepalives=0").get_keepalives());
    assert!(!parse("postgresql://h/db?keepalives=0").get_keepalives());
    assert_eq!(
        parse("postgresql://h/db?keepalives_idle=30").get_keepalives_idle(),
        Some(Duration::from_secs(30))
    );
    // A value that is not an integer at all keeps libpq's own complaint.
    assert_eq!(
        parse_err("keepalives=yes"),
        "invalid integer value \"yes\" for connection option \"keepalives\""
    );
    assert_eq!(
        parse_err("keepalives_idle=soon"),
        "invalid integer value \"soon\" for connection option \"keepalives_idle\""
    );
}

#[test]
fn every_target_session_attrs_value_is_read_and_a_misspelt_one_refused() {
    for v in [
        TargetSessionAttrs::Any,
        TargetSessionAttrs::ReadWrite,
        TargetSessionAttrs::ReadOnly,
        TargetSessionAttrs::Primary,
        TargetSessionAttrs::Standby,
        TargetSessionAttrs::PreferStandby,
    ] {
        let name = v.as_str();
        assert_eq!(
            parse(&format!("target_session_attrs={name}")).get_target_session_attrs(),
            v
        );
        assert_eq!(
            parse(&format!("postgresql://h/db?target_session_attrs={name}"))
                .get_target_session_attrs(),
            v
        );
    }
    assert_eq!(
        parse_err("target_session_attrs=master"),
        "invalid target_session_attrs value: \"master\""
    );
}

#[test]
fn target_session_attrs_and_load_balance_hosts_come_from_the_environment_too() {
    let c = parse_env("host=h", &[("PGTARGETSESSIONATTRS", "read-write")]).unwrap();
    assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
    // The string hides the variable, as everywhere.
    let vars = [("PGTARGETSESSIONATTRS", "standby")];
    let c = parse_env("target_session_attrs=any", &vars).unwrap();
    assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::Any);
    let c = parse_env("", &[("PGLOADBALANCEHOSTS", "random")]).unwrap();
    assert_eq!(c.get_load_balance_hosts(), LoadBalanceHosts::Random);
    assert_eq!(
        parse("").get_load_balance_hosts(),
        LoadBalanceHosts::Disable
    );
    assert_eq!(
        parse("load_balance_hosts=random").get_load_balance_hosts(),
        LoadBalanceHosts::Random
    );
    assert_eq!(
        parse_err("load_balance_hosts=roundrobin"),
        "invalid load_balance_hosts value: \"roundrobin\""
    );
    let e = parse_env("", &[("PGTARGETSESSIONATTRS", "master")]).unwrap_err();
    assert_eq!(
        usage_message(e),
        "invalid target_session_attrs value: \"master\""
    );
}

#[test]
fn environment_of_keywords_momoko_lacks_is_refused_unless_harmless() {
    for (var, value, message) in [
        (
            "PGSERVICE",
            "prod",
            "PGSERVICE=\"prod\": connection option \"service\" is not supported by momoko; \
             unset it",
        ),
        (
            "PGREQUIREAUTH",
            "scram-sha-256",
            "PGREQUIREAUTH=\"scram-sha-256\": connection option \"require_auth\" is not \
             supported by momoko; unset it",
        ),
    ] {
        let e = parse_env("host=h", &[(var, value)]).unwrap_err();
        assert_eq!(usage_message(e), message);
        let e = parse_env("postgresql://h/db", &[(var, value)]).unwrap_err();
        assert_eq!(usage_message(e), message);
    }
    for (var, value) in [
        ("PGSERVICE", ""),
        ("PGLOADBALANCEHOSTS", "disable"),
        ("PGMINPROTOCOLVERSION", "3.0"),
        ("PGSSLROOTCERT", "/etc/ssl/ca.pem"),
    ] {
        parse_env("host=h", &[(var, value)]).unwrap();
    }
}

// ---- builder and FromStr ----

#[test]
fn builder_sets_what_the_string_would() {
    let built = Config::new()
        .host("db.example.com")
        .port(5433)
        .user("bob")
        .password("secret")
        .dbname("app")
        .connect_timeout(Duration::from_secs(5))
        .application_name("web")
        .options("-c geqo=off");
    let parsed = parse(
        "host=db.example.com port=5433 user=bob password=secret dbname=app \
         connect_timeout=5 application_name=web options='-c geqo=off'",
    );
    assert_eq!(built.targets().unwrap(), parsed.targets().unwrap());
    assert_eq!(built.startup_params(), parsed.startup_params());
    assert_eq!(built.get_password(), Some("secret"));
    assert_eq!(built.get_connect_timeout(), parsed.get_connect_timeout());
}

#[test]
fn builder_hosts_and_hostaddrs_accumulate() {
    let c = Config::new()
        .host("/tmp")
        .host("h2")
        .hostaddr(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        .hostaddr(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(c.targets().unwrap().len(), 2);
    assert_eq!(
        Config::new().host("/tmp").port(6000).targets().unwrap(),
        [unix("/tmp", 6000)]
    );
}

#[test]
fn from_str_parses_like_parse() {
    let c: Config = "host=h port=7 user=u".parse().unwrap();
    assert_eq!(c.targets().unwrap(), [tcp("h", 7)]);
    assert_eq!(c.get_user(), Some("u"));
    let e = "nonsense".parse::<Config>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
}

// ---- robustness ----

#[test]
fn parser_never_panics_on_odd_input() {
    // Strings built from the characters the parsers care about, plus multibyte ones, from a
    // fixed pseudo-random sequence so that a failure can be replayed.
    let alphabet: Vec<char> = "postgresql://@:/?&=,[]%2F0aZ '\\\t\"é日+-#"
        .chars()
        .collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..20_000 {
        let len = (next() % 40) as usize;
        let mut s: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        if round % 2 == 0 {
            s.insert_str(0, "postgresql://");
        }
        if let Ok(c) = parse_env(&s, &[]) {
            let _ = c.targets();
            let _ = c.startup_params();
            let _ = format!("{c:?}");
        }
    }
}

#[test]
fn summary_names_database_user_and_every_target_without_the_password() {
    let c = parse("host=a,/tmp port=6000,6001 dbname=db user=u password=secret");
    assert_eq!(
        c.summary(),
        "database db as u on a:6000, /tmp/.s.PGSQL.6001"
    );
}

// ---- replication ----

#[test]
fn replication_is_sent_last_as_the_walsender_mode_the_server_reads() {
    let last = |s: &str| parse(s).startup_params().last().cloned().unwrap();
    let pair = |v: &str| ("replication".to_owned(), v.to_owned());
    assert_eq!(last("replication=database"), pair("database"));
    for on in ["true", "on", "yes", "1", "TRUE"] {
        assert_eq!(last(&format!("replication={on}")), pair("true"), "{on}");
    }
    for off in ["false", "off", "no", "0"] {
        let c = parse(&format!("replication={off}"));
        assert_eq!(c.get_replication(), None, "{off}");
        assert!(c.startup_params().iter().all(|(k, _)| k != "replication"));
    }
    assert_eq!(
        parse("postgresql://h/db?replication=database").get_replication(),
        Some("database")
    );
}

#[test]
fn a_replication_value_the_server_would_refuse_is_a_usage_error() {
    let e = parse_env("replication=logical", &[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert_eq!(
        e.to_string(),
        "usage error: invalid replication value: \"logical\" (database, true or false)"
    );
    let e = Config::new().replication("maybe").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert_eq!(
        Config::new()
            .replication("database")
            .unwrap()
            .get_replication(),
        Some("database")
    );
}
