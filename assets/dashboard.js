// The operator dashboard (GET /): every active alert with its countdowns,
// a plan view, cancel and assign by hand, the bands that need a look, and
// the volunteers: register one, issue a token as a link and a QR code. It
// also issues broker (MQTT) logins: a band's secret, with a QR code for the
// installer, and a gateway's. Tokens and secrets are shown once, in one
// dialog, and forgotten when it closes: never stored, never logged.
//
// Live updates: the SSE stream GET /v1/alerts/stream?access_token=… (event
// `alert` = one alert as it now stands, `resync` = re-read the list). While
// the stream is not open (not deployed, network trouble, an error) the page
// polls GET /v1/alerts?state=active every 2 s and retries the stream now and
// then. Volunteers are re-read every 5 s (positions), bands every 30 s.

import {
  ACTIVE_STATES,
  ApiFailure,
  EARTH_RADIUS_M,
  api,
  apiText,
  el,
  fmtAgo,
  fmtClock,
  fmtDistance,
  fmtEta,
  fmtTime,
  haversine,
  kindLabel,
  now,
  plainError,
  stateLabel,
  tokenStore,
} from './common.js';

const POLL_MS = 2000;
const SAFETY_REFRESH_MS = 30000;
const STREAM_RETRY_MS = 15000;
const VOLUNTEERS_MS = 5000;
const DEVICES_MS = 30000;
const NAMES_REFETCH_MS = 5000;

const $ = (id) => document.getElementById(id);
const tokens = tokenStore('onepress.operator_token');

const S = {
  token: tokens.get(),
  running: false,
  alerts: new Map(), // id → alert (active only)
  seniors: new Map(), // id → senior
  volunteers: new Map(), // id → volunteer
  devices: { offline: null, low: null, at: 0 },
  mode: 'connecting', // live | polling | down
  stream: null,
  streamRetry: null,
  pollTimer: null,
  refreshing: null, // the list read in flight
  heldEvents: null, // stream events that arrived during a list read
  seniorsAt: 0,
  volunteersAt: 0,
  lastRender: '',
  lastVolunteers: '',
  timers: [],
};

// ----- the token ----------------------------------------------------------

function showTokenPanel(message) {
  stopAll();
  $('board').hidden = true;
  $('change-token').hidden = true;
  $('token-panel').hidden = false;
  setMode('wait', 'Not signed in');
  if (message) notice(message);
  $('token-input').focus();
}

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const token = $('token-input').value.trim();
  if (!token) return;
  tokens.set(token);
  S.token = token;
  $('token-input').value = '';
  clearNotice();
  start();
});

$('change-token').addEventListener('click', () => {
  tokens.clear();
  S.token = '';
  showTokenPanel('');
});

// ----- notices and the connection pill -------------------------------------

function notice(text, ok = false) {
  $('notice-text').textContent = text;
  $('notice').classList.toggle('ok', ok);
  $('notice').hidden = false;
}

function clearNotice() {
  $('notice').hidden = true;
}

$('notice-close').addEventListener('click', clearNotice);
$('alarm').addEventListener('click', toggleAlarm);
// Any click lets the page play sound (browsers' rule).
document.addEventListener('click', () => audio(), { once: false, passive: true });

function setMode(mode, text) {
  S.mode = mode;
  const pill = $('conn');
  pill.className = `pill ${{ live: 'pill-live', polling: 'pill-poll', down: 'pill-down' }[mode] || 'pill-wait'}`;
  pill.textContent = text;
  pill.dataset.mode = mode;
}

// ----- calls -----------------------------------------------------------------

const OPERATOR_WORDS = {
  401: 'Token not recognised. Paste the operator token again.',
  403: 'This token is not an operator token (a volunteer token?). Paste the operator token.',
};

/** A read: a 401/403 sends the operator back to the token panel. */
async function read(path) {
  try {
    const answer = await api(S.token, 'GET', path);
    if (S.mode === 'down') {
      if (S.stream && S.stream.readyState === 1) setMode('live', 'Live');
      else setMode('polling', 'Polling every 2 s');
    }
    return answer;
  } catch (err) {
    if (err instanceof ApiFailure && (err.status === 401 || err.status === 403)) {
      tokens.clear();
      showTokenPanel(plainError(err, OPERATOR_WORDS));
    } else if (err instanceof ApiFailure && err.status === 0) {
      setMode('down', 'Service unreachable');
    }
    throw err;
  }
}

// ----- alerts ----------------------------------------------------------------

function refreshAlerts() {
  if (!S.running) return Promise.resolve();
  if (S.refreshing) return S.refreshing;
  S.heldEvents = [];
  S.refreshing = read('/v1/alerts?state=active&limit=1000')
    .then((list) => {
      S.alerts = new Map(list.filter((a) => ACTIVE_STATES.has(a.state)).map((a) => [a.id, a]));
      // What the stream said while the list was read is newer than the list.
      for (const a of S.heldEvents) putAlert(a);
      if (S.mode === 'connecting') setMode('polling', 'Polling every 2 s');
    })
    .catch(() => {})
    .finally(() => {
      S.refreshing = null;
      S.heldEvents = null;
      namesFor([...S.alerts.values()]);
      render();
    });
  return S.refreshing;
}

function putAlert(a) {
  if (ACTIVE_STATES.has(a.state)) S.alerts.set(a.id, a);
  else S.alerts.delete(a.id);
}

/** One alert from the stream. */
function onAlert(a) {
  if (!a || !a.id) return;
  if (S.heldEvents) S.heldEvents.push(a);
  putAlert(a);
  namesFor([a]);
  render();
}

/** Fetches seniors / volunteers again when an alert names one not known yet. */
function namesFor(alerts) {
  const t = Date.now();
  const unknownSenior = alerts.some((a) => a.senior_id && !S.seniors.has(a.senior_id));
  if (unknownSenior && t - S.seniorsAt > NAMES_REFETCH_MS) loadSeniors();
  const unknownVolunteer = alerts.some(
    (a) =>
      (a.volunteer_id && !S.volunteers.has(a.volunteer_id)) ||
      (a.offers || []).some((o) => !S.volunteers.has(o.volunteer_id)),
  );
  if (unknownVolunteer && t - S.volunteersAt > NAMES_REFETCH_MS) loadVolunteers();
}

async function loadSeniors() {
  S.seniorsAt = Date.now();
  try {
    const list = await read('/v1/seniors');
    S.seniors = new Map(list.map((s) => [s.id, s]));
    render(true);
    if (S.devices.at) renderDevices();
  } catch {
    // shown by the pill; the ids are shown meanwhile
  }
}

async function loadVolunteers() {
  S.volunteersAt = Date.now();
  try {
    const list = await read('/v1/volunteers');
    S.volunteers = new Map(list.map((v) => [v.id, v]));
    render();
    renderVolunteers();
  } catch {
    // idem
  }
}

async function loadDevices() {
  try {
    const [offline, low] = await Promise.all([
      read('/v1/devices?status=offline'),
      read('/v1/devices?status=low_battery'),
    ]);
    S.devices = { offline, low, at: Date.now() };
    renderDevices();
  } catch {
    // idem
  }
}

// ----- the stream and the fallback polling ----------------------------------

function startPolling() {
  if (S.pollTimer) return;
  S.pollTimer = setInterval(refreshAlerts, POLL_MS);
}

function stopPolling() {
  clearInterval(S.pollTimer);
  S.pollTimer = null;
}

function openStream() {
  clearTimeout(S.streamRetry);
  S.streamRetry = null;
  if (!S.running || typeof EventSource === 'undefined') return;
  if (S.stream) S.stream.close();
  const es = new EventSource(`/v1/alerts/stream?access_token=${encodeURIComponent(S.token)}`);
  S.stream = es;
  es.addEventListener('open', () => {
    if (S.stream !== es) return;
    setMode('live', 'Live');
    stopPolling();
    refreshAlerts(); // whatever changed before the stream opened
  });
  es.addEventListener('alert', (e) => {
    try {
      onAlert(JSON.parse(e.data));
    } catch {
      refreshAlerts();
    }
  });
  es.addEventListener('resync', () => refreshAlerts());
  es.addEventListener('error', () => {
    if (S.stream !== es) return;
    // The browser reconnects by itself after a network error (state
    // CONNECTING); after a refusal (404 before the stream existed, 401,
    // 503) it gives up (CLOSED) and we try again later. Poll meanwhile.
    if (S.mode !== 'down') setMode('polling', 'Polling every 2 s');
    startPolling();
    refreshAlerts();
    if (es.readyState === 2) {
      es.close();
      S.stream = null;
      S.streamRetry = setTimeout(openStream, STREAM_RETRY_MS);
    }
  });
}

function stopAll() {
  S.running = false;
  stopPolling();
  if (S.stream) S.stream.close();
  S.stream = null;
  clearTimeout(S.streamRetry);
  for (const t of S.timers) clearInterval(t);
  S.timers = [];
}

function start() {
  stopAll();
  S.running = true;
  $('token-panel').hidden = true;
  $('board').hidden = false;
  $('change-token').hidden = false;
  setMode('connecting', 'Connecting…');
  S.lastRender = '';
  S.lastVolunteers = '';
  loadSeniors();
  loadVolunteers();
  loadDevices();
  refreshAlerts();
  startPolling(); // until the stream says it is open
  openStream();
  S.timers.push(
    setInterval(() => {
      if (S.mode === 'live') refreshAlerts();
    }, SAFETY_REFRESH_MS),
    setInterval(loadVolunteers, VOLUNTEERS_MS),
    setInterval(loadDevices, DEVICES_MS),
  );
}

// ----- rendering ---------------------------------------------------------------

const seniorName = (id) => (S.seniors.get(id) || {}).name;
const volunteerName = (id) => (S.volunteers.get(id) || {}).name || id;

function sorted() {
  return [...S.alerts.values()].sort((a, b) => {
    if (a.escalated !== b.escalated) return a.escalated ? -1 : 1;
    return Date.parse(a.pressed_at) - Date.parse(b.pressed_at); // oldest, most urgent, first
  });
}

/** Rebuilds the list and the plan when something they show has changed. */
function render(force = false) {
  const signature = JSON.stringify([
    sorted(),
    [...S.seniors.keys()],
    [...S.volunteers.values()].map((v) => [v.id, v.name, v.on_duty, v.busy, v.lat, v.lon]),
  ]);
  if (!force && signature === S.lastRender) return;
  S.lastRender = signature;
  const list = sorted();
  $('alerts').replaceChildren(...list.map(alertCard));
  $('alert-count').textContent = String(list.length);
  $('no-alerts').hidden = list.length > 0;
  renderPlan(list);
  tick();
}

function alertCard(a) {
  const name = seniorName(a.senior_id);
  const card = el(
    'article',
    {
      class: `alert-card state-${a.state}${a.escalated ? ' escalated' : ''}`,
      dataset: { alertId: a.id, state: a.state, escalated: String(Boolean(a.escalated)) },
    },
    a.escalated && el('div', { class: 'banner', text: 'Escalated: nobody available to offer it to. Send someone by hand.' }),
    el(
      'div',
      { class: 'alert-head' },
      el('div', {}, el('span', { class: 'who-senior', text: name || a.senior_id }), el('span', { class: 'ids', text: `  ${name ? a.senior_id + ' · ' : ''}band ${a.device_id}` })),
      el(
        'div',
        { class: 'alert-meta' },
        el('span', { class: `kind kind-${a.kind}`, text: kindLabel(a.kind) }),
        ` · pressed ${fmtTime(a.pressed_at)}`,
        el('span', { class: 'tag tag-state', dataset: { role: 'state' }, text: stateLabel(a.state) }),
        a.arrival_at_risk && el('span', { class: 'tag tag-risk', text: 'Arrival at risk' }),
      ),
    ),
    whoLine(a),
    el('div', { class: 'targets' }, target(a, 'response'), target(a, 'arrival')),
    el(
      'div',
      { class: 'actions' },
      ['open', 'offered', 'accepted'].includes(a.state) &&
        el('button', { class: 'btn btn-primary', type: 'button', dataset: { action: 'assign' }, text: 'Assign…', onclick: () => openAssign(a.id) }),
      el('button', { class: 'btn btn-danger', type: 'button', dataset: { action: 'cancel' }, text: 'Cancel…', onclick: () => openCancel(a.id) }),
    ),
  );
  return card;
}

function whoLine(a) {
  const line = el('p', { class: 'who', dataset: { role: 'who' } });
  if (a.volunteer_id) {
    const v = S.volunteers.get(a.volunteer_id);
    let where = '';
    if (v && v.lat != null && a.lat != null && a.state === 'accepted') {
      where = ` · ${fmtDistance(haversine(v, a))} away`;
    }
    if (a.state === 'on_scene') {
      line.append(el('strong', { text: volunteerName(a.volunteer_id) }), ` is with the senior since ${fmtTime(a.on_scene_at)}.`);
    } else {
      line.append(el('strong', { text: volunteerName(a.volunteer_id) }), ` accepted at ${fmtTime(a.accepted_at)} and is on the way${where}.`);
    }
    return line;
  }
  const offers = a.offers || [];
  if (offers.length) {
    line.append('Offered to ');
    offers.forEach((o, i) => {
      if (i) line.append(', ');
      line.append(
        el('strong', { text: volunteerName(o.volunteer_id) }),
        ` (${fmtDistance(o.distance_m)}, ${fmtEta(o.eta_s)} away; answer within `,
        el('span', { class: 'countdown', dataset: { until: o.expires_at }, text: '' }),
        ')',
      );
    });
    return line;
  }
  line.append(a.lat == null ? 'No location for this alert: send someone by hand.' : 'Waiting for a volunteer to become available.');
  return line;
}

function target(a, which) {
  return el(
    'div',
    { class: 'target', dataset: { alertId: a.id, target: which } },
    el('span', { class: 'label' }),
    el('div', { class: 'bar' }, el('div', { class: 'fill' })),
    el('span', { class: 'left' }),
  );
}

/** Where one target of an alert stands now. */
function targetStatus(a, which) {
  const start = Date.parse(a.pressed_at);
  const deadline = Date.parse(which === 'response' ? a.response_deadline : a.arrival_deadline);
  const doneAt = which === 'response' ? a.accepted_at : a.on_scene_at;
  const breached = which === 'response' ? a.response_breached : a.arrival_breached;
  const total = Math.max(1000, deadline - start);
  const goal = total >= 60000 ? `${Math.round(total / 60000)} min` : `${Math.round(total / 1000)} s`;
  const label = `${which === 'response' ? 'Response' : 'Arrival'} · ${goal}`;
  if (doneAt) {
    const t = Date.parse(doneAt);
    if (t > deadline || breached) return { label, level: 'late', frac: 1, text: `late by ${fmtClock(t - deadline)}` };
    return { label, level: 'met', frac: 1, text: `✓ met in ${fmtClock(t - start)}` };
  }
  const left = deadline - now();
  if (left <= 0 || breached) return { label, level: 'red', frac: 1, text: `passed ${fmtClock(-left)} ago` };
  const frac = left / total;
  return { label, level: frac > 0.5 ? 'green' : 'amber', frac, text: `${fmtClock(left)} left` };
}

/** Every second: the countdowns, the offer timers and the clock. */
function tick() {
  $('clock').textContent = new Date(now()).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  for (const node of document.querySelectorAll('.target')) {
    const a = S.alerts.get(node.dataset.alertId);
    if (!a) continue;
    const st = targetStatus(a, node.dataset.target);
    node.className = `target level-${st.level}`;
    node.dataset.level = st.level;
    node.querySelector('.label').textContent = st.label;
    node.querySelector('.fill').style.width = `${Math.round(st.frac * 100)}%`;
    node.querySelector('.left').textContent = st.text;
  }
  for (const node of document.querySelectorAll('.countdown')) {
    const left = Date.parse(node.dataset.until) - now();
    node.textContent = left > 0 ? fmtClock(left) : 'now';
  }
  if (S.devices.at) $('devices-updated').textContent = `Checked ${fmtAgo(new Date(S.devices.at).toISOString())}.`;
  alarmTick();
}

// ----- the alarm ---------------------------------------------------------------
// A colour is easy to miss across a room: an alert that needs an operator
// (nobody to offer it to, or its response target missed, and nobody has
// accepted it) sounds a two-tone alarm when it first needs one, and again
// every ALARM_REPEAT_MS while any still does. "Mute" silences it (kept in
// this browser); the colours stay. Browsers play sound only after a click on
// the page: until then the button says so.

const ALARM_REPEAT_MS = 15000;
const alarmMuted = () => localStorage.getItem('onepress.alarm_muted') === '1';
const A = { ctx: null, heard: new Set(), lastAt: 0, beeps: 0 };

const needsOperator = (a) => (a.state === 'open' || a.state === 'offered') && (a.escalated || a.response_breached);

function audio() {
  if (!A.ctx) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    A.ctx = new Ctx();
  }
  if (A.ctx.state === 'suspended') A.ctx.resume().catch(() => {});
  return A.ctx;
}

function beep() {
  A.beeps += 1;
  document.body.dataset.alarmBeeps = String(A.beeps);
  const ctx = audio();
  if (!ctx || ctx.state !== 'running') return;
  const t0 = ctx.currentTime;
  [880, 660, 880, 660].forEach((hz, i) => {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = hz;
    gain.gain.setValueAtTime(0.25, t0 + i * 0.25);
    gain.gain.exponentialRampToValueAtTime(0.001, t0 + i * 0.25 + 0.22);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t0 + i * 0.25);
    osc.stop(t0 + i * 0.25 + 0.23);
  });
}

function alarmTick() {
  const waiting = [...S.alerts.values()].filter(needsOperator);
  const fresh = waiting.filter((a) => !A.heard.has(a.id));
  for (const a of fresh) A.heard.add(a.id);
  const muted = alarmMuted();
  const state = muted ? 'muted' : waiting.length ? 'sounding' : 'quiet';
  document.body.dataset.alarm = state;
  const btn = $('alarm');
  if (btn) {
    const silent = A.ctx && A.ctx.state !== 'running';
    btn.textContent = muted ? 'Alarm muted' : !A.ctx || silent ? 'Alarm on (click to allow sound)' : 'Alarm on';
    btn.setAttribute('aria-pressed', String(!muted));
    btn.classList.toggle('alarm-sounding', state === 'sounding');
  }
  if (muted || !waiting.length) return;
  const t = Date.now();
  if (fresh.length || t - A.lastAt >= ALARM_REPEAT_MS) {
    A.lastAt = t;
    beep();
  }
}

function toggleAlarm() {
  localStorage.setItem('onepress.alarm_muted', alarmMuted() ? '0' : '1');
  audio();
  alarmTick();
}

// ----- the plan view -----------------------------------------------------------

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS($('plan').namespaceURI, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A round length for the scale bar, about a quarter of `span` metres. */
function niceLength(span) {
  const raw = span / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [5, 2, 1]) if (m * p <= raw) return m * p;
  return p;
}

function renderPlan(alerts) {
  const plan = $('plan');
  const W = 600;
  const H = 420;
  const PAD = 36;
  const points = [];
  for (const a of alerts) {
    if (a.lat != null && a.lon != null) points.push({ kind: 'alert', a, lat: a.lat, lon: a.lon });
  }
  // The alerts are fresher than the volunteer list (re-read every 5 s).
  const going = new Set(alerts.map((a) => a.volunteer_id).filter(Boolean));
  for (const v of S.volunteers.values()) {
    if (v.on_duty && v.lat != null && v.lon != null) {
      points.push({ kind: 'vol', v: { ...v, busy: going.has(v.id) }, lat: v.lat, lon: v.lon });
    }
  }
  const children = [];
  if (!points.length) {
    children.push(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'muted' }, 'Nothing to place yet: no located alert and no volunteer on duty.'));
    plan.replaceChildren(...children);
    return;
  }
  // Equirectangular around the middle of the bounding box, in metres.
  const lat0 = (Math.min(...points.map((p) => p.lat)) + Math.max(...points.map((p) => p.lat))) / 2;
  const lon0 = (Math.min(...points.map((p) => p.lon)) + Math.max(...points.map((p) => p.lon))) / 2;
  const k = (EARTH_RADIUS_M * Math.PI) / 180;
  const cos0 = Math.cos((lat0 * Math.PI) / 180);
  for (const p of points) {
    p.mx = (p.lon - lon0) * k * cos0;
    p.my = (p.lat - lat0) * k;
  }
  const spanX = Math.max(200, 2 * Math.max(...points.map((p) => Math.abs(p.mx))));
  const spanY = Math.max(200, 2 * Math.max(...points.map((p) => Math.abs(p.my))));
  const scale = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD - 24) / spanY); // px per metre
  const cx = W / 2;
  const cy = (H - 24) / 2;
  const at = (p) => [cx + p.mx * scale, cy - p.my * scale];

  // a light grid every scale-bar length
  const step = niceLength(W / scale);
  for (let m = -Math.ceil(W / scale / step) * step; m * scale < W; m += step) {
    const x = cx + m * scale;
    if (x > 0 && x < W) children.push(svg('line', { class: 'grid', x1: x, y1: 0, x2: x, y2: H }));
  }
  for (let m = -Math.ceil(H / scale / step) * step; m * scale < H; m += step) {
    const y = cy - m * scale;
    if (y > 0 && y < H) children.push(svg('line', { class: 'grid', x1: 0, y1: y, x2: W, y2: y }));
  }

  // who is going where: accepted (solid) and pending offers (dashed)
  const byVol = new Map(points.filter((p) => p.kind === 'vol').map((p) => [p.v.id, p]));
  for (const p of points.filter((q) => q.kind === 'alert')) {
    const [ax, ay] = at(p);
    const links = [];
    if (p.a.volunteer_id) links.push([p.a.volunteer_id, 'link-assigned']);
    for (const o of p.a.offers || []) links.push([o.volunteer_id, 'link-offer']);
    for (const [vid, cls] of links) {
      const q = byVol.get(vid);
      if (!q) continue;
      const [vx, vy] = at(q);
      children.push(svg('line', { class: cls, x1: ax, y1: ay, x2: vx, y2: vy }));
    }
  }
  for (const p of points.filter((q) => q.kind === 'vol')) {
    const [x, y] = at(p);
    const g = svg('g', { 'data-volunteer-id': p.v.id });
    g.append(
      svg('title', {}, `${p.v.name}: ${p.v.busy ? 'on an alert' : 'free'}, location ${fmtAgo(p.v.location_at)}`),
      svg('circle', { class: `p-vol${p.v.busy ? ' busy' : ''}`, cx: x, cy: y, r: 7 }),
      svg('text', { x: x + 10, y: y + 4 }, p.v.name),
    );
    children.push(g);
  }
  for (const p of points.filter((q) => q.kind === 'alert')) {
    const [x, y] = at(p);
    const g = svg('g', { 'data-alert-id': p.a.id });
    const label = seniorName(p.a.senior_id) || p.a.senior_id;
    g.append(svg('title', {}, `${label}: ${kindLabel(p.a.kind)}, ${stateLabel(p.a.state)}`));
    if (p.a.escalated) g.append(svg('circle', { class: 'p-alert-ring', cx: x, cy: y, r: 16 }));
    g.append(svg('circle', { class: 'p-alert', cx: x, cy: y, r: 9 }), svg('text', { x: x + 13, y: y - 8, 'font-weight': 700 }, label));
    children.push(g);
  }

  // scale bar (bottom left) and north
  const len = niceLength(W / scale);
  const px = len * scale;
  const sx = 16;
  const sy = H - 16;
  children.push(
    svg('path', { class: 'scale', d: `M${sx} ${sy - 6} V${sy} H${sx + px} V${sy - 6}` }),
    svg('text', { x: sx + px / 2, y: sy - 9, 'text-anchor': 'middle' }, len >= 1000 ? `${len / 1000} km` : `${len} m`),
    svg('text', { x: W - 18, y: 22, 'text-anchor': 'middle', 'font-weight': 700 }, 'N'),
    svg('path', { class: 'scale', d: `M${W - 18} 44 V28 M${W - 23} 33 L${W - 18} 27 L${W - 13} 33` }),
  );
  plan.replaceChildren(...children);
}

// ----- bands -------------------------------------------------------------------

function deviceRow(d, what) {
  const who = seniorName(d.senior_id) || d.senior_id;
  const value =
    what === 'offline'
      ? el('span', { class: 'val red', text: d.last_seen ? `last seen ${fmtAgo(d.last_seen)}` : 'never seen' })
      : el('span', { class: `val ${d.battery != null && d.battery <= 10 ? 'red' : 'amber'}`, text: d.battery != null ? `${d.battery} %` : '?' });
  const issue = el('button', {
    class: 'btn btn-small',
    type: 'button',
    dataset: { action: 'issue-secret' },
    'aria-label': `Issue MQTT secret for band ${d.device_id}`,
    text: 'Issue MQTT secret',
    onclick: () => openSecret(d.device_id),
  });
  return el('li', { dataset: { deviceId: d.device_id } }, el('span', {}, el('strong', { text: d.device_id }), ` · ${who}`), el('span', { class: 'row-end' }, value, issue));
}

function renderDevices() {
  // The lists are rebuilt: a keyboard user stays on the button they were on.
  const focused = document.activeElement;
  const at = focused && focused.dataset.action === 'issue-secret' ? [focused.closest('ul').id, focused.closest('li').dataset.deviceId] : null;
  const { offline, low } = S.devices;
  $('offline').replaceChildren(...(offline && offline.length ? offline.map((d) => deviceRow(d, 'offline')) : [el('li', { class: 'ok', text: 'All bands are online.' })]));
  $('low-battery').replaceChildren(...(low && low.length ? low.map((d) => deviceRow(d, 'low')) : [el('li', { class: 'ok', text: 'No low batteries.' })]));
  if (at) {
    const again = [...$(at[0]).querySelectorAll('[data-action="issue-secret"]')].find((b) => b.closest('li').dataset.deviceId === at[1]);
    if (again) again.focus();
  }
  tick();
}

// ----- assign and cancel ---------------------------------------------------------

let dialogAlert = null;

function describe(a) {
  return `${seniorName(a.senior_id) || a.senior_id}: ${kindLabel(a.kind)} at ${fmtTime(a.pressed_at)}, ${stateLabel(a.state).toLowerCase()}`;
}

function openAssign(id) {
  const a = S.alerts.get(id);
  if (!a) return;
  dialogAlert = id;
  loadVolunteers();
  $('assign-for').textContent = describe(a);
  $('assign-error').hidden = true;
  const going = new Set([...S.alerts.values()].map((x) => x.volunteer_id).filter(Boolean));
  const options = [...S.volunteers.values()].map((v) => {
    const d = v.lat != null && a.lat != null ? haversine(v, a) : null;
    let rank = 0;
    let why = 'free';
    if (v.id === a.volunteer_id) [rank, why] = [3, 'already on it'];
    else if (going.has(v.id)) [rank, why] = [3, 'busy with another alert'];
    else if (!v.on_duty) [rank, why] = [2, 'off duty'];
    else if (d === null) [rank, why] = [1, 'on duty, no location'];
    return { v, d, rank, why };
  });
  options.sort((x, y) => x.rank - y.rank || (x.d ?? Infinity) - (y.d ?? Infinity) || x.v.name.localeCompare(y.v.name));
  const select = $('assign-select');
  select.replaceChildren(
    ...options.map((o) =>
      el('option', {
        value: o.v.id,
        disabled: o.rank === 3,
        text: `${o.v.name} — ${o.d !== null ? fmtDistance(o.d) + ', ' : ''}${o.why}`,
      }),
    ),
  );
  const first = options.find((o) => o.rank < 3);
  if (first) select.value = first.v.id;
  $('assign-submit').disabled = !first;
  if (!first) {
    $('assign-error').textContent = 'No volunteer can be sent right now.';
    $('assign-error').hidden = false;
  }
  $('assign-dialog').showModal();
}

$('assign-close').addEventListener('click', () => $('assign-dialog').close());
$('assign-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const id = dialogAlert;
  const volunteerId = $('assign-select').value;
  if (!id || !volunteerId) return;
  $('assign-submit').disabled = true;
  try {
    const a = await api(S.token, 'POST', `/v1/alerts/${encodeURIComponent(id)}/assign`, { volunteer_id: volunteerId });
    onAlert(a);
    $('assign-dialog').close();
    notice(`${volunteerName(volunteerId)} was sent to ${seniorName(a.senior_id) || a.senior_id}.`, true);
  } catch (err) {
    $('assign-error').textContent = plainError(err, { 404: 'That alert or volunteer is no longer there.', ...OPERATOR_WORDS });
    $('assign-error').hidden = false;
    refreshAlerts();
  } finally {
    $('assign-submit').disabled = false;
  }
});

function openCancel(id) {
  const a = S.alerts.get(id);
  if (!a) return;
  dialogAlert = id;
  $('cancel-for').textContent = describe(a);
  $('cancel-reason').value = '';
  $('cancel-dialog').showModal();
  $('cancel-reason').focus();
}

$('cancel-close').addEventListener('click', () => $('cancel-dialog').close());
$('cancel-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const id = dialogAlert;
  const reason = $('cancel-reason').value.trim();
  if (!id || !reason) return;
  $('cancel-submit').disabled = true;
  try {
    const a = await api(S.token, 'POST', `/v1/alerts/${encodeURIComponent(id)}/cancel`, { reason });
    onAlert(a);
    $('cancel-dialog').close();
    notice(`The alert of ${seniorName(a.senior_id) || a.senior_id} was cancelled.`, true);
  } catch (err) {
    $('cancel-dialog').close();
    notice(plainError(err, OPERATOR_WORDS));
    refreshAlerts();
  } finally {
    $('cancel-submit').disabled = false;
  }
});

// ----- volunteers: the list, registering one, issuing a token -----------------------

function volunteerRow(v) {
  const duty = v.on_duty
    ? el('span', { class: 'tag tag-on', dataset: { role: 'duty' }, text: 'On duty' })
    : el('span', { class: 'tag tag-off', dataset: { role: 'duty' }, text: 'Off duty' });
  return el(
    'li',
    { dataset: { volunteerId: v.id } },
    el(
      'span',
      { class: 'who-vol' },
      el('strong', { dataset: { role: 'name' }, text: v.name }),
      el('span', { class: 'ids', text: ` ${v.id}${v.phone ? ' · ' + v.phone : ''}` }),
      duty,
      v.busy && el('span', { class: 'tag tag-busy', dataset: { role: 'busy' }, text: 'On an alert' }),
    ),
    el('button', { class: 'btn btn-small', type: 'button', dataset: { action: 'issue-token' }, text: 'Issue token', onclick: () => openToken(v.id) }),
  );
}

/** Rebuilds the volunteers' list when what it shows has changed. */
function renderVolunteers() {
  const list = [...S.volunteers.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  const signature = JSON.stringify(list.map((v) => [v.id, v.name, v.phone, v.on_duty, v.busy]));
  if (signature === S.lastVolunteers) return;
  S.lastVolunteers = signature;
  $('volunteers').replaceChildren(...(list.length ? list.map(volunteerRow) : [el('li', { class: 'ok', text: 'No volunteers yet: register the first one below.' })]));
  $('volunteer-count').textContent = String(list.length);
  volunteerFormHint();
}

/** Says so when the id typed is already registered: the form then updates. */
function volunteerFormHint() {
  const known = S.volunteers.get($('volunteer-id').value.trim());
  $('volunteer-submit').textContent = known ? 'Update' : 'Register';
  $('volunteer-known').textContent = known ? `${known.id} is already registered (${known.name}): this replaces their name and phone.` : '';
  $('volunteer-known').hidden = !known;
}

$('volunteer-id').addEventListener('input', volunteerFormHint);

$('volunteer-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const id = $('volunteer-id').value.trim();
  const name = $('volunteer-name').value.trim();
  const phone = $('volunteer-phone').value.trim();
  if (!id || !name) return;
  // A PUT replaces the whole profile: keep what this form does not show.
  const known = S.volunteers.get(id) || {};
  const body = { name, phone: phone || null, grid: known.grid ?? null, skills: known.skills ?? null };
  $('volunteer-submit').disabled = true;
  $('volunteer-error').hidden = true;
  try {
    const v = await api(S.token, 'PUT', `/v1/volunteers/${encodeURIComponent(id)}`, body);
    S.volunteers.set(v.id, v);
    $('volunteer-form').reset();
    renderVolunteers();
    volunteerFormHint();
    notice(`${v.name} is registered. Issue a token to sign their phone in.`, true);
    loadVolunteers();
  } catch (err) {
    $('volunteer-error').textContent = plainError(err, { id_taken: `That id cannot be a volunteer's: ${err.message}.`, ...OPERATOR_WORDS });
    $('volunteer-error').hidden = false;
  } finally {
    $('volunteer-submit').disabled = false;
  }
});

// ----- logins shown once: a volunteer's token, a band's or a gateway's MQTT secret -----

const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** A broker login as a band or a gateway is set up with; `band` is an id or `+`. */
function mqttSettings(username, password, band) {
  return `client id and user name: ${username}; password: ${password}; publish to wristbands/${band}/alert and wristbands/${band}/status; subscribe to wristbands/${band}/notify`;
}

/** Puts a band's or a gateway's login in the dialog. */
function showLogin({ username, password }, band) {
  $('login-username').value = username;
  $('login-password').value = password;
  $('login-settings').value = mqttSettings(username, password, band);
}

const NOT_AGAIN = 'It is shown only now: it cannot be shown again, only replaced.';

/**
 * What the dialog says and does for each login it issues. `path` is the POST
 * that makes one and `secret` the field of the answer that holds it; `show`
 * puts the answer in `fields` and says what the QR code holds (null: none).
 */
/** The copy button of a band's or gateway's login. */
const COPY_PASSWORD = {
  field: 'login-password',
  label: 'Copy password',
  done: 'Password copied.',
  failed: 'Could not copy: select the password and copy it by hand.',
};

const ISSUERS = {
  volunteer: {
    what: 'Sign-in for',
    question: 'Issue a new token? The current one stops working at once: a phone signed in with it will have to sign in again.',
    keep: 'Keep the current token',
    issue: 'Issue a new token',
    path: (id) => `/v1/volunteers/${encodeURIComponent(id)}/token`,
    secret: 'token',
    words: () => ({ 404: 'That volunteer is no longer registered.' }),
    hint: "Scan this with the volunteer's phone camera, or send them the link: it signs the volunteer page in. Keep it private; it is shown only now.",
    warning: '',
    fields: 'token-link-field',
    qr: 'QR code of the sign-in link',
    noQr: 'The link below works all the same.',
    copy: {
      field: 'token-link',
      label: 'Copy link',
      done: 'Copied. Paste it into a message to the volunteer.',
      failed: 'Could not copy: select the link and copy it by hand.',
    },
    show({ token }) {
      const link = `${location.origin}/volunteer#token=${encodeURIComponent(token)}`;
      $('token-link').value = link;
      return link;
    },
  },
  device: {
    what: 'MQTT secret for band',
    question: "Replace the band's secret? The old one stops working at once: a band still connected with it is disconnected, and must be set up again with the new one.",
    keep: 'Keep the current secret',
    issue: 'Issue a new secret',
    path: (id) => `/v1/devices/${encodeURIComponent(id)}/secret`,
    secret: 'password',
    words: (err) => ({
      404: 'No band is registered with this id: register it to its senior first.',
      id_taken: `That id cannot be a band's: ${err.message}.`,
    }),
    hint: "Set the band up with this login: scan the QR code with the installer's tool, or type the settings in. Keep it private.",
    warning: `${NOT_AGAIN} The band's old secret has stopped working: a band still connected with it was disconnected.`,
    fields: 'token-login',
    qr: "QR code of the band's MQTT login",
    noQr: 'The settings below work all the same.',
    copy: COPY_PASSWORD,
    show(login) {
      showLogin(login, login.username);
      return JSON.stringify({ mqtt_username: login.username, mqtt_password: login.password, client_id: login.username });
    },
  },
  gateway: {
    what: 'MQTT secret for gateway',
    question: 'Issue a secret for this gateway? If it has one, the old one stops working at once: a gateway still connected with it is disconnected. A new id registers a new gateway.',
    keep: 'Cancel',
    issue: 'Issue a secret',
    path: (id) => `/v1/gateways/${encodeURIComponent(id)}/secret`,
    secret: 'password',
    words: (err) => ({ id_taken: `That id cannot be a gateway's: ${err.message}.` }),
    hint: 'Set the gateway up with this login. Keep it private.',
    warning: `${NOT_AGAIN} The gateway's old secret, if it had one, has stopped working: a gateway still connected with it was disconnected.`,
    note: 'A gateway may publish to wristbands/+/alert and wristbands/+/status and read wristbands/+/notify: the topics of any band, nothing else.',
    fields: 'token-login',
    qr: null,
    noQr: '',
    copy: COPY_PASSWORD,
    show(login) {
      showLogin(login, '+');
      return null;
    },
  },
};

let issuing = null; // {kind, id} while the dialog is open

/** Opens the dialog, at its confirmation, for a login of `kind` (a key of ISSUERS). */
function openIssue(kind, id, label) {
  const how = ISSUERS[kind];
  issuing = { kind, id };
  $('token-dialog').classList.toggle('wide', how.fields === 'token-login');
  $('token-what').textContent = how.what;
  $('token-for').textContent = label;
  $('token-question').textContent = how.question;
  $('token-keep').textContent = how.keep;
  $('token-issue').textContent = how.issue;
  $('token-hint').textContent = how.hint;
  $('token-warning').textContent = how.warning;
  $('token-warning').hidden = !how.warning;
  $('token-qr').hidden = !how.qr;
  if (how.qr) $('token-qr').setAttribute('aria-label', how.qr);
  for (const fields of ['token-link-field', 'token-login']) $(fields).hidden = fields !== how.fields;
  $('login-note').textContent = how.note || '';
  $('login-note').hidden = !how.note;
  $('token-copy').textContent = how.copy.label;
  $('token-confirm').hidden = false;
  $('token-result').hidden = true;
  $('token-error').hidden = true;
  $('token-issue').disabled = false;
  $('token-dialog').showModal();
  $('token-keep').focus();
}

function openToken(id) {
  const v = S.volunteers.get(id);
  if (!v) return;
  openIssue('volunteer', id, v.name);
}

function openSecret(id) {
  const d = [...(S.devices.offline || []), ...(S.devices.low || [])].find((x) => x.device_id === id);
  const who = d && (seniorName(d.senior_id) || d.senior_id);
  openIssue('device', id, who ? `${id} · ${who}` : id);
}

/** The service's SVG as a node of this page (parsed as SVG, never as HTML). */
function svgNode(text) {
  const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
  const root = doc.documentElement;
  if (!root || root.localName !== 'svg' || doc.getElementsByTagName('parsererror').length) {
    throw new Error('the QR code could not be read');
  }
  return document.importNode(root, true);
}

/** Draws `text` as a QR code (the service renders it) while `job` is the dialog's. */
async function drawQr(job, text, otherwise) {
  $('token-qr').replaceChildren(el('p', { class: 'hint', text: 'Drawing the QR code…' }));
  try {
    const svgText = await apiText(S.token, 'POST', '/v1/qr', { text }, 'image/svg+xml');
    if (issuing === job) $('token-qr').replaceChildren(svgNode(svgText));
  } catch (err) {
    if (issuing === job) {
      $('token-qr').replaceChildren(el('p', { class: 'form-error', text: `No QR code: ${plainError(err, OPERATOR_WORDS)} ${otherwise}` }));
    }
  }
}

/** Drops what was issued: nothing of it is kept once the dialog is closed. */
function forgetIssued() {
  issuing = null;
  for (const field of ['token-link', 'login-username', 'login-password', 'login-settings']) $(field).value = '';
  $('token-qr').replaceChildren();
  $('token-copied').textContent = '';
}

function closeIssue() {
  forgetIssued();
  $('token-dialog').close();
}

$('token-keep').addEventListener('click', closeIssue);
$('token-done').addEventListener('click', closeIssue);
$('token-dialog-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const job = issuing;
  if (!job || $('token-confirm').hidden) return;
  const how = ISSUERS[job.kind];
  $('token-issue').disabled = true;
  let answer;
  try {
    answer = await api(S.token, 'POST', how.path(job.id));
    if (typeof (answer || {})[how.secret] !== 'string') throw new Error(`the answer holds no ${how.secret}`);
  } catch (err) {
    if (issuing !== job) return;
    $('token-error').textContent = plainError(err, { ...how.words(err), ...OPERATOR_WORDS });
    $('token-error').hidden = false;
    $('token-issue').disabled = false;
    return;
  }
  if (issuing !== job) return; // closed meanwhile: what was issued is dropped
  const qrText = how.show(answer);
  answer = null;
  $('token-copied').textContent = '';
  $('token-confirm').hidden = true;
  $('token-result').hidden = false;
  $(how.copy.field).focus();
  $(how.copy.field).select();
  if (qrText) drawQr(job, qrText, how.noQr);
});

$('token-copy').addEventListener('click', async () => {
  const how = issuing && ISSUERS[issuing.kind];
  const field = how && $(how.copy.field);
  if (!field || !field.value) return;
  let copied = false;
  try {
    await navigator.clipboard.writeText(field.value);
    copied = true;
  } catch {
    // no clipboard API (plain http on another host): the old way
    field.select();
    try {
      copied = document.execCommand('copy');
    } catch {
      copied = false;
    }
  }
  $('token-copied').textContent = copied ? how.copy.done : how.copy.failed;
});

// Also when it is closed with Esc.
$('token-dialog').addEventListener('close', () => {
  forgetIssued();
  loadVolunteers();
});

// ----- bands and gateways: an id typed in, then the dialog --------------------------

/** The form `${name}-form`: checks the id typed in `${name}-id`, then `open(id)`. */
function idForm(name, open) {
  const input = $(`${name}-id`);
  const error = $(`${name}-error`);
  $(`${name}-form`).addEventListener('submit', (e) => {
    e.preventDefault();
    const id = input.value.trim();
    let problem = '';
    if (!id) problem = `Type the ${name}'s id.`;
    else if (!ID_PATTERN.test(id)) problem = `A ${name} id is 1 to 64 letters (A–Z, a–z), digits, - or _, with no spaces or other signs.`;
    error.textContent = problem;
    error.hidden = !problem;
    if (problem) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } else {
      input.removeAttribute('aria-invalid');
      open(id);
    }
  });
  input.addEventListener('input', () => {
    error.hidden = true;
    input.removeAttribute('aria-invalid');
  });
}

idForm('band', openSecret);
idForm('gateway', (id) => openIssue('gateway', id, id));

// ----- go ------------------------------------------------------------------------

setInterval(tick, 1000);
if (S.token) start();
else showTokenPanel('');
