//! The counted figures of issue 26: user-space instructions per operation (valgrind's
//! callgrind, which counts the same whatever else the machine does) and syscalls per
//! operation (`strace -f -c`) of momoko, tokio-postgres and the protocol floor, and the peak
//! resident memory of a 1M-row read, held and streamed.
//!
//! Each figure is taken in a child process (this program again, `--count-child
//! ID:WHO:N`) that connects, does N operations and exits. A count per operation is the
//! difference of two run sizes, (C(N2) − C(N1)) ÷ (N2 − N1), so that starting the process,
//! the runtime and connecting cancel out. The callgrind profiles are kept (their directory
//! is printed) for `callgrind_annotate`. This module never times anything: the timed
//! figures are the workloads'.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use crate::env::Env;
use crate::workloads::Proto;
use crate::{floor, momoko_side as mk, tokio_side as tp};

/// One counted workload: its id, what it is, the unit of an op and the two run sizes.
struct Counted {
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    n1: u64,
    n2: u64,
}

const WORKLOADS: [Counted; 6] = [
    Counted {
        id: "W1",
        title: "`SELECT 1` one at a time (simple protocol; momoko `execute`, tokio-postgres `simple_query`)",
        unit: "query",
        n1: 300,
        n2: 1_300,
    },
    Counted {
        id: "W2",
        title: "100 in flight on one connection, simple",
        unit: "query",
        n1: 2_000,
        n2: 12_000,
    },
    Counted {
        id: "W2p",
        title: "100 in flight on one connection, prepared (momoko `execute_prepared`, tokio-postgres `query`)",
        unit: "query",
        n1: 2_000,
        n2: 12_000,
    },
    Counted {
        id: "W4",
        title: "int4 rows, text (momoko `execute`; tokio-postgres `query`, binary, its only row path)",
        unit: "row",
        n1: 100_000,
        n2: 300_000,
    },
    Counted {
        id: "W4q",
        title: "int4 rows, binary (momoko `query`, tokio-postgres `query`)",
        unit: "row",
        n1: 100_000,
        n2: 300_000,
    },
    Counted {
        id: "Ws",
        title: "int4 rows streamed, none kept (momoko `stream`, tokio-postgres `query_raw`)",
        unit: "row",
        n1: 100_000,
        n2: 300_000,
    },
];

const WHO: [&str; 3] = ["momoko", "tokio-postgres", "floor"];

/// The memory figures: a read of `MEM_ROWS` int4 rows, held or streamed.
const MEM: [(&str, &str); 3] = [
    (
        "held-query",
        "held, binary (momoko `query`, tokio-postgres `query`)",
    ),
    (
        "held-execute",
        "held, text (momoko `execute`; tokio-postgres `query`)",
    ),
    (
        "streamed",
        "streamed (momoko `stream`, tokio-postgres `query_raw`)",
    ),
];
const MEM_ROWS: u64 = 1_000_000;

/// The child's side: `spec` is `ID:WHO:N`; runs it once. For a memory spec (`held-query`,
/// `held-execute`, `streamed`) it prints the process's peak resident set in bytes.
pub fn child(spec: &str, env: &Env) -> Result<(), String> {
    let mut parts = spec.splitn(3, ':');
    let (Some(id), Some(who), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("--count-child takes ID:WHO:N, not {spec}"));
    };
    let n: u64 = n.parse().map_err(|_| format!("bad N in {spec}"))?;
    let mut env = env.clone();
    env.sizes.w1 = n;
    env.sizes.w2 = n;
    env.sizes.w4_series = n;
    let env = &env;
    let held_query = |who: &str| match who {
        "momoko" => mk::w4_series_query(env),
        "tokio-postgres" => tp::w4_series(env),
        _ => floor::w4_series(env),
    };
    let text = |who: &str| match who {
        "momoko" => mk::w4_series(env, Proto::Simple),
        "tokio-postgres" => tp::w4_series(env),
        _ => floor::w4_series_text(env),
    };
    let streamed = |who: &str| match who {
        "momoko" => mk::w4_stream(env),
        "tokio-postgres" => tp::w4_stream(env),
        _ => floor::w4_series(env),
    };
    let r = match (id, who) {
        ("W1", "momoko") => mk::w1(env, Proto::Simple),
        ("W1", "tokio-postgres") => tp::w1(env, Proto::Simple),
        ("W1", _) => floor::w1(env, Proto::Simple),
        ("W2" | "W2p", w) => {
            let proto = if id == "W2" {
                Proto::Simple
            } else {
                Proto::Prepared
            };
            match w {
                "momoko" => mk::w2(env, proto),
                "tokio-postgres" => tp::w2(env, proto),
                _ => floor::w2(env, proto),
            }
        }
        ("W4" | "held-execute", w) => text(w),
        ("W4q" | "held-query", w) => held_query(w),
        ("Ws" | "streamed", w) => streamed(w),
        _ => return Err(format!("unknown count {spec}")),
    };
    r?;
    if MEM.iter().any(|(m, _)| *m == id) {
        println!("{}", peak_rss()?);
    }
    Ok(())
}

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| "no VmHWM in /proc/self/status".to_owned())
}

/// One contender's counts per op on one workload.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub ins: f64,
    pub sys: f64,
    /// Syscalls per op by name (those at 0.01 or more).
    pub sys_by: Vec<(String, f64)>,
}

/// Everything the counting measured.
pub struct CountResult {
    /// Per workload (WORKLOADS' order), per contender (WHO's order).
    pub figures: Vec<Vec<Result<Figures, String>>>,
    /// Per memory figure (MEM's order), per contender: peak RSS in bytes.
    pub memory: Vec<Vec<Result<u64, String>>>,
}

fn selected(only: &[String], id: &str) -> bool {
    only.is_empty()
        || only
            .iter()
            .any(|o| o == "count" || o.strip_prefix("count-") == Some(id))
}

/// Runs every count (`only`: `count` for all, `count-W1` for one workload, `count-mem`).
pub fn run(only: &[String]) -> Result<CountResult, String> {
    for tool in ["valgrind", "strace"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(format!(
                "{tool} is not installed (make bench installs it as root: apt-get install \
                 valgrind strace)"
            ));
        }
    }
    let dir = std::env::var_os("MOMOKO_BENCH_COUNT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("momoko-bench-count"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    eprintln!(
        "== counted per op: callgrind and strace -f -c, difference of two run sizes \
         (profiles in {})",
        dir.display()
    );
    let mut figures = Vec::new();
    for w in &WORKLOADS {
        let mut row = Vec::new();
        for who in WHO {
            if !selected(only, w.id) {
                row.push(Err("not run".to_owned()));
                continue;
            }
            let f = figures_of(w, who, &dir);
            match &f {
                Ok(f) => eprintln!(
                    "   {:<4} {who:<15} {:>9.0} instructions/{}  {:>7.3} syscalls/{}  {}",
                    w.id,
                    f.ins,
                    w.unit,
                    f.sys,
                    w.unit,
                    f.sys_by
                        .iter()
                        .map(|(n, c)| format!("{n} {c:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) => eprintln!("   {:<4} {who:<15} not counted: {e}", w.id),
            }
            row.push(f);
        }
        figures.push(row);
    }
    let mut memory = Vec::new();
    for (id, _) in MEM {
        let mut row = Vec::new();
        for who in WHO {
            if !selected(only, "mem") {
                row.push(Err("not run".to_owned()));
                continue;
            }
            let r = child_output(&[], &format!("{id}:{who}:{MEM_ROWS}")).and_then(|out| {
                out.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("printed no number: {out}"))
            });
            match &r {
                Ok(b) => eprintln!("   {id:<12} {who:<15} peak RSS {:>7.1} MB", *b as f64 / 1e6),
                Err(e) => eprintln!("   {id:<12} {who:<15} not measured: {e}"),
            }
            row.push(r);
        }
        memory.push(row);
    }
    Ok(CountResult { figures, memory })
}

/// Runs this program as `--count-child spec` under `wrapper` (empty: directly); its stdout,
/// or its stderr's last line as the error.
fn child_output(wrapper: &[String], spec: &str) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = if let Some((first, rest)) = wrapper.split_first() {
        let mut c = Command::new(first);
        c.args(rest).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd
        .args(["--count-child", spec])
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.starts_with("==") && !l.trim().is_empty())
            .unwrap_or("failed");
        return Err(last.trim().to_owned());
    }
    // callgrind's summary is on stderr: keep it after stdout for the parser.
    Ok(format!(
        "{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    ))
}

/// Instructions (callgrind's `Collected`) of one child run.
fn instructions(dir: &std::path::Path, id: &str, who: &str, n: u64) -> Result<f64, String> {
    let file = dir.join(format!("callgrind.{id}.{who}.{n}"));
    let out = child_output(
        &[
            "valgrind".into(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}", file.display()),
        ],
        &format!("{id}:{who}:{n}"),
    )?;
    out.lines()
        .find_map(|l| {
            l.split_once("Collected :")
                .map(|(_, v)| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| "callgrind reported no count".to_owned())
}

/// Syscalls by name (`strace -f -c`) of one child run.
fn syscalls(
    dir: &std::path::Path,
    id: &str,
    who: &str,
    n: u64,
) -> Result<BTreeMap<String, f64>, String> {
    let file = dir.join(format!("strace.{id}.{who}.{n}"));
    child_output(
        &[
            "strace".into(),
            "-f".into(),
            "-c".into(),
            "-o".into(),
            file.display().to_string(),
        ],
        &format!("{id}:{who}:{n}"),
    )?;
    let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
    let mut by = BTreeMap::new();
    // `% time  seconds  usecs/call  calls  [errors]  syscall`: calls is the fourth field.
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue;
        }
        let (Ok(calls), Some(name)) = (f[3].parse::<f64>(), f.last()) else {
            continue;
        };
        by.insert((*name).to_owned(), calls);
    }
    if !by.contains_key("total") {
        return Err(format!("strace -c wrote no total ({})", file.display()));
    }
    Ok(by)
}

/// Of `SYSCALL_RUNS` runs, the one with the median total: how many reads a pipelined run
/// takes depends on how the server's answers happen to arrive, which varies run to run.
fn median_syscalls(
    dir: &std::path::Path,
    id: &str,
    who: &str,
    n: u64,
) -> Result<BTreeMap<String, f64>, String> {
    let mut runs = (0..SYSCALL_RUNS)
        .map(|_| syscalls(dir, id, who, n))
        .collect::<Result<Vec<_>, _>>()?;
    runs.sort_by(|a, b| a["total"].total_cmp(&b["total"]));
    Ok(runs.swap_remove(SYSCALL_RUNS / 2))
}

const SYSCALL_RUNS: usize = 3;

fn figures_of(w: &Counted, who: &str, dir: &std::path::Path) -> Result<Figures, String> {
    let d = (w.n2 - w.n1) as f64;
    let ins = (instructions(dir, w.id, who, w.n2)? - instructions(dir, w.id, who, w.n1)?) / d;
    let (s1, s2) = (
        median_syscalls(dir, w.id, who, w.n1)?,
        median_syscalls(dir, w.id, who, w.n2)?,
    );
    let per = |name: &str| {
        (s2.get(name).copied().unwrap_or(0.0) - s1.get(name).copied().unwrap_or(0.0)) / d
    };
    let mut sys_by: Vec<(String, f64)> = s2
        .keys()
        .filter(|k| *k != "total")
        .map(|k| (k.clone(), per(k)))
        .filter(|(_, c)| *c >= 0.01)
        .collect();
    sys_by.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(Figures {
        ins,
        sys: per("total"),
        sys_by,
    })
}

/// The bounds: momoko ÷ floor instructions per workload.
fn floor_bound(id: &str) -> Option<f64> {
    match id {
        "W1" | "W2" | "W2p" => Some(2.5),
        "W4" => Some(1.15),
        "W4q" => Some(1.3),
        "Ws" => Some(1.2),
        _ => None,
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// The BENCHMARKS.md section.
pub fn markdown(c: &CountResult) -> String {
    let mut m = String::new();
    let w = &mut m;
    let _ = writeln!(w, "### Counted per operation (issue 26)\n");
    let _ = writeln!(
        w,
        "User-space instructions (valgrind `--tool=callgrind`, whole process) and syscalls \
         (`strace -f -c`, the median of three runs per size) per operation, each the difference \
         of two runs of a child process ((C(N2) − C(N1)) ÷ (N2 − N1)), so that starting and \
         connecting cancel out. Instruction counts do \
         not depend on the machine's load; syscall counts of the pipelined workloads do \
         (how many answers one read finds). The floor is a blocking loop on postgres-protocol \
         writing the same messages, flushing once per batch, framing every answer and reading \
         every value as an integer.\n"
    );
    let _ = writeln!(
        w,
        "| workload | N1 → N2 | momoko ins/op | tokio-postgres | floor | momoko ÷ floor | momoko ÷ tokio-postgres | momoko syscalls/op | tokio-postgres | floor |"
    );
    let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let fig = |r: &Result<Figures, String>, f: fn(&Figures) -> f64, prec: usize| match r {
        Ok(x) => format!("{:.*}", prec, f(x)),
        Err(_) => "–".to_owned(),
    };
    for (i, cw) in WORKLOADS.iter().enumerate() {
        let r = &c.figures[i];
        let ratio = |a: &Result<Figures, String>, b: &Result<Figures, String>| match (a, b) {
            (Ok(a), Ok(b)) if b.ins > 0.0 => format!("{:.2}", a.ins / b.ins),
            _ => "–".to_owned(),
        };
        let prec = if cw.unit == "row" { 3 } else { 2 };
        let _ = writeln!(
            w,
            "| {} {} | {} → {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cw.id,
            cw.title,
            cw.n1,
            cw.n2,
            fig(&r[0], |x| x.ins, 0),
            fig(&r[1], |x| x.ins, 0),
            fig(&r[2], |x| x.ins, 0),
            ratio(&r[0], &r[2]),
            ratio(&r[0], &r[1]),
            fig(&r[0], |x| x.sys, prec),
            fig(&r[1], |x| x.sys, prec),
            fig(&r[2], |x| x.sys, prec),
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "Syscalls per op by name (those at 0.01 or more):\n");
    for (i, cw) in WORKLOADS.iter().enumerate() {
        for (j, who) in WHO.iter().enumerate() {
            match &c.figures[i][j] {
                Ok(f) if !f.sys_by.is_empty() => {
                    let by = f
                        .sys_by
                        .iter()
                        .map(|(n, c)| format!("{n} {c:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let _ = writeln!(w, "- {} {who}: {by}", cw.id);
                }
                Err(e) if e != "not run" => {
                    let _ = writeln!(w, "- {} {who}: not counted: {e}", cw.id);
                }
                _ => {}
            }
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Peak resident set (`VmHWM`) of a child process reading {MEM_ROWS} int4 rows \
         (`generate_series`), every value read:\n"
    );
    let _ = writeln!(
        w,
        "| read | momoko MB | tokio-postgres MB | floor MB | momoko ÷ tokio-postgres |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|");
    for (i, (_, title)) in MEM.iter().enumerate() {
        let r = &c.memory[i];
        let mb = |x: &Result<u64, String>| match x {
            Ok(b) => format!("{:.1}", *b as f64 / 1e6),
            Err(_) => "–".to_owned(),
        };
        let ratio = match (&r[0], &r[1]) {
            (Ok(a), Ok(b)) if *b > 0 => format!("{:.2}", *a as f64 / *b as f64),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            w,
            "| {title} | {} | {} | {} | {ratio} |",
            mb(&r[0]),
            mb(&r[1]),
            mb(&r[2])
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "| target (issue 26) | measured | |");
    let _ = writeln!(w, "|---|---|---|");
    for (i, cw) in WORKLOADS.iter().enumerate() {
        let r = &c.figures[i];
        if let (Some(b), Ok(m), Ok(f)) = (floor_bound(cw.id), &r[0], &r[2]) {
            let x = m.ins / f.ins;
            let _ = writeln!(
                w,
                "| {} instructions/op ≤ {b} × the floor | {x:.2} | {} |",
                cw.id,
                verdict(x <= b)
            );
        }
    }
    if let Ok(m) = &c.figures[0][0] {
        let _ = writeln!(
            w,
            "| W1 syscalls/op at 3 (write, wait, read) | {:.2} | {} |",
            m.sys,
            verdict(m.sys <= 3.05)
        );
    }
    for i in [1, 2] {
        if let (Ok(m), Ok(t)) = (&c.figures[i][0], &c.figures[i][1]) {
            let _ = writeln!(
                w,
                "| {} syscalls/op ≤ tokio-postgres's | {:.3} vs {:.3} | {} |",
                WORKLOADS[i].id,
                m.sys,
                t.sys,
                verdict(m.sys <= t.sys)
            );
        }
    }
    if let (Ok(a), Ok(b)) = (&c.memory[0][0], &c.memory[0][1]) {
        let x = *a as f64 / *b as f64;
        let _ = writeln!(
            w,
            "| 1M int4 rows held ≤ 0.6 × tokio-postgres's `query` | {x:.2} | {} |",
            verdict(x <= 0.6)
        );
    }
    if let Ok(a) = &c.memory[2][0] {
        let mb = *a as f64 / 1e6;
        let _ = writeln!(
            w,
            "| 1M int4 rows streamed ≤ 16 MB | {mb:.1} MB | {} |",
            verdict(mb <= 16.0)
        );
    }
    let _ = writeln!(w);
    m
}
