// The volunteer page as an installed web app, in Debian's headless
// Chromium: its service worker, the token it keeps for the worker, "Notify
// me on this phone", the offline shell, and an offer pushed while the page
// is closed, shown as a notification whose Accept accepts it.
//
// Two stand-ins, because this machine reaches no browser push service:
// - The browser's own push subscription (`pushManager.subscribe`, which
//   needs Google's push service) is replaced in the page by one whose
//   endpoint is a push service this test runs on 127.0.0.1 (the service is
//   started with ONEPRESS_PUSH_ALLOW_LOOPBACK=true), with keys the test
//   made, so it can decrypt (RFC 8291) what the service pushes.
// - The push message reaches the service worker through the DevTools
//   Protocol (`ServiceWorker.deliverPushMessage`), as DevTools' own "Push"
//   button does, with the payload the service sent.
// A notification of the system cannot be clicked from a test either, so the
// test calls the worker's own click handler (`self.onepress.onNotificationClick`,
// the function its `notificationclick` listener calls) with the shown
// notification and the action.
//
// Environment: as pages.test.js (set by .ci/browser.sh).

import assert from 'node:assert/strict';
import { createDecipheriv, createECDH, hkdfSync, randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, test } from 'node:test';

import mqtt from 'mqtt';
import { chromium } from 'playwright-core';

const BASE = process.env.ONEPRESS_BASE || 'http://127.0.0.1:8080';
const OPERATOR = process.env.ONEPRESS_OPERATOR_TOKEN;
const MQTT_PORT = Number(process.env.ONEPRESS_MQTT_PORT || 1884);
const MQTT_ADMIN = process.env.ONEPRESS_MQTT_ADMIN || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 15000;

// Hangzhou, about 50 km from the Lotus Lane of pages.test.js: nobody there
// is near enough to be offered these alerts.
const CHEN = { lat: 30.2741, lon: 120.1551 };
const JUN_AT = { lat: 30.2755, lon: 120.1562 };

async function call(method, path, token, body) {
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  const json = text ? JSON.parse(text) : null;
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return json;
}

const op = (method, path, body) => call(method, path, OPERATOR, body);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

// ----- a push service on 127.0.0.1 ------------------------------------------------------------

/** Takes every push the service sends (answering 201) and keeps it. */
async function localPushService() {
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(201).end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${server.address().port}/push/phone-1`,
    /** The next push received after `seen` of them. */
    next: (seen) => until('a push from the service', () => received[seen]),
    count: () => received.length,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A browser's side of a subscription: its P-256 key pair and its auth secret. */
function browserKeys() {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return { ecdh, auth: randomBytes(16) };
}

/** Decrypts a Web Push message (RFC 8291, aes128gcm of RFC 8188, one record). */
function decrypt(body, { ecdh, auth }) {
  const salt = body.subarray(0, 16);
  const recordSize = body.readUInt32BE(16);
  const idLength = body[20];
  const serverKey = body.subarray(21, 21 + idLength);
  const record = body.subarray(21 + idLength);
  assert.ok(record.length <= recordSize, 'one record');
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), ecdh.getPublicKey(), serverKey]);
  const ikm = Buffer.from(hkdfSync('sha256', ecdh.computeSecret(serverKey), auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const decipher = createDecipheriv('aes-128-gcm', cek, nonce);
  decipher.setAuthTag(record.subarray(record.length - 16));
  const plain = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
  let end = plain.length - 1;
  while (end >= 0 && plain[end] === 0) end--;
  assert.equal(plain[end], 2, 'the last record ends with the delimiter 2');
  return plain.subarray(0, end).toString('utf8');
}

/**
 * Runs in the page before its scripts: `pushManager.subscribe` hands out a
 * subscription to the test's push service (kept in localStorage, so that
 * it outlives a reload), as a browser with a push service would.
 */
function fakePushManager({ endpoint, p256dh, auth }) {
  const KEY = 'test.push_subscription';
  const make = (key) => ({
    endpoint,
    expirationTime: null,
    options: { userVisibleOnly: true, applicationServerKey: new Uint8Array(key).buffer },
    toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh, auth } }),
    unsubscribe: async () => {
      localStorage.removeItem(KEY);
      return true;
    },
  });
  PushManager.prototype.subscribe = async function subscribe(options) {
    if (options.userVisibleOnly !== true) throw new DOMException('userVisibleOnly is required', 'NotAllowedError');
    const key = Array.from(new Uint8Array(options.applicationServerKey));
    localStorage.setItem(KEY, JSON.stringify(key));
    return make(key);
  };
  PushManager.prototype.getSubscription = async function getSubscription() {
    const key = localStorage.getItem(KEY);
    return key ? make(JSON.parse(key)) : null;
  };
}

// ----- the browser -----------------------------------------------------------------------

let browser;
let broker;

before(async () => {
  assert.ok(OPERATOR, 'ONEPRESS_OPERATOR_TOKEN is set');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const admin = MQTT_ADMIN.indexOf(':');
  broker = await mqtt.connectAsync(`mqtt://127.0.0.1:${MQTT_PORT}`, {
    clientId: `browser-push-test-${process.pid}`,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    ...(admin > 0 ? { username: MQTT_ADMIN.slice(0, admin), password: MQTT_ADMIN.slice(admin + 1) } : {}),
  });
});

after(async () => {
  if (broker) await broker.endAsync();
  if (browser) await browser.close();
});

/** A page failing the test on a script error or a request to another host. */
async function watched(page, problems) {
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('request', (r) => {
    const url = new URL(r.url());
    if (url.origin !== BASE && url.protocol !== 'data:' && url.href !== 'about:blank') problems.push(`request to another host: ${r.url()}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource|ERR_INTERNET_DISCONNECTED/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return page;
}

async function press(device, event, position) {
  const payload = { event_id: event, kind: 'sos', ts: new Date().toISOString(), ...position, battery: 80 };
  await broker.publishAsync(`wristbands/${device}/alert`, JSON.stringify(payload), { qos: 1 });
}

const activeAlertOf = (device) =>
  until(`an active alert of ${device}`, async () => (await op('GET', '/v1/alerts?state=active')).find((a) => a.device_id === device));

/** The offer of that alert as GET /v1/me lists it. */
const offerOf = (token, alertId) =>
  until(`the offer of ${alertId}`, async () => (await call('GET', '/v1/me', token)).offers.find((o) => o.alert_id === alertId));

/** What the service pushed for that alert: checked, decrypted, parsed. */
async function pushedOffer(service, seen, keys, publicKey, alertId) {
  const pushed = await service.next(seen);
  assert.equal(pushed.method, 'POST');
  assert.equal(pushed.url, '/push/phone-1');
  assert.equal(pushed.headers['content-encoding'], 'aes128gcm');
  assert.equal(pushed.headers.urgency, 'high');
  assert.ok(Number(pushed.headers.ttl) > 0, `a TTL: ${pushed.headers.ttl}`);
  assert.match(pushed.headers.authorization, new RegExp(`^vapid t=[\\w-]+\\.[\\w-]+\\.[\\w-]+, k=${publicKey}$`));
  const text = decrypt(pushed.body, keys);
  const offer = JSON.parse(text);
  assert.equal(offer.type, 'offer');
  assert.equal(offer.alert_id, alertId);
  return { text, offer };
}

/** The notifications the worker shows now (as the page or the worker sees them). */
function shownIn(worker) {
  return worker.evaluate(async () =>
    (await self.registration.getNotifications()).map((n) => ({
      title: n.title,
      body: n.body,
      tag: n.tag,
      data: n.data,
      requireInteraction: n.requireInteraction,
      renotify: n.renotify,
      vibrate: Array.from(n.vibrate || []),
      actions: n.actions.map((a) => ({ action: a.action, title: a.title })),
    })),
  );
}

/** Clicks a shown notification as the system would: the worker's own handler, with `action`. */
function click(worker, tag, action) {
  return worker.evaluate(
    async ([t, a]) => {
      const [n] = await self.registration.getNotifications({ tag: t });
      if (!n) throw new Error(`no notification ${t}`);
      return self.onepress.onNotificationClick(a, n);
    },
    [tag, action],
  );
}

test('an offer pushed to the installed page: a notification whose Accept accepts it with the page closed', async (t) => {
  // ---- the registry, and a volunteer on duty near Chen Hua ---------------------------------------
  await op('PUT', '/v1/seniors/s-hz1', { name: 'Chen Hua', address: '8 Osmanthus Road', home: CHEN, notes: 'Ring twice.' });
  await op('PUT', '/v1/devices/band-hz1', { senior_id: 's-hz1' });
  await op('PUT', '/v1/volunteers/v-chen', { name: 'Chen Jun' });
  const token = (await op('POST', '/v1/volunteers/v-chen/token')).token;
  await call('PUT', '/v1/me/location', token, JUN_AT);
  await call('PUT', '/v1/me/duty', token, { on_duty: true });
  const publicKey = (await (await fetch(`${BASE}/v1/push/key`)).json()).public_key;

  // ---- the installable page: manifest and icons ----------------------------------------------------
  const manifest = await (await fetch(`${BASE}/assets/volunteer.webmanifest`)).json();
  assert.equal(manifest.start_url, '/volunteer');
  assert.equal(manifest.display, 'standalone');

  // Closed even when the test fails (an open server would keep node --test running).
  const service = await localPushService();
  t.after(() => service.close());
  const keys = browserKeys();
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  t.after(() => context.close());
  await context.grantPermissions(['notifications'], { origin: BASE });
  await context.addInitScript(fakePushManager, { endpoint: service.endpoint, p256dh: b64url(keys.ecdh.getPublicKey()), auth: b64url(keys.auth) });
  const problems = [];
  // A page of the origin that stays open all along: it holds the DevTools
  // session that pushes, while the volunteer page itself is closed.
  const holder = await watched(await context.newPage(), problems);
  await holder.goto(`${BASE}/healthz`);
  const devtools = await context.newCDPSession(holder);
  const registrations = new Map(); // scope → registration id
  devtools.on('ServiceWorker.workerRegistrationUpdated', ({ registrations: list }) => {
    for (const r of list) {
      if (r.isDeleted) registrations.delete(r.scopeURL);
      else registrations.set(r.scopeURL, r.registrationId);
    }
  });
  await devtools.send('ServiceWorker.enable');

  // ---- Chen Jun opens the sign-in link: the worker is installed -----------------------------------
  let page = await watched(await context.newPage(), problems);
  const requests = [];
  page.on('request', (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}`));
  await page.goto(`${BASE}/volunteer#token=${token}`);
  await page.locator('#me-name', { hasText: 'Chen Jun' }).waitFor({ timeout: WAIT });
  const manifestLink = await page.getAttribute('link[rel="manifest"]', 'href');
  assert.equal(manifestLink, '/assets/volunteer.webmanifest');
  const scope = await page.evaluate(async () => (await navigator.serviceWorker.ready).scope);
  assert.equal(scope, `${BASE}/volunteer`);
  const worker = await until('the service worker', () => context.serviceWorkers().find((w) => w.url() === `${BASE}/volunteer-sw.js`));
  const registrationId = await until('the registration (DevTools)', () => registrations.get(`${BASE}/volunteer`));
  // the page put the token where the worker reads it
  assert.equal(await worker.evaluate(() => self.onepress.storedToken()), token);

  // ---- "Notify me on this phone" -------------------------------------------------------------------------
  await page.locator('#push[data-state="off"] #push-toggle', { hasText: 'Notify me on this phone' }).waitFor({ timeout: WAIT });
  const subscribed = page.waitForResponse((r) => r.url() === `${BASE}/v1/me/push` && r.request().method() === 'POST');
  await page.click('#push-toggle');
  assert.equal((await subscribed).status(), 201);
  await page.locator('#push[data-state="on"]').waitFor({ timeout: WAIT });
  assert.match(await page.textContent('#push-status'), /even when this page is closed/);
  assert.ok(requests.includes('GET /v1/push/key'), requests.join('\n'));
  // the browser was subscribed with the service's key
  const usedKey = await page.evaluate(() => JSON.parse(localStorage.getItem('test.push_subscription')));
  assert.equal(b64url(Buffer.from(usedKey)), publicKey);

  // ---- the offline shell: the page opens with no network ---------------------------------------------
  await context.setOffline(true);
  await page.reload();
  await page.locator('#main').waitFor({ timeout: WAIT });
  await page.locator('#conn', { hasText: 'Offline' }).waitFor({ timeout: WAIT });
  await page.locator('#push[data-state="on"]').waitFor({ timeout: WAIT });
  await context.setOffline(false);
  await page.locator('#conn', { hasText: 'Connected' }).waitFor({ timeout: WAIT });

  // ---- Chen Hua presses; the page is closed -------------------------------------------------------------
  await page.close();
  let seen = service.count();
  await press('band-hz1', 'e-1', CHEN);
  const first = await activeAlertOf('band-hz1');
  const offer = await offerOf(token, first.id);
  // The service pushed the offer (encrypted, VAPID-signed) to the subscription the page made.
  const pushed = await pushedOffer(service, seen, keys, publicKey, first.id);
  seen += 1;
  for (const [k, v] of Object.entries(offer)) {
    if (k !== 'offered_at' && k !== 'pressed_at') assert.deepEqual(pushed.offer[k], v, `the pushed offer's ${k} is GET /v1/me's`);
  }
  assert.match(pushed.offer.text, /8 Osmanthus Road/);

  // ---- pushed to the worker: a notification with Accept and Decline ---------------------------------------
  await devtools.send('ServiceWorker.deliverPushMessage', { origin: BASE, registrationId, data: pushed.text });
  const [shown] = await until('the notification', async () => (await shownIn(worker)).filter((n) => n.tag === first.id).length && shownIn(worker));
  assert.equal(shown.title, 'Help needed: Chen Hua');
  assert.match(shown.body, /^SOS button · \d+ m away, (under a minute|about \d+ min) on foot\n8 Osmanthus Road\nAnswer by /);
  assert.equal(shown.requireInteraction, true);
  assert.equal(shown.renotify, true);
  assert.ok(shown.vibrate.length > 0, 'it vibrates');
  assert.deepEqual(shown.actions, [
    { action: 'accept', title: 'Accept' },
    { action: 'decline', title: 'Decline' },
  ]);
  assert.equal(shown.data.alert_id, first.id);
  // the same offer again replaces it (same tag)
  await devtools.send('ServiceWorker.deliverPushMessage', { origin: BASE, registrationId, data: pushed.text });
  await sleep(500);
  assert.equal((await shownIn(worker)).filter((n) => n.tag === first.id).length, 1, 'a repeat replaces the notification');
  assert.equal(context.pages().filter((p) => p.url().includes('/volunteer')).length, 0, 'the volunteer page is closed');

  // ---- Accept, from the notification: accepted, with no page open --------------------------------------------
  assert.equal(await click(worker, first.id, 'accept'), 'accepted');
  const accepted = await op('GET', `/v1/alerts/${first.id}`);
  assert.equal(accepted.state, 'accepted');
  assert.equal(accepted.volunteer_id, 'v-chen');
  const timeline = accepted.timeline.map((e) => `${e.type}:${e.volunteer_id || e.recipient || ''}:${e.channel || ''}:${e.outcome || ''}`);
  assert.ok(timeline.includes('accepted:v-chen::'), timeline.join('\n'));
  assert.ok(timeline.includes('notified:volunteer:v-chen:web_push:delivered'), timeline.join('\n'));
  const [confirmation] = (await shownIn(worker)).filter((n) => n.tag === first.id);
  assert.equal(confirmation.title, 'You accepted — 8 Osmanthus Road');
  assert.deepEqual(confirmation.actions, []);
  assert.equal(context.pages().filter((p) => p.url().includes('/volunteer')).length, 0, 'no page was opened');
  await op('POST', `/v1/alerts/${first.id}/cancel`, { reason: 'test: next, a decline' });

  // ---- a second offer, with the page open: a tap shows it there; Decline declines it ----------------------
  page = await watched(await context.newPage(), problems);
  await page.goto(`${BASE}/volunteer`);
  await page.locator('#push[data-state="on"]').waitFor({ timeout: WAIT });
  await press('band-hz1', 'e-2', CHEN);
  const second = await until('a second alert', async () => {
    const a = await activeAlertOf('band-hz1');
    return a.id !== first.id && a;
  });
  await offerOf(token, second.id);
  const pushed2 = await pushedOffer(service, seen, keys, publicKey, second.id);
  seen += 1;
  await devtools.send('ServiceWorker.deliverPushMessage', { origin: BASE, registrationId, data: pushed2.text });
  await until('the second notification', async () => (await shownIn(worker)).some((n) => n.tag === second.id));
  assert.equal(await click(worker, second.id, ''), 'focused');
  await page.locator(`.offer-card.focused[data-alert-id="${second.id}"]`).waitFor({ timeout: WAIT });
  // a tap closes the notification; the offer comes again, then Decline
  await until('the tapped notification closed', async () => !(await shownIn(worker)).some((n) => n.tag === second.id));
  await devtools.send('ServiceWorker.deliverPushMessage', { origin: BASE, registrationId, data: pushed2.text });
  await until('the second notification again', async () => (await shownIn(worker)).some((n) => n.tag === second.id));
  assert.equal(await click(worker, second.id, 'decline'), 'declined');
  const declined = await op('GET', `/v1/alerts/${second.id}`);
  assert.ok(declined.timeline.some((e) => e.type === 'declined' && e.volunteer_id === 'v-chen'), JSON.stringify(declined.timeline));
  await until('nothing shown after a decline', async () => !(await shownIn(worker)).some((n) => n.tag === second.id));
  await page.locator(`.offer-card[data-alert-id="${second.id}"]`).waitFor({ state: 'detached', timeout: WAIT });
  // The offer's notification once more (a late repeat), and Accept: the offer is gone, and said so.
  await devtools.send('ServiceWorker.deliverPushMessage', { origin: BASE, registrationId, data: pushed2.text });
  await until('the offer shown again', async () => (await shownIn(worker)).some((n) => n.tag === second.id && n.actions.length === 2));
  assert.equal(await click(worker, second.id, 'accept'), 'offer_gone');
  const [gone] = (await shownIn(worker)).filter((n) => n.tag === second.id);
  assert.equal(gone.title, 'This offer is no longer yours');
  assert.match(gone.body, /expired or someone else took it/);
  assert.deepEqual(gone.actions, []);
  assert.equal((await op('GET', `/v1/alerts/${second.id}`)).volunteer_id, null, 'nobody accepted it');
  await op('POST', `/v1/alerts/${second.id}/cancel`, { reason: 'test over' });

  // ---- turning it off, then signing out ----------------------------------------------------------------------
  const unsubscribed = page.waitForResponse((r) => r.url() === `${BASE}/v1/me/push` && r.request().method() === 'DELETE');
  await page.click('#push-toggle');
  assert.equal((await unsubscribed).status(), 204);
  await page.locator('#push[data-state="off"]').waitFor({ timeout: WAIT });
  await page.click('#change-token');
  await page.locator('#token-panel').waitFor({ timeout: WAIT });
  await until('the token gone from the worker', async () => (await worker.evaluate(() => self.onepress.storedToken())) === '');
  // Signing in again by pasting the whole link (as in an iPhone's Home Screen app): the worker has it again.
  await page.fill('#token-input', `${BASE}/volunteer#token=${token}`);
  await page.click('#token-form button[type=submit]');
  await page.locator('#main').waitFor({ timeout: WAIT });
  await until('the token back for the worker', async () => (await worker.evaluate(() => self.onepress.storedToken())) === token);
  await page.locator('#push[data-state="off"]').waitFor({ timeout: WAIT });
  assert.equal(service.count(), seen, 'nothing else was pushed');

  await call('PUT', '/v1/me/duty', token, { on_duty: false });
  assert.deepEqual(problems, [], 'no script errors and nothing from another host');
});
