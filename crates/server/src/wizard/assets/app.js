// The invitation wizard. Plain JavaScript, no build step, no third-party code.
// Rules kept here: the invitation token is read from the URL fragment and sent only in the
// x-invitation-token header; every value from the server is written with textContent, never
// innerHTML; no rule is decided here (names, plan, roles and errors come from the server).
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
  const S = { inv: null, onboardingId: '', upn: '', appName: '', lastIndex: 0, steps: new Map(),
    signIn: null, countdown: 0, nameTimer: 0, planSeq: 0, planOk: false, ended: false,
    handOff: false, waiting: false, resume: false };

  // ---- screens ----
  function show(id) {
    for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== id;
    const sec = $(id);
    document.title = sec.dataset.title + ' – Invitation wizard';
    const h = sec.querySelector('h1');
    if (h) h.focus();
  }
  function fill(field, value) {
    for (const el of document.querySelectorAll('[data-f="' + field + '"]')) el.textContent = value;
  }
  function list(ul, items, empty) {
    ul.replaceChildren();
    for (const t of (items.length ? items : [empty])) {
      const li = document.createElement('li');
      li.textContent = t;
      ul.appendChild(li);
    }
  }
  // A time (RFC 3339 text or Unix milliseconds) in the reader's words.
  function when(t) {
    const d = new Date(t);
    if (isNaN(d)) return String(t);
    return d.toLocaleString(undefined, { dateStyle: 'long', timeStyle: 'short' });
  }

  // ---- talking to the server ----
  function headers() {
    return { 'content-type': 'application/json', 'x-invitation-token': token };
  }
  async function api(path, body) {
    const r = await fetch('/wizard/api/' + path, { method: 'POST', headers: headers(),
      body: JSON.stringify(body || {}), cache: 'no-store', credentials: 'omit',
      referrerPolicy: 'no-referrer' });
    const j = await r.json().catch(() => ({ error: { code: 'unknown', message: 'The server answered ' + r.status + '.' } }));
    if (!r.ok || j.error) throw Object.assign(new Error('api'), { api: j.error || { code: 'unknown', message: '' } });
    return j;
  }
  // A server-sent-events stream over fetch (the token goes in a header, which EventSource
  // cannot send). Resolves when the stream ends; rejects on a network failure.
  async function stream(path, body, onEvent, signal) {
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

  // ---- 0 / 1: the link ----
  const PROBLEMS = {
    invalid: ['This link is not valid', 'The link is incomplete or was changed. Open it again from the invitation email, exactly as it is.'],
    expired: ['This invitation has expired', 'The link stopped working on {expires}.'],
    revoked: ['This invitation was withdrawn', 'Your provider withdrew this invitation, so the link no longer works.'],
    finished: ['This onboarding no longer waits for you', 'It was finished, cancelled or undone after its wait expired, so there is nothing to do with this link.'],
    used: ['This invitation has already been used', 'The link was used on {used} and works only once. If the onboarding it started has finished, there is nothing more to do.'],
  };
  function problem(kind) {
    const inv = S.inv || {};
    const [title, text] = PROBLEMS[kind] || PROBLEMS.invalid;
    $('problem-title').textContent = title;
    $('problem-text').textContent = text.replace('{expires}', when(inv.expires_at || '')).replace('{used}', when(inv.used_at || ''));
    $('problem-ask').textContent = inv.provider
      ? 'Ask ' + inv.provider + ', who sent the invitation, for a new link.'
      : 'Ask the service provider who sent you the invitation for a new link.';
    show('s-problem');
  }

  async function start() {
    if (!token) return problem('invalid');
    let inv;
    try { inv = await api('invitation'); } catch (e) { return problem('invalid'); }
    S.inv = inv;
    for (const f of ['provider', 'customer', 'service_name', 'service_id']) fill(f, inv[f] || '');
    $('landing-expires').textContent = when(inv.expires_at);
    if (inv.admin_upn) $('upn').value = inv.admin_upn;
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
      if (o.state === 'completed') return problem('used');
      if (S.handOff && o.state === 'awaiting_admin') return finishScreen();
      return follow(0);
    }
    if (inv.state !== 'pending') return problem(inv.state);
    show('s-landing');
  }

  // ---- 2a / 3: sign-in with a device code ----
  async function signIn(ev) {
    if (ev) ev.preventDefault();
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
    let shown = false, result = null, failure = null;
    try {
      await stream('signin', { upn }, (name, d) => {
        if (name === 'device_code') { shown = true; S.onboardingId = d.onboarding_id; codeScreen(d); }
        else if (name === 'pending') pending(d);
        else if (name === 'signed_in') result = d;
        else if (name === 'error') failure = d;
      });
    } catch (e) {
      failure = e.api || { code: 'unavailable', message: 'The connection to the server was lost.' };
    }
    $('btn-auth').disabled = false;
    clearInterval(S.countdown);
    if (result) return connected(result);
    failure = failure || { code: 'unavailable', message: 'The sign-in ended without an answer.' };
    if (!shown) {
      // Refused before a code was shown: say so next to the field.
      if (failure.code === 'invalid_argument' || failure.code === 'failed_precondition') {
        $('upn').setAttribute('aria-invalid', 'true');
        $('upn-error').textContent = failure.message;
        return $('upn').focus();
      }
      if (['not_found', 'unauthenticated', 'permission_denied'].includes(failure.code)) return start();
    }
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
    const end = (d.expires_at || 0) * 1000;
    const tick = () => {
      const left = Math.max(0, Math.round((end - Date.now()) / 1000));
      const m = Math.floor(left / 60), s = String(left % 60).padStart(2, '0');
      $('code-countdown').textContent = left > 0 ? 'The code expires in ' + m + ':' + s + '.' : 'The code has expired.';
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
  function signInFailed(f) {
    const texts = {
      deadline_exceeded: 'The code expired before the sign-in was finished.',
      failed_precondition: 'Microsoft did not complete the sign-in.',
      permission_denied: 'The sign-in was refused.',
      unavailable: 'Microsoft or the onboarding service could not be reached.',
    };
    let text = texts[f.code] || 'The sign-in did not finish.';
    if (/declin/i.test(f.message)) text = 'The sign-in was declined.';
    $('signin-failed-text').textContent = text;
    $('signin-failed-detail').textContent = f.message ? 'Details: ' + f.message : '';
    show('s-signin-failed');
  }

  // ---- 4: token connection established ----
  function connected(d) {
    S.onboardingId = d.onboarding_id;
    $('who').textContent = d.upn;
    $('tenant').textContent = d.tenant_id;
    list($('roles-held'), d.roles_held || [], 'No administrator role');
    const missing = d.roles_missing || [];
    // The first admin may go on (the rest is handed off); a hand-off link's holder must be
    // able to finish.
    $('rights-ok').hidden = missing.length > 0;
    $('rights-ok-state').textContent = S.handOff
      ? 'Another administrator already made part of it; you see the rest before anything else changes.'
      : S.resume
        ? 'Part of it was made before it stopped; the next step goes on from there.'
        : 'Nothing has been changed in your tenant yet.';
    $('rights-missing').hidden = missing.length === 0 || S.handOff;
    $('rights-cannot').hidden = missing.length === 0 || !S.handOff;
    list($('roles-missing'), missing.map((r) => 'Needs ' + r), '');
    list($('roles-cannot'), missing, '');
    $('btn-next').disabled = S.handOff && missing.length > 0;
    show('s-connected');
  }

  // ---- 5: the name, checked by the server as it is typed ----
  function rules(rs) {
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
  function markRules(broken) {
    for (const li of $('name-rules').children) {
      const bad = li.dataset.rule === broken;
      li.classList.toggle('bad', bad);
      li.lastChild.textContent = bad ? ' (not met)' : '';
    }
  }
  function nameInput() {
    clearTimeout(S.nameTimer);
    S.planOk = false;
    $('btn-provision').disabled = true;
    S.nameTimer = setTimeout(checkName, 250);
  }
  async function checkName() {
    const name = $('app-name').value;
    const seq = ++S.planSeq;
    if (!name) { markRules(''); $('name-msg').textContent = ''; $('plan-box').hidden = true; return false; }
    let r;
    try { r = await api('name', { name }); } catch (e) { return false; }
    if (seq !== S.planSeq) return false;
    const input = $('app-name');
    if (!r.ok) {
      markRules(r.rule);
      input.setAttribute('aria-invalid', 'true');
      $('name-msg').textContent = r.message;
      $('plan-box').hidden = true;
      $('plan-status').textContent = '';
      return false;
    }
    markRules('');
    input.removeAttribute('aria-invalid');
    $('name-msg').textContent = '';
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
      if (err.code === 'invalid_argument' || err.code === 'already_exists') {
        if (err.code === 'already_exists') markRules('not_unique');
        $('app-name').setAttribute('aria-invalid', 'true');
        $('name-msg').textContent = err.message;
      } else {
        $('plan-status').textContent = err.message || 'The plan could not be read.';
      }
      return false;
    }
    if (seq !== S.planSeq) return false;
    const ol = $('plan');
    ol.replaceChildren();
    for (const c of p.changes) {
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
    $('plan-box').hidden = false;
    $('plan-blocked').hidden = !p.blocked;
    $('plan-blocked').textContent = !p.blocked ? '' : p.hand_off
      ? 'Your account lacks a role some of these changes need (marked above). Onboard makes the others, then gives you a link for an administrator who holds that role to finish.'
      : 'Your account lacks a role some of these changes need (marked above). Nothing will be changed until an account with that role signs in.';
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
  function onProgress(name, d) {
    if (d.index) S.lastIndex = Math.max(S.lastIndex, d.index);
    if (S.waiting && name !== 'awaiting_admin') {
      // The privileged admin acts (or the wait ended): their steps show live here.
      S.waiting = false;
      $('conn').textContent = S.handOff ? '' : 'An administrator is finishing the onboarding.';
      progressHeading('Provisioning', true);
      show('s-progress');
    }
    if (name === 'started') {
      const li = stepItem(d.step);
      li.children[1].textContent = d.description || d.step;
      setStep(li, 'run', 'In progress: ', '');
    } else if (name === 'retrying') {
      const s = Math.max(1, Math.round(d.wait_ms / 1000));
      setStep(stepItem(d.step), 'wait', 'Waiting: ', ' — ' + d.reason + '; retry ' + d.attempt + ' in ' + s + ' s');
    } else if (name === 'done') {
      const li = stepItem(d.step);
      if (!li.children[1].textContent) li.children[1].textContent = d.step;
      setStep(li, 'ok', 'Done: ', d.unchanged ? ' (already in place)' : '');
    } else if (name === 'completed') {
      S.ended = true;
      $('cancel-area').hidden = true;
      done();
    } else if (name === 'failed') {
      S.ended = true;
      const li = d.step ? stepItem(d.step) : null;
      if (li) setStep(li, 'bad', 'Failed: ', '');
      stopRunningSteps();
      // Plain words first (the step as listed above); Microsoft's answer as the details.
      const what = li && li.children[1].textContent;
      $('failed-text').textContent = /Conditional Access/.test(d.reason)
        ? 'Your organisation’s Conditional Access policy asks the admin to sign in again (for example with multi-factor authentication).'
        : what ? 'The step “' + what + '” could not finish.' : 'Provisioning could not finish.';
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
  function signInAgain() {
    S.resume = true;
    if (S.upn) $('upn').value = S.upn;
    show('s-upn');
  }
  function resume() {
    S.resume = false;
    S.ended = false;
    $('progress-failed').hidden = true;
    follow(-1);
  }
  // Steps cut short by a failure or a cancellation stopped where they were (plain status).
  function stopRunningSteps() {
    for (const li of S.steps.values()) {
      if (li.className === 'run' || li.className === 'wait') setStep(li, 'stop', 'Stopped: ', '');
    }
  }
  // from < 0: start Provision (same idempotency key on every try); else Watch from `from`.
  async function follow(from) {
    $('progress-name').textContent = S.appName;
    if (from === 0) { S.steps.clear(); $('steps').replaceChildren(); S.lastIndex = 0; }
    $('cancel-area').hidden = false;
    $('btn-cancel').hidden = false;
    $('cancel-confirm').hidden = true;
    $('progress-cancelled').hidden = true;
    progressHeading('Provisioning', true);
    show('s-progress');
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
      } catch (e) {
        const err = e.api;
        if (err && first < 0 && !e.fromStream) {
          // Provision refused before it started (e.g. the name is taken): back to the name.
          show('s-name');
          $('app-name').setAttribute('aria-invalid', 'true');
          $('plan-box').hidden = true;
          $('plan-status').textContent = '';
          if (err.code === 'already_exists') {
            markRules('not_unique');
            $('name-msg').textContent = '“' + S.appName + '” is already used for this service. Choose another name.';
          } else {
            $('name-msg').textContent = err.message;
          }
          return;
        }
        if (err && ['permission_denied', 'unauthenticated', 'not_found', 'failed_precondition'].includes(err.code)) {
          $('conn').textContent = err.message;
          return;
        }
        $('conn').textContent = 'Connection lost. Reconnecting…';
      }
      first = 1;
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 10000);
    }
  }

  // ---- H: waiting for a privileged admin; the link to send them ----
  const LEFT = { 'app_role_assignment.create': 'Grant the application permission {t}, with admin consent',
    'directory_role_assignment.create': 'Assign the directory role {t}' };
  function plainChange(c) {
    const i = c.indexOf(' ');
    const words = LEFT[c.slice(0, i)];
    return words ? words.replace('{t}', c.slice(i + 1)) : c;
  }
  function waiting(d) {
    S.waiting = true;
    $('wait-name').textContent = S.appName;
    list($('wait-roles'), d.roles || [], '');
    list($('wait-left'), (d.changes_left || []).map(plainChange), '');
    $('wait-expires').textContent = d.expires_at ? when(d.expires_at * 1000) : '';
    $('consent-url').value = d.admin_consent_url || '';
    $('consent-box').hidden = !d.admin_consent_url;
    $('consent-role').hidden = !(d.changes_left || []).some((c) => c.startsWith('directory_role_assignment.'));
    if (!$('s-waiting').hidden) return;
    show('s-waiting');
  }
  async function createLink() {
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
      $('wait-status').textContent = 'No link was created: ' + ((e.api || {}).message || 'the server could not be reached.');
    } finally {
      $('btn-link').disabled = false;
    }
  }
  async function copyField(field, note, what) {
    try {
      await navigator.clipboard.writeText($(field).value);
      $(note).textContent = what + ' copied.';
    } catch (e) {
      $(field).select();
      $(note).textContent = 'Press Ctrl+C (or ⌘C) to copy the selected link.';
    }
  }
  // Cancel while waiting: the progress screen's confirmation; "Keep going" comes back here.
  function cancelWaiting() {
    S.cancelFromWait = true;
    // Nothing is being provisioned while the wait lasts: the heading says what is going on.
    progressHeading('Waiting for an administrator', false);
    show('s-progress');
    askCancel();
  }
  // The link's holder, signed in: what is left (the server's plan), then Provision.
  async function finishScreen() {
    $('finish-name').textContent = S.appName;
    $('btn-finish').disabled = true;
    $('finish-status').textContent = 'Checking what is left…';
    show('s-finish');
    let p;
    try { p = await api('plan', { onboarding_id: S.onboardingId, app_name: S.appName }); } catch (e) {
      $('finish-status').textContent = (e.api || {}).message || 'The plan could not be read.';
      return;
    }
    list($('finish-plan'), p.changes.map((c) => c.description), '');
    $('finish-status').textContent = p.blocked
      ? 'Your account lacks a role some of these changes need.' : 'Nothing has been changed yet.';
    $('btn-finish').disabled = p.blocked;
  }

  // ---- 6: cancel (allowed until the onboarding completes; the server decides) ----
  function askCancel() {
    $('btn-cancel').hidden = true;
    $('cancel-confirm').hidden = false;
    $('cancel-q').focus();
  }
  function keepGoing() {
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
  async function cancel() {
    $('btn-cancel-yes').disabled = true;
    // The undo's events are this admin's doing, not a second admin's.
    const fromWait = S.cancelFromWait;
    S.waiting = false;
    S.cancelFromWait = false;
    try {
      await api('cancel', { onboarding_id: S.onboardingId,
        reason: 'cancelled by the customer admin in the invitation wizard' });
      $('cancel-area').hidden = true;
      // The stream may have brought the end already.
      if (!S.ended) {
        progressHeading('Cancelling', false);
        $('conn').textContent = 'Cancelling: removing what was created…';
      }
    } catch (e) {
      const err = e.api || { message: 'The server could not be reached.' };
      S.waiting = S.cancelFromWait = fromWait;
      keepGoing();
      $(fromWait ? 'wait-status' : 'conn').textContent = 'The onboarding was not cancelled: ' + err.message;
    } finally {
      $('btn-cancel-yes').disabled = false;
    }
  }

  // ---- 7: done ----
  async function done() {
    let s;
    try { s = await api('summary', { onboarding_id: S.onboardingId }); } catch (e) {
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

  // ---- 2b: use an app registration made by hand ----
  async function attach(ev) {
    ev.preventDefault();
    const body = { tenant_id: $('att-tenant').value.trim(), client_id: $('att-client').value.trim(),
      client_secret: $('att-secret').value };
    for (const [id, v] of [['att-tenant', body.tenant_id], ['att-client', body.client_id], ['att-secret', body.client_secret]]) {
      if (!v) { $(id).setAttribute('aria-invalid', 'true'); return $(id).focus(); }
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
      const missing = err.missing || [];
      $('attach-error-text').textContent = missing.length
        ? 'This app registration lacks what the service needs:' : err.message;
      list($('attach-missing'), missing, '');
      $('attach-missing').hidden = missing.length === 0;
      $('attach-fix').hidden = missing.length === 0;
      $('attach-error').hidden = false;
      $('attach-error').focus();
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
    $('btn-cancel').addEventListener('click', askCancel);
    $('btn-cancel-no').addEventListener('click', keepGoing);
    $('btn-cancel-yes').addEventListener('click', cancel);
    $('btn-next').addEventListener('click', () => (S.handOff ? finishScreen() : S.resume ? resume() : show('s-name')));
    $('btn-resume').addEventListener('click', signInAgain);
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
})();
