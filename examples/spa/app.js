// authapi example single-page app, plain JS, no build step. Two modes:
//
// ?mode=cookie (the default), described next; ?mode=dpop, described at dpop.js: no
// cookies, tokens bound to a non-extractable WebCrypto key kept in IndexedDB.
//
// Cookie mode (AUTHAPI_COOKIES=1):
// Served from its own origin (say http://127.0.0.1:5173/?api=http://127.0.0.1:8000), which
// the API lists in DJANGO_CORS_ALLOWED_ORIGINS. Every call is fetch(..., {credentials:
// "include"}): the browser sends and stores the httpOnly authapi_access / authapi_refresh
// cookies itself, and this script never holds a token. Unsafe requests echo the readable
// authapi_csrf cookie in X-CSRF-Token. A timer refreshes before expires_in runs out; a
// reload refreshes at once (the page cannot know when the httpOnly access cookie expires).
"use strict";

const PARAMS = new URLSearchParams(location.search);
const API = (PARAMS.get("api") || "http://127.0.0.1:8000").replace(/\/+$/, "");
const DPOP = PARAMS.get("mode") === "dpop";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
const $ = (id) => document.getElementById(id);

let refreshTimer = null;
let refreshes = 0;

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)authapi_csrf=([^;]*)/);
  return match ? match[1] : "";
}

// One API call: {status, data}. A network or CORS failure throws (fetch's TypeError).
async function call(method, path, body) {
  if (DPOP) return window.authapiDPoP.call(API, method, path, body);
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE.has(method) && csrfToken()) headers["X-CSRF-Token"] = csrfToken();
  const response = await fetch(API + path, {
    method,
    headers,
    credentials: "include",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return parse(response);
}

async function parse(response) {
  const text = await response.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    // not JSON: keep the text
  }
  return { status: response.status, data };
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function showError(error) {
  $("error").textContent = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function describe(result) {
  const data = result.data && typeof result.data === "object" ? result.data : {};
  return `${result.status}${data.code ? " " + data.code : ""}${data.detail ? ": " + data.detail : ""}`;
}

function signedOut(why) {
  clearTimeout(refreshTimer);
  refreshTimer = null;
  $("next-refresh").textContent = "-";
  setStatus("signed-out", why);
}

// Refresh a quarter of the lifetime (at most a minute) before the access token expires.
function schedule(expiresIn) {
  clearTimeout(refreshTimer);
  const delay = Math.max(1, expiresIn - Math.min(60, expiresIn / 4));
  $("next-refresh").textContent = delay.toFixed(1);
  refreshTimer = setTimeout(() => refresh().catch(retryLater), delay * 1000);
}

// The API was unreachable (or said 429 / 503): keep the session, try again shortly.
function retryLater(error) {
  showError(error);
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refresh().catch(retryLater), 5000);
}

// Tabs of this app share the cookies: one refresh at a time across them, so that no two
// present the same refresh token (that would be reuse, which ends the session).
function withRefreshLock(work) {
  return navigator.locks ? navigator.locks.request("authapi-refresh", work) : work();
}

async function refresh() {
  const result = await withRefreshLock(() =>
    DPOP ? window.authapiDPoP.refresh(API) : call("POST", "/api/auth/refresh"));
  if (result.status === 200) {
    refreshes += 1;
    $("refreshes").textContent = String(refreshes);
    schedule(result.data.expires_in);
    return true;
  }
  if (result.status !== 401 && result.status !== 403) {
    throw new Error(`refresh answered ${describe(result)}`);
  }
  const me = await showMe(false);
  signedOut(`session ended: refresh answered ${describe(result)}; /me answers ${describe(me)}`);
  return false;
}

// GET /me into #me; the status line follows it unless report is false.
async function showMe(report = true) {
  const result = await call("GET", "/api/auth/me");
  $("me").dataset.status = String(result.status);
  $("me").textContent = `${result.status}\n${JSON.stringify(result.data, null, 2)}`;
  if (!report) return result;
  if (result.status === 200) {
    setStatus("signed-in", `signed in as ${result.data.username}`);
  } else if (result.status === 401) {
    signedOut(`signed out: /me answered ${describe(result)}`);
  }
  return result;
}

async function login(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const result = await call("POST", "/api/auth/login", {
    username: form.get("username"),
    password: form.get("password"),
  });
  if (result.status !== 200) {
    setStatus("signed-out", `login refused: ${describe(result)}`);
    return;
  }
  // Cookie mode: result.data.access is there too; this app never keeps it, the cookie
  // carries it. DPoP mode: dpop.js kept the bound pair.
  event.target.reset();
  schedule(result.data.expires_in);
  await showMe();
}

async function logout(path) {
  const result = DPOP ? await window.authapiDPoP.logout(API, path) : await call("POST", path);
  if (result.status !== 204) showError(`${path} answered ${describe(result)}`);
  const me = await showMe(false);
  signedOut(`logged out: ${path} answered ${result.status}; /me answers ${describe(me)}`);
}

function guard(handler) {
  return (event) => {
    $("error").textContent = "";
    handler(event).catch(showError);
  };
}

$("api").textContent = API;
$("mode").textContent = DPOP ? "DPoP (a key this page cannot export)" : "cookies";
$("login").addEventListener("submit", guard(login));
$("show-me").addEventListener("click", guard(showMe));
$("refresh").addEventListener("click", guard(refresh));
$("logout").addEventListener("click", guard(() => logout("/api/auth/logout")));
$("logout-all").addEventListener("click", guard(() => logout("/api/auth/logout-all")));

// On load: a csrf cookie means a session may be alive; refresh to learn when its access
// token expires, then show /me.
(async () => {
  if (DPOP ? !(await window.authapiDPoP.hasSession()) : !csrfToken()) {
    signedOut("signed out");
    return;
  }
  setStatus("unknown", "resuming the session…");
  if (await refresh()) await showMe();
})().catch(showError);
