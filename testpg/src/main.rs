//! The `momoko-testpg` command: wraps a command with a throwaway server (`run`), or starts
//! one that outlives it (`start`, `stop`) for interactive use. It owns only argument
//! handling and process plumbing; everything about the cluster lives in the library. It must
//! never exit on a path that leaves a server it started running (except `start`, by design).

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use momoko_testpg::__private::{catch_termination_signals, send_signal, take_signal};
use momoko_testpg::{bin_dir, running_in, stop_dir, ServerInfo, TestServer, ENV_FILE};

const USAGE: &str = "\
usage:
  momoko-testpg run [--] CMD [ARGS...]   run CMD against a throwaway PostgreSQL (or the one
                                         in MOMOKO_TEST_DSN), exporting MOMOKO_TEST_DSN,
                                         MOMOKO_TEST_DSN_UNIX, MOMOKO_TEST_DSN_MD5,
                                         MOMOKO_TEST_DSN_SCRAM and MOMOKO_PG_BIN; the server
                                         is removed afterwards; exits with CMD's status
  momoko-testpg start [--dir DIR]        start a server that stays up (in DIR, default a
                                         fresh temp dir) and print its DSNs
  momoko-testpg stop DIR                 stop and remove the server started in DIR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("start") => start(&args[1..]),
        Some("stop") if args.len() == 2 => stop(&args[1]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(format!("bad arguments\n{USAGE}")),
    };
    result.unwrap_or_else(|e| {
        eprintln!("momoko-testpg: {e}");
        ExitCode::from(2)
    })
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let args = args.strip_prefix(&["--".to_owned()]).unwrap_or(args);
    let Some((program, rest)) = args.split_first() else {
        return Err(format!("run needs a command\n{USAGE}"));
    };
    // Catch signals before starting the server, so that a Ctrl-C during startup still
    // reaches the cleanup below instead of killing us with the server half made.
    catch_termination_signals();
    let (server, info) = match ServerInfo::from_env() {
        Some(info) => {
            eprintln!(
                "momoko-testpg: using the server in MOMOKO_TEST_DSN ({})",
                info.dsn
            );
            (None, info)
        }
        None => {
            let server =
                TestServer::start().map_err(|e| format!("could not start PostgreSQL: {e}"))?;
            let info = server.info().clone();
            eprintln!(
                "momoko-testpg: PostgreSQL up on 127.0.0.1:{} (cluster {}, removed on exit)",
                info.port,
                server.dir().display()
            );
            (Some(server), info)
        }
    };
    if let Some(sig) = take_signal() {
        drop(server);
        return Ok(ExitCode::from(128 + sig as u8));
    }
    let mut cmd = Command::new(program);
    cmd.args(rest).envs(info.env_vars());
    if let Ok(bin) = bin_dir() {
        if std::env::var_os("MOMOKO_PG_BIN").is_none() {
            cmd.env("MOMOKO_PG_BIN", bin);
        }
    }
    let status = match cmd.spawn() {
        Ok(mut child) => loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(format!("waiting for {program}: {e}")),
            }
            // A Ctrl-C reaches the child too (same process group); a signal sent to us
            // alone is passed on. Either way we wait for the child, then clean up.
            if let Some(sig) = take_signal() {
                send_signal(child.id() as i32, sig);
            }
            std::thread::sleep(Duration::from_millis(20));
        },
        Err(e) => {
            drop(server);
            eprintln!("momoko-testpg: could not run {program}: {e}");
            // What a shell answers for a command it can't run.
            return Ok(ExitCode::from(127));
        }
    };
    drop(server);
    let status = status?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(sig)) => ExitCode::from(128u8.wrapping_add(sig as u8)),
        _ => ExitCode::FAILURE,
    })
}

fn start(args: &[String]) -> Result<ExitCode, String> {
    let dir = match args {
        [] => None,
        [flag, dir] if flag == "--dir" => Some(PathBuf::from(dir)),
        _ => return Err(format!("bad arguments to start\n{USAGE}")),
    };
    if let Some(dir) = &dir {
        if let Some(info) = running_in(dir).map_err(|e| e.to_string())? {
            println!(
                "A momoko-testpg server is already running in {}.",
                dir.display()
            );
            print_info(&info, dir);
            return Ok(ExitCode::SUCCESS);
        }
        if dir.join(ENV_FILE).exists() {
            println!("Removing the stopped server left in {}.", dir.display());
            stop_dir(dir).map_err(|e| e.to_string())?;
        }
    }
    let server = match &dir {
        Some(dir) => TestServer::start_at(dir),
        None => TestServer::start_at(
            &std::env::temp_dir().join(format!("momoko-testpg-kept-{}", std::process::id())),
        ),
    }
    .map_err(|e| format!("could not start PostgreSQL: {e}"))?;
    let where_ = dir.unwrap_or_else(|| server.dir().to_path_buf());
    let log = server.log_path().to_path_buf();
    let info = server.keep();
    println!("PostgreSQL is running (log: {}).", log.display());
    print_info(&info, &where_);
    Ok(ExitCode::SUCCESS)
}

fn print_info(info: &ServerInfo, dir: &std::path::Path) {
    for (name, value) in info.env_vars() {
        println!("  {name}='{value}'");
    }
    println!("Log in:   psql \"{}\"", info.dsn);
    println!("Export:   set -a; . {}/{ENV_FILE}; set +a", dir.display());
    println!(
        "Stop it:  momoko-testpg stop {}   (from the repository: make pg-stop)",
        dir.display()
    );
}

fn stop(dir: &str) -> Result<ExitCode, String> {
    stop_dir(std::path::Path::new(dir)).map_err(|e| e.to_string())?;
    println!("Stopped and removed the server in {dir}.");
    Ok(ExitCode::SUCCESS)
}
