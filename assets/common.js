// onepress pages: what the operator dashboard and the volunteer page share.
// Plain ES module, no framework, no build step; nothing is loaded from
// another host (the pages must work with no internet access).

/** The token of one page, kept in this browser's localStorage. */
export function tokenStore(key) {
  return {
    get() {
      try {
        return localStorage.getItem(key) || '';
      } catch {
        return '';
      }
    },
    set(token) {
      try {
        localStorage.setItem(key, token);
      } catch {
        // private mode without storage: the token lives for this page only
      }
    },
    clear() {
      try {
        localStorage.removeItem(key);
      } catch {
        // nothing kept, nothing to clear
      }
    },
  };
}

/** A refused or failed call: `status` 0 means the service was not reached. */
export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
}

// The service's clock minus this browser's, in ms, learnt from the Date
// header; countdowns use the service's time so a wrong PC clock does not
// show a wrong deadline. The header has a one-second resolution, so a gap
// under two seconds is left alone.
let skewMs = 0;

/** Now, on the service's clock (ms since the epoch). */
export function now() {
  return Date.now() + skewMs;
}

function learnSkew(response, sentAt) {
  const date = response.headers.get('date');
  if (!date) return;
  const server = Date.parse(date);
  if (Number.isNaN(server)) return;
  const local = (sentAt + Date.now()) / 2;
  const gap = server + 500 - local;
  skewMs = Math.abs(gap) > 2000 ? gap : 0;
}

/**
 * Calls the API with a bearer token; resolves to the answer's text. A
 * refusal throws an ApiFailure (the error body is JSON whatever `accept` is).
 */
export async function apiText(token, method, path, body, accept = 'application/json') {
  const headers = { accept };
  if (token) headers.authorization = `Bearer ${token}`;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const sentAt = Date.now();
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiFailure(0, 'unreachable', 'the service cannot be reached');
  }
  learnSkew(response, sentAt);
  const text = await response.text();
  if (!response.ok) {
    let error = {};
    try {
      error = JSON.parse(text).error || {};
    } catch {
      error = {};
    }
    throw new ApiFailure(response.status, error.code, error.message);
  }
  return text;
}

/** Calls the API with a bearer token; resolves to the JSON answer (or null). */
export async function api(token, method, path, body) {
  const text = await apiText(token, method, path, body);
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * An error in plain words. `overrides` maps a status or a `409` code to the
 * page's own wording, e.g. `{403: 'this is not an operator token'}`.
 */
export function plainError(err, overrides = {}) {
  if (!(err instanceof ApiFailure)) {
    return `Something unexpected went wrong: ${err && err.message ? err.message : err}.`;
  }
  if (err.code && overrides[err.code]) return overrides[err.code];
  if (overrides[err.status]) return overrides[err.status];
  switch (err.status) {
    case 0:
      return 'Cannot reach the service. Check the network; the page keeps trying.';
    case 400:
    case 422:
      return `Please check what was entered: ${err.message}.`;
    case 401:
      return 'Token not recognised. Paste a valid token.';
    case 403:
      return 'Not allowed with this token.';
    case 404:
      return 'Not found: it may have been removed or closed.';
    case 409:
      switch (err.code) {
        case 'offer_gone':
          return 'This offer is no longer yours: it expired or someone else took it.';
        case 'alert_closed':
          return 'This alert is already closed.';
        case 'wrong_state':
          return 'This alert has moved on; the page now shows where it stands.';
        case 'volunteer_busy':
          return 'That volunteer is already on another alert.';
        default:
          return 'Someone else changed this at the same moment; please try again.';
      }
    case 413:
      return 'That text is too long.';
    case 503:
      return 'The service is busy or restarting; try again in a moment.';
    default:
      return `The service had a problem (error ${err.status}); try again in a moment.`;
  }
}

/**
 * Builds an element: `el('div', {class: 'x', text: 'hi', onclick: f}, child…)`.
 * Text is always set as text, never parsed as HTML.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** 75 000 ms → "1:15"; an hour or more → "1 h 05 min". */
export function fmtClock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s >= 3600) {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return `${h} h ${String(m).padStart(2, '0')} min`;
  }
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** An ETA in words for a person on foot: "about 4 min". */
export function fmtEta(seconds) {
  if (seconds === null || seconds === undefined) return '?';
  return seconds < 60 ? 'under a minute' : `about ${Math.round(seconds / 60)} min`;
}

/** Metres in words: "420 m", "1.2 km". */
export function fmtDistance(m) {
  if (m === null || m === undefined || Number.isNaN(m)) return '?';
  if (m < 1000) return `${Math.round(m)} m`;
  return `${(m / 1000).toFixed(m < 10000 ? 1 : 0)} km`;
}

/** An RFC 3339 time as "how long ago", on the service's clock. */
export function fmtAgo(iso) {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return 'unknown';
  const s = Math.round((now() - t) / 1000);
  if (s < 10) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  const d = Math.floor(s / 86400);
  return d === 1 ? 'yesterday' : `${d} days ago`;
}

/** An RFC 3339 time as the local wall-clock time "15:43:07". */
export function fmtTime(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  return new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function kindLabel(kind) {
  return { sos: 'SOS button', fall: 'Fall detected' }[kind] || kind;
}

export function stateLabel(state) {
  return (
    {
      open: 'Waiting',
      offered: 'Offered',
      accepted: 'On the way',
      on_scene: 'On scene',
      resolved: 'Resolved',
      cancelled: 'Cancelled',
    }[state] || state
  );
}

export const ACTIVE_STATES = new Set(['open', 'offered', 'accepted', 'on_scene']);

const EARTH_RADIUS_M = 6371008.8;
const rad = (deg) => (deg * Math.PI) / 180;

/** Great-circle distance in metres between two {lat, lon}. */
export function haversine(a, b) {
  const dLat = rad(b.lat - a.lat);
  const dLon = rad(b.lon - a.lon);
  const h =
    Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** The compass direction from a to b in words ("north-east"). */
export function direction(a, b) {
  const y = Math.sin(rad(b.lon - a.lon)) * Math.cos(rad(b.lat));
  const x =
    Math.cos(rad(a.lat)) * Math.sin(rad(b.lat)) -
    Math.sin(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.cos(rad(b.lon - a.lon));
  const bearing = (Math.atan2(y, x) * 180) / Math.PI;
  const names = ['north', 'north-east', 'east', 'south-east', 'south', 'south-west', 'west', 'north-west'];
  return names[Math.round((((bearing % 360) + 360) % 360) / 45) % 8];
}

export { EARTH_RADIUS_M };
