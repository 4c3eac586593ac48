// callback-hub console: plain DOM, no framework, no request anywhere but this hub.
// Everything that comes from the API is put on the page as text (textContent, attributes we
// build ourselves), never as HTML.
'use strict';

const TOKEN_KEY = 'callback-hub-api-token';
const SOURCES = ['stack', 's3', 'dingtalk', 'mns', 'tsuru'];
// The console may be served under an API Gateway stage (/prod/console): the API is beside it.
const BASE = location.pathname.replace(/\/console(\/.*)?$/, '');

// ---------- DOM helpers ----------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  // Children may be nested lists (a row of cells, pairs of <dt>/<dd>): flattened all the way.
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function link(hash, text) {
  return el('a', { href: hash }, text);
}

function hashOf(...parts) {
  return '#' + parts.map(encodeURIComponent).join('/');
}

function table(caption, headers, rows) {
  return el('table', {},
    el('caption', {}, caption),
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows.map((cells) => el('tr', {}, cells.map((c) => el('td', { class: 'wrap' }, c))))));
}

function empty(...text) {
  return el('p', { class: 'empty' }, ...text);
}

function when(text) {
  if (!text) return '';
  const date = new Date(text);
  return isNaN(date) ? String(text) : date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function page() {
  return document.getElementById('page');
}

function notice(text) {
  document.getElementById('notice').textContent = text;
}

function showError(container, error) {
  container.append(el('p', { class: 'error', role: 'alert' }, error.message || String(error)));
}

// ---------- the API ----------

class HubError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function explain(status, body) {
  const detail = body && typeof body.message === 'string' ? body.message : '';
  switch (status) {
    case 401:
      return 'The hub refused the API token (401 Unauthorized). Sign out and enter the value of API_TOKEN.';
    case 503:
      return 'The hub cannot answer this now (503): ' + (detail || 'service unavailable') + '.';
    case 404:
      return 'Not found (404)' + (detail ? ': ' + detail : '') + '.';
    case 400:
      return 'The hub refused the request (400): ' + (detail || 'bad request') + '.';
    default:
      return 'The hub answered ' + status + (detail ? ': ' + detail : '') + '.';
  }
}

async function api(path, options) {
  const opts = options || {};
  const token = sessionStorage.getItem(TOKEN_KEY) || '';
  const headers = { Authorization: 'Bearer ' + token, Accept: 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(BASE + path, {
      method: opts.method || 'GET',
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
  } catch (err) {
    throw new HubError(0, 'The hub could not be reached (' + err.message + '). Is it running?');
  }
  if (response.status === 204) return null;
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) throw new HubError(response.status, explain(response.status, body));
  return body;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, value);
  }
  const text = search.toString();
  return text ? '?' + text : '';
}

// ---------- shared pieces ----------

function stackClass(status) {
  const s = String(status || '').toUpperCase();
  if (s.includes('ROLLBACK')) return ['rolled-back', 'rolled back'];
  if (s.includes('FAILED')) return ['failed', 'failed'];
  if (s.includes('IN_PROGRESS')) return ['in-progress', 'in progress'];
  if (s.includes('COMPLETE')) return ['complete', 'complete'];
  return ['other', 'other'];
}

function stackBadge(status) {
  const [cls, label] = stackClass(status);
  return el('span', { class: 'badge ' + cls, title: label }, String(status));
}

function stateBadge(state, text) {
  return el('span', { class: 'badge ' + state }, text || state);
}

function chart(counts, labels, title) {
  const width = 240;
  const height = 48;
  const max = Math.max(1, ...counts);
  const step = width / counts.length;
  const node = svg('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  node.append(svg('title', {}, title));
  counts.forEach((count, i) => {
    const h = count === 0 ? 1 : Math.max(2, (count / max) * (height - 2));
    const bar = svg('rect', {
      class: count === 0 ? 'base' : 'bar',
      x: (i * step + 1).toFixed(1),
      y: (height - h).toFixed(1),
      width: Math.max(1, step - 2).toFixed(1),
      height: h.toFixed(1),
    });
    bar.append(svg('title', {}, `${labels[i]}: ${count}`));
    node.append(bar);
  });
  return node;
}

function eventRows(events) {
  return events.map((e) => [
    when(e.occurred_at || e.received_at),
    e.source,
    e.event_type,
    e.subject,
    link(hashOf('event', e.source, e.event_id), e.event_id),
  ]);
}

const EVENT_HEADERS = ['Time (UTC)', 'Source', 'Type', 'Subject', 'Event id'];

function howToSend() {
  return empty(
    'No events yet. Point a sender at this hub: for example a Tsuru webhook to ',
    el('code', {}, location.origin + BASE + '/tsuru'),
    ' with the X-Callback-Token header, a stack notification to ',
    el('code', {}, BASE + '/stacks?token=…'),
    ', or run ',
    el('code', {}, 'callback-hub demo'),
    '. The README lists every sender and its settings.');
}

// ---------- pages ----------

async function overview(root) {
  root.append(el('h1', {}, 'Overview'));
  const activity = el('section', { 'aria-labelledby': 'activity-h' }, el('h2', { id: 'activity-h' }, 'Events per source'));
  const latest = el('section', { 'aria-labelledby': 'latest-h' }, el('h2', { id: 'latest-h' }, 'Latest events'));
  const failing = el('section', { 'aria-labelledby': 'failing-h' }, el('h2', { id: 'failing-h' }, 'Failing deliveries and disabled subscriptions'));
  root.append(activity, latest, failing);

  try {
    const stats = await api('/events/stats');
    const cards = el('div', { class: 'cards' });
    const hours = stats.hours.map(when);
    const days = stats.days.map((d) => String(d).slice(0, 10));
    for (const s of stats.sources) {
      cards.append(el('div', { class: 'card' },
        el('h3', {}, s.source),
        el('p', {}, `${s.last_24h} in the last 24 hours, ${s.last_7d} in 7 days`),
        chart(s.hourly, hours, `${s.source}: events per hour, last 24 hours`),
        el('p', {}, 'per hour, 24 h'),
        chart(s.daily, days, `${s.source}: events per day, last 7 days`),
        el('p', {}, 'per day, 7 days')));
    }
    activity.append(cards);
  } catch (err) {
    showError(activity, err);
  }

  try {
    const listing = await api('/events' + query({ limit: 10 }));
    latest.append(listing.events.length
      ? table('The 10 newest events, all sources', EVENT_HEADERS, eventRows(listing.events))
      : howToSend());
  } catch (err) {
    showError(latest, err);
  }

  try {
    const subs = (await api('/webhooks')) || [];
    const rows = [];
    for (const sub of subs.slice(0, 25)) {
      if (sub.disabled) {
        rows.push([link(hashOf('subscription', sub.name), sub.name), stateBadge('disabled'), 'subscription disabled: ' + (sub.disabled_reason || 'manual'), '']);
      }
      const page = await api(`/webhooks/${encodeURIComponent(sub.name)}/deliveries` + query({ limit: 20 }));
      for (const d of page.deliveries) {
        const retrying = d.state === 'pending' && d.attempts > 0;
        if (d.state === 'failed' || retrying) {
          rows.push([
            link(hashOf('subscription', sub.name), sub.name),
            stateBadge(d.state, retrying ? 'retrying' : d.dead_lettered ? 'dead-lettered' : 'failed'),
            `${d.source} ${d.event_id}: ${d.last_error || ''} ${d.last_status ? 'HTTP ' + d.last_status : ''}`.trim(),
            when(d.updated_at),
          ]);
        }
      }
    }
    failing.append(rows.length
      ? table('Deliveries in retry or failed, and disabled subscriptions', ['Subscription', 'State', 'What', 'Updated'], rows)
      : empty(subs.length ? 'Nothing is failing.' : 'No subscriptions yet: create one on the Subscriptions page or with callback-hub webhooks create.'));
  } catch (err) {
    showError(failing, err);
  }
}

function localInput(id, label, value) {
  return el('div', {}, el('label', { for: id }, label), el('input', { id, name: id, type: 'datetime-local', step: '1', value: value || '' }));
}

function toIso(local) {
  if (!local) return '';
  const date = new Date(local + 'Z');
  return isNaN(date) ? '' : date.toISOString();
}

async function eventsPage(root, state) {
  root.append(el('h1', {}, 'Events'));
  const filters = state.filters || {};
  const sourceSelect = el('select', { id: 'f-source', name: 'source' },
    el('option', { value: '' }, 'all sources'),
    SOURCES.map((s) => el('option', { value: s, selected: filters.source === s }, s)));
  const form = el('form', { class: 'filters', 'aria-label': 'Filter events' },
    el('div', {}, el('label', { for: 'f-source' }, 'Source'), sourceSelect),
    el('div', {}, el('label', { for: 'f-type' }, 'Type'), el('input', { id: 'f-type', name: 'type', value: filters.type || '' })),
    el('div', {}, el('label', { for: 'f-subject' }, 'Subject (needs a source)'), el('input', { id: 'f-subject', name: 'subject', value: filters.subject || '' })),
    localInput('f-since', 'Since (UTC)', filters.sinceLocal),
    localInput('f-until', 'Until (UTC)', filters.untilLocal),
    el('div', {}, el('label', { for: 'f-limit' }, 'Per page'), el('input', { id: 'f-limit', name: 'limit', type: 'number', min: '1', max: '100', value: filters.limit || '25' })),
    el('button', { type: 'submit', class: 'primary' }, 'Show'));
  const results = el('div', { id: 'event-results' });
  root.append(form, results);

  const cursors = [''];
  async function load(cursorIndex) {
    results.replaceChildren(el('p', {}, 'Loading…'));
    const f = state.filters || {};
    try {
      const listing = await api('/events' + query({
        source: f.source, type: f.type, subject: f.subject,
        since: toIso(f.sinceLocal), until: toIso(f.untilLocal),
        limit: f.limit, cursor: cursors[cursorIndex],
      }));
      results.replaceChildren();
      if (!listing.events.length) {
        results.append(cursorIndex === 0 && !f.source && !f.type && !f.subject ? howToSend()
          : empty('No events match these filters. Widen the time range (the default is the last 90 days) or clear a filter.'));
      } else {
        results.append(table(`Events, newest first (page ${cursorIndex + 1})`, EVENT_HEADERS, eventRows(listing.events)));
      }
      const pager = el('div', { class: 'pager' });
      if (cursorIndex > 0) pager.append(el('button', { type: 'button', onclick: () => load(cursorIndex - 1) }, 'Previous page'));
      if (listing.next) {
        pager.append(el('button', {
          type: 'button',
          onclick: () => { cursors[cursorIndex + 1] = listing.next; load(cursorIndex + 1); },
        }, 'Next page'));
      }
      results.append(pager);
    } catch (err) {
      results.replaceChildren();
      showError(results, err);
    }
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    state.filters = {
      source: data.get('source'), type: data.get('type'), subject: data.get('subject'),
      sinceLocal: data.get('f-since'), untilLocal: data.get('f-until'), limit: data.get('limit'),
    };
    cursors.length = 1;
    load(0);
  });
  await load(0);
}

function attrs(pairs) {
  return el('dl', { class: 'attrs' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

async function eventDetail(root, source, id) {
  root.append(el('p', {}, link('#events', '← Events')));
  root.append(el('h1', {}, `Event ${id}`));
  try {
    const detail = await api(`/events/${encodeURIComponent(source)}/${encodeURIComponent(id)}`);
    const e = detail.event;
    root.append(attrs([
      ['Source', e.source], ['Type', e.event_type], ['Subject', e.subject], ['Alias', e.subject_alias],
      ['Occurred', when(e.occurred_at)], ['Received', when(e.received_at)],
      ['Sets state', e.sets_state ? 'yes' : 'no (history only)'],
      ['Expires', e.expires_at ? when(new Date(e.expires_at * 1000).toISOString()) : 'never'],
    ]));
    root.append(el('h2', {}, 'Payload'), el('pre', { tabindex: '0', 'aria-label': 'Payload JSON' }, JSON.stringify(e.payload, null, 2)));
    root.append(el('h2', {}, 'Deliveries'));
    if (detail.deliveries === null) {
      root.append(empty('Deliveries are not available here: ' + (detail.deliveries_unavailable || 'webhooks are not configured') + '.'));
    } else if (!detail.deliveries.length) {
      root.append(empty('No subscription received this event. Subscriptions whose filter matches an event get a delivery of it.'));
    } else {
      root.append(table('One delivery per subscription', ['Subscription', 'State', 'Attempts', 'Last status', 'Last error', 'Updated', 'Delivery id'],
        detail.deliveries.map((d) => [
          link(hashOf('subscription', d.subscription), d.subscription),
          stateBadge(d.state), d.attempts, d.last_status || '', d.last_error || '', when(d.updated_at), d.id,
        ])));
    }
  } catch (err) {
    showError(root, err);
  }
}

async function stacksPage(root) {
  root.append(el('h1', {}, 'Stacks'));
  try {
    const listing = await api('/stacks');
    if (!listing.stacks.length) {
      root.append(empty('No stack events yet. Add this hub to a ROS stack\'s NotificationURLs (',
        el('code', {}, location.origin + BASE + '/stacks?token=…'), ') or subscribe it to a CloudFormation stack\'s SNS topic.'));
      return;
    }
    const history = el('section', { id: 'stack-history', 'aria-live': 'polite' });
    root.append(table('Every stack with its latest status', ['Stack', 'Status', 'Terminal', 'Updated', 'Outputs', ''],
      listing.stacks.map((s) => [
        s.stack_name,
        stackBadge(s.status),
        s.terminal ? 'yes' : 'no',
        when(s.updated_at),
        s.outputs.length
          ? el('dl', { class: 'attrs' }, s.outputs.map((o) => [el('dt', {}, o.OutputKey || o.key || ''), el('dd', {}, String(o.OutputValue ?? o.value ?? ''))]))
          : '—',
        el('button', { type: 'button', onclick: () => showHistory(history, s.stack_name) }, `History of ${s.stack_name}`),
      ])));
    root.append(history);
  } catch (err) {
    showError(root, err);
  }
}

async function showHistory(section, name) {
  section.replaceChildren(el('h2', { tabindex: '-1' }, `History of ${name}`));
  try {
    const history = await api(`/stacks/${encodeURIComponent(name)}` + query({ history: 'true', limit: 50 }));
    section.append(el('ol', { class: 'timeline', 'aria-label': `Events of ${name}, newest first` },
      history.events.map((e) => el('li', {},
        stackBadge(e.event_type), ' ', when(e.occurred_at || e.received_at),
        e.sets_status ? '' : ' (resource event)'))));
  } catch (err) {
    showError(section, err);
  }
  section.querySelector('h2').focus();
}

function lastAttempt(deliveries) {
  let last = '';
  for (const d of deliveries) for (const a of d.attempts_log || []) if (a.started_at > last) last = a.started_at;
  return last;
}

function successRate(deliveries) {
  const done = deliveries.filter((d) => d.attempts > 0);
  if (!done.length) return 'no attempts yet';
  const ok = done.filter((d) => d.state === 'delivered').length;
  return `${Math.round((100 * ok) / done.length)}% (${ok} of ${done.length} recent)`;
}

function filterText(sub) {
  const f = sub.event_filter || {};
  const parts = [];
  for (const key of ['sources', 'kind_types', 'kind_names', 'target_types', 'target_values']) {
    if (f[key] && f[key].length) parts.push(`${key}: ${f[key].join(', ')}`);
  }
  if (f.error_only) parts.push('errors only');
  if (f.success_only) parts.push('successes only');
  return parts.length ? parts.join('; ') : 'every event';
}

async function subscriptionsPage(root) {
  root.append(el('h1', {}, 'Subscriptions'));
  try {
    const subs = (await api('/webhooks')) || [];
    if (!subs.length) {
      root.append(empty('No subscriptions. Create one with ', el('code', {}, 'callback-hub webhooks create NAME URL'),
        ' or POST /webhooks; the README describes filters, bodies and signatures.'));
      return;
    }
    const rows = [];
    for (const sub of subs) {
      const page = await api(`/webhooks/${encodeURIComponent(sub.name)}/deliveries` + query({ limit: 50 }));
      rows.push([
        link(hashOf('subscription', sub.name), sub.name),
        sub.url,
        filterText(sub),
        sub.disabled ? stateBadge('disabled', 'disabled: ' + (sub.disabled_reason || 'manual')) : stateBadge('enabled'),
        successRate(page.deliveries),
        when(lastAttempt(page.deliveries)) || 'never',
      ]);
    }
    root.append(table('Subscriptions', ['Name', 'URL', 'Filter', 'State', 'Success rate', 'Last attempt'], rows));
  } catch (err) {
    showError(root, err);
  }
}

async function subscriptionDetail(root, name) {
  root.append(el('p', {}, link('#subscriptions', '← Subscriptions')));
  root.append(el('h1', {}, `Subscription ${name}`));
  const path = `/webhooks/${encodeURIComponent(name)}`;
  const result = el('div', { role: 'status', 'aria-live': 'polite', id: 'action-result' });
  const rerender = () => route();
  async function act(label, work) {
    result.replaceChildren(el('p', {}, label + '…'));
    try {
      const text = await work();
      notice(text);
      rerender();
    } catch (err) {
      result.replaceChildren();
      showError(result, err);
    }
  }
  try {
    const sub = await api(path);
    const page = await api(path + '/deliveries' + query({ limit: 50 }));
    root.append(attrs([
      ['URL', sub.url], ['Method', sub.method || 'POST'], ['Filter', filterText(sub)],
      ['Description', sub.description], ['Team', sub.team_owner],
      ['State', sub.disabled ? 'disabled (' + (sub.disabled_reason || 'manual') + ')' : 'enabled'],
      ['Failing since', when(sub.failing_since)],
      ['Success rate', successRate(page.deliveries)], ['Last attempt', when(lastAttempt(page.deliveries)) || 'never'],
    ]));
    const since = el('input', { id: 'replay-since', type: 'datetime-local', step: '1' });
    root.append(el('div', { class: 'actions' },
      el('button', {
        type: 'button', class: 'primary',
        onclick: () => act('Sending a test event', async () => {
          const test = await api(path + '/test', { method: 'POST', body: {} });
          return `Test event sent to ${name}: ${JSON.stringify(test.verdict)}`;
        }),
      }, 'Send test event'),
      el('button', {
        type: 'button',
        onclick: () => act(sub.disabled ? 'Enabling' : 'Disabling', async () => {
          const current = await api(path);
          current.disabled = !current.disabled;
          await api(path, { method: 'PUT', body: current });
          return `${name} ${current.disabled ? 'disabled' : 'enabled'}.`;
        }),
      }, sub.disabled ? 'Enable' : 'Disable'),
      el('div', {}, el('label', { for: 'replay-since' }, 'Failed since (UTC)'), since),
      el('button', {
        type: 'button',
        onclick: () => act('Replaying failed deliveries', async () => {
          const at = toIso(since.value);
          if (!at) throw new Error('Choose the time to replay failed deliveries from.');
          const replay = await api(path + '/replay', { method: 'POST', body: { since: at } });
          return `Replayed ${replay.replayed} failed deliveries of ${name}.`;
        }),
      }, 'Replay failed since')));
    root.append(result);
    root.append(el('h2', {}, 'Deliveries'));
    if (!page.deliveries.length) {
      root.append(empty('No deliveries yet: events that match the filter are delivered here. Use "Send test event" to try the endpoint.'));
      return;
    }
    for (const d of page.deliveries) {
      const section = el('section', { class: 'card', 'aria-label': `Delivery ${d.id}` },
        el('h3', {}, `${d.source} event `, link(hashOf('event', d.source, d.event_id), d.event_id), ' ', stateBadge(d.state, d.dead_lettered ? 'dead-lettered' : d.state)),
        el('p', {}, `Delivery ${d.id}, created ${when(d.created_at)}, ${d.attempts} attempt(s)` + (d.state === 'pending' ? `, next at ${when(d.next_attempt_at)}` : '')),
        el('button', {
          type: 'button',
          onclick: () => act('Replaying ' + d.id, async () => {
            const replay = await api(path + '/replay', { method: 'POST', body: { delivery: d.id } });
            return `Replayed ${replay.replayed} delivery of ${name}.`;
          }),
        }, 'Replay this delivery'));
      const attempts = d.attempts_log || [];
      section.append(attempts.length
        ? table('Attempts', ['#', 'Time (UTC)', 'Status', 'Latency', 'Response excerpt', 'Error'],
          attempts.map((a) => [a.number, when(a.started_at), a.status || '—', `${a.latency_ms} ms`, a.response_excerpt || '', a.error ? JSON.stringify(a.error) : '']))
        : el('p', {}, 'No attempt yet.'));
      root.append(section);
    }
  } catch (err) {
    showError(root, err);
  }
}

// ---------- routing and sign-in ----------

const state = {};

function signedIn() {
  return !!sessionStorage.getItem(TOKEN_KEY);
}

function showLogin(message) {
  document.getElementById('login').hidden = false;
  document.getElementById('nav').hidden = true;
  document.getElementById('sign-out').hidden = true;
  page().replaceChildren();
  document.getElementById('login-error').textContent = message || '';
  document.getElementById('token').focus();
}

async function route() {
  if (!signedIn()) return showLogin();
  document.getElementById('login').hidden = true;
  document.getElementById('nav').hidden = false;
  document.getElementById('sign-out').hidden = false;
  const [name, ...rest] = location.hash.replace(/^#/, '').split('/').map(decodeURIComponent);
  const current = name || 'overview';
  for (const a of document.querySelectorAll('#nav a')) {
    const active = a.dataset.page === current || (a.dataset.page === 'events' && current === 'event') || (a.dataset.page === 'subscriptions' && current === 'subscription');
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const root = el('div', {});
  page().replaceChildren(root);
  try {
    if (current === 'events') await eventsPage(root, state);
    else if (current === 'event' && rest.length === 2) await eventDetail(root, rest[0], rest[1]);
    else if (current === 'stacks') await stacksPage(root);
    else if (current === 'subscriptions') await subscriptionsPage(root);
    else if (current === 'subscription' && rest.length === 1) await subscriptionDetail(root, rest[0]);
    else await overview(root);
  } catch (err) {
    showError(root, err);
  }
  document.title = `${root.querySelector('h1') ? root.querySelector('h1').textContent : 'Console'} · callback-hub`;
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = document.getElementById('token');
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = '';
    try {
      await api('/events/stats');
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(err.message);
      return;
    }
    notice('Signed in.');
    route();
  });
  document.getElementById('sign-out').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    notice('Signed out.');
    showLogin();
  });
  window.addEventListener('hashchange', () => {
    notice('');
    route();
  });
  route();
});
