//! The engine's test hook holding calls at hook points until the test lets them go: a call
//! kept where it is (`provision:started`, `sign_in:outcome`) while the test does what must
//! happen meanwhile, or a run kept from going on past a step (`app_registration`) so that it is
//! still running then by design, not because the runtime happened not to schedule it; or
//! halted there, as a process stopping there would.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onboard_core::{Hook, HookAction};
use tokio::sync::mpsc;

use crate::sim_server::SimServer;

/// Sets the engine's test hook of `env` to hold the first call that reaches each of `points`
/// until the returned sender sends (once for each call held; dropped, it lets all go) or `limit`
/// passes; `held` is told the onboarding and the point of each call as it is held. Other calls,
/// and later ones at a point already held, go on.
pub fn hold_first_at(
    env: &SimServer,
    points: &[&'static str],
    limit: Duration,
    held: impl Fn(&str, &'static str) + Send + Sync + 'static,
) -> std_mpsc::Sender<()> {
    let (release, released) = std_mpsc::channel::<()>();
    let released = Mutex::new(released);
    let waiting = Mutex::new(points.to_vec());
    let hook: Hook = Arc::new(move |onboarding: &str, at: &str| {
        let first = waiting.lock().ok().and_then(|mut w| {
            let i = w.iter().position(|p| *p == at)?;
            Some(w.swap_remove(i))
        });
        if let Some(point) = first {
            held(onboarding, point);
            let wait = || {
                if let Ok(released) = released.lock() {
                    let _ = released.recv_timeout(limit);
                }
            };
            // The hook runs on a runtime worker. Blocked there, the worker would strand the
            // task in its LIFO slot, which no other worker may steal: a call the test makes
            // meanwhile (a cancel) could then wait out the hold (seen once in CI), and a run
            // spawned just before would stand still by accident. Handed its worker's tasks off
            // first, the hold blocks nothing else.
            match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                    tokio::task::block_in_place(wait);
                }
                _ => wait(),
            }
        }
        HookAction::Continue
    });
    env.server.app.engine().set_hook(Some(hook));
    release
}

/// Sets the engine's test hook of `env` to hold the first call that reaches `point` until the
/// returned sender sends (or `limit` passes); the receiver hears the onboarding of the call that
/// got there. Other calls, and later ones at `point`, go on.
pub fn hold_at(
    env: &SimServer,
    point: &'static str,
    limit: Duration,
) -> (mpsc::UnboundedReceiver<String>, std_mpsc::Sender<()>) {
    let (entered, held) = mpsc::unbounded_channel::<String>();
    let release = hold_first_at(env, &[point], limit, move |onboarding, _| {
        let _ = entered.send(onboarding.to_owned());
    });
    (held, release)
}

/// Sets the engine's test hook of `env` to halt every call at `point`, as a process stopping
/// there would; the receiver hears each onboarding it halted.
pub fn halt_at(env: &SimServer, point: &'static str) -> mpsc::UnboundedReceiver<String> {
    let (halted, heard) = mpsc::unbounded_channel::<String>();
    let hook: Hook = Arc::new(move |onboarding: &str, at: &str| {
        if at == point {
            let _ = halted.send(onboarding.to_owned());
            return HookAction::Halt;
        }
        HookAction::Continue
    });
    env.server.app.engine().set_hook(Some(hook));
    heard
}
