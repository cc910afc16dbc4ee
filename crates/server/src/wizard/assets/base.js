// The wizard's shared parts: the page's elements, the session's state, talking to the server,
// the name rules' list (screen 5 marks it; screen 6 marks it when Provision refuses the
// name), and screen 0 (a link that cannot be used, found on landing or later). Rules kept
// here as in every wizard module: the invitation token is read from the URL fragment and sent
// only in the x-invitation-token header; every value from the server is written with
// textContent, never innerHTML; no rule is decided here.
export const $ = (id) => document.getElementById(id);
export const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
export const S = { inv: null, onboardingId: '', upn: '', appName: '', lastIndex: 0, steps: new Map(),
  signIn: null, countdown: 0, nameTimer: 0, planSeq: 0, previewSeq: 0, planOk: false, ended: false,
  handOff: false, waiting: false, resume: false, cancelFromWait: false, reconnecting: false,
  cancelledHere: false, undoFromWait: false, undoStarted: false, planSignInOther: false };

// What the admin reads when Microsoft no longer accepts their sign-in (a failed run's cause
// `sign_in_again`, or Plan and Provision refused with that precondition).
export const SIGN_IN_AGAIN = 'Your organisation’s Conditional Access policy asks the admin to sign in again (for example with multi-factor authentication), or the admin’s sign-in has ended.';

// ---- refusals in plain words ----
// The kinds a person cannot act on by reading the server's text (too many tries, the service
// failing or out of reach) have the page's own words; the rest the server's message (its ids
// already put in words, `stream.rs`).
const PLAIN = {
  resource_exhausted: 'Too many attempts just now. Wait a minute, then try again.',
  internal: 'The onboarding service had a problem. Try again in a few minutes; if it keeps happening, tell your provider.',
  unknown: 'The onboarding service had a problem. Try again in a few minutes; if it keeps happening, tell your provider.',
  // The service answered: it, or Microsoft behind it, is out of service for now (a browser
  // that cannot reach the service at all gets the page's own 'could not be reached').
  unavailable: 'The onboarding service or Microsoft is not available just now. Try again in a few minutes.',
  deadline_exceeded: 'The onboarding service did not answer in time. Try again.',
};
export function words(err, fallback) {
  const e = err || {};
  return PLAIN[e.code] || e.message || fallback;
}
// The rule `field` broke, as the server words it (`google.rpc.BadRequest`), or ''.
export function fieldRule(err, field) {
  const v = ((err || {}).fields || []).find((f) => f.field === field);
  return v ? v.description : '';
}
// A rule's words as a sentence ("the name must …" → "The name must ….").
export function sentence(t) {
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
}

// ---- screens ----
export function show(id) {
  for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== id;
  const sec = $(id);
  document.title = sec.dataset.title + ' – Invitation wizard';
  const h = sec.querySelector('h1');
  if (h) h.focus();
}
export function fill(field, value) {
  for (const el of document.querySelectorAll('[data-f="' + field + '"]')) el.textContent = value;
}
export function list(ul, items, empty) {
  ul.replaceChildren();
  for (const t of (items.length ? items : [empty])) {
    const li = document.createElement('li');
    li.textContent = t;
    ul.appendChild(li);
  }
}
// A time (RFC 3339 text or Unix milliseconds) in the reader's words.
export function when(t) {
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  return d.toLocaleString(undefined, { dateStyle: 'long', timeStyle: 'short' });
}

// ---- talking to the server ----
function headers() {
  return { 'content-type': 'application/json', 'x-invitation-token': token };
}
export async function api(path, body) {
  const r = await fetch('/wizard/api/' + path, { method: 'POST', headers: headers(),
    body: JSON.stringify(body || {}), cache: 'no-store', credentials: 'omit',
    referrerPolicy: 'no-referrer' });
  const j = await r.json().catch(() => ({ error: { code: 'unknown', message: 'The server answered ' + r.status + '.' } }));
  if (!r.ok || j.error) throw Object.assign(new Error('api'), { api: j.error || { code: 'unknown', message: '' } });
  return j;
}
// A server-sent-events stream over fetch (the token goes in a header, which EventSource
// cannot send). Resolves when the stream ends; rejects on a network failure.
export async function stream(path, body, onEvent, signal) {
  const r = await fetch('/wizard/api/' + path, { method: 'POST', headers: headers(),
    body: JSON.stringify(body), cache: 'no-store', credentials: 'omit', signal,
    referrerPolicy: 'no-referrer' });
  if (!r.ok) {
    const j = await r.json().catch(() => ({}));
    throw Object.assign(new Error('api'), { api: j.error || { code: 'unknown', message: '' } });
  }
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let ev = 'message', data = '';
      for (const line of frame.split('\n')) {
        if (line.startsWith('event: ')) ev = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (data) onEvent(ev, JSON.parse(data));
    }
  }
}

// ---- 5: the name rules, each marked as met or not ----
// The name `name` refused by Plan or Provision, said beside the field: taken (the server's
// words name the other onboarding's id: not for this page), or the rule it breaks.
export function nameRefused(err, name) {
  const rule = fieldRule(err, 'app_name');
  // The field is marked only when the name is what was refused (taken, or a rule the server
  // names); any other refusal (the rights, the set-up) is said beside it without blaming it.
  if (err.code === 'already_exists' || rule) $('app-name').setAttribute('aria-invalid', 'true');
  else $('app-name').removeAttribute('aria-invalid');
  if (err.code === 'already_exists') markRules('not_unique');
  $('name-msg').textContent = err.code === 'already_exists'
    ? '“' + name + '” is already used for this service. Choose another name.'
    : rule ? sentence(rule) : words(err);
}
export function rules(rs) {
  const ul = $('name-rules');
  ul.replaceChildren();
  for (const r of rs) {
    const li = document.createElement('li');
    li.dataset.rule = r.key;
    const mark = document.createElement('span');
    mark.className = 'mark';
    mark.setAttribute('aria-hidden', 'true');
    const t = document.createElement('span');
    t.textContent = r.text;
    const st = document.createElement('span');
    st.className = 'vh';
    li.append(mark, t, st);
    ul.appendChild(li);
  }
}
// `broken`: one rule's key, or the list of every broken rule's keys.
export function markRules(broken) {
  const keys = Array.isArray(broken) ? broken : [broken];
  for (const li of $('name-rules').children) {
    const bad = keys.includes(li.dataset.rule);
    li.classList.toggle('bad', bad);
    li.lastChild.textContent = bad ? ' (not met)' : '';
  }
}

// ---- 0: a link that cannot be used (what happened, whom to ask) ----
const PROBLEMS = {
  invalid: ['This link is not valid', 'The link is incomplete or was changed. Open it again from the invitation email, exactly as it is.'],
  expired: ['This invitation has expired', 'The link stopped working on {expires}.'],
  revoked: ['This invitation was withdrawn', 'Your provider withdrew this invitation, so the link no longer works.'],
  finished: ['This onboarding no longer waits for you', 'It went on without this link, was cancelled, or was undone when its wait expired, so there is nothing to do with this link.'],
  used: ['This invitation has already been used', 'The link was used on {used} and works only once. If the onboarding it started has finished, there is nothing more to do.'],
  unreachable: ['The onboarding service could not be reached', 'Nothing has been changed, and your link still works. Check your connection, then reload this page in a few minutes.'],
  busy: ['Too many attempts from your network', 'Nothing has been changed. Wait a few minutes, then reload this page.'],
};
// Problems of the moment, not of the link: whom to tell if they last.
const PASSING = ['unreachable', 'busy'];
// A hand-off link is sent by a colleague, who replaces it with a newer one ("Create a new
// link"): while its onboarding still waits, that colleague, not the provider, has the current one.
const HAND_OFF_REVOKED = ['This link no longer works', 'It was replaced by a newer link to finish this onboarding, or withdrawn.'];
export function problem(kind) {
  const inv = S.inv || {};
  // A hand-off link whose onboarding no longer waits has nothing left to do: not a newer link
  // to ask for. It expires with the wait it was issued for (nobody finished in time: the
  // onboarding is undone), or is revoked as that wait ends otherwise (the onboarding went on,
  // was finished on Microsoft's consent page, or was cancelled): the server says which
  // (`wait_ended`, judged by the onboarding as it is now).
  const finished = inv.hand_off_of && (kind === 'expired' || (kind === 'revoked' && inv.wait_ended));
  if (finished) kind = 'finished';
  const handOff = kind === 'revoked' && inv.hand_off_of;
  const [title, text] = handOff ? HAND_OFF_REVOKED : PROBLEMS[kind] || PROBLEMS.invalid;
  $('problem-title').textContent = title;
  $('problem-text').textContent = text.replace('{expires}', when(inv.expires_at || '')).replace('{used}', when(inv.used_at || ''));
  $('problem-ask').textContent = PASSING.includes(kind)
    ? 'If it keeps happening, ask the service provider who sent you the invitation.'
    : handOff
      ? 'Ask the colleague who sent you this link for the current one.'
    : finished
      ? 'If you think it still needs you, ask the colleague who sent you this link.'
    : inv.provider
      ? 'Ask ' + inv.provider + ', who sent the invitation, for a new link.'
      : 'Ask the service provider who sent you the invitation for a new link.';
  show('s-problem');
}
// Whether the server's refusal `err` came because the invitation can no longer be used
// (expired, withdrawn, not valid), read again from the server; if so its problem screen is
// shown. No answer (`err` absent, or the service unavailable) and a failure to ask are not
// such a refusal.
export async function linkGone(err) {
  if (!err || err.code === 'unavailable') return false;
  let inv;
  try { inv = await api('invitation'); } catch (e) { return false; }
  if (!['expired', 'revoked', 'invalid'].includes(inv.state)) return false;
  S.inv = Object.assign(S.inv || {}, inv);
  problem(inv.state);
  return true;
}
