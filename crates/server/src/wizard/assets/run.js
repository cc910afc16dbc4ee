// Screens 6, H and 7: a run's live progress (Provision, or Watch from the last event seen),
// waiting for a privileged admin and the link to send them, cancelling, and the summary.
import { $, S, show, list, when, api, stream, words, nameRefused, SIGN_IN_AGAIN, linkGone } from './base.js';

// ---- 6: live progress; reconnects with Watch from the last event seen ----
function stepItem(step) {
  let li = S.steps.get(step);
  if (!li) {
    li = document.createElement('li');
    const t = document.createElement('span');
    t.className = 'st';
    const d = document.createElement('span');
    d.className = 'desc';
    const n = document.createElement('span');
    n.className = 'note';
    li.append(t, d, n);
    S.steps.set(step, li);
    $('steps').appendChild(li);
  }
  return li;
}
function setStep(li, cls, status, note) {
  li.className = cls;
  li.children[0].textContent = status;
  if (note !== undefined) li.children[2].textContent = note;
}
// Screen 6's heading and title say what the run does: provisioning, or undoing it.
function progressHeading(text, intro) {
  $('progress-h').textContent = text;
  $('progress-intro').hidden = !intro;
  $('s-progress').dataset.title = text;
  if (!$('s-progress').hidden) document.title = text + ' – Invitation wizard';
}
// What a failure's cause asks of the admin, in plain words (the server classifies; the step's
// name stands in for causes without words of their own).
const FAILED = {
  sign_in_again: SIGN_IN_AGAIN,
  missing_rights: 'The signed-in account lacks an administrator role this step needs.',
  service: 'The onboarding service could not go on because of a problem on its side, not in your tenant. Your provider can see what happened; ask them before trying again.',
};
// The step id of an undo's events (provision's `cancel`).
const UNDO_STEP = 'cancel';
// The connection line while an undo runs.
const CANCELLING = 'Cancelling: removing what was created…';
// Why a step waits, in plain words (the server's reason, with its codes, when the kind is
// not known).
const RETRY = {
  replication: 'waiting for Microsoft to replicate the new app',
  credential_propagation: 'waiting for Microsoft to accept the new secret',
  throttled: 'Microsoft asked Onboard to slow down',
  microsoft_unavailable: 'Microsoft is briefly unavailable',
  network: 'Microsoft could not be reached',
};
function onProgress(name, d) {
  if (d.index) S.lastIndex = Math.max(S.lastIndex, d.index);
  if (S.reconnecting) {
    // Events flow again after a loss: say so, once.
    S.reconnecting = false;
    $('conn').textContent = 'Connected again.';
  }
  if (S.waiting && name !== 'awaiting_admin') {
    // The privileged admin acts, or the undo begins (the wait ended, or the provider
    // cancelled): their steps show live here, under words for what happens.
    S.waiting = false;
    if (d.step === UNDO_STEP || name === 'cancelled') {
      S.undoFromWait = true;
      $('conn').textContent = 'Nobody finished the onboarding in time, or your provider cancelled it: Onboard removes what it created.';
      progressHeading('Cancelling', false);
    } else {
      $('conn').textContent = S.handOff ? '' : 'An administrator is finishing the onboarding.';
      progressHeading('Provisioning', true);
    }
    show('s-progress');
  }
  if (name === 'started') {
    if (d.step === UNDO_STEP) S.undoStarted = true;
    const li = stepItem(d.step);
    li.children[1].textContent = d.description || d.step;
    setStep(li, 'run', 'In progress: ', '');
  } else if (name === 'retrying') {
    const s = Math.max(1, Math.round(d.wait_ms / 1000));
    const why = RETRY[d.kind] || d.reason;
    setStep(stepItem(d.step), 'wait', 'Waiting: ', ' — ' + why + ' — retry ' + d.attempt + ' in ' + s + ' s');
  } else if (name === 'done') {
    const li = stepItem(d.step);
    if (!li.children[1].textContent) li.children[1].textContent = d.step;
    setStep(li, 'ok', 'Done: ', d.unchanged ? ' (already in place)' : '');
  } else if (name === 'completed') {
    S.ended = true;
    $('cancel-area').hidden = true;
    done();
  } else if (name === 'failed' && d.step === UNDO_STEP) {
    undoFailed(d);
  } else if (name === 'failed') {
    S.ended = true;
    const li = d.step ? stepItem(d.step) : null;
    if (li) setStep(li, 'bad', 'Failed: ', '');
    stopRunningSteps();
    // Plain words first (the step as listed above); Microsoft's answer as the details.
    const what = li && li.children[1].textContent;
    $('failed-text').textContent = FAILED[d.cause]
      || (what ? 'The step “' + what + '” could not finish.' : 'Provisioning could not finish.');
    $('failed-detail').textContent = 'Details: ' + d.reason;
    $('progress-failed').hidden = false;
    $('conn').textContent = '';
  } else if (name === 'cancelled') {
    S.ended = true;
    $('cancel-area').hidden = true;
    $('progress-failed').hidden = true;
    $('conn').textContent = '';
    stopRunningSteps();
    progressHeading('Onboarding cancelled', false);
    // Who ended it, as far as this page saw: its own Cancel, the wait's end or the provider,
    // or (replayed after a reload) not known.
    const removed = ', and Onboard removed what it had created for it in your tenant.';
    $('cancelled-text').textContent = S.cancelledHere ? 'You cancelled it' + removed
      : S.undoFromWait ? 'It was cancelled (by your provider, or because nobody finished it in time)' + removed
        : 'It was cancelled' + removed;
    $('progress-cancelled').hidden = false;
    $('cancelled-h').focus();
  } else if (name === 'awaiting_admin') {
    waiting(d);
  } else if (name === 'error') {
    throw Object.assign(new Error('api'), { api: d, fromStream: true });
  }
}
// A stopped run goes on after a new sign-in with the same link (the server resumes a failed
// run with the new sign-in): the sign-in screens, then Provision with the same name.
// Plan or Provision refused because Microsoft no longer accepts the sign-in: say so on the
// name screen and offer a new one (nothing was changed; the name is checked again after it).
export function askSignIn(err) {
  $('plan-box').hidden = true;
  $('plan-status').textContent = SIGN_IN_AGAIN + ' Nothing has been changed. Sign in again, then continue with the name. Details: ' + err.message;
  $('btn-plan-signin').textContent = 'Sign in again';
  S.planSignInOther = false;
  $('plan-signin').hidden = false;
  S.planOk = false;
  $('btn-provision').disabled = true;
  return false;
}
export function signInAgain() {
  S.resume = true;
  if (S.upn) $('upn').value = S.upn;
  show('s-upn');
}
export function resume() {
  S.resume = false;
  S.ended = false;
  $('progress-failed').hidden = true;
  follow(-1);
}
// The undo stopped (Microsoft refused or was unavailable): what was made stays until a
// cancel removes it; the same Cancel tries again (the server goes on where the undo stopped).
function undoFailed(d) {
  S.ended = true;
  setStep(stepItem(d.step), 'bad', 'Failed: ', '');
  stopRunningSteps();
  $('cancel-area').hidden = true;
  $('progress-failed').hidden = true;
  $('conn').textContent = '';
  progressHeading('Cancelling stopped', false);
  $('undo-failed-text').textContent = FAILED[d.cause] || 'Onboard could not remove everything it created.';
  $('undo-failed-detail').textContent = d.reason ? 'Details: ' + d.reason : '';
  $('undo-failed').hidden = false;
  $('undo-failed-h').focus();
}
// Cancelling, with the run's stream over (it stopped, or its undo did): the undo's events come
// on a Watch from the next one (the server holds it open for them); the cancel call waits for
// the undo.
function followUndo() {
  S.ended = false;
  progressHeading('Cancelling', false);
  $('conn').textContent = CANCELLING;
  follow(1, true);
}
export async function retryUndo() {
  $('btn-undo-retry').disabled = true;
  $('undo-failed').hidden = true;
  S.cancelledHere = true;
  S.undoStarted = false;
  followUndo();
  try {
    await api('cancel', { onboarding_id: S.onboardingId,
      reason: 'cancelled by the customer admin in the invitation wizard (removal tried again)' });
  } catch (e) {
    // A stopped undo shows through its event; a refusal before it began is said here.
    if (!S.undoStarted) $('conn').textContent = 'The removal did not start: ' + words(e.api, 'the server could not be reached.');
  } finally {
    $('btn-undo-retry').disabled = false;
  }
}
// Steps cut short by a failure or a cancellation stopped where they were (plain status).
function stopRunningSteps() {
  for (const li of S.steps.values()) {
    if (li.className === 'run' || li.className === 'wait') setStep(li, 'stop', 'Stopped: ', '');
  }
}
// from < 0: start Provision (same idempotency key on every try); else Watch from `from`.
// `undoing`: an undo tried again, on the screen as it is.
export async function follow(from, undoing = false) {
  $('progress-name').textContent = S.appName;
  if (from === 0) { S.steps.clear(); $('steps').replaceChildren(); S.lastIndex = 0; }
  if (!undoing) {
    $('cancel-area').hidden = false;
    $('btn-cancel').hidden = false;
    $('cancel-confirm').hidden = true;
    $('progress-cancelled').hidden = true;
    progressHeading('Provisioning', true);
    show('s-progress');
  }
  let wait = 1000, first = from;
  while (!S.ended) {
    try {
      if (first < 0) {
        await stream('provision', { onboarding_id: S.onboardingId, app_name: S.appName,
          idempotency_key: 'wizard-' + S.onboardingId }, onProgress);
      } else {
        await stream('watch', { onboarding_id: S.onboardingId, from_event: first === 0 ? 0 : S.lastIndex + 1 }, onProgress);
      }
      if (S.ended) return;
      if (!S.waiting) $('conn').textContent = 'The connection closed. Reconnecting…';
      S.reconnecting = true;
    } catch (e) {
      const err = e.api;
      // Provision refused before it started, for the request itself (the name is taken, a
      // rule, the sign-in): back to where it was asked for. Anything else (the server busy or
      // restarting, a proxy's error page) is tried again below.
      const refused = err && ['invalid_argument', 'already_exists', 'failed_precondition'].includes(err.code);
      if (refused && first < 0 && !e.fromStream && S.handOff) return finishScreen();
      if (refused && first < 0 && !e.fromStream) {
        show('s-name');
        if (err.sign_in_again) return askSignIn(err);
        $('plan-box').hidden = true;
        $('plan-status').textContent = '';
        nameRefused(err, S.appName);
        return;
      }
      if (err && ['permission_denied', 'unauthenticated', 'not_found', 'failed_precondition'].includes(err.code)) {
        // The invitation was withdrawn (or expired) meanwhile: screen 0 says so, and whom
        // to ask, instead of a raw refusal under steps that look stuck.
        if (await linkGone(err)) return;
        $('conn').textContent = err.message;
        return;
      }
      $('conn').textContent = 'Connection lost. Reconnecting…';
      S.reconnecting = true;
    }
    // Until an event arrived, the run may not have started: Provision again, with the same
    // idempotency key (the server follows a run that did start); then Watch from the last one.
    if (!(first < 0 && S.lastIndex === 0)) first = 1;
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 10000);
  }
}

// ---- H: waiting for a privileged admin; the link to send them ----
const LEFT = { 'app_role_assignment.create': 'Grant the application permission {t}, with admin consent',
  'directory_role_assignment.create': 'Assign the directory role {t}' };
export function plainChange(c) {
  const i = c.indexOf(' ');
  const words = LEFT[c.slice(0, i)];
  return words ? words.replace('{t}', c.slice(i + 1)) : c;
}
function waiting(d) {
  S.waiting = true;
  $('wait-name').textContent = S.appName;
  list($('wait-roles'), d.roles || [], '');
  // The steps the run finished (replayed after a reload), as screen 6 listed them.
  const done = [...S.steps.values()].filter((li) => li.className === 'ok')
    .map((li) => li.children[1].textContent);
  list($('wait-done'), done, 'Nothing yet');
  list($('wait-left'), (d.changes_left || []).map(plainChange), '');
  $('wait-expires').textContent = d.expires_at ? when(d.expires_at * 1000) : '';
  $('consent-url').value = d.admin_consent_url || '';
  $('consent-box').hidden = !d.admin_consent_url;
  $('consent-role').hidden = !(d.changes_left || []).some((c) => c.startsWith('directory_role_assignment.'));
  if (!$('s-waiting').hidden) return;
  show('s-waiting');
}
export async function createLink() {
  $('btn-link').disabled = true;
  try {
    const l = await api('hand_off_link', { onboarding_id: S.onboardingId });
    $('ho-link').value = l.link;
    $('link-copied').textContent = '';
    $('link-box').hidden = false;
    $('btn-link').textContent = 'Create a new link';
    $('ho-link').focus();
    $('ho-link').select();
  } catch (e) {
    $('wait-status').textContent = 'No link was created: ' + words(e.api, 'the server could not be reached.');
  } finally {
    $('btn-link').disabled = false;
  }
}
export async function copyField(field, note, what) {
  try {
    await navigator.clipboard.writeText($(field).value);
    $(note).textContent = what + ' copied.';
  } catch (e) {
    $(field).select();
    $(note).textContent = 'Press Ctrl+C (or ⌘C) to copy the selected link.';
  }
}
// Cancel while waiting: the progress screen's confirmation; "Keep going" comes back here.
export function cancelWaiting() {
  S.cancelFromWait = true;
  // Nothing is being provisioned while the wait lasts: the heading says what is going on.
  progressHeading('Waiting for an administrator', false);
  show('s-progress');
  askCancel();
}
// The link's holder, signed in: what is left (the server's plan), then Provision.
export async function finishScreen() {
  $('finish-name').textContent = S.appName;
  $('btn-finish').disabled = true;
  $('finish-status').textContent = 'Checking what is left…';
  show('s-finish');
  let p;
  try { p = await api('plan', { onboarding_id: S.onboardingId, app_name: S.appName }); } catch (e) {
    $('finish-status').textContent = words(e.api, 'The plan could not be read.');
    return;
  }
  list($('finish-plan'), p.changes.map((c) => c.description), '');
  $('finish-status').textContent = p.blocked
    ? 'Your account lacks a role some of these changes need.' : 'Nothing has been changed yet.';
  $('btn-finish').disabled = p.blocked;
}

// ---- 6: cancel (allowed until the onboarding completes; the server decides) ----
export function askCancel() {
  $('btn-cancel').hidden = true;
  $('cancel-confirm').hidden = false;
  $('cancel-q').focus();
}
export function keepGoing() {
  if (S.cancelFromWait) {
    S.cancelFromWait = false;
    $('cancel-confirm').hidden = true;
    $('btn-cancel').hidden = false;
    show('s-waiting');
    return $('btn-wait-cancel').focus();
  }
  $('cancel-confirm').hidden = true;
  $('btn-cancel').hidden = false;
  $('btn-cancel').focus();
}
export async function cancel() {
  $('btn-cancel-yes').disabled = true;
  // The undo's events are this admin's doing, not a second admin's.
  const fromWait = S.cancelFromWait;
  // A run that already stopped has no stream open: follow the undo, as "Try removing again"
  // does.
  const watchUndo = S.ended && !fromWait;
  S.waiting = false;
  S.cancelledHere = true;
  S.undoStarted = false;
  S.cancelFromWait = false;
  if (watchUndo) {
    $('progress-failed').hidden = true;
    followUndo();
  }
  try {
    await api('cancel', { onboarding_id: S.onboardingId,
      reason: 'cancelled by the customer admin in the invitation wizard' });
    $('cancel-area').hidden = true;
    // The stream may have brought the end already.
    if (!S.ended) {
      progressHeading('Cancelling', false);
      $('conn').textContent = CANCELLING;
    }
  } catch (e) {
    // The undo began: how it ended comes on the stream (a stopped undo offers its retry).
    if (S.undoStarted) return;
    if (watchUndo) {
      // Refused before any undo: the stopped run as it was (the idle Watch ends with the page).
      S.ended = true;
      $('progress-failed').hidden = false;
      progressHeading('Provisioning', true);
    }
    const err = e.api || { message: 'The server could not be reached.' };
    S.waiting = S.cancelFromWait = fromWait;
    S.cancelledHere = false;
    keepGoing();
    $(fromWait ? 'wait-status' : 'conn').textContent = 'The onboarding was not cancelled: ' + words(err);
  } finally {
    $('btn-cancel-yes').disabled = false;
  }
}

// ---- 7: done ----
// `unavailable`: what to show instead when the summary cannot be read (on a reload).
export async function done(unavailable) {
  let s;
  try { s = await api('summary', { onboarding_id: S.onboardingId }); } catch (e) {
    if (unavailable) return unavailable();
    $('conn').textContent = 'Provisioning finished. The summary could not be loaded; reload the page to see it.';
    return;
  }
  $('done-name').textContent = s.app_name;
  $('done-client').textContent = s.client_id || '';
  list($('done-perms'), s.permissions || [], 'None');
  list($('done-roles'), s.roles || [], 'None');
  $('done-temp').textContent = s.temporary_app_removed
    ? s.temporary_app + ' removed' : s.temporary_app + ' was not found (nothing to remove)';
  show('s-done');
}
