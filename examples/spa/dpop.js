// DPoP mode of the example app (?mode=dpop): RFC 9449 proof of possession, plain WebCrypto.
//
// The page makes an ECDSA P-256 key pair with extractable=false and keeps it in IndexedDB
// (a CryptoKey survives structured cloning; its private half can sign but never be read,
// not even by a script injected into this page). Every login, refresh and API call carries
// a proof: a JWT signed by that key for this method and URL (and, with an access token,
// its hash). The server binds the session to the key's thumbprint, so the tokens this page
// holds (in IndexedDB too, for reloads) are useless anywhere else. No cookies are used.
// When the server asks for a nonce (DPoP-Nonce), the request is sent once more with it.
"use strict";

window.authapiDPoP = (() => {
  const DB = "authapi-dpop";
  const encoder = new TextEncoder();
  let nonce = null;

  function b64url(bytes) {
    let text = "";
    for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function b64json(value) {
    return b64url(encoder.encode(JSON.stringify(value)));
  }

  // IndexedDB, one object store: "key" (the CryptoKeyPair) and "tokens" ({access, refresh}).
  function database() {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(DB, 1);
      request.onupgradeneeded = () => request.result.createObjectStore("kv");
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  async function kv(mode, work) {
    const db = await database();
    return new Promise((resolve, reject) => {
      const tx = db.transaction("kv", mode);
      const request = work(tx.objectStore("kv"));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
    });
  }

  const get = (name) => kv("readonly", (s) => s.get(name));
  const put = (name, value) => kv("readwrite", (s) => s.put(value, name));
  const drop = (name) => kv("readwrite", (s) => s.delete(name));

  async function keyPair() {
    let pair = await get("key");
    if (!pair) {
      pair = await crypto.subtle.generateKey(
        { name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
      await put("key", pair);
    }
    return pair;
  }

  // A proof for one request: header typ dpop+jwt, ES256, the public JWK; claims jti, htm,
  // htu (no query or fragment), iat, and ath when an access token goes along.
  async function proof(method, url, accessToken) {
    const pair = await keyPair();
    const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", pair.publicKey);
    const claims = {
      jti: crypto.randomUUID(),
      htm: method,
      htu: url.split(/[?#]/)[0],
      iat: Math.floor(Date.now() / 1000),
    };
    if (accessToken) {
      claims.ath = b64url(await crypto.subtle.digest("SHA-256", encoder.encode(accessToken)));
    }
    if (nonce) claims.nonce = nonce;
    const input = `${b64json({ typ: "dpop+jwt", alg: "ES256", jwk: { kty, crv, x, y } })}.${b64json(claims)}`;
    // WebCrypto's ECDSA signature is r || s, exactly JWS's form.
    const signature = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" }, pair.privateKey, encoder.encode(input));
    return `${input}.${b64url(signature)}`;
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

  async function send(api, method, path, body, accessToken) {
    const url = api + path;
    for (let attempt = 0; ; attempt += 1) {
      const headers = { Accept: "application/json", DPoP: await proof(method, url, accessToken) };
      if (accessToken) headers.Authorization = `DPoP ${accessToken}`;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const response = await fetch(url, {
        method,
        headers,
        credentials: "omit",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const offered = response.headers.get("DPoP-Nonce");
      if (offered) nonce = offered;
      const result = await parse(response);
      const wantsNonce = result.data && result.data.code === "use_dpop_nonce";
      if (!wantsNonce || attempt > 0) return result;
    }
  }

  async function keep(result) {
    if (result.status === 200 && result.data && result.data.token_type === "DPoP") {
      await put("tokens", { access: result.data.access, refresh: result.data.refresh });
    }
    return result;
  }

  return {
    async hasSession() {
      return Boolean(await get("tokens"));
    },
    async call(api, method, path, body) {
      const tokens = path === "/api/auth/login" ? null : await get("tokens");
      const result = await send(api, method, path, body, tokens ? tokens.access : undefined);
      return path === "/api/auth/login" ? keep(result) : result;
    },
    async refresh(api) {
      const tokens = await get("tokens");
      if (!tokens) return { status: 401, data: { code: "not_authenticated", detail: "no session" } };
      return keep(await send(api, "POST", "/api/auth/refresh", { refresh: tokens.refresh }));
    },
    async logout(api, path) {
      const tokens = (await get("tokens")) || {};
      const body = path === "/api/auth/logout" ? { refresh: tokens.refresh } : undefined;
      const result = await send(api, "POST", path, body, tokens.access);
      await drop("tokens");
      return result;
    },
  };
})();
