// The volunteer page's service worker: GET /volunteer-sw.js, registered by
// the page with the scope /volunteer (the dashboard at / is not its
// business). It does three things:
// - the offline shell: the page and its files are cached when it installs
//   and refreshed each time they load; with no network the cached page
//   opens and says that it is offline (the API is never cached);
// - Web Push (docs/notifications.md): each offer the service pushes is
//   shown as a notification with "Accept" and "Decline";
// - answers from the notification without opening the page, with the
//   volunteer's token, which the page keeps in IndexedDB for it (and
//   removes when the volunteer signs out).
// A classic script, not a module: every browser with Web Push runs it.

'use strict';

const CACHE = 'onepress-volunteer-v1';
const SHELL = [
  '/volunteer',
  '/assets/onepress.css',
  '/assets/common.js',
  '/assets/push.js',
  '/assets/volunteer.js',
  '/assets/volunteer.webmanifest',
  '/assets/icons/volunteer-192.png',
  '/assets/icons/badge-96.png',
];
const ICON = '/assets/icons/volunteer-192.png';
const BADGE = '/assets/icons/badge-96.png';
const VIBRATE = [400, 150, 400, 150, 400];

// ----- the offline shell ---------------------------------------------------------

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL.map((path) => new Request(path, { cache: 'no-cache' }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith('onepress-volunteer-') && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

/** The cache entry a request may fall back to, or null (not the shell's). */
function shellEntry(request) {
  if (request.method !== 'GET') return null;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return null;
  // `/volunteer?token=…` and `/volunteer#…` are the same page.
  if (request.mode === 'navigate') return url.pathname === '/volunteer' ? '/volunteer' : null;
  return SHELL.includes(url.pathname) ? url.pathname : null;
}

// The network first, so that a new release shows at once (the files are
// served `no-cache`); the cached copy only when the network fails.
self.addEventListener('fetch', (event) => {
  const entry = shellEntry(event.request);
  if (!entry) return; // the API and anything else: the browser as usual
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const response = await fetch(event.request);
        if (response.ok) await cache.put(entry, response.clone());
        return response;
      } catch (err) {
        const cached = await cache.match(entry);
        if (cached) return cached;
        throw err;
      }
    })(),
  );
});

// ----- the volunteer's token (the page writes it, this worker reads it) -----------------------

const DB = 'onepress';
const STORE = 'keyval';
const TOKEN_KEY = 'volunteer_token';

/** Runs one request on the key-value store; resolves to its result. */
function keyval(mode, fn) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DB, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction(STORE, mode);
      const request = fn(tx.objectStore(STORE));
      tx.oncomplete = () => {
        db.close();
        resolve(request.result);
      };
      tx.onerror = tx.onabort = () => {
        db.close();
        reject(tx.error);
      };
    };
  });
}

async function storedToken() {
  try {
    return (await keyval('readonly', (s) => s.get(TOKEN_KEY))) || '';
  } catch {
    return '';
  }
}

// ----- words (as on the page) -------------------------------------------------------------

function kindLabel(kind) {
  return { sos: 'SOS button', fall: 'Fall detected' }[kind] || kind || 'Alert';
}

function fmtDistance(m) {
  if (typeof m !== 'number' || Number.isNaN(m)) return '?';
  if (m < 1000) return `${Math.round(m)} m`;
  return `${(m / 1000).toFixed(m < 10000 ? 1 : 0)} km`;
}

function fmtEta(seconds) {
  if (typeof seconds !== 'number') return '?';
  return seconds < 60 ? 'under a minute' : `about ${Math.round(seconds / 60)} min`;
}

function fmtTime(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  return new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

// ----- an offer, pushed -------------------------------------------------------------------

self.addEventListener('push', (event) => {
  event.waitUntil(onPush(event.data));
});

async function onPush(data) {
  let message = null;
  try {
    message = data ? data.json() : null;
  } catch {
    message = null;
  }
  if (message && message.type === 'offer' && message.alert_id) return showOffer(message);
  // Something else: a push must always show something.
  return self.registration.showNotification('onepress', {
    body: (message && message.text) || 'Open the page to see what is new.',
    tag: 'onepress',
    icon: ICON,
    badge: BADGE,
  });
}

/** The notification for an offer: its title and options. */
function offerNotification(offer) {
  const senior = offer.senior || {};
  const name = senior.name || senior.id || 'a senior';
  const lines = [`${kindLabel(offer.kind)} · ${fmtDistance(offer.distance_m)} away, ${fmtEta(offer.eta_s)} on foot`];
  if (senior.address) lines.push(senior.address);
  const by = fmtTime(offer.expires_at);
  if (by) lines.push(`Answer by ${by}`);
  return {
    title: `Help needed: ${name}`,
    options: {
      body: lines.join('\n'),
      tag: offer.alert_id, // the same offer again replaces it
      renotify: true,
      requireInteraction: true,
      vibrate: VIBRATE,
      icon: ICON,
      badge: BADGE,
      data: offer,
      actions: [
        { action: 'accept', title: 'Accept' },
        { action: 'decline', title: 'Decline' },
      ],
    },
  };
}

function showOffer(offer) {
  const { title, options } = offerNotification(offer);
  return self.registration.showNotification(title, options);
}

/** A short notification in place of the offer's (same tag), without buttons. */
function say(offer, title, body, answered) {
  return self.registration.showNotification(title, {
    body,
    tag: offer.alert_id,
    icon: ICON,
    badge: BADGE,
    data: { ...offer, answered },
  });
}

// ----- a click on it: Accept, Decline, or the notification itself ----------------------------

self.addEventListener('notificationclick', (event) => {
  event.waitUntil(onNotificationClick(event.action, event.notification));
});

/**
 * What a click does. `action` is 'accept', 'decline' or '' (the body).
 * Resolves to what happened (for the browser test, which calls it too).
 */
async function onNotificationClick(action, notification) {
  const offer = notification.data || {};
  if (offer.alert_id && !offer.answered && (action === 'accept' || action === 'decline')) {
    // Left up while the answer is sent; then replaced by what happened (same
    // tag), or closed when there is nothing to say. (Closing first could
    // close the replacement too: a close and a show of one tag may cross.)
    const outcome = await answer(action, offer);
    if (outcome === 'declined' || outcome === 'nothing_to_decline') notification.close();
    return outcome;
  }
  notification.close();
  return openPage(offer.alert_id);
}

const REFUSED = {
  offer_gone: ['This offer is no longer yours', 'It expired or someone else took it. You do not need to go.'],
  alert_closed: ['This alert is already closed', 'Nobody needs to go.'],
  volunteer_busy: ['You are already on another alert', 'Tap to open the page.'],
  401: ['Sign in again', 'The token on this phone no longer works. Tap to open the page.'],
  403: ['This alert was not offered to you', 'Tap to open the page.'],
  404: ['This alert is no longer there', 'Nobody needs to go.'],
};

/** POSTs accept or decline with the stored token, and says how it went. */
async function answer(what, offer) {
  const senior = offer.senior || {};
  const token = await storedToken();
  if (!token) {
    await say(offer, 'Open the page to answer', 'This phone is not signed in. Tap to open the page.', 'no_token');
    return 'no_token';
  }
  let response;
  try {
    response = await fetch(`/v1/alerts/${encodeURIComponent(offer.alert_id)}/${what}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
      cache: 'no-store',
    });
  } catch {
    await say(offer, 'Your answer was not sent', 'The service cannot be reached. Tap to open the page and answer there.', 'unsent');
    return 'unreachable';
  }
  if (response.ok) {
    if (what === 'decline') return 'declined';
    const where = senior.address || senior.name || 'the senior';
    await say(offer, `You accepted — ${where}`, `${senior.name || 'The senior'} is waiting for you: please go now. Tap for the details.`, 'accepted');
    return 'accepted';
  }
  let code = '';
  try {
    code = ((await response.json()).error || {}).code || '';
  } catch {
    code = '';
  }
  // Declining an offer that already ended: nothing to say.
  if (what === 'decline' && code === 'offer_gone') return 'nothing_to_decline';
  const [title, body] = REFUSED[code] ||
    REFUSED[response.status] || ['Your answer was not taken', `The service answered ${response.status}. Tap to open the page.`];
  await say(offer, title, body, 'refused');
  return code || `http_${response.status}`;
}

/** Shows the page on this alert: an open one is told and focused, else one is opened. */
async function openPage(alertId) {
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const page = windows.find((c) => new URL(c.url).pathname === '/volunteer');
  if (page) {
    if (alertId) page.postMessage({ type: 'show-alert', alert_id: alertId });
    try {
      await page.focus();
    } catch {
      // focus() is allowed only while a click is being handled
    }
    return 'focused';
  }
  await self.clients.openWindow(alertId ? `/volunteer#alert=${encodeURIComponent(alertId)}` : '/volunteer');
  return 'opened';
}

// ----- the push service renewed the subscription: hand the new one over ------------------------

self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil(renew(event.oldSubscription, event.newSubscription));
});

function base64UrlBytes(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

async function renew(oldSubscription, newSubscription) {
  const token = await storedToken();
  if (!token) return;
  let subscription = newSubscription;
  if (!subscription) {
    const { public_key: key } = await (await fetch('/v1/push/key', { cache: 'no-store' })).json();
    subscription = await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64UrlBytes(key) });
  }
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  await fetch('/v1/me/push', { method: 'POST', headers, body: JSON.stringify(subscription.toJSON()) });
  if (oldSubscription && oldSubscription.endpoint !== subscription.endpoint) {
    await fetch('/v1/me/push', { method: 'DELETE', headers, body: JSON.stringify({ endpoint: oldSubscription.endpoint }) });
  }
}

// For the browser test (tests/browser/push.test.js): the same functions the
// events call, since a test cannot click a notification of the system.
self.onepress = { onPush, onNotificationClick, offerNotification, storedToken };
