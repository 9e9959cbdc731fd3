//! momoko-bench: the issue-6 benchmark. momoko against tokio-postgres (current-thread
//! runtime), a hand-written protocol floor and pgbench, on the same work, in one run,
//! alternating the contenders round by round so that a noisy machine hurts them alike. It
//! writes its figures into BENCHMARKS.md (between its own markers, leaving the rest of the
//! file alone) and a chart as SVG.
//!
//! ```text
//! momoko-testpg run -- cargo run --release -p momoko-bench -- [--rounds N] [--quick]
//!     [--only W1,W2b,mem,count] [--contender momoko] [--out BENCHMARKS.md] [--svg docs/bench.svg]
//! ```
//!
//! It needs `MOMOKO_TEST_DSN` (trust login); `_MD5` and `_SCRAM` add W6's other logins,
//! `_TLS` (verify-full, `sslrootcert`) the TLS workloads and the TLS memory figure.
//! This crate's dependencies (tokio, tokio-postgres…) never reach momoko's: momoko does not
//! depend on it.

mod count;
mod env;
mod floor;
mod measure;
mod momoko_side;
mod pgbench;
mod replication;
mod report;
mod streamed;
mod tokio_side;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use env::{Env, Sizes};
use measure::Sample;
use report::{MemoryResult, Outcome};

struct Args {
    rounds: usize,
    quick: bool,
    only: Vec<String>,
    contender: Option<String>,
    out: PathBuf,
    svg: PathBuf,
    probe: Option<String>,
    count_child: Option<String>,
    no_count: bool,
}

const USAGE: &str = "usage: momoko-bench [--rounds N] [--quick] [--only ID,ID…] \
[--contender NAME-PREFIX] [--out BENCHMARKS.md] [--svg docs/bench.svg] [--no-count]   (needs MOMOKO_TEST_DSN)
--only count (or count-W1, count-mem…): the counted figures alone (valgrind, strace)";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rounds: 5,
        quick: false,
        only: Vec::new(),
        contender: None,
        out: "BENCHMARKS.md".into(),
        svg: "docs/bench.svg".into(),
        probe: None,
        count_child: None,
        no_count: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--rounds" => {
                a.rounds = value()?
                    .parse()
                    .map_err(|_| format!("--rounds takes a number\n{USAGE}"))?
            }
            "--quick" => a.quick = true,
            "--only" => a.only = value()?.split(',').map(str::to_owned).collect(),
            "--contender" => a.contender = Some(value()?),
            "--out" => a.out = value()?.into(),
            "--svg" => a.svg = value()?.into(),
            "--probe" => a.probe = Some(value()?),
            "--count-child" => a.count_child = Some(value()?),
            "--no-count" => a.no_count = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            _ => return Err(format!("unknown argument {arg}\n{USAGE}")),
        }
    }
    if a.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let env = match Env::from_environment(sizes) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("momoko-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(spec) = &args.count_child {
        // A child run of the counted figures (count.rs), under callgrind or strace.
        return match count::child(spec, &env) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("momoko-bench count {spec}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(who) = &args.probe {
        // A child run for the memory figure: a fresh heap, so that nothing freed by
        // earlier workloads is reused and hides the growth. `-tls`: over TLS.
        let (name, tls) = match who.strip_suffix("-tls") {
            Some(n) => (n, true),
            None => (who.as_str(), false),
        };
        let r = if tls {
            env.over_tls()
                .and_then(|t| t.ok_or_else(|| "MOMOKO_TEST_DSN_TLS is not set".to_owned()))
        } else {
            Ok(env.clone())
        }
        .and_then(|env| match name {
            "momoko" => momoko_side::idle_pool(&env),
            "tokio-postgres" => tokio_side::idle_clients(&env),
            _ => Err(format!("unknown probe {who}")),
        });
        return match r {
            Ok(bytes) => {
                println!("{bytes}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("momoko-bench probe {who}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args, &env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("momoko-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn selected(only: &[String], id: &str) -> bool {
    only.is_empty() || only.iter().any(|o| id.starts_with(o.as_str()))
}

fn run(args: &Args, env: &Env) -> Result<(), String> {
    let server_version = setup(env)?;
    let load_before = report::loadavg();
    eprintln!(
        "momoko-bench: server {server_version} at {}:{}, {} rounds{}, load {load_before}",
        env.host,
        env.port,
        args.rounds,
        if args.quick { " (quick)" } else { "" }
    );
    let started = std::time::Instant::now();
    let tls = if workloads::TLS_IDS.iter().any(|id| selected(&args.only, id)) {
        tls_setup(env)?
    } else {
        None
    };
    let mut all = workloads::all(env);
    if let Some((tls_env, _)) = &tls {
        all.extend(workloads::over_tls(tls_env));
    }
    let mut outcomes = Vec::new();
    for mut w in all {
        if !selected(&args.only, w.id) {
            continue;
        }
        if let Some(c) = &args.contender {
            // For profiling one contender (e.g. under callgrind).
            w.contenders.retain(|x| x.name.starts_with(c.as_str()));
        }
        outcomes.push(run_workload(w, args.rounds));
    }
    let mut memory = Vec::new();
    if selected(&args.only, "mem") {
        memory.push(run_memory(env, args.rounds.min(3), false));
    }
    if tls.is_some() && selected(&args.only, "TLS-mem") {
        memory.push(run_memory(env, args.rounds.min(3), true));
    }
    let counted = if !args.no_count
        && (args.only.is_empty() || args.only.iter().any(|o| o.starts_with("count")))
    {
        let only: Vec<String> = args
            .only
            .iter()
            .filter(|o| o.starts_with("count"))
            .cloned()
            .collect();
        match count::run(&only) {
            Ok(c) => {
                let md = count::markdown(&c);
                if !args.only.is_empty() {
                    // `--only count`: the table on stdout, as BENCHMARKS.md would get it.
                    println!("{md}");
                }
                Some(md)
            }
            Err(e) => {
                eprintln!("momoko-bench: the counted figures were not taken: {e}");
                Some(format!(
                    "### Counted per operation (issue 26)\n\nNot taken: {e}\n\n"
                ))
            }
        }
    } else {
        None
    };
    let _ = momoko_side_sql(env, workloads::DROP_TABLE);
    let _ = momoko_side_sql(env, workloads::DROP_REPLICATION);
    pgbench::cleanup();
    let meta = report::Meta {
        rounds: args.rounds,
        quick: args.quick,
        server_version,
        load_before,
        load_after: report::loadavg(),
        duration: started.elapsed(),
        sizes: env.sizes,
        tls: tls.map(|(_, what)| what),
        counted,
    };
    let targets = workloads::targets();
    report::print_summary(&outcomes, &targets, &memory);
    if args.only.is_empty() || args.out != Path::new("BENCHMARKS.md") {
        report::write_markdown(&args.out, &args.svg, &meta, &outcomes, &targets, &memory)
            .map_err(|e| format!("writing {}: {e}", args.out.display()))?;
        report::write_svg(&args.svg, &outcomes)
            .map_err(|e| format!("writing {}: {e}", args.svg.display()))?;
        eprintln!(
            "momoko-bench: wrote {} and {} in {:.0} s",
            args.out.display(),
            args.svg.display(),
            meta.duration.as_secs_f64()
        );
    } else {
        eprintln!("momoko-bench: --only without --out: BENCHMARKS.md left alone");
    }
    Ok(())
}

/// The TLS environment, and the protocol and cipher both clients negotiated (checked once,
/// before any TLS workload); None, with a note, without `MOMOKO_TEST_DSN_TLS`.
fn tls_setup(env: &Env) -> Result<Option<(Env, String)>, String> {
    let Some(tls) = env.over_tls()? else {
        eprintln!(
            "momoko-bench: note: MOMOKO_TEST_DSN_TLS is not set: the TLS workloads ({}) \
             are skipped",
            workloads::TLS_IDS.join(", ")
        );
        return Ok(None);
    };
    let m = momoko_side::tls_check(&tls).map_err(|e| format!("TLS, momoko: {e}"))?;
    let t = tokio_side::tls_check(&tls).map_err(|e| format!("TLS, tokio-postgres: {e}"))?;
    let what = if m == t {
        m
    } else {
        format!("momoko {m}, tokio-postgres {t}")
    };
    eprintln!("momoko-bench: TLS: {what}");
    Ok(Some((tls, what)))
}

/// Creates W5's table and returns the server's version.
fn setup(env: &Env) -> Result<String, String> {
    momoko_side_sql(env, workloads::CREATE_TABLE)?;
    let dsn = env.dsn.clone();
    momoko::ioloop::IoLoop::new()
        .run_sync(async move {
            let conn = momoko::connect(&dsn).await?;
            let v = conn.parameter("server_version").unwrap_or_default();
            conn.close();
            Ok(v)
        })
        .map_err(|e: momoko::Error| format!("cannot reach {}: {e}", env.dsn))
}

fn momoko_side_sql(env: &Env, sql: &'static str) -> Result<(), String> {
    let dsn = env.dsn.clone();
    momoko::ioloop::IoLoop::new()
        .run_sync(async move {
            let conn = momoko::connect(&dsn).await?;
            conn.execute(sql, ()).await?;
            conn.close();
            Ok(())
        })
        .map_err(|e: momoko::Error| e.to_string())
}

/// One warm-up run of each contender (not recorded; a contender that fails it is left out
/// with its error), then `rounds` rounds, each running every contender once, starting one
/// further along each round so that no contender always follows the same one.
fn run_workload(w: workloads::Workload, rounds: usize) -> Outcome {
    let n = w.contenders.len();
    let mut errors: Vec<Option<String>> = vec![None; n];
    let mut samples: Vec<Vec<Option<Sample>>> = vec![Vec::new(); n];
    eprintln!("== {} ({})", w.id, w.title);
    for (i, c) in w.contenders.iter().enumerate() {
        if let Err(e) = (c.run)() {
            eprintln!("   {}: failed in warm-up: {e}", c.name);
            errors[i] = Some(e);
        }
    }
    for r in 0..rounds {
        for k in 0..n {
            let i = (r + k) % n;
            let c = &w.contenders[i];
            if errors[i].is_some() {
                samples[i].push(None);
                continue;
            }
            match (c.run)() {
                Ok(s) => {
                    eprintln!(
                        "   round {} {:<22} {:>12.0} {}/s  {:>8.2} µs CPU/op ({:.0} % kernel)",
                        r + 1,
                        c.name,
                        s.rate(),
                        w.unit,
                        s.cpu_us_per_op(),
                        s.sys_share() * 100.0
                    );
                    samples[i].push(Some(s));
                }
                Err(e) => {
                    eprintln!("   round {} {}: failed: {e}", r + 1, c.name);
                    errors[i] = Some(e);
                    samples[i].push(None);
                }
            }
        }
    }
    Outcome {
        id: w.id,
        title: w.title,
        unit: w.unit,
        note: w.note,
        names: w.contenders.iter().map(|c| c.name).collect(),
        samples,
        errors,
    }
}

/// The memory figure, each contender in its own child process, alternating; `tls`: over
/// TLS.
fn run_memory(env: &Env, rounds: usize, tls: bool) -> MemoryResult {
    let over = if tls { ", over TLS" } else { "" };
    eprintln!("== memory ({} idle connections{over})", env.sizes.idle);
    let names = ["momoko", "tokio-postgres"];
    let mut per_conn: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut errors: Vec<Option<String>> = vec![None; names.len()];
    for r in 0..rounds {
        for (i, name) in names.iter().enumerate() {
            let probe_name = if tls {
                format!("{name}-tls")
            } else {
                (*name).to_owned()
            };
            match probe(&probe_name) {
                Ok(b) => {
                    eprintln!(
                        "   round {} {name:<22} {:>8.1} KiB/connection",
                        r + 1,
                        b / 1024.0
                    );
                    per_conn[i].push(b);
                }
                Err(e) => errors[i] = Some(e),
            }
        }
    }
    MemoryResult {
        idle: env.sizes.idle,
        tls,
        names: names.to_vec(),
        per_conn,
        errors,
    }
}

fn probe(name: &str) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["--probe", name])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| "probe printed no number".to_owned())
}
