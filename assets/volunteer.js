// The volunteer's phone page (GET /volunteer): duty, location, offers and
// the alert they are on, with the volunteer's own token.
//
// The token comes from `?token=` or `#token=` (then kept and taken out of
// the address bar) or is pasted once; it stays in localStorage. GET /v1/me is read every
// 2 s: it carries the pending offers and the current alert. `#alert=<id>`
// (a tapped notification opens the page so) shows that offer. The service
// worker, the token kept for it and Web Push are in push.js.

import {
  ApiFailure,
  api,
  direction,
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
  tokenStore,
} from './common.js';
import { closeStaleNotifications, onWorkerMessage, pushSwitch, registerWorker } from './push.js';

const POLL_MS = 2000;
const RESEND_MS = 60000; // while sharing, the location is sent at least this often
const MOVED_M = 20; // …or as soon as the phone moved this far
const STALE_MS = 10 * 60 * 1000; // warn when the location is older than this

const $ = (id) => document.getElementById(id);
const tokens = tokenStore('onepress.volunteer_token');
const shareFlag = tokenStore('onepress.share_location');

const S = {
  token: tokens.get(),
  me: null,
  running: false,
  pollTimer: null,
  inFlight: false,
  acting: false,
  offersSig: '',
  seenOffers: new Set(),
  watchId: null,
  lastFix: null,
  lastSent: null,
  sentAt: 0,
  showAlert: '', // an alert to bring into view (`#alert=`, a tapped notification)…
  showAlertAt: 0, // …once /v1/me is read after this time
  meAt: 0, // when the /v1/me in `me` was asked for
  focused: '', // the offer shown so
};

const push = pushSwitch({ token: () => S.token, notice });

// ----- the token -----------------------------------------------------------------

// `?token=` (or `#token=`, which never reaches the server or its logs).
(function tokenFromUrl() {
  const url = new URL(window.location.href);
  const hash = new URLSearchParams(url.hash.slice(1));
  const t = url.searchParams.get('token') || hash.get('token');
  if (!t) return;
  tokens.set(t.trim());
  S.token = t.trim();
  url.searchParams.delete('token');
  hash.delete('token');
  const rest = hash.toString();
  history.replaceState(null, '', url.pathname + url.search + (rest ? `#${rest}` : ''));
})();

// `#alert=<id>`: a tapped notification opened the page on an offer.
function alertFromUrl() {
  const hash = new URLSearchParams(window.location.hash.slice(1));
  const id = hash.get('alert');
  if (!id) return;
  S.showAlert = id;
  S.showAlertAt = Date.now();
  hash.delete('alert');
  const rest = hash.toString();
  history.replaceState(null, '', window.location.pathname + window.location.search + (rest ? `#${rest}` : ''));
}
alertFromUrl();
window.addEventListener('hashchange', () => {
  alertFromUrl();
  poll();
});
onWorkerMessage((id) => {
  S.showAlert = id;
  S.showAlertAt = Date.now();
  poll();
});

/** A pasted token, or the token in a pasted sign-in link (`…/volunteer#token=…`). */
function tokenFromText(text) {
  const t = text.trim();
  const inLink = t.match(/[#?&]token=([^&#\s]+)/);
  if (!inLink) return t;
  try {
    return decodeURIComponent(inLink[1]);
  } catch {
    return inLink[1];
  }
}

function showTokenPanel(message) {
  stop();
  $('main').hidden = true;
  $('token-panel').hidden = false;
  setConn('wait', 'Not signed in');
  if (message) notice(message);
}

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const token = tokenFromText($('token-input').value);
  if (!token) return;
  tokens.set(token);
  S.token = token;
  $('token-input').value = '';
  clearNotice();
  start();
});

$('change-token').addEventListener('click', () => {
  push.signOut(S.token);
  tokens.clear();
  S.token = '';
  stopSharing();
  showTokenPanel('');
});

// ----- notices -------------------------------------------------------------------

function notice(text, ok = false) {
  $('notice-text').textContent = text;
  $('notice').classList.toggle('ok', ok);
  $('notice').hidden = false;
  window.scrollTo({ top: 0, behavior: 'smooth' });
}

function clearNotice() {
  $('notice').hidden = true;
}

$('notice-close').addEventListener('click', clearNotice);

function setConn(mode, text) {
  const pill = $('conn');
  pill.className = `pill ${{ live: 'pill-live', down: 'pill-down' }[mode] || 'pill-wait'}`;
  pill.textContent = text;
}

const VOLUNTEER_WORDS = {
  401: 'Token not recognised. Ask the community centre for a new one and paste it here.',
  403: 'This is not a volunteer token. Paste the token the community centre gave you.',
};

/** A refusal that means the token is no good: back to the token panel. */
function tokenTrouble(err) {
  if (err instanceof ApiFailure && err.status === 401) {
    tokens.clear();
    push.tokenLost();
    showTokenPanel(plainError(err, VOLUNTEER_WORDS));
    return true;
  }
  return false;
}

// ----- reading /v1/me --------------------------------------------------------------

async function poll() {
  if (!S.running || S.inFlight) return;
  S.inFlight = true;
  try {
    const asked = Date.now();
    S.me = await api(S.token, 'GET', '/v1/me');
    S.meAt = asked;
    setConn('live', 'Connected');
    render();
  } catch (err) {
    if (tokenTrouble(err)) return;
    if (err instanceof ApiFailure && err.status === 403) {
      tokens.clear();
      push.tokenLost();
      showTokenPanel(plainError(err, VOLUNTEER_WORDS));
      return;
    }
    setConn('down', err instanceof ApiFailure && err.status === 0 ? 'Offline, retrying' : 'Trouble, retrying');
  } finally {
    S.inFlight = false;
  }
}

function start() {
  stop();
  S.running = true;
  $('token-panel').hidden = true;
  $('main').hidden = false;
  setConn('wait', 'Connecting…');
  poll();
  S.pollTimer = setInterval(poll, POLL_MS);
  if (shareFlag.get() === 'on') startSharing();
  push.start();
}

function stop() {
  S.running = false;
  clearInterval(S.pollTimer);
  S.pollTimer = null;
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden) poll();
});

// ----- rendering ---------------------------------------------------------------------

function render() {
  const me = S.me;
  if (!me) return;
  $('me-name').textContent = me.name;
  renderOffers(me.offers || []);
  renderJob(me.current_alert);
  renderDuty(me);
  if (S.showAlert && S.meAt >= S.showAlertAt) showAlert();
  tick();
}

/** Brings the offer (or the alert being helped with) of `#alert=` or a tapped notification into view. */
function showAlert() {
  const id = S.showAlert;
  S.showAlert = '';
  const job = S.me.current_alert;
  const offer = (S.me.offers || []).find((o) => o.alert_id === id);
  if (offer) {
    S.focused = id;
    S.offersSig = '';
    renderOffers(S.me.offers);
    const card = document.querySelector(`.offer-card[data-alert-id="${CSS.escape(id)}"]`);
    if (card) card.scrollIntoView({ block: 'start', behavior: 'smooth' });
  } else if (job && job.id === id) {
    $('job').scrollIntoView({ block: 'start', behavior: 'smooth' });
  } else {
    notice('That offer is no longer open to you: it expired, or someone else took it.');
  }
}

function renderOffers(offers) {
  const sig = JSON.stringify(offers.map((o) => [o.alert_id, o.expires_at]));
  if (sig !== S.offersSig) {
    S.offersSig = sig;
    $('offers').replaceChildren(...offers.map(offerCard));
    closeStaleNotifications(offers.map((o) => o.alert_id));
  }
  const fresh = offers.filter((o) => !S.seenOffers.has(o.alert_id));
  for (const o of fresh) S.seenOffers.add(o.alert_id);
  if (fresh.length) callAttention();
  document.title = offers.length ? '● Help needed · onepress' : 'onepress · volunteer';
}

function offerCard(o) {
  const senior = o.senior || {};
  return el(
    'section',
    { class: `card offer-card${o.alert_id === S.focused ? ' focused' : ''}`, dataset: { alertId: o.alert_id } },
    el('p', { class: 'title', text: `Help needed: ${kindLabel(o.kind)}` }),
    el('p', { class: 'senior', text: senior.name || senior.id || 'A senior' }),
    senior.address && el('p', { text: senior.address }),
    senior.notes && el('p', { class: 'notes', text: senior.notes }),
    el(
      'div',
      { class: 'facts' },
      el('div', { class: 'fact' }, el('span', { class: 'k', text: 'Distance' }), el('span', { class: 'v', text: fmtDistance(o.distance_m) })),
      el('div', { class: 'fact' }, el('span', { class: 'k', text: 'On foot' }), el('span', { class: 'v', text: fmtEta(o.eta_s) })),
    ),
    el('p', { class: 'hint', text: `Pressed at ${fmtTime(o.pressed_at)}.` }),
    el('p', { class: 'expires', dataset: { until: o.expires_at, role: 'offer-countdown' } }),
    el('button', { class: 'btn btn-go big', type: 'button', dataset: { action: 'accept' }, text: 'Accept: I am going', onclick: () => accept(o) }),
    el('button', { class: 'btn big', type: 'button', dataset: { action: 'decline' }, text: 'Decline', onclick: () => decline(o) }),
  );
}

function renderJob(job) {
  $('job').hidden = !job;
  if (!job) return;
  const senior = job.senior || {};
  const name = senior.name || job.senior_id;
  $('job').dataset.alertId = job.id;
  $('job').dataset.state = job.state;
  const onScene = job.state === 'on_scene';
  $('job-title').textContent = onScene ? `You are with ${name}` : `You are on the way to ${name}`;
  $('job-senior').textContent = kindLabel(job.kind);
  $('job-address').textContent = senior.address || '';
  $('job-notes').hidden = !senior.notes;
  $('job-notes').textContent = senior.notes || '';
  const me = S.me;
  const from = S.lastFix || (me && me.lat != null ? { lat: me.lat, lon: me.lon } : null);
  $('job-where').textContent =
    !onScene && from && job.lat != null
      ? `About ${fmtDistance(haversine(from, job))} to the ${direction(from, job)} of your last known position.`
      : '';
  $('job-pressed').textContent = fmtTime(job.pressed_at);
  $('job-deadline-label').textContent = onScene ? 'Arrived at' : 'Be there within';
  const deadline = $('job-deadline');
  if (onScene) {
    delete deadline.dataset.until;
    deadline.textContent = fmtTime(job.on_scene_at);
  } else {
    deadline.dataset.until = job.arrival_deadline;
  }
  $('arrive').hidden = onScene;
  $('resolve-form').hidden = !onScene;
}

function renderDuty(me) {
  $('duty-status').replaceChildren(
    me.on_duty
      ? el('span', {}, el('strong', { class: 'on', text: 'You are on duty.' }), ' Offers can come to this phone.')
      : el('span', {}, el('strong', { class: 'off', text: 'You are off duty.' }), ' No offers will come.'),
  );
  const button = $('duty');
  button.disabled = S.acting;
  button.textContent = me.on_duty ? 'Go off duty' : 'Go on duty';
  button.className = `btn big ${me.on_duty ? '' : 'btn-go'}`;
  button.dataset.onDuty = String(me.on_duty);
}

/** Every second: countdowns and how old the location is. */
function tick() {
  for (const node of document.querySelectorAll('[data-until]')) {
    const left = Date.parse(node.dataset.until) - now();
    if (node.dataset.role === 'offer-countdown') {
      node.textContent = left > 0 ? `Answer within ${fmtClock(left)}` : 'Time is up for this offer';
      node.classList.toggle('urgent', left < 15000);
    } else {
      node.textContent = left > 0 ? fmtClock(left) : `late ${fmtClock(-left)}`;
    }
  }
  const me = S.me;
  if (me) {
    const status = $('loc-status');
    if (me.lat == null) {
      status.textContent = 'Not known yet. Offers need your location.';
    } else {
      const age = now() - Date.parse(me.location_at);
      status.textContent = `Last sent ${fmtAgo(me.location_at)} (${me.lat.toFixed(5)}, ${me.lon.toFixed(5)}).${age > STALE_MS ? ' This is getting old: share it again.' : ''}`;
    }
  }
}
setInterval(tick, 1000);

// ----- attention: a new offer ------------------------------------------------------------

let audio = null;

function unlockAudio() {
  try {
    audio = audio || new AudioContext();
    if (audio.state === 'suspended') audio.resume();
  } catch {
    audio = null;
  }
}
document.addEventListener('pointerdown', unlockAudio, { once: true });

function callAttention() {
  try {
    if (navigator.vibrate) navigator.vibrate([400, 150, 400]);
  } catch {
    // no vibration here
  }
  if (!audio || audio.state !== 'running') return;
  for (const [at, freq] of [[0, 880], [0.3, 660], [0.6, 880]]) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = freq;
    gain.gain.value = 0.15;
    osc.connect(gain).connect(audio.destination);
    osc.start(audio.currentTime + at);
    osc.stop(audio.currentTime + at + 0.2);
  }
}

// ----- actions -----------------------------------------------------------------------

/** Runs one action with the buttons held; plain words on failure. */
async function act(label, fn, words) {
  if (S.acting) return;
  S.acting = true;
  for (const b of document.querySelectorAll('button.big')) b.disabled = true;
  try {
    await fn();
  } catch (err) {
    if (!tokenTrouble(err)) notice(plainError(err, { ...words, 401: VOLUNTEER_WORDS[401] }));
  } finally {
    S.acting = false;
    for (const b of document.querySelectorAll('button.big')) b.disabled = false;
    S.offersSig = '';
    await poll();
  }
}

const path = (id, what) => `/v1/alerts/${encodeURIComponent(id)}/${what}`;

function accept(o) {
  const name = (o.senior && o.senior.name) || 'the senior';
  act(
    'accept',
    async () => {
      await api(S.token, 'POST', path(o.alert_id, 'accept'));
      notice(`You accepted. ${name} is waiting for you: please go now.`, true);
    },
    {
      403: 'This alert was never offered to you.',
      404: 'This alert is no longer there.',
      alert_closed: 'This alert is already closed: nobody needs to go.',
      offer_gone: 'This offer is no longer yours: it expired or someone else took it.',
      volunteer_busy: 'You are already on another alert.',
    },
  );
}

function decline(o) {
  act(
    'decline',
    async () => {
      await api(S.token, 'POST', path(o.alert_id, 'decline'));
      notice('Declined. The next volunteer is being asked.', true);
    },
    {
      offer_gone: 'This offer had already ended: nothing to decline.',
      alert_closed: 'This alert is already closed.',
    },
  );
}

$('arrive').addEventListener('click', () => {
  const job = S.me && S.me.current_alert;
  if (!job) return;
  act(
    'arrive',
    async () => {
      await api(S.token, 'POST', path(job.id, 'arrive'));
      notice('Thank you. Close the alert when you are done.', true);
    },
    {
      403: 'This alert is no longer yours: the centre sent someone else.',
      alert_closed: 'This alert is already closed.',
    },
  );
});

$('resolve-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const job = S.me && S.me.current_alert;
  if (!job) return;
  const outcome = $('outcome').value;
  const note = $('note').value.trim();
  act(
    'resolve',
    async () => {
      await api(S.token, 'POST', path(job.id, 'resolve'), note ? { outcome, note } : { outcome });
      $('note').value = '';
      notice('The alert is closed. Thank you for helping!', true);
    },
    {
      403: 'This alert is no longer yours: the centre sent someone else.',
      alert_closed: 'This alert was already closed by the centre.',
    },
  );
});

$('duty').addEventListener('click', () => {
  const goOn = !(S.me && S.me.on_duty);
  unlockAudio();
  act('duty', async () => {
    await api(S.token, 'PUT', '/v1/me/duty', { on_duty: goOn });
    const where = push.isOn() ? 'Offers appear here and as notifications on this phone.' : 'Keep this page open; offers appear here.';
    notice(goOn ? `You are on duty. ${where}` : 'You are off duty. Thank you!', true);
  });
});

// ----- location ------------------------------------------------------------------------

async function sendLocation(p) {
  await api(S.token, 'PUT', '/v1/me/location', { lat: p.lat, lon: p.lon });
  S.lastSent = p;
  S.sentAt = Date.now();
}

/** "30.5101, 120.6805" pasted in one box is split into the two. */
function parseCoordinate(text) {
  const t = text.trim().replace(/\s+/g, '');
  if (!/^[-+]?\d+([.,]\d+)?$/.test(t)) return NaN;
  return Number(t.replace(',', '.'));
}

$('lat').addEventListener('input', () => {
  const parts = $('lat').value.split(/[,;\s]+/).filter(Boolean);
  if (parts.length === 2 && parts.every((p) => /^[-+]?\d+(\.\d+)?$/.test(p))) {
    $('lat').value = parts[0];
    $('lon').value = parts[1];
  }
});

$('manual-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const lat = parseCoordinate($('lat').value);
  const lon = parseCoordinate($('lon').value);
  if (!(lat >= -90 && lat <= 90) || !(lon >= -180 && lon <= 180)) {
    notice('Please enter a latitude between -90 and 90 and a longitude between -180 and 180, e.g. 30.5101 and 120.6805.');
    return;
  }
  if (S.watchId !== null) stopSharing();
  S.lastFix = { lat, lon };
  act('location', async () => {
    await sendLocation({ lat, lon });
    notice('Location saved.', true);
  });
});

$('share').addEventListener('click', () => {
  unlockAudio();
  if (S.watchId !== null) stopSharing();
  else startSharing(true);
});

let resendTimer = null;

function startSharing(asked = false) {
  if (!('geolocation' in navigator)) {
    if (asked) notice('This browser cannot share its location. Enter it by hand below.');
    return;
  }
  if (!window.isSecureContext) {
    if (asked) notice('The browser shares location only over a secure (https) address. Enter it by hand below.');
    return;
  }
  shareFlag.set('on');
  $('share').textContent = 'Stop sharing my location';
  $('share-status').textContent = 'Waiting for the phone to find its position…';
  S.watchId = navigator.geolocation.watchPosition(onFix, onFixError, {
    enableHighAccuracy: true,
    maximumAge: 10000,
    timeout: 60000,
  });
  clearInterval(resendTimer);
  resendTimer = setInterval(() => {
    if (S.lastFix && Date.now() - S.sentAt > RESEND_MS) sendFix(S.lastFix);
  }, 5000);
}

function stopSharing() {
  if (S.watchId !== null && navigator.geolocation) navigator.geolocation.clearWatch(S.watchId);
  S.watchId = null;
  clearInterval(resendTimer);
  shareFlag.clear();
  $('share').textContent = 'Share my location';
  $('share-status').textContent = '';
}

function onFix(pos) {
  const fix = { lat: pos.coords.latitude, lon: pos.coords.longitude, accuracy: pos.coords.accuracy };
  S.lastFix = fix;
  $('share-status').textContent = `Sharing: accurate to about ${fmtDistance(fix.accuracy)}.`;
  const moved = S.lastSent ? haversine(S.lastSent, fix) : Infinity;
  if (moved >= MOVED_M || Date.now() - S.sentAt > RESEND_MS) sendFix(fix);
}

async function sendFix(fix) {
  try {
    await sendLocation(fix);
  } catch (err) {
    if (!tokenTrouble(err)) $('share-status').textContent = `Could not send the location: ${plainError(err)}`;
  }
}

function onFixError(err) {
  const why =
    {
      1: 'Location permission was refused. Allow it in the browser settings, or enter your position below.',
      2: 'The phone cannot find its position right now. It keeps trying; or enter it below.',
      3: 'Finding the position takes long. It keeps trying; or enter it below.',
    }[err.code] || 'The position is not available. Enter it below.';
  if (err.code === 1) {
    stopSharing();
    notice(why);
  }
  $('share-status').textContent = why;
}

// ----- go ----------------------------------------------------------------------------

registerWorker();
if (S.token) start();
else showTokenPanel('');
