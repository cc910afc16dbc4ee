// The invitation wizard's entry: the link (screens 0 and 1), sign-in (2a, 3), the rights held
// (4), the name (5), an app registration made by hand (2b), and the buttons' wiring. Plain
// JavaScript modules (this one, `base.js`, `run.js`), no build step, no third-party code.
// Rules kept here: the invitation token is read from the URL fragment and sent only in the
// x-invitation-token header; every value from the server is written with textContent, never
// innerHTML; no rule is decided here (names, plan, roles and errors come from the server).
import { $, S, token, show, fill, list, when, api, stream, rules, markRules, words, fieldRule, sentence, nameRefused,
  problem, linkGone } from './base.js';
import { follow, signInAgain, askSignIn, resume, plainChange, finishScreen, askCancel, keepGoing, done,
  cancel, cancelWaiting, createLink, copyField, retryUndo } from './run.js';

// ---- 0 / 1: the link ----
async function start() {
  if (!token) return problem('invalid');
  let inv;
  // An unknown link is answered `{state: "invalid"}`; a failure here is the network's or the
  // server's, or the limit on unknown links from this address.
  try { inv = await api('invitation'); } catch (e) {
    return problem(e.api && e.api.code === 'resource_exhausted' ? 'busy' : 'unreachable');
  }
  S.inv = inv;
  for (const f of ['provider', 'customer', 'service_name']) fill(f, inv[f] || '');
  $('landing-expires').textContent = when(inv.expires_at);
  // The invitation names its admin: the server signs in no other account.
  if (inv.admin_upn) { $('upn').value = inv.admin_upn; $('upn').readOnly = true; }
  // The invitation names the customer's tenant: the sign-in happens there, not at home.
  // (Described by the field only when shown: a hidden description is still read out.)
  if (inv.tenant) {
    $('tenant-name').textContent = inv.tenant;
    $('upn-tenant').hidden = false;
    $('upn').setAttribute('aria-describedby', 'upn-hint upn-tenant upn-error');
  }
  rules(inv.name_rules || []);
  const o = inv.onboarding;
  // A hand-off link: the holder finishes an onboarding someone else began.
  S.handOff = !!inv.hand_off_of;
  if (o) { S.onboardingId = o.id; S.appName = o.app_name || ''; }
  if (S.handOff && inv.state === 'pending') {
    if (!o || o.state !== 'awaiting_admin') return problem('finished');
    $('ho-name').textContent = S.appName;
    list($('ho-left'), ((o.hand_off || {}).changes_left || []).map(plainChange), '');
    $('ho-expires').textContent = when(inv.expires_at);
    return show('s-handoff');
  }
  if (inv.state === 'used' && o && o.state !== 'cancelled') {
    if (o.state === 'signed_in') return show('s-name');
    if (o.state === 'sign_in_again') return signInEnded();
    if (o.state === 'attached') return problem('used');
    // Within the grace after the end (the server still shows it to the link): the summary.
    if (o.state === 'completed') return done(() => problem('used'));
    if (S.handOff && o.state === 'awaiting_admin') return finishScreen();
    return follow(0);
  }
  if (inv.state !== 'pending') return problem(inv.state);
  show('s-landing');
}

// ---- 2a / 3: sign-in with a device code, or with this browser (tenants that block codes) ----
async function signIn(ev) {
  if (ev) ev.preventDefault();
  S.switched = false;
  return runSignIn();
}
// Ends the sign-in under way (the server forgets it) and starts one the other way; "Try
// again" then keeps the way chosen last.
function switchSignIn(browser) {
  if (S.signInAbort) S.signInAbort.abort();
  S.browser = browser;
  S.switched = true;
  runSignIn();
}
async function runSignIn(tries = 0) {
  const upn = $('upn').value.trim();
  $('upn-error').textContent = '';
  $('upn').removeAttribute('aria-invalid');
  if (!upn) {
    $('upn').setAttribute('aria-invalid', 'true');
    $('upn-error').textContent = 'Enter the admin account, e.g. admin@contoso.com.';
    return $('upn').focus();
  }
  S.upn = upn;
  $('btn-auth').disabled = true;
  const abort = new AbortController();
  S.signInAbort = abort;
  let shown = false, result = null, failure = null;
  try {
    await stream('signin', { upn, browser: S.browser }, (name, d) => {
      if (name === 'device_code') { shown = true; S.onboardingId = d.onboarding_id; codeScreen(d); }
      else if (name === 'browser') { shown = true; S.onboardingId = d.onboarding_id; browserScreen(d); }
      else if (name === 'pending') pending(d);
      else if (name === 'signed_in') result = d;
      else if (name === 'error') failure = d;
    }, abort.signal);
  } catch (e) {
    failure = e.api || { code: 'unavailable', message: 'The connection to the server was lost.' };
  }
  // This sign-in was ended to start one the other way: that one owns the page now.
  if (abort.signal.aborted) return;
  $('btn-auth').disabled = false;
  clearInterval(S.countdown);
  if (result) return connected(result);
  failure = failure || { code: 'unavailable', message: 'The sign-in ended without an answer.' };
  // Just switched ways: the server lets go of the sign-in ended a moment ago (one per link).
  if (!shown && S.switched && failure.code === 'resource_exhausted' && tries < 20) {
    await new Promise((r) => setTimeout(r, 250));
    return runSignIn(tries + 1);
  }
  if (!shown && !S.switched) {
    // Refused before a code was shown: say so next to the field.
    if (failure.code === 'invalid_argument' || failure.code === 'failed_precondition') {
      // The field is marked only when the server names it; any other refusal (the invitation,
      // the service's set-up) is said beside it without blaming what was typed.
      const rule = fieldRule(failure, 'admin_upn');
      if (rule) $('upn').setAttribute('aria-invalid', 'true');
      $('upn-error').textContent = rule ? sentence('the account ' + rule) : words(failure);
      return $('upn').focus();
    }
    if (['not_found', 'unauthenticated', 'permission_denied'].includes(failure.code)) return start();
  }
  // Refused because the link itself expired or was withdrawn while the admin signed in:
  // screen 0 says which, and whom to ask (not "try again" with a link that no longer works).
  if (await linkGone(failure)) return;
  signInFailed(failure);
}
function codeScreen(d) {
  $('code').textContent = d.user_code;
  $('code-upn').textContent = S.upn;
  const a = $('code-uri');
  a.textContent = d.verification_uri;
  a.href = d.verification_uri;
  $('code-copied').textContent = '';
  $('code-status').textContent = 'Waiting for you to sign in…';
  show('s-code');
  countdown(d, 'code-countdown', 'The code expires in ', 'The code has expired.');
}
function browserScreen(d) {
  $('browser-upn').textContent = S.upn;
  $('browser-open').href = d.url;
  $('browser-status').textContent = 'Waiting for you to sign in…';
  show('s-browser');
  countdown(d, 'browser-countdown', 'The sign-in page works for ', 'The time for this sign-in has run out.');
}
// Counts down from the seconds left the server counted (the computer's clock may be wrong),
// on the page's monotonic clock.
function countdown(d, id, before, over) {
  const end = performance.now() + (d.expires_in ?? Math.max(0, (d.expires_at || 0) - Date.now() / 1000)) * 1000;
  const tick = () => {
    const left = Math.max(0, Math.round((end - performance.now()) / 1000));
    const m = Math.floor(left / 60), s = String(left % 60).padStart(2, '0');
    $(id).textContent = left > 0 ? before + m + ':' + s + '.' : over;
  };
  clearInterval(S.countdown);
  tick();
  S.countdown = setInterval(tick, 1000);
}
function pending(d) {
  $('code-status').textContent = d.slow_down
    ? 'Still waiting for you to sign in. Microsoft asked us to check less often (every ' + d.interval_s + ' s); nothing is wrong.'
    : 'Waiting for you to sign in…';
}
async function copyCode() {
  const code = $('code').textContent;
  try {
    await navigator.clipboard.writeText(code);
    $('code-copied').textContent = 'Code copied.';
  } catch (e) {
    const r = document.createRange();
    r.selectNodeContents($('code'));
    const sel = getSelection();
    sel.removeAllRanges();
    sel.addRange(r);
    $('code-copied').textContent = 'Press Ctrl+C (or ⌘C) to copy the selected code.';
  }
}
// A reload after the sign-in ended before any change (the service restarted, or Microsoft
// refused the sign-in it held): the same invitation signs in again.
function signInEnded() {
  $('signin-failed-text').textContent = 'Your sign-in has ended: the onboarding service restarted, or Microsoft no longer accepts it. Nothing has been changed in your tenant.';
  $('signin-failed-detail').textContent = '';
  show('s-signin-failed');
}
function signInFailed(f) {
  const texts = {
    deadline_exceeded: 'The code expired before the sign-in was finished.',
    failed_precondition: 'Microsoft did not complete the sign-in.',
    permission_denied: 'The sign-in was refused.',
    unavailable: 'Microsoft or the onboarding service could not be reached.',
  };
  const reasons = {
    SIGN_IN_DECLINED: 'The sign-in was declined.',
    SIGN_IN_REFUSED: 'Microsoft refused the sign-in: a policy of your organisation, or an account that may not sign in here.' +
      (S.browser ? '' : ' If your organisation blocks sign-in with a code, sign in with this browser instead.'),
    DEVICE_CODE_EXPIRED: 'The code expired before the sign-in was finished.',
    SIGN_IN_EXPIRED: 'The sign-in was not finished in time.',
  };
  let text = reasons[f.reason] || texts[f.code] || words({ code: f.code }, 'The sign-in did not finish.');
  const pre = f.preconditions || [];
  if (pre.includes('MISSING_RIGHTS')) {
    text = S.handOff
      ? 'This account cannot finish the onboarding: it needs ' + (f.missing || []).join('; ') +
        '. Your link was not used: send it to an administrator who holds one of these roles.'
      : 'This account does not hold Application Administrator or higher, which creating the app registration needs. Nothing has been changed. Try again with an account that holds Application Administrator, Cloud Application Administrator or Global Administrator.';
  }
  if (pre.includes('WRONG_ACCOUNT')) {
    // An invitation that names its admin takes no other account (the field is read-only).
    text = 'You signed in to Microsoft with another account than the one entered (' + S.upn +
      '). Try again and sign in as ' + S.upn + (S.inv && S.inv.admin_upn ? '.' : ', or enter the account you signed in with.');
  }
  $('signin-failed-text').textContent = text;
  $('signin-failed-detail').textContent = f.message ? 'Details: ' + f.message : '';
  $('btn-retry-other').textContent = S.browser ? 'Sign in with a code instead' : 'Sign in with this browser instead';
  // Refused with a code (a tenant that blocks codes, most likely): the browser is the way on.
  const other = !S.browser && f.reason === 'SIGN_IN_REFUSED';
  $('btn-retry-other').classList.toggle('primary', other);
  $('btn-retry').classList.toggle('primary', !other);
  show('s-signin-failed');
}

// ---- 4: token connection established ----
function connected(d) {
  S.onboardingId = d.onboarding_id;
  $('who').textContent = d.upn;
  list($('roles-held'), d.roles_held || [], 'No administrator role');
  const missing = d.roles_missing || [];
  // The first admin may go on (the rest is handed off); a hand-off link's holder who cannot
  // finish is refused at sign-in, the link unspent (`signInFailed`).
  $('rights-ok').hidden = missing.length > 0;
  $('rights-ok-state').textContent = S.handOff
    ? 'Another administrator already made part of it; you see the rest before anything else changes.'
    : S.resume
      ? 'Part of it was made before it stopped; the next step goes on from there.'
      : 'Nothing has been changed in your tenant yet.';
  $('rights-missing').hidden = missing.length === 0;
  $('rights-missing-state').textContent = S.resume
    ? 'Part of it was made before it stopped. The steps left need a role you do not hold:'
    : 'Nothing has been changed in your tenant. These steps need a role you do not hold:';
  list($('roles-missing'), missing.map((r) => 'Needs ' + r), '');
  show('s-connected');
  preview();
}


// The plan's changes in plain words, those the admin lacks a role for marked (not by colour
// alone: the role is named).
function renderPlan(ol, changes) {
  ol.replaceChildren();
  for (const c of changes) {
    const li = document.createElement('li');
    li.textContent = c.description;
    if (c.missing_roles && c.missing_roles.length) {
      li.className = 'bad';
      const n = document.createElement('span');
      n.className = 'need';
      n.textContent = ' — needs ' + c.missing_roles.join(' or ');
      li.appendChild(n);
    }
    ol.appendChild(li);
  }
}

// Screen 4's plan, read right after the sign-in: every change, the app not yet named.
async function preview() {
  const seq = ++S.previewSeq;
  $('preview-box').hidden = true;
  $('preview-status').textContent = 'Reading what will change in your tenant…';
  let p;
  try { p = await api('preview', { onboarding_id: S.onboardingId }); } catch (e) {
    if (seq !== S.previewSeq) return;
    const err = e.api || {};
    $('preview-status').textContent = words(err, 'The plan could not be read.');
    return;
  }
  if (seq !== S.previewSeq) return;
  // What happens next, as the server decides it: a hand-off, or nothing until another admin.
  const next = $('rights-next');
  next.dataset.handOff = next.dataset.handOff || next.textContent;
  next.textContent = p.blocked && !p.hand_off
    ? 'What happens next: nothing is changed until an account with one of these roles signs in with this link.'
    : next.dataset.handOff;
  renderPlan($('preview-plan'), p.changes);
  $('preview-box').hidden = false;
  $('preview-status').textContent = '';
}

// Screen 5; a name already there (the admin signed in again from it) is checked again.
function nameScreen() {
  show('s-name');
  if ($('app-name').value) nameInput();
}
function nameInput() {
  clearTimeout(S.nameTimer);
  $('plan-signin').hidden = true;
  S.planOk = false;
  $('btn-provision').disabled = true;
  S.nameTimer = setTimeout(() => checkName(true), 250);
}
// The rules are checked as the admin types; the plan (a call the server counts as expensive and
// audits) once typing has paused, or at once on Start Provisioning.
async function checkName(typing) {
  const name = $('app-name').value;
  const seq = ++S.planSeq;
  if (!name) { markRules(''); $('name-msg').textContent = ''; $('plan-box').hidden = true; return false; }
  let r;
  try { r = await api('name', { name }); } catch (e) {
    // Not checked (the connection, or too many checks): said, so that Start Provisioning
    // does not just move the focus back without a word.
    if (seq === S.planSeq) $('plan-status').textContent = words(e.api || { code: 'unavailable' }, 'The name could not be checked. Try again in a moment.');
    return false;
  }
  if (seq !== S.planSeq) return false;
  const input = $('app-name');
  if (!r.ok) {
    markRules(r.rules || r.rule);
    input.setAttribute('aria-invalid', 'true');
    $('name-msg').textContent = r.message;
    $('plan-box').hidden = true;
    $('plan-status').textContent = '';
    return false;
  }
  markRules('');
  input.removeAttribute('aria-invalid');
  $('name-msg').textContent = '';
  if (typing) {
    S.nameTimer = setTimeout(() => { if (seq === S.planSeq) plan(name, seq); }, 750);
    return false;
  }
  return plan(name, seq);
}
async function plan(name, seq) {
  $('plan-status').textContent = 'Checking what will change…';
  let p;
  try { p = await api('plan', { onboarding_id: S.onboardingId, app_name: name }); } catch (e) {
    if (seq !== S.planSeq) return false;
    const err = e.api || {};
    $('plan-status').textContent = '';
    $('plan-box').hidden = true;
    if (err.sign_in_again) return askSignIn(err);
    if (err.code === 'invalid_argument' || err.code === 'already_exists') {
      nameRefused(err, name);
    } else {
      $('plan-status').textContent = words(err, 'The plan could not be read.');
      // A passing failure (too many tries, the service out of reach): Start Provisioning
      // reads the plan again.
      $('btn-provision').disabled = false;
    }
    return false;
  }
  if (seq !== S.planSeq) return false;
  const ol = $('plan');
  renderPlan(ol, p.changes);
  $('plan-box').hidden = false;
  $('plan-blocked').hidden = !p.blocked;
  // An invitation that names its admin signs in no other account: that account needs the role.
  const named = S.inv && S.inv.admin_upn;
  $('plan-blocked').textContent = !p.blocked ? '' : p.hand_off
    ? 'Your account lacks a role some of these changes need (marked above). Onboard makes the others, then gives you a link for an administrator who holds that role to finish.'
    : named
      ? 'Your account lacks a role some of these changes need (marked above). Nothing will be changed. Once your account has been given that role, sign in again with this link.'
      : 'Your account lacks a role some of these changes need (marked above). Nothing will be changed. Sign in again with this link as an administrator who holds that role.';
  // Without a hand-off, a new sign-in with the same link is the way on.
  if (p.blocked && !p.hand_off) {
    $('btn-plan-signin').textContent = named ? 'Sign in again' : 'Sign in with another account';
    S.planSignInOther = !named;
    $('plan-signin').hidden = false;
  }
  $('plan-status').textContent = 'Nothing has been changed yet.';
  S.planOk = !p.blocked || p.hand_off;
  $('btn-provision').disabled = !S.planOk;
  return S.planOk;
}
async function submitName(ev) {
  ev.preventDefault();
  clearTimeout(S.nameTimer);
  if (!(await checkName())) return $('app-name').focus();
  S.appName = $('app-name').value;
  $('btn-provision').disabled = true;
  follow(-1);
}

// ---- 2b: use an app registration made by hand ----
// Each box and the field the service names it by when it refuses it (AttachRegistration's).
const ATTACH_FIELDS = [['att-tenant', 'registration.tenant_id'], ['att-client', 'registration.client_id'],
  ['att-secret', 'client_secret']];
// The words of box `id`'s label ('' when it has none).
const labelOf = (id) => (document.querySelector('label[for="' + id + '"]')?.textContent || '').trim();
async function attach(ev) {
  ev.preventDefault();
  const body = { tenant_id: $('att-tenant').value.trim(), client_id: $('att-client').value.trim(),
    client_secret: $('att-secret').value };
  for (const [id, v] of [['att-tenant', body.tenant_id], ['att-client', body.client_id], ['att-secret', body.client_secret]]) {
    if (!v) {
      $(id).setAttribute('aria-invalid', 'true');
      $('attach-error-text').textContent = 'Enter the ' + (labelOf(id) || 'missing value') + '.';
      $('attach-missing').hidden = true;
      $('attach-fix').hidden = true;
      $('attach-error').hidden = false;
      return $(id).focus();
    }
    $(id).removeAttribute('aria-invalid');
  }
  $('btn-validate').disabled = true;
  $('attach-error').hidden = true;
  try {
    const r = await api('attach', body);
    $('att-secret').value = '';
    $('att-done-name').textContent = r.display_name;
    $('att-done-client').textContent = r.client_id;
    show('s-attached');
  } catch (e) {
    const err = e.api || { message: 'The server could not be reached.' };
    // The link expired or was withdrawn while the form was filled in: screen 0 says so.
    if (await linkGone(e.api)) return;
    const missing = err.missing || [];
    // A box the service refused (its `fields`): marked, and its rule said with its label.
    const refused = ATTACH_FIELDS.find(([, f]) => fieldRule(err, f));
    for (const [id] of ATTACH_FIELDS) $(id).removeAttribute('aria-invalid');
    if (refused) $(refused[0]).setAttribute('aria-invalid', 'true');
    $('attach-error-text').textContent = missing.length
      ? 'This app registration lacks what the service needs:'
      : err.code === 'already_exists'
        ? 'This app registration is already connected to the service. Nothing was changed; if its secret must be replaced, ask your provider.'
        : refused
          ? sentence(labelOf(refused[0]) + ' ' + fieldRule(err, refused[1]))
          : words(err);
    list($('attach-missing'), missing, '');
    $('attach-missing').hidden = missing.length === 0;
    $('attach-fix').hidden = missing.length === 0;
    $('attach-error').hidden = false;
    if (refused) $(refused[0]).focus();
    else $('attach-error').focus();
  } finally {
    $('btn-validate').disabled = false;
  }
}

// ---- wiring ----
document.addEventListener('DOMContentLoaded', () => {
  $('attach-error').tabIndex = -1;
  $('btn-create').addEventListener('click', () => show('s-upn'));
  $('btn-use').addEventListener('click', () => show('s-attach'));
  for (const b of document.querySelectorAll('[data-back]')) b.addEventListener('click', () => show(b.dataset.back));
  $('form-upn').addEventListener('submit', signIn);
  $('btn-copy').addEventListener('click', copyCode);
  $('btn-copy-open').addEventListener('click', () => {
    copyCode();
    window.open($('code-uri').href, '_blank', 'noopener,noreferrer');
  });
  $('btn-retry').addEventListener('click', () => show('s-upn'));
  $('btn-retry-other').addEventListener('click', () => switchSignIn(!S.browser));
  $('btn-to-browser').addEventListener('click', () => switchSignIn(true));
  $('btn-to-code').addEventListener('click', () => switchSignIn(false));
  $('btn-cancel').addEventListener('click', askCancel);
  $('btn-cancel-no').addEventListener('click', keepGoing);
  $('btn-cancel-yes').addEventListener('click', cancel);
  $('btn-next').addEventListener('click', () => (S.handOff ? finishScreen() : S.resume ? resume() : nameScreen()));
  $('btn-plan-signin').addEventListener('click', () => {
    // Another account starts from an empty field; "Sign in again" keeps the account.
    if (S.planSignInOther) $('upn').value = ''; else if (S.upn) $('upn').value = S.upn;
    show('s-upn');
  });
  $('btn-resume').addEventListener('click', signInAgain);
  $('btn-undo-retry').addEventListener('click', retryUndo);
  $('btn-ho-start').addEventListener('click', () => show('s-upn'));
  $('btn-link').addEventListener('click', createLink);
  $('btn-copy-link').addEventListener('click', () => copyField('ho-link', 'link-copied', 'Link'));
  $('btn-copy-consent').addEventListener('click', () => copyField('consent-url', 'consent-copied', 'Consent page link'));
  $('btn-wait-cancel').addEventListener('click', cancelWaiting);
  $('btn-finish').addEventListener('click', () => { $('btn-finish').disabled = true; follow(-1); });
  $('app-name').addEventListener('input', nameInput);
  $('form-name').addEventListener('submit', submitName);
  $('form-attach').addEventListener('submit', attach);
  window.addEventListener('hashchange', () => location.reload());
  start();
});
