// taskgate review inbox: plain JS, no build step. Talks to the control-plane
// API with the reviewer's bearer token and follows the inbox event stream
// (Server-Sent Events read through fetch, so the token travels in a header,
// never in a URL).
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const state = { token: sessionStorage.getItem('taskgate.token') || '', me: null, reviews: new Map(), tasks: new Map(), abort: null };

async function api(path, init = {}) {
  const res = await fetch(path, {
    ...init,
    headers: { authorization: `Bearer ${state.token}`, 'content-type': 'application/json', ...(init.headers || {}) },
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error((body.error && body.error.message) || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

function show(section) {
  $('#signin').hidden = section !== 'signin';
  $('#inbox').hidden = section !== 'inbox';
  $('#who').hidden = section !== 'inbox';
}

async function signIn(token) {
  state.token = token.trim();
  try {
    const me = await api('/api/v1/whoami');
    if (me.type !== 'user') throw new Error('this is a service token; sign in with your own user token');
    state.me = me;
    sessionStorage.setItem('taskgate.token', state.token);
    $('#who-name').textContent = me.subject + (me.admin ? ' (admin)' : '');
    show('inbox');
    follow();
  } catch (e) {
    sessionStorage.removeItem('taskgate.token');
    state.token = '';
    show('signin');
    $('#signin-error').textContent = `Sign-in failed: ${e.message}`;
  }
}

function signOut() {
  if (state.abort) state.abort.abort();
  sessionStorage.removeItem('taskgate.token');
  state.token = '';
  state.reviews.clear();
  $('#reviews').replaceChildren();
  $('#decided').replaceChildren();
  show('signin');
}

function setLive(on) {
  const el = $('#live');
  el.textContent = on ? 'live' : 'reconnecting';
  el.className = `live ${on ? 'on' : 'off'}`;
}

// Reads the SSE stream; reconnects with backoff until signed out.
async function follow() {
  if (state.abort) state.abort.abort();
  const ctl = new AbortController();
  state.abort = ctl;
  let delay = 250;
  while (!ctl.signal.aborted) {
    try {
      const res = await fetch('/api/v1/inbox/stream', { headers: { authorization: `Bearer ${state.token}` }, signal: ctl.signal });
      if (res.status === 401) {
        signOut();
        $('#signin-error').textContent = 'Your token was rejected (expired?). Sign in again.';
        return;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setLive(true);
      delay = 250;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
          }
          if (data.length) onEvent(event, JSON.parse(data.join('\n')));
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    setLive(false);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

function onEvent(event, data) {
  if (event === 'snapshot') {
    const ids = new Set(data.reviews.map((r) => r.id));
    for (const id of [...state.reviews.keys()]) if (!ids.has(id) && state.reviews.get(id).state === 'pending') state.reviews.delete(id);
    for (const r of data.reviews) state.reviews.set(r.id, r);
    render();
  } else if (event === 'review') {
    state.reviews.set(data.id, data);
    render();
  }
}

async function taskLabel(id) {
  if (!state.tasks.has(id)) {
    state.tasks.set(id, api(`/api/v1/tasks/${encodeURIComponent(id)}`).then((b) => b.task).catch(() => null));
  }
  return state.tasks.get(id);
}

function canDecide(r) {
  const me = state.me;
  if (!me || r.state !== 'pending') return false;
  if (r.identity.subject === me.subject || r.identity.acting_for === me.subject) return false;
  if (r.approvals.some((a) => a.approver === me.subject)) return false;
  return r.approvers.some((a) => (a.startsWith('group:') ? me.groups.includes(a.slice(6)) : a === me.subject));
}

function render() {
  const pending = [...state.reviews.values()].filter((r) => r.state === 'pending').sort((a, b) => a.created_at.localeCompare(b.created_at));
  const decided = [...state.reviews.values()].filter((r) => r.state !== 'pending').sort((a, b) => (b.decided_at || '').localeCompare(a.decided_at || '')).slice(0, 20);
  $('#count').textContent = String(pending.length);
  $('#empty').hidden = pending.length > 0;
  sync($('#reviews'), pending);
  sync($('#decided'), decided);
}

function sync(list, reviews) {
  const want = new Set(reviews.map((r) => r.id));
  for (const li of [...list.children]) if (!want.has(li.dataset.id)) li.remove();
  for (const r of reviews) {
    let li = list.querySelector(`li[data-id="${CSS.escape(r.id)}"]`);
    const key = `${r.state}:${r.approvals.length}`;
    if (li && li.dataset.key === key) continue;
    const fresh = card(r);
    if (li) li.replaceWith(fresh);
    else list.append(fresh);
    li = fresh;
    li.dataset.key = key;
  }
}

function card(r) {
  const li = $('#review-template').content.firstElementChild.cloneNode(true);
  li.dataset.id = r.id;
  li.id = r.id;
  $('.who', li).textContent = r.identity.acting_for ? `${r.identity.subject} (for ${r.identity.acting_for})` : r.identity.subject;
  $('.resource', li).textContent = r.resource.name;
  $('.protocol', li).textContent = r.protocol;
  $('.command', li).textContent = r.command;
  $('.reasons', li).textContent = r.reasons.join('; ') || '—';
  $('.approvers', li).textContent = r.approvers.join(', ');
  const yes = r.approvals.filter((a) => a.decision === 'approve').map((a) => a.approver);
  $('.approvals', li).textContent = `${yes.length} of ${r.min_approvals}${yes.length ? ` (${yes.join(', ')})` : ''}`;
  $('.task', li).textContent = r.task_id;
  taskLabel(r.task_id).then((t) => {
    if (!t) return;
    const el = $('.task', li);
    el.textContent = `${t.id} · ${t.type} · assignee ${t.assignee}${t.title ? ` · ${t.title}` : ''} `;
    if (t.ticket && /^https?:\/\//.test(t.ticket)) {
      const a = document.createElement('a');
      a.href = t.ticket;
      a.textContent = 'ticket';
      a.rel = 'noreferrer';
      a.target = '_blank';
      el.append(a);
    }
  });
  const form = $('form.decide', li);
  if (r.state !== 'pending') {
    li.classList.add('decided');
    const p = document.createElement('p');
    p.className = `outcome ${r.state}`;
    p.textContent = `${r.state}${r.decided_by.length ? ` by ${r.decided_by.join(', ')}` : ''}${r.decision_reason ? ` — ${r.decision_reason}` : ''}${r.grant_until ? ` (grant until ${new Date(r.grant_until).toLocaleString()})` : ''}`;
    form.replaceWith(p);
    $('.expires', li).textContent = '';
    return li;
  }
  const mins = Math.max(0, Math.round((Date.parse(r.expires_at) - Date.now()) / 60000));
  $('.expires', li).textContent = `expires in ~${mins} min`;
  for (const radio of form.querySelectorAll('input[type=radio]')) radio.name = `kind-${r.id}`;
  if (!canDecide(r)) {
    for (const el of form.querySelectorAll('button, input')) el.disabled = true;
    $('.error', form).textContent = r.approvals.some((a) => a.approver === state.me.subject) ? 'You approved; waiting for more approvers.' : 'You cannot decide this request.';
  }
  const decide = async (verb) => {
    const body = { reason: $('.reason', form).value };
    if (verb === 'approve' && form.querySelector('input[type=radio]:checked').value === 'grant') {
      body.grant_s = Math.round(Number($('.grant-min', form).value) * 60);
    }
    for (const b of form.querySelectorAll('button')) b.disabled = true;
    try {
      const out = await api(`/api/v1/reviews/${encodeURIComponent(r.id)}/${verb}`, { method: 'POST', body: JSON.stringify(body) });
      state.reviews.set(out.review.id, out.review);
      render();
    } catch (e) {
      $('.error', form).textContent = e.message;
      for (const b of form.querySelectorAll('button')) b.disabled = false;
    }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    decide('approve');
  });
  $('.deny', form).addEventListener('click', () => decide('deny'));
  return li;
}

document.addEventListener('DOMContentLoaded', () => {
  $('#signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    $('#signin-error').textContent = '';
    signIn($('#token').value);
  });
  $('#signout').addEventListener('click', signOut);
  if (state.token) signIn(state.token);
  else show('signin');
});
