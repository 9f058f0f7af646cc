// The pages in a real browser: Debian's headless Chromium driven by
// playwright-core, against a service started by .ci/browser.sh (a fresh
// SQLite file and the embedded broker). One story, as people would live it:
// an operator watches the dashboard, a volunteer uses the phone page, a
// senior presses her band (over MQTT), the dashboard follows without a
// reload, the volunteer accepts, arrives and closes the alert; meanwhile an
// alert nobody can take is escalated, and the operator assigns and cancels
// it from the dashboard. Then an operator registers a volunteer on the
// dashboard and signs their phone in with the QR code and link it gives,
// and issues broker logins: a band's secret (with a QR code for the
// installer) and a gateway's.
//
// Environment (set by .ci/browser.sh): ONEPRESS_BASE, ONEPRESS_OPERATOR_TOKEN,
// ONEPRESS_MQTT_PORT, ONEPRESS_MQTT_ADMIN (`user:password`, the service's
// admin login at its embedded broker; the test presses bands with it),
// CHROMIUM (default /usr/bin/chromium), SCREENSHOT_DIR.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import mqtt from 'mqtt';
import { chromium } from 'playwright-core';

const BASE = process.env.ONEPRESS_BASE || 'http://127.0.0.1:8080';
const OPERATOR = process.env.ONEPRESS_OPERATOR_TOKEN;
const MQTT_PORT = Number(process.env.ONEPRESS_MQTT_PORT || 1884);
const MQTT_ADMIN = process.env.ONEPRESS_MQTT_ADMIN || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.SCREENSHOT_DIR || '';
const WAIT = 15000; // the longest a change may take to show on a page

// Where things are: Lotus Lane and around (a few hundred metres apart).
const JIANG = { lat: 30.5101, lon: 120.6805 };
const ZHAO = { lat: 30.5072, lon: 120.6848 };
const WANG_AT = { lat: 30.5122, lon: 120.6779 };
const LI_AT = { lat: 30.5058, lon: 120.6869 };

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

let browser;
let broker;

before(async () => {
  assert.ok(OPERATOR, 'ONEPRESS_OPERATOR_TOKEN is set');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const admin = MQTT_ADMIN.indexOf(':');
  broker = await mqtt.connectAsync(`mqtt://127.0.0.1:${MQTT_PORT}`, {
    clientId: `browser-test-${process.pid}`,
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

/** A page that fails the test on any script error or any request to another host. */
async function openPage(options) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('request', (r) => {
    const url = new URL(r.url());
    if (url.origin !== BASE && url.protocol !== 'data:') problems.push(`request to another host: ${r.url()}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource|EventSource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return { context, page, problems };
}

async function press(device, event, position) {
  const payload = { event_id: event, kind: 'sos', ts: new Date().toISOString(), ...position, battery: 80 };
  await broker.publishAsync(`wristbands/${device}/alert`, JSON.stringify(payload), { qos: 1 });
}

async function activeAlertOf(device) {
  for (let i = 0; i < 100; i++) {
    const list = await op('GET', '/v1/alerts?state=active');
    const a = list.find((x) => x.device_id === device);
    if (a) return a;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no active alert for ${device}`);
}

async function streamDeployed() {
  const abort = new AbortController();
  try {
    const r = await fetch(`${BASE}/v1/alerts/stream`, { headers: { authorization: `Bearer ${OPERATOR}` }, signal: abort.signal });
    return r.status === 200;
  } catch {
    return false;
  } finally {
    abort.abort();
  }
}

test('an alert from press to close, seen on both pages', async () => {
  // ---- the registry, as the centre sets it up -------------------------------------------
  await op('PUT', '/v1/seniors/s-17', { name: 'Jiang Lan', address: '3 Lotus Lane, flat 2', home: JIANG, notes: 'Lives alone. Key with the neighbour at no. 5.' });
  await op('PUT', '/v1/seniors/s-09', { name: 'Zhao Min', address: '11 Willow Court', home: ZHAO, notes: 'Hard of hearing: knock loudly.' });
  await op('PUT', '/v1/devices/band-17', { senior_id: 's-17' });
  await op('PUT', '/v1/devices/band-09', { senior_id: 's-09' });
  await op('PUT', '/v1/volunteers/v-wang', { name: 'Wang Fang', phone: '138-0000-0001' });
  await op('PUT', '/v1/volunteers/v-li', { name: 'Li Wei' });
  const wang = (await op('POST', '/v1/volunteers/v-wang/token')).token;
  const li = (await op('POST', '/v1/volunteers/v-li/token')).token;
  // Li is on duty from a phone app; Wang will use the page.
  await call('PUT', '/v1/me/location', li, LI_AT);
  await call('PUT', '/v1/me/duty', li, { on_duty: true });
  // Band 17 reports a weak battery; band 09 has never been heard from.
  await broker.publishAsync('wristbands/band-17/status', JSON.stringify({ battery: 15, ...JIANG }), { qos: 1 });
  await new Promise((r) => setTimeout(r, 600)); // heartbeats are written in batches

  const live = await streamDeployed();

  // ---- the operator opens the dashboard and pastes the token -------------------------------
  const dash = await openPage({ viewport: { width: 1280, height: 900 } });
  await dash.page.goto(`${BASE}/`);
  await dash.page.locator('#token-panel').waitFor();
  await dash.page.fill('#token-input', OPERATOR);
  await dash.page.click('#token-form button[type=submit]');
  await dash.page.locator('#board').waitFor();
  await dash.page.locator('#no-alerts').waitFor();
  await dash.page.locator('#low-battery li[data-device-id="band-17"]').waitFor({ timeout: WAIT });
  await dash.page.locator('#offline li[data-device-id="band-09"]').waitFor({ timeout: WAIT });
  if (live) await dash.page.locator('#conn[data-mode="live"]').waitFor({ timeout: WAIT });
  // Marks this document: it must still be there at the end (no reload).
  await dash.page.evaluate(() => {
    window.__sameDocument = true;
  });

  // ---- Wang opens the volunteer page from a link with the token ------------------------------
  const phone = await openPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  await phone.page.goto(`${BASE}/volunteer?token=${encodeURIComponent(wang)}`);
  await phone.page.locator('#main').waitFor();
  assert.ok(!phone.page.url().includes('token='), `the token is taken out of the address bar: ${phone.page.url()}`);
  await phone.page.locator('#me-name', { hasText: 'Wang Fang' }).waitFor({ timeout: WAIT });
  // on duty, with a position typed by hand
  await phone.page.fill('#lat', String(WANG_AT.lat));
  await phone.page.fill('#lon', String(WANG_AT.lon));
  await phone.page.click('#set-location');
  await phone.page.locator('#loc-status', { hasText: '30.51220' }).waitFor({ timeout: WAIT });
  await phone.page.click('#duty');
  await phone.page.locator('#duty[data-on-duty="true"]').waitFor({ timeout: WAIT });
  // the plan shows both volunteers on duty
  await dash.page.locator('#plan g[data-volunteer-id="v-wang"]').waitFor({ timeout: WAIT });
  await dash.page.locator('#plan g[data-volunteer-id="v-li"]').waitFor({ timeout: WAIT });

  // ---- Jiang Lan presses her band ---------------------------------------------------------------
  await press('band-17', 'e-1', JIANG);
  const first = await activeAlertOf('band-17');
  const card = dash.page.locator(`article.alert-card[data-alert-id="${first.id}"]`);
  await card.waitFor({ timeout: WAIT });
  await card.locator('[data-role="who"]', { hasText: 'Wang Fang' }).waitFor({ timeout: WAIT });
  assert.match(await card.textContent(), /Jiang Lan/);
  await card.locator('.target[data-target="response"][data-level="green"]').waitFor({ timeout: WAIT });
  await dash.page.locator(`#plan g[data-alert-id="${first.id}"]`).waitFor({ timeout: WAIT });

  // the offer on Wang's phone, with its distance and countdown
  const offer = phone.page.locator(`.offer-card[data-alert-id="${first.id}"]`);
  await offer.waitFor({ timeout: WAIT });
  assert.match(await offer.textContent(), /Jiang Lan/);
  await offer.locator('[data-role="offer-countdown"]', { hasText: 'Answer within' }).waitFor({ timeout: WAIT });
  if (SHOTS) {
    mkdirSync(SHOTS, { recursive: true });
    await phone.page.screenshot({ path: join(SHOTS, 'volunteer.png') });
  }

  // ---- Wang accepts; the dashboard follows ---------------------------------------------------------
  await offer.locator('[data-action="accept"]').click();
  await phone.page.locator(`#job[data-alert-id="${first.id}"][data-state="accepted"]`).waitFor({ timeout: WAIT });
  await card.and(dash.page.locator('[data-state="accepted"]')).waitFor({ timeout: WAIT });
  assert.match(await card.locator('[data-role="who"]').textContent(), /Wang Fang.*on the way/);
  await card.locator('.target[data-target="response"][data-level="met"]').waitFor({ timeout: WAIT });

  // ---- Zhao Min presses; Li declines; nobody is left: escalated, on top ---------------------------
  await press('band-09', 'e-1', ZHAO);
  const second = await activeAlertOf('band-09');
  for (let i = 0; i < 50; i++) {
    const a = await op('GET', `/v1/alerts/${second.id}`);
    if (a.offers.some((o) => o.volunteer_id === 'v-li')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await call('POST', `/v1/alerts/${second.id}/decline`, li);
  const escalated = dash.page.locator(`article.alert-card.escalated[data-alert-id="${second.id}"]`);
  await escalated.waitFor({ timeout: WAIT });
  const order = await dash.page.$$eval('#alerts article.alert-card', (cards) => cards.map((c) => c.dataset.alertId));
  assert.deepEqual(order, [second.id, first.id], 'the escalated alert is on top');
  await dash.page.locator(`#plan g[data-alert-id="${second.id}"] .p-alert-ring`).waitFor({ timeout: WAIT });
  // Not only a colour: the alarm sounds (and the button says so) until muted.
  await dash.page.waitForFunction(() => document.body.dataset.alarm === 'sounding' && Number(document.body.dataset.alarmBeeps) >= 1, null, { timeout: WAIT });
  await dash.page.locator('#alarm.alarm-sounding').waitFor({ timeout: WAIT });
  if (SHOTS) await dash.page.screenshot({ path: join(SHOTS, 'dashboard.png') });
  await dash.page.click('#alarm');
  await dash.page.waitForFunction(() => document.body.dataset.alarm === 'muted', null, { timeout: WAIT });
  assert.equal(await dash.page.getAttribute('#alarm', 'aria-pressed'), 'false');
  await dash.page.click('#alarm');
  await dash.page.waitForFunction(() => document.body.dataset.alarm === 'sounding', null, { timeout: WAIT });

  // ---- the operator sends Li by hand, then calls it off ------------------------------------------
  await escalated.locator('[data-action="assign"]').click();
  await dash.page.locator('#assign-dialog[open]').waitFor();
  await dash.page.selectOption('#assign-select', 'v-li');
  await dash.page.click('#assign-submit');
  const second_card = dash.page.locator(`article.alert-card[data-alert-id="${second.id}"]`);
  await second_card.and(dash.page.locator('[data-state="accepted"]')).waitFor({ timeout: WAIT });
  assert.match(await second_card.locator('[data-role="who"]').textContent(), /Li Wei/);
  await second_card.locator('[data-action="cancel"]').click();
  await dash.page.locator('#cancel-dialog[open]').waitFor();
  await dash.page.fill('#cancel-reason', 'Her daughter is with her');
  await dash.page.click('#cancel-submit');
  await second_card.waitFor({ state: 'detached', timeout: WAIT });
  assert.equal((await op('GET', `/v1/alerts/${second.id}`)).state, 'cancelled');

  // ---- Wang arrives and closes the alert -----------------------------------------------------------
  await phone.page.click('#arrive');
  await phone.page.locator('#job[data-state="on_scene"]').waitFor({ timeout: WAIT });
  await card.and(dash.page.locator('[data-state="on_scene"]')).waitFor({ timeout: WAIT });
  await phone.page.selectOption('#outcome', 'helped');
  await phone.page.fill('#note', 'Helped her up; no injury.');
  await phone.page.click('#resolve');
  await phone.page.locator('#job').waitFor({ state: 'hidden', timeout: WAIT });
  await card.waitFor({ state: 'detached', timeout: WAIT });
  await dash.page.locator('#no-alerts').waitFor({ state: 'visible', timeout: WAIT });
  const closed = await op('GET', `/v1/alerts/${first.id}`);
  assert.equal(closed.state, 'resolved');
  assert.equal(closed.outcome, 'helped');

  // ---- a wrong token is told in plain words ------------------------------------------------------
  const stranger = await openPage({ viewport: { width: 390, height: 844 } });
  await stranger.page.goto(`${BASE}/volunteer#token=not-a-real-token`);
  assert.ok(!stranger.page.url().includes('token='), 'the token is taken out of the address bar');
  await stranger.page.locator('#notice', { hasText: 'Token not recognised' }).waitFor({ timeout: WAIT });
  await stranger.page.locator('#token-panel').waitFor();

  assert.ok(await dash.page.evaluate(() => window.__sameDocument === true), 'the dashboard was never reloaded');
  const mode = await dash.page.locator('#conn').getAttribute('data-mode');
  console.log(`dashboard updates: ${mode === 'live' ? 'SSE stream' : 'polling every 2 s'} (stream deployed: ${live})`);
  for (const p of [dash, phone, stranger]) {
    assert.deepEqual(p.problems, [], 'no script errors and nothing from another host');
    await p.context.close();
  }
});

test('without the stream the dashboard polls and still follows', async () => {
  await op('PUT', '/v1/seniors/s-23', { name: 'Qian Yu', address: '7 Bamboo Row', home: { lat: 30.509, lon: 120.683 } });
  await op('PUT', '/v1/devices/band-23', { senior_id: 's-23' });
  const dash = await openPage({ viewport: { width: 1280, height: 900 } });
  // As before the stream existed, or behind a proxy that refuses it.
  await dash.page.route('**/v1/alerts/stream*', (route) =>
    route.fulfill({ status: 404, contentType: 'application/json', body: '{"error":{"code":"not_found","message":"no such route"}}' }),
  );
  await dash.page.goto(`${BASE}/`);
  await dash.page.fill('#token-input', OPERATOR);
  await dash.page.click('#token-form button[type=submit]');
  await dash.page.locator('#conn[data-mode="polling"]').waitFor({ timeout: WAIT });

  await press('band-23', 'e-1', { lat: 30.509, lon: 120.683 });
  const alert = await activeAlertOf('band-23');
  const card = dash.page.locator(`article.alert-card[data-alert-id="${alert.id}"]`);
  await card.waitFor({ timeout: WAIT });
  assert.match(await card.textContent(), /Qian Yu/);
  await op('POST', `/v1/alerts/${alert.id}/cancel`, { reason: 'test over' });
  await card.waitFor({ state: 'detached', timeout: WAIT });
  assert.deepEqual(dash.problems, []);
  await dash.context.close();
});

/**
 * The dashboard signed in as the operator, allowed the clipboard, with
 * every request it makes recorded in `urls` (to check no secret is in one).
 */
async function operatorDashboard() {
  const dash = await openPage({ viewport: { width: 1280, height: 900 } });
  await dash.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  const urls = [];
  dash.page.on('request', (r) => urls.push(`${r.method()} ${r.url()}`));
  await dash.page.goto(`${BASE}/`);
  await dash.page.fill('#token-input', OPERATOR);
  await dash.page.click('#token-form button[type=submit]');
  return { dash, urls };
}

test('an operator registers a volunteer and signs their phone in with a QR code', async () => {
  const { dash, urls } = await operatorDashboard();
  await dash.page.locator('#volunteers li[data-volunteer-id="v-wang"]').waitFor({ timeout: WAIT });

  // ---- register Zhou Jie through the panel --------------------------------------------------------
  await dash.page.fill('#volunteer-id', 'v-zhou');
  await dash.page.fill('#volunteer-name', 'Zhou Jie');
  await dash.page.fill('#volunteer-phone', '138-0000-0042');
  await dash.page.click('#volunteer-submit');
  const row = dash.page.locator('#volunteers li[data-volunteer-id="v-zhou"]');
  await row.waitFor({ timeout: WAIT });
  assert.match(await row.textContent(), /Zhou Jie.*Off duty/);
  await dash.page.locator('#notice', { hasText: 'Zhou Jie is registered' }).waitFor({ timeout: WAIT });
  const stored = (await op('GET', '/v1/volunteers')).find((v) => v.id === 'v-zhou');
  assert.equal(stored.name, 'Zhou Jie');
  assert.equal(stored.phone, '138-0000-0042');
  // an id already taken is said so before it is sent
  await dash.page.fill('#volunteer-id', 'v-wang');
  await dash.page.locator('#volunteer-known', { hasText: 'already registered (Wang Fang)' }).waitFor();
  assert.equal(await dash.page.textContent('#volunteer-submit'), 'Update');
  await dash.page.fill('#volunteer-id', '');

  // ---- issue a token: confirm, then a QR code and the link -------------------------------------------
  await row.locator('[data-action="issue-token"]').click();
  await dash.page.locator('#token-dialog[open] #token-confirm').waitFor();
  assert.match(await dash.page.textContent('#token-for'), /Zhou Jie/);
  await dash.page.click('#token-issue');
  await dash.page.locator('#token-qr svg').waitFor({ timeout: WAIT });
  const link = await dash.page.inputValue('#token-link');
  assert.match(link, new RegExp(`^${BASE}/volunteer#token=[0-9a-f]{64}$`));
  const token = link.split('#token=')[1];
  const viewBox = await dash.page.getAttribute('#token-qr svg', 'viewBox');
  assert.match(viewBox, /^0 0 \d+ \d+$/);
  const box = await dash.page.locator('#token-qr svg').boundingBox();
  assert.ok(box && box.width >= 200 && box.height >= 200, `the QR code is big enough to scan: ${JSON.stringify(box)}`);
  await dash.page.click('#token-copy');
  await dash.page.locator('#token-copied', { hasText: 'Copied' }).waitFor({ timeout: WAIT });
  assert.equal(await dash.page.evaluate(() => navigator.clipboard.readText()), link);
  // The token went out in the bodies of POSTs only, never in a URL.
  assert.ok(urls.some((u) => u === `POST ${BASE}/v1/qr`), urls.join('\n'));
  assert.ok(!urls.some((u) => u.includes(token)), 'the token is in no URL the dashboard requested');
  // closing the dialog forgets the token
  await dash.page.click('#token-done');
  await dash.page.locator('#token-dialog').waitFor({ state: 'hidden' });
  assert.equal(await dash.page.inputValue('#token-link'), '');
  assert.equal(await dash.page.locator('#token-qr svg').count(), 0);

  // ---- the link opens the volunteer page signed in as Zhou Jie ---------------------------------------
  const phone = await openPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await phone.page.goto(link);
  await phone.page.locator('#main').waitFor({ timeout: WAIT });
  await phone.page.locator('#me-name', { hasText: 'Zhou Jie' }).waitFor({ timeout: WAIT });
  assert.ok(!phone.page.url().includes('token='), `the token is taken out of the address bar: ${phone.page.url()}`);

  // ---- issuing again ends the first token ---------------------------------------------------------
  await row.locator('[data-action="issue-token"]').click();
  await dash.page.click('#token-issue');
  await dash.page.locator('#token-qr svg').waitFor({ timeout: WAIT });
  assert.notEqual(await dash.page.inputValue('#token-link'), link);
  await dash.page.keyboard.press('Escape');
  await dash.page.locator('#token-dialog').waitFor({ state: 'hidden' });
  await dash.page.waitForFunction(() => document.getElementById('token-link').value === '' && !document.querySelector('#token-qr svg'));
  const r = await fetch(`${BASE}/v1/me`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 401, 'the first token no longer works');

  for (const p of [dash, phone]) {
    assert.deepEqual(p.problems, [], 'no script errors and nothing from another host');
    await p.context.close();
  }
});

/** Connects to the broker as a band or a gateway; resolves to the client, or rejects if refused. */
function connectAs(clientId, username, password) {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${MQTT_PORT}`, {
    clientId,
    username,
    password,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
}

test("an operator issues MQTT logins: a band's secret with a QR code, a gateway's", async () => {
  await op('PUT', '/v1/seniors/s-31', { name: 'Sun Li', address: '2 Plum Alley', home: { lat: 30.5088, lon: 120.6822 } });
  await op('PUT', '/v1/devices/band-31', { senior_id: 's-31' });
  const { dash, urls } = await operatorDashboard();
  // a band never heard from is offline
  const row = dash.page.locator('#offline li[data-device-id="band-31"]');
  await row.waitFor({ timeout: WAIT });

  // ---- a band's secret from its row: confirm, then the login once, with a QR code ---------------------
  await row.locator('[data-action="issue-secret"]').click();
  await dash.page.locator('#token-dialog[open] #token-confirm').waitFor();
  assert.match(await dash.page.textContent('#token-for'), /band-31/);
  assert.match(await dash.page.textContent('#token-question'), /Replace the band's secret\? The old one stops working at once/);
  await dash.page.click('#token-issue');
  await dash.page.locator('#token-qr svg').waitFor({ timeout: WAIT });
  assert.equal(await dash.page.inputValue('#login-username'), 'band-31');
  const password = await dash.page.inputValue('#login-password');
  assert.match(password, /^[0-9a-f]{64}$/);
  assert.equal(
    await dash.page.inputValue('#login-settings'),
    `client id and user name: band-31; password: ${password}; publish to wristbands/band-31/alert and wristbands/band-31/status; subscribe to wristbands/band-31/notify`,
  );
  assert.match(await dash.page.textContent('#token-warning'), /cannot be shown again.*disconnected/);
  assert.ok(await dash.page.isVisible('#token-warning'));
  assert.match(await dash.page.getAttribute('#token-qr svg', 'viewBox'), /^0 0 \d+ \d+$/);
  const box = await dash.page.locator('#token-qr svg').boundingBox();
  assert.ok(box && box.width >= 200 && box.height >= 200, `the QR code is big enough to scan: ${JSON.stringify(box)}`);
  await dash.page.click('#token-copy');
  await dash.page.locator('#token-copied', { hasText: 'copied' }).waitFor({ timeout: WAIT });
  assert.equal(await dash.page.evaluate(() => navigator.clipboard.readText()), password);
  // The secret went out in the body of the QR's POST only, never in a URL, and was never stored.
  assert.ok(urls.some((u) => u === `POST ${BASE}/v1/devices/band-31/secret`), urls.join('\n'));
  assert.ok(urls.some((u) => u === `POST ${BASE}/v1/qr`), urls.join('\n'));
  assert.ok(!urls.some((u) => u.includes(password)), 'the secret is in no URL the dashboard requested');
  const stored = await dash.page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  assert.ok(!stored.includes(password), 'the secret is not kept in the browser');
  // the band connects with that login
  const band = await connectAs('band-31', 'band-31', password);
  await band.endAsync();
  // closing the dialog forgets the secret
  await dash.page.click('#token-done');
  await dash.page.locator('#token-dialog').waitFor({ state: 'hidden' });
  assert.equal(await dash.page.inputValue('#login-password'), '');
  assert.equal(await dash.page.inputValue('#login-settings'), '');
  assert.equal(await dash.page.locator('#token-qr svg').count(), 0);

  // ---- an installer types the band's id: a wrong id is said so, then a new secret replaces the old ----------
  await dash.page.fill('#band-id', 'band 31');
  await dash.page.click('#band-submit');
  await dash.page.locator('#band-error', { hasText: 'letters' }).waitFor();
  assert.equal(await dash.page.locator('#token-dialog[open]').count(), 0, 'no dialog for a wrong id');
  await dash.page.fill('#band-id', 'band-31');
  await dash.page.locator('#band-error').waitFor({ state: 'hidden' });
  await dash.page.click('#band-submit');
  await dash.page.locator('#token-dialog[open] #token-confirm').waitFor();
  await dash.page.click('#token-issue');
  await dash.page.locator('#token-qr svg').waitFor({ timeout: WAIT });
  const second = await dash.page.inputValue('#login-password');
  assert.match(second, /^[0-9a-f]{64}$/);
  assert.notEqual(second, password);
  await dash.page.keyboard.press('Escape');
  await dash.page.locator('#token-dialog').waitFor({ state: 'hidden' });
  await dash.page.waitForFunction(() => document.getElementById('login-password').value === '' && !document.querySelector('#token-qr svg'));
  await assert.rejects(connectAs('band-31', 'band-31', password), 'the old secret no longer works');
  // an id that is not a registered band
  await dash.page.fill('#band-id', 'band-nobody');
  await dash.page.click('#band-submit');
  await dash.page.click('#token-issue');
  await dash.page.locator('#token-error', { hasText: 'No band is registered' }).waitFor({ timeout: WAIT });
  await dash.page.click('#token-keep');
  await dash.page.locator('#token-dialog').waitFor({ state: 'hidden' });

  // ---- a gateway's secret: a new gateway, no QR code ---------------------------------------------------
  await dash.page.fill('#gateway-id', 'gw/lotus');
  await dash.page.click('#gateway-submit');
  await dash.page.locator('#gateway-error', { hasText: 'letters' }).waitFor();
  assert.equal(await dash.page.getAttribute('#gateway-id', 'aria-invalid'), 'true');
  await dash.page.fill('#gateway-id', 'gw-lotus');
  await dash.page.press('#gateway-id', 'Enter');
  await dash.page.locator('#token-dialog[open] #token-confirm').waitFor();
  assert.match(await dash.page.textContent('#token-for'), /gw-lotus/);
  await dash.page.click('#token-issue');
  await dash.page.locator('#token-result').waitFor();
  assert.equal(await dash.page.inputValue('#login-username'), 'gw-lotus');
  const gateway = await dash.page.inputValue('#login-password');
  assert.match(gateway, /^[0-9a-f]{64}$/);
  assert.match(await dash.page.textContent('#login-note'), /wristbands\/\+\/alert and wristbands\/\+\/status and read wristbands\/\+\/notify/);
  assert.ok(!(await dash.page.isVisible('#token-qr')), 'no QR code for a gateway');
  await dash.page.keyboard.press('Escape');
  await dash.page.locator('#token-dialog').waitFor({ state: 'hidden' });
  // a volunteer's id is not a gateway's
  await dash.page.fill('#gateway-id', 'v-wang');
  await dash.page.click('#gateway-submit');
  await dash.page.click('#token-issue');
  await dash.page.locator('#token-error', { hasText: "cannot be a gateway's" }).waitFor({ timeout: WAIT });
  await dash.page.click('#token-keep');
  assert.ok(!urls.some((u) => u.includes(gateway) || u.includes(second)), 'no secret is in a URL');

  assert.deepEqual(dash.problems, [], 'no script errors and nothing from another host');
  await dash.context.close();
});
