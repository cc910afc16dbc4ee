//! What `onboard audit verify` concluded, and the exit codes of `onboard audit …`: an
//! auditor's script must tell a log that failed verification (evidence)
//! from one that could not be read (a network or store failure: verify again later).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | verified (or done) |
//! | 1 | the log failed verification (`INVALID:` or `ALERT:` lines), or another failure |
//! | 2 | usage: bad flags (clap) |
//! | 3 | the log or a place named could not be read (unreachable, a server or store error, HTTP 403, a timeout) and nothing read was wrong: try again later |

use std::process::ExitCode;

use audit_log::verify::VerifyReport;
use audit_remote::RemoteError;

/// The outcome of one verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everything was read and verified.
    Verified,
    /// Nothing read was wrong, but not all of it could be read.
    NotRead,
    /// Something read was wrong.
    Invalid,
}

impl Verdict {
    /// The verdict of a report.
    pub fn of(report: &VerifyReport) -> Self {
        if report.invalid() {
            Self::Invalid
        } else if report.ok() {
            Self::Verified
        } else {
            Self::NotRead
        }
    }

    /// This verdict, or [`Verdict::Invalid`] when `holds` is false (a further check failed).
    pub fn and(self, holds: bool) -> Self {
        if holds { self } else { Self::Invalid }
    }

    /// `Ok` when verified; otherwise the error the command ends with.
    pub fn into_result(self) -> anyhow::Result<()> {
        match self {
            Self::Verified => Ok(()),
            Self::Invalid => anyhow::bail!("the audit log did not verify"),
            Self::NotRead => Err(NotRead.into()),
        }
    }
}

/// A verification that could not read all of the log (exit 3).
#[derive(Debug)]
pub struct NotRead;

impl std::fmt::Display for NotRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the audit log could not be read in full (see the UNREADABLE lines); nothing read \
             was wrong; verify again later",
        )
    }
}

impl std::error::Error for NotRead {}

/// The exit code of a failed `onboard audit …` command: 3 when it
/// could not read or reach a place (see the module table), 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    let unreachable = e.chain().any(|c| {
        c.is::<NotRead>()
            || c.downcast_ref::<RemoteError>()
                .is_some_and(RemoteError::is_unreachable)
    });
    ExitCode::from(if unreachable { 3 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_with_a_problem_is_invalid_whatever_could_not_be_read() {
        let mut r = VerifyReport::default();
        assert_eq!(Verdict::of(&r), Verdict::Verified);
        r.unreadable.push("tile/0/000: connection refused".into());
        assert_eq!(Verdict::of(&r), Verdict::NotRead);
        r.problems.push("entry 3 does not hash to its leaf".into());
        assert_eq!(Verdict::of(&r), Verdict::Invalid);
        assert_eq!(Verdict::Verified.and(false), Verdict::Invalid);
        assert_eq!(Verdict::NotRead.and(true), Verdict::NotRead);
    }

    #[test]
    fn only_reads_that_failed_exit_3() {
        let code = |e: anyhow::Error| format!("{:?}", exit_code(&e));
        let three = format!("{:?}", ExitCode::from(3));
        let one = format!("{:?}", ExitCode::from(1));
        assert_eq!(code(Verdict::NotRead.into_result().unwrap_err()), three);
        assert_eq!(code(Verdict::Invalid.into_result().unwrap_err()), one);
        let http = RemoteError::Http {
            location: "https://log.example/checkpoint".into(),
            detail: "HTTP 503 Service Unavailable".into(),
        };
        assert_eq!(code(anyhow::Error::new(http).context("fetching")), three);
        let missing = RemoteError::NotFound {
            location: "https://log.example/checkpoint".into(),
        };
        assert_eq!(code(missing.into()), one);
        assert_eq!(code(anyhow::anyhow!("reading last.checkpoint")), one);
    }
}
