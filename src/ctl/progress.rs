//! Live progress of an onboarding (`onboardings watch`): one spinner per running step on
//! standard error (drawn only on a terminal, with the reason and wait of a retry), and one
//! line per event on standard output, so a log or a pipe gets the same story.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use onboard_proto::v1 as pb;
use pb::provision_event::Event as PE;

use super::exit::Exit;
use super::output::{dur, ts};

/// The running steps and how to print events.
pub struct StepBoard {
    /// The bars' container (hidden when standard error is not a terminal or in JSON mode).
    bars: MultiProgress,
    /// Spinners of the steps that started and have not finished.
    running: BTreeMap<String, ProgressBar>,
    /// JSON mode: the caller prints the events; we draw nothing.
    quiet: bool,
    /// The index after the last event seen (to resume a cut stream).
    next: u64,
}

impl StepBoard {
    /// A board; `quiet` for JSON output.
    pub fn new(quiet: bool) -> Self {
        let bars = if quiet {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        } else {
            MultiProgress::new()
        };
        Self {
            bars,
            running: BTreeMap::new(),
            quiet,
            next: 0,
        }
    }

    /// The index to resume from.
    pub fn next_event(&self) -> u64 {
        self.next
    }

    /// Prints a line above the bars.
    fn line(&self, text: String) {
        if !self.quiet {
            self.bars.suspend(|| println!("{text}"));
        }
    }

    /// Shows one event; returns the exit code once the onboarding ended.
    pub fn show(&mut self, e: &pb::ProvisionEvent) -> Option<Exit> {
        self.next = e.index + 1;
        let at = ts(&e.time);
        let n = e.index;
        match &e.event {
            Some(PE::Started(s)) => {
                let pb = self.bars.add(ProgressBar::new_spinner());
                pb.set_style(
                    ProgressStyle::with_template("{spinner} {prefix}: {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                pb.set_prefix(s.step.clone());
                pb.set_message(s.description.clone());
                pb.enable_steady_tick(Duration::from_millis(120));
                self.running.insert(s.step.clone(), pb);
                self.line(format!("#{n} {at} started   {}: {}", s.step, s.description));
                None
            }
            Some(PE::Retrying(r)) => {
                let what = format!(
                    "retrying in {} (attempt {}): {}",
                    dur(&r.wait),
                    r.attempt,
                    r.reason
                );
                if let Some(pb) = self.running.get(&r.step) {
                    pb.set_message(what.clone());
                }
                self.line(format!("#{n} {at} retrying  {}: {what}", r.step));
                None
            }
            Some(PE::Done(d)) => {
                if let Some(pb) = self.running.remove(&d.step) {
                    pb.finish_and_clear();
                    self.bars.remove(&pb);
                }
                let how = if d.unchanged {
                    "unchanged".to_owned()
                } else if d.audit_seq > 0 {
                    format!("audit entry {}", d.audit_seq)
                } else {
                    "ok".to_owned()
                };
                self.line(format!("#{n} {at} done      {}: {how}", d.step));
                None
            }
            Some(PE::Completed(c)) => {
                self.clear();
                // The secret is never printed here: Watch replays carry none, and a value that
                // reached this command anyway stays out of terminals and logs.
                self.line(format!(
                    "#{n} {at} completed tenant {} client {} secret key {} expires {}",
                    c.tenant_id,
                    c.client_id,
                    c.key_id,
                    ts(&c.expires_at)
                ));
                Some(Exit::Ok)
            }
            Some(PE::Failed(f)) => {
                self.clear();
                self.line(format!("#{n} {at} failed    {}", failed_text(f)));
                Some(Exit::Failed)
            }
            Some(PE::Cancelled(c)) => {
                self.clear();
                self.line(format!("#{n} {at} cancelled {}", c.detail));
                Some(Exit::Failed)
            }
            // Not an end: the privileged admin's steps follow on the same stream.
            Some(PE::AwaitingAdmin(h)) => {
                self.clear();
                self.line(format!(
                    "#{n} {at} waiting   for an admin holding {} until {}; left: {}",
                    h.roles.join(" or "),
                    ts(&h.expires_at),
                    h.changes_left.join(", ")
                ));
                if !h.admin_consent_url.is_empty() {
                    self.line(format!(
                        "#{n} {at} or grant the Microsoft Graph permissions at {}",
                        h.admin_consent_url
                    ));
                }
                None
            }
            None => None,
        }
    }

    /// Removes every spinner.
    fn clear(&mut self) {
        for (_, pb) in std::mem::take(&mut self.running) {
            pb.finish_and_clear();
            self.bars.remove(&pb);
        }
    }

    /// Ends the display.
    pub fn finish(&mut self) {
        self.clear();
        let _ = self.bars.clear();
    }
}

/// A failure as `step: reason [CAUSE]`: the cause as the proto names it, for scripts and
/// operators (left out for events stored before causes were recorded).
fn failed_text(f: &pb::Failed) -> String {
    let cause = match f.cause() {
        pb::FailureCause::Unspecified => String::new(),
        c => format!(
            " [{}]",
            c.as_str_name().trim_start_matches("FAILURE_CAUSE_")
        ),
    };
    format!("{}: {}{cause}", f.step, f.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_its_cause_when_it_has_one() {
        let mut f = pb::Failed {
            step: "service_principal".into(),
            reason: "Conditional Access".into(),
            cause: pb::FailureCause::SignInAgain.into(),
        };
        assert_eq!(
            failed_text(&f),
            "service_principal: Conditional Access [SIGN_IN_AGAIN]"
        );
        f.cause = pb::FailureCause::Unspecified.into();
        assert_eq!(failed_text(&f), "service_principal: Conditional Access");
    }
}
