// command_probe REPORT PYNAMIC OUT: an unmodified Rust program launching through
// std::process::Command, as build tools written in Rust do. Rust's standard library calls
// posix_spawnp when it can (file actions for the working directory and the standard streams,
// SETSIGMASK, SETSIGDEF for SIGPIPE, which Rust ignores, SETPGROUP) and fork + exec
// otherwise (a pre_exec hook). Every child writes its report; the exit statuses and error
// codes Rust returns go to OUT/results.txt. Written for Rust 2018 and rustc 1.63 (Debian's).
use std::fmt::Write as _;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

fn report(report: &str, out: &str, name: &str) -> Command {
    let mut c = Command::new(report);
    c.arg(format!("--report-out={}/{}.json", out, name));
    c
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (rep, pynamic, out) = (&args[1], &args[2], &args[3]);
    let mut results = String::new();
    for i in 0..120 {
        let mut c = report(rep, out, &format!("r{}", i));
        c.arg(format!("--report-exit={}", i % 4));
        match i % 6 {
            0 => {
                c.current_dir("/tmp");
            }
            1 => {
                c.env_clear().env("ONLY", "one");
            }
            2 => {
                c.stdin(Stdio::null()).stdout(Stdio::null());
            }
            3 => {
                c.arg0("renamed");
            }
            4 => {
                c.env("EXTRA", "x").env_remove("HOME");
            }
            _ => {}
        }
        let status = c.status().expect("spawn report");
        let pynamic_status = Command::new(pynamic).arg(i.to_string()).status().expect("spawn pynamic");
        writeln!(results, "{} {:?} {:?}", i, status.code(), pynamic_status.code()).unwrap();
    }
    // Captured through pipes (output), killed by a signal, a missing program.
    let captured = Command::new(rep).arg("--report-exit=3").output().expect("output");
    writeln!(results, "captured {:?} {}", captured.status.code(), !captured.stdout.is_empty()).unwrap();
    let killed = report(rep, out, "signal").arg("--report-signal=15").status().expect("signal");
    writeln!(results, "signal {:?} {:?}", killed.code(), killed.signal()).unwrap();
    match Command::new("/nonexistent/pspawn-missing").status() {
        Ok(s) => writeln!(results, "missing ran {:?}", s.code()).unwrap(),
        Err(e) => writeln!(results, "missing {:?}", e.raw_os_error()).unwrap(),
    }
    // A pre_exec hook: Rust forks and runs it in the child before exec.
    for i in 0..20 {
        let mut c = report(rep, out, &format!("hook{}", i));
        unsafe {
            c.pre_exec(|| Ok(()));
        }
        let status = c.status().expect("spawn with a hook");
        writeln!(results, "hook {} {:?}", i, status.code()).unwrap();
    }
    // Many at once, then waited for.
    let children: Vec<_> = (0..20)
        .map(|i| report(rep, out, &format!("many{}", i)).arg(format!("--report-exit={}", i % 3)).spawn().expect("spawn"))
        .collect();
    for (i, mut child) in children.into_iter().enumerate() {
        writeln!(results, "many {} {:?}", i, child.wait().expect("wait").code()).unwrap();
    }
    std::fs::write(format!("{}/results.txt", out), results).expect("results");
}
