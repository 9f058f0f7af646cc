// The volunteer page and its service worker (/volunteer-sw.js): the worker
// is registered for the offline shell; the volunteer's token is put where
// the worker can read it (IndexedDB) so that it can answer an offer from a
// notification; and "Notify me on this phone" turns Web Push on and off
// (docs/notifications.md): permission, GET /v1/push/key, the browser's
// subscription, POST /v1/me/push; DELETE /v1/me/push to turn it off.

import { ApiFailure, api, plainError, tokenStore } from './common.js';

const WORKER = '/volunteer-sw.js';
const SCOPE = '/volunteer';
const SUBSCRIBE_TIMEOUT_MS = 30000;
// 'on' once this browser's subscription was handed to the service.
const pushFlag = tokenStore('onepress.push');

// ----- the token, for the worker (the same store as in the worker) ---------------------------

const DB = 'onepress';
const STORE = 'keyval';
const TOKEN_KEY = 'volunteer_token';

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

/** Keeps the token for the worker (nothing happens where IndexedDB is missing). */
export async function rememberToken(token) {
  try {
    await keyval('readwrite', (s) => s.put(token, TOKEN_KEY));
  } catch {
    // no IndexedDB (private mode): the worker cannot answer for the page
  }
}

export async function forgetToken() {
  try {
    await keyval('readwrite', (s) => s.delete(TOKEN_KEY));
  } catch {
    // nothing kept, nothing to forget
  }
}

// ----- the worker ------------------------------------------------------------------------

let registering = null;

/** Registers the worker once; resolves to its registration, or null where there is none. */
export function registerWorker() {
  if (!registering) {
    registering =
      window.isSecureContext && 'serviceWorker' in navigator
        ? navigator.serviceWorker
            .register(WORKER, { scope: SCOPE, updateViaCache: 'none' })
            // offline, the worker's script cannot be checked: the one installed serves
            .catch(() => navigator.serviceWorker.getRegistration(SCOPE).then((r) => r || null))
        : Promise.resolve(null);
  }
  return registering;
}

/** Calls `onShow(alertId)` when the worker asks the page to show an alert (a tapped notification). */
export function onWorkerMessage(onShow) {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.addEventListener('message', (event) => {
    const m = event.data || {};
    if (m.type === 'show-alert' && m.alert_id) onShow(String(m.alert_id));
  });
}

// Offers this page has seen pending: only those can have ended since.
const seenPending = new Set();

/**
 * Closes the offer notifications of offers no longer pending (answered
 * here, expired, taken). An offer the page has not seen pending yet is left
 * alone unless it has expired: its push may be newer than the page's list.
 */
export async function closeStaleNotifications(pendingIds) {
  const registration = await registerWorker();
  if (!registration || !registration.getNotifications) return;
  try {
    for (const n of await registration.getNotifications()) {
      const data = n.data || {};
      if (data.type !== 'offer' || data.answered || pendingIds.includes(data.alert_id)) continue;
      const ended = seenPending.has(data.alert_id);
      const expired = data.expires_at && Date.parse(data.expires_at) < Date.now();
      if (ended || expired) n.close();
    }
  } catch {
    // notifications not readable here
  } finally {
    for (const id of pendingIds) seenPending.add(id);
  }
}

// ----- "Notify me on this phone" ----------------------------------------------------------

const WORDS = {
  on: ['On: offers reach this phone even when this page is closed.', 'Turn notifications off'],
  off: ['Off: offers show only while this page is open.', 'Notify me on this phone'],
  working: ['One moment…', ''],
  blocked: [
    'Blocked: this browser refuses notifications from this page. Allow them in the site settings of the browser, then reload the page.',
    '',
  ],
  'install-first': [
    'On an iPhone or iPad, add this page to the Home Screen first (Share, then Add to Home Screen), open it from there, and turn notifications on there.',
    '',
  ],
  insecure: ['Notifications need the page on a secure (https) address.', ''],
  unsupported: ['This browser cannot notify you while the page is closed. Keep the page open while you are on duty.', ''],
};

const isApple = () => /iPhone|iPad|iPod/.test(navigator.userAgent) || (navigator.platform === 'MacIntel' && navigator.maxTouchPoints > 1);
const installed = () => navigator.standalone === true || window.matchMedia('(display-mode: standalone)').matches;

function base64UrlBytes(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function sameKey(a, b) {
  if (!a) return false;
  const x = new Uint8Array(a);
  return x.length === b.length && x.every((v, i) => v === b[i]);
}

function withTimeout(promise, ms) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new DOMException('no answer from the push service', 'TimeoutError')), ms)),
  ]);
}

async function subscription() {
  const registration = await registerWorker();
  return registration ? registration.pushManager.getSubscription() : null;
}

/**
 * The push card of the page: `#push` (its `data-state` is one of the keys
 * of WORDS), `#push-status` and `#push-toggle`. `token()` is the current
 * token; `notice(text, ok)` tells the volunteer.
 */
export function pushSwitch({ token, notice }) {
  const $ = (id) => document.getElementById(id);
  let state = 'off';

  function show(next) {
    state = next;
    const [status, button] = WORDS[next];
    $('push').dataset.state = next;
    $('push-status').textContent = status;
    $('push-toggle').hidden = !button;
    $('push-toggle').textContent = button;
    $('push-toggle').className = `btn big ${next === 'off' ? 'btn-primary' : ''}`;
  }

  async function current() {
    if (!window.isSecureContext) return 'insecure';
    if (!('serviceWorker' in navigator) || !('PushManager' in window) || !('Notification' in window)) {
      return isApple() && !installed() ? 'install-first' : 'unsupported';
    }
    if (Notification.permission === 'denied') return 'blocked';
    const registration = await registerWorker();
    if (!registration) return 'unsupported';
    const sub = await registration.pushManager.getSubscription();
    return sub && pushFlag.get() === 'on' && Notification.permission === 'granted' ? 'on' : 'off';
  }

  async function refresh() {
    try {
      show(await current());
    } catch {
      show('unsupported');
    }
  }

  /** Turns push on: this must run from the click (the permission prompt needs it). */
  async function enable() {
    show('working');
    try {
      const permission = await Notification.requestPermission();
      if (permission !== 'granted') {
        notice(
          permission === 'denied'
            ? 'Notifications are blocked for this page. Allow them in the site settings of the browser.'
            : 'Notifications were not allowed. Press the button again to be asked again.',
        );
        return;
      }
      const registration = await registerWorker();
      if (!registration) throw new DOMException('no service worker', 'NotSupportedError');
      const { public_key: publicKey } = await api('', 'GET', '/v1/push/key');
      const key = base64UrlBytes(publicKey);
      let sub = await registration.pushManager.getSubscription();
      if (sub && !sameKey(sub.options && sub.options.applicationServerKey, key)) {
        await sub.unsubscribe();
        sub = null;
      }
      if (!sub) {
        sub = await withTimeout(registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }), SUBSCRIBE_TIMEOUT_MS);
      }
      await api(token(), 'POST', '/v1/me/push', sub.toJSON());
      pushFlag.set('on');
      notice('Notifications are on: offers reach this phone even when this page is closed.', true);
    } catch (err) {
      notice(
        err instanceof ApiFailure
          ? `Notifications could not be turned on: ${plainError(err)}`
          : `This browser could not sign up for notifications (${err && err.message ? err.message : err}). Keep this page open while you are on duty, and try again later.`,
      );
    } finally {
      await refresh();
    }
  }

  /** Turns push off here and at the service (`quiet`: say nothing). */
  async function disable(quiet = false, withToken = token()) {
    show('working');
    try {
      const sub = await subscription();
      if (sub) {
        if (withToken) {
          try {
            await api(withToken, 'DELETE', '/v1/me/push', { endpoint: sub.endpoint });
          } catch {
            // unsubscribed below all the same: the push service then
            // answers 410 and the service drops it
          }
        }
        await sub.unsubscribe();
      }
      pushFlag.clear();
      if (!quiet) notice('Notifications are off. Offers show only while this page is open.', true);
    } catch (err) {
      if (!quiet) notice(`Notifications could not be turned off (${err && err.message ? err.message : err}).`);
    } finally {
      await refresh();
    }
  }

  $('push-toggle').addEventListener('click', () => {
    if (state === 'on') disable();
    else if (state === 'off') enable();
  });

  return {
    isOn: () => state === 'on',
    /** The token is known: keep it for the worker, and tell the service this browser's subscription again. */
    async start() {
      await rememberToken(token());
      await refresh();
      if (state !== 'on') return;
      try {
        await api(token(), 'POST', '/v1/me/push', (await subscription()).toJSON());
      } catch {
        // told again at the next start
      }
    },
    /** Signing out (`oldToken` still works): no more offers here for that volunteer. */
    async signOut(oldToken) {
      await forgetToken();
      await disable(true, oldToken);
    },
    /** The token stopped working: forget it, and stop this browser's subscription. */
    async tokenLost() {
      await forgetToken();
      await disable(true, '');
    },
  };
}
