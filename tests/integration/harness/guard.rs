//! A child process a test waits for with a limit: the one way tests run a command that
//! might not end (one asked about a stopped daemon, a workload on a volume). On drop it
//! is killed and reaped, so a failing test leaves no process; one that cannot be reaped
//! (stuck in the kernel) is reported, never waited for, so the test itself never hangs.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Guarded {
    child: Option<Child>,
    what: String,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
}

/// What a guarded command printed, and how it ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    let mut pipe = pipe?;
    Some(std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    }))
}

impl Guarded {
    /// Starts `cmd` (stdin from /dev/null, its output captured); `what` names it in
    /// failures.
    pub fn spawn(cmd: &mut Command, what: &str) -> Guarded {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
        Guarded {
            child: Some(child),
            what: what.into(),
            out,
            err,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it has ended (reaped).
    pub fn try_finished(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// As [`Guarded::wait_within`], with the output as bytes (`std::process::Output`).
    pub fn output_within(mut self, limit: Duration) -> Output {
        let status = self.wait_status(limit);
        let bytes =
            |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Output {
            status,
            stdout: bytes(self.out.take()),
            stderr: bytes(self.err.take()),
        }
    }

    fn wait_status(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        let child = self.child.as_mut().expect("not waited for yet");
        let status = loop {
            if let Some(s) = child.try_wait().expect("waiting for a child") {
                break s;
            }
            assert!(
                started.elapsed() < limit,
                "{} did not end within {limit:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        self.child = None;
        status
    }

    /// Waits for it to end within `limit`; the test fails, saying what did not end, if
    /// it does not (the process is then killed by the drop).
    pub fn wait_within(mut self, limit: Duration) -> Finished {
        let status = self.wait_status(limit);
        let text = |h: Option<JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Finished {
            status,
            stdout: text(self.out.take()),
            stderr: text(self.err.take()),
        }
    }
}

/// `cmd.output()` with a deadline: the test fails, naming the command, if it does not end
/// within `limit` (and the command is killed).
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut what = format!("{cmd:?}");
    if what.len() > 300 {
        what.truncate(300);
        what += "...";
    }
    Guarded::spawn(cmd, &what).output_within(limit)
}

/// `Command::output` with [`COMMAND_LIMIT`] as its deadline.
pub trait BoundedOutput {
    fn bounded_output(&mut self) -> Output;
}

impl BoundedOutput for Command {
    fn bounded_output(&mut self) -> Output {
        output_within(self, COMMAND_LIMIT)
    }
}

/// How long a command run by a test may take unless the test says otherwise: the longest
/// tools (pjdfstest, fsx, fio) finish in a few minutes on a loaded 2-CPU machine.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(900);

impl Drop for Guarded {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!(
            "{} (pid {}) could not be reaped after SIGKILL: it is stuck in the kernel",
            self.what,
            child.id()
        );
        // Reaped whenever the kernel lets it go (what it waits for may resume later in
        // this test's cleanup), never waited for here.
        std::thread::spawn(move || child.wait());
    }
}
