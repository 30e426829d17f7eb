// gateway-client.js: browser client of the gateway's browser protocol (docs/protocol.md).
// An ES module with no dependencies, served by the gateway at /client.js (types: /client.d.ts).
//
//   import { GatewayClient } from "/client.js";
//   const gw = new GatewayClient("", { clientId: "dash/alice" });
//   await gw.subscribe("plant1/+/temp", { rewind: 10 }, (msg) => console.log(msg.channel, msg.data));
//   const ack = await gw.publish("cmd/dev7", { on: true }, { qos: 1 });
//
// What it does for you:
// - connects over WebSocket (/ws); when WebSocket is blocked, falls back to SSE (/sse) for
//   receiving and REST (/api/v1/publish) for publishing;
// - reconnects by itself with exponential backoff and full jitter;
// - resumes every subscription from the last position it delivered, and drops anything it
//   has already delivered, so each message reaches your callback once, in order;
// - publishes with a msg_id and retries under the same msg_id until acknowledged, so a retry
//   never makes a second message;
// - tracks presence (who is online) for the filters you ask.

const DEFAULTS = {
  transport: "auto", // "auto" | "ws" | "sse"
  clientId: undefined,
  token: undefined,
  backoffInitialMs: 250,
  backoffMaxMs: 10000,
  publishTimeoutMs: 10000,
  publishAttempts: 8,
  pingIntervalMs: 20000,
  wsFailuresBeforeFallback: 2,
};

/** Splits "epoch-seq" into [epoch string, seq number]. */
function splitPos(pos) {
  const i = typeof pos === "string" ? pos.lastIndexOf("-") : -1;
  if (i <= 0) return null;
  const seq = Number(pos.slice(i + 1));
  return Number.isFinite(seq) ? [pos.slice(0, i), seq] : null;
}

/** True when `a` is at or before `b` in the same epoch. */
function notAfter(a, b) {
  const x = splitPos(a);
  const y = splitPos(b);
  return !!x && !!y && x[0] === y[0] && x[1] <= y[1];
}

/** MQTT filter matching, as the gateway does it. */
export function topicMatches(filter, topic) {
  const f = filter.split("/");
  const t = topic.split("/");
  if (topic.startsWith("$") && (f[0] === "+" || f[0] === "#")) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

function uuid() {
  if (globalThis.crypto && typeof globalThis.crypto.randomUUID === "function") {
    return globalThis.crypto.randomUUID();
  }
  let s = "";
  for (let i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16);
  return s;
}

/** An error answered by the gateway, with its stable code. */
export class GatewayError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "GatewayError";
    this.code = code;
  }
}

/** Codes worth retrying: the request may succeed later unchanged. */
const RETRYABLE = new Set(["storage", "unavailable"]);

export class GatewayClient {
  /**
   * @param {string} baseUrl gateway HTTP URL ("" or undefined: the page's origin)
   * @param {object} options see DEFAULTS
   */
  constructor(baseUrl, options = {}) {
    this.options = { ...DEFAULTS, ...options };
    const origin = globalThis.location ? globalThis.location.origin : "http://127.0.0.1:8080";
    this.baseUrl = new URL(baseUrl || origin);
    this.transport = null; // "ws" | "sse" once connected
    this.state = "idle"; // idle | connecting | open | closed
    this.epoch = null;
    this._subs = new Map(); // filter -> subscription record
    this._presence = new Map(); // filter -> presence record
    this._listeners = new Map();
    this._pending = new Map(); // request id -> {resolve, reject, frame, timer}
    this._publishes = new Set(); // publishes not yet acknowledged
    this._nextId = 1;
    this._attempt = 0;
    this._wsFailures = 0;
    this._closed = false;
    this._ws = null;
    this._es = null;
    this._sseLastId = null;
    this._timer = null;
    this._ping = null;
    this._recent = new Set();
    this._recentOrder = [];
    this._opened = null;
  }

  /** Adds a listener: "open", "close", "message", "reset", "dropped", "error", "state". */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event).delete(fn);
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of set) {
      try {
        fn(...args);
      } catch (e) {
        if (event !== "error") this._emit("error", e);
      }
    }
  }

  _setState(s) {
    if (this.state !== s) {
      this.state = s;
      this._emit("state", s);
    }
  }

  /** Connects (also done by the first subscribe or publish). Resolves once open. */
  connect() {
    if (this._closed) return Promise.reject(new GatewayError("closed", "client closed"));
    if (this.state === "open") return Promise.resolve();
    if (!this._opened) {
      this._opened = {};
      this._opened.promise = new Promise((res) => (this._opened.resolve = res));
      this._open();
    }
    return this._opened.promise;
  }

  /** Closes for good: no reconnect; pending publishes are rejected. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    clearInterval(this._ping);
    if (this._ws) this._ws.close(1000, "client closed");
    if (this._es) this._es.close();
    for (const p of this._pending.values()) p.reject(new GatewayError("closed", "client closed"));
    this._pending.clear();
    for (const p of this._publishes) p.reject(new GatewayError("closed", "client closed"));
    this._publishes.clear();
    this._setState("closed");
  }

  _useSse() {
    const t = this.options.transport;
    if (t === "sse") return true;
    if (t === "ws") return false;
    return this._wsFailures >= this.options.wsFailuresBeforeFallback || typeof WebSocket === "undefined";
  }

  _open() {
    if (this._closed) return;
    this._setState("connecting");
    if (this._useSse()) this._openSse();
    else this._openWs();
  }

  _retry() {
    if (this._closed) return;
    clearInterval(this._ping);
    this._setState("connecting");
    const cap = Math.min(this.options.backoffMaxMs, this.options.backoffInitialMs * 2 ** this._attempt);
    this._attempt = Math.min(this._attempt + 1, 30);
    const delay = Math.random() * cap; // full jitter
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._open(), delay);
  }

  _opened_() {
    this._attempt = 0;
    this._setState("open");
    this._emit("open", this.transport);
    if (this._opened) {
      this._opened.resolve();
      this._opened = null;
    }
  }

  // ---- WebSocket ----

  _wsUrl() {
    const u = new URL("/ws", this.baseUrl);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    if (this.options.clientId) u.searchParams.set("client_id", this.options.clientId);
    return u.toString();
  }

  _openWs() {
    let ws;
    let welcomed = false;
    try {
      ws = new WebSocket(this._wsUrl());
    } catch (e) {
      this._wsFailures++;
      this._retry();
      return;
    }
    this._ws = ws;
    ws.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (e) {
        this._emit("error", e);
        return;
      }
      if (f.op === "welcome") {
        welcomed = true;
        this._wsFailures = 0;
        this.transport = "ws";
        this._onWelcome(f);
        this._wsResume();
      } else {
        this._onFrame(f);
      }
    };
    ws.onclose = async () => {
      if (this._ws !== ws) return;
      this._ws = null;
      if (!welcomed && (await this._reachable())) {
        // The gateway answers HTTP but the WebSocket failed: something blocks WebSocket.
        this._wsFailures++;
      }
      this._onDisconnect();
    };
    ws.onerror = () => {
      // onclose follows.
    };
  }

  /** Whether the gateway answers plain HTTP (to tell "WebSocket blocked" from "down"). */
  async _reachable() {
    try {
      const r = await fetch(new URL("/api/v1/presence?filter=%24none", this.baseUrl), { cache: "no-store" });
      return r.ok;
    } catch (e) {
      return false;
    }
  }

  _onWelcome(f) {
    if (this.epoch && this.epoch !== f.epoch) this._emit("epoch", this.epoch, f.epoch);
    this.epoch = f.epoch;
  }

  _send(frame) {
    if (this._ws && this._ws.readyState === 1) {
      this._ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  /** Sends a request and resolves with its `ok` (rejects on `error`). */
  _request(frame) {
    const id = this._nextId++;
    frame.id = id;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject, frame });
      if (!this._send(frame)) {
        // Sent again after reconnecting, by the resume logic of its owner.
        this._pending.delete(id);
        reject(new GatewayError("disconnected", "not connected"));
      }
    });
  }

  async _wsResume() {
    if (this.options.token) this._send({ op: "auth", token: this.options.token });
    clearInterval(this._ping);
    this._ping = setInterval(() => this._send({ op: "ping" }), this.options.pingIntervalMs);
    this._opened_();
    for (const sub of this._subs.values()) this._wsSubscribe(sub);
    for (const p of this._presence.values()) this._send({ op: "presence", filter: p.filter });
    for (const p of this._publishes) this._sendPublish(p);
  }

  _wsSubscribe(sub) {
    const frame = { op: "subscribe", filter: sub.filter, qos: sub.qos };
    if (sub.lastPos) frame.since = sub.lastPos;
    else Object.assign(frame, sub.start);
    if (!sub.lastPos && sub.retained) frame.retained = true;
    this._request(frame).then(
      (ok) => {
        if (!sub.lastPos && ok.position) sub.lastPos = ok.position;
        sub.ready.resolve();
      },
      (e) => {
        if (e.code === "disconnected") return;
        this._subs.delete(sub.filter);
        sub.ready.reject(e);
      },
    );
  }

  _onFrame(f) {
    switch (f.op) {
      case "msg":
        this._onMsg(f);
        break;
      case "ok":
      case "error": {
        const p = this._pending.get(f.id);
        if (p) {
          this._pending.delete(f.id);
          if (f.op === "ok") p.resolve(f);
          else p.reject(new GatewayError(f.code, f.message));
        } else if (f.op === "error") {
          this._emit("error", new GatewayError(f.code, f.message));
        }
        break;
      }
      case "reset": {
        const sub = this._subs.get(f.filter);
        // An epoch change moves the resume point into the new epoch, past what is gone. A
        // retention reset leaves it: messages after it still follow, and resuming from the
        // old point cannot miss them.
        if (sub && f.reason === "epoch" && f.to) sub.lastPos = f.to;
        this._emit("reset", f);
        break;
      }
      case "dropped":
        this._emit("dropped", f);
        break;
      case "presence":
        this._onPresence(f);
        break;
      default:
        break;
    }
  }

  _onDisconnect() {
    for (const [id, p] of this._pending) {
      this._pending.delete(id);
      p.reject(new GatewayError("disconnected", "connection lost"));
    }
    this._emit("close");
    this._retry();
  }

  // ---- SSE ----

  _openSse() {
    const filters = [...this._subs.keys()];
    const presence = [...this._presence.keys()];
    if (filters.length === 0 && presence.length === 0) {
      // Nothing to receive yet; publishing works over REST already.
      this.transport = "sse";
      this._opened_();
      for (const p of this._publishes) this._sendPublish(p);
      return;
    }
    const u = new URL("/sse", this.baseUrl);
    for (const f of filters) u.searchParams.append("filter", f);
    for (const f of presence) u.searchParams.append("presence", f);
    if (this.options.clientId) u.searchParams.set("client_id", this.options.clientId);
    const since = this._sseSince();
    if (since) u.searchParams.set("since", since);
    else {
      const first = this._subs.values().next().value;
      if (first) {
        for (const [k, v] of Object.entries(first.start)) u.searchParams.set(k, String(v));
        if (first.retained) u.searchParams.set("retained", "true");
        if (first.qos === 0) u.searchParams.set("qos", "0");
      }
    }
    const es = new EventSource(u.toString());
    this._es = es;
    es.addEventListener("welcome", (ev) => {
      this.transport = "sse";
      this._onWelcome(JSON.parse(ev.data));
      if (ev.lastEventId) this._sseLastId = ev.lastEventId;
      for (const sub of this._subs.values()) {
        if (!sub.lastPos) sub.lastPos = ev.lastEventId;
        sub.ready.resolve();
      }
      this._opened_();
      for (const p of this._publishes) this._sendPublish(p);
    });
    es.onmessage = (ev) => {
      if (ev.lastEventId) this._sseLastId = ev.lastEventId;
      this._onFrame(JSON.parse(ev.data));
    };
    for (const name of ["reset", "dropped", "presence"]) {
      es.addEventListener(name, (ev) => this._onFrame(JSON.parse(ev.data)));
    }
    es.onerror = () => {
      if (this._es !== es) return;
      if (es.lastEventId) this._sseLastId = es.lastEventId;
      es.close();
      this._es = null;
      this._onDisconnect();
    };
  }

  /** One position for the SSE stream: the latest it delivered (all filters share it). */
  _sseSince() {
    let best = this._sseLastId;
    for (const s of this._subs.values()) {
      if (s.lastPos && (!best || notAfter(best, s.lastPos))) best = s.lastPos;
    }
    return best;
  }

  _reopenSse() {
    if (this._es) {
      this._es.close();
      this._es = null;
    }
    this._open();
  }

  // ---- messages ----

  _onMsg(f) {
    let delivered = false;
    for (const sub of this._subs.values()) {
      if (!topicMatches(sub.filter, f.channel)) continue;
      if (!f.retain) {
        if (sub.lastPos && notAfter(f.pos, sub.lastPos)) continue; // already delivered
        sub.lastPos = f.pos;
      }
      delivered = true;
      try {
        sub.callback(f);
      } catch (e) {
        this._emit("error", e);
      }
    }
    if (delivered && !this._seen(f)) this._emit("message", f);
  }

  _seen(f) {
    if (f.retain) return false;
    if (this._recent.has(f.pos)) return true;
    this._recent.add(f.pos);
    this._recentOrder.push(f.pos);
    if (this._recentOrder.length > 4096) this._recent.delete(this._recentOrder.shift());
    return false;
  }

  /**
   * Subscribes to a channel or MQTT filter. `opts`: { rewind, rewindSeconds, since, retained,
   * qos }. Resolves once the gateway confirmed; `callback(msg)` gets each message once.
   */
  subscribe(filter, opts, callback) {
    if (typeof opts === "function") {
      callback = opts;
      opts = {};
    }
    opts = opts || {};
    const start = {};
    if (opts.since) start.since = opts.since;
    else if (opts.rewind !== undefined) start.rewind = opts.rewind;
    else if (opts.rewindSeconds !== undefined) start.rewind_seconds = opts.rewindSeconds;
    const sub = {
      filter,
      start,
      retained: !!opts.retained,
      qos: opts.qos === 0 ? 0 : 1,
      callback: callback || (() => {}),
      lastPos: opts.since || null,
      ready: {},
    };
    sub.ready.promise = new Promise((res, rej) => {
      sub.ready.resolve = res;
      sub.ready.reject = rej;
    });
    this._subs.set(filter, sub);
    const handle = {
      filter,
      get position() {
        return sub.lastPos;
      },
      unsubscribe: () => this.unsubscribe(filter),
    };
    if (this.state === "open" && this.transport === "ws") this._wsSubscribe(sub);
    else if (this.state === "open" && this.transport === "sse") this._reopenSse();
    else this.connect();
    return sub.ready.promise.then(() => handle);
  }

  /** Stops a subscription. */
  unsubscribe(filter) {
    if (!this._subs.delete(filter)) return Promise.resolve();
    if (this.transport === "ws") return this._request({ op: "unsubscribe", filter }).catch(() => {});
    if (this.transport === "sse") this._reopenSse();
    return Promise.resolve();
  }

  /**
   * Publishes. `opts`: { qos (default 1), retain, encoding ("json" | "utf8" | "base64"),
   * props, msgId }. Resolves with { pos, duplicate } once the gateway acknowledged (for qos
   * 1 and 2: once durable). Retries under the same msg_id across reconnects.
   */
  publish(channel, data, opts = {}) {
    const frame = {
      op: "publish",
      channel,
      data,
      qos: opts.qos === undefined ? 1 : opts.qos,
      msg_id: opts.msgId || uuid(),
    };
    if (opts.retain) frame.retain = true;
    if (opts.encoding) frame.encoding = opts.encoding;
    if (opts.props) frame.props = opts.props;
    return new Promise((resolve, reject) => {
      const p = { frame, resolve, reject, attempts: 0, inFlight: false };
      this._publishes.add(p);
      if (this.state === "open") this._sendPublish(p);
      else this.connect();
    });
  }

  _finish(p, err, ack) {
    if (!this._publishes.delete(p)) return;
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve({ pos: ack.pos, duplicate: !!ack.duplicate });
  }

  _sendPublish(p) {
    if (p.inFlight || !this._publishes.has(p)) return;
    if (p.attempts >= this.options.publishAttempts) {
      this._finish(p, new GatewayError("timeout", `no acknowledgement after ${p.attempts} attempts`));
      return;
    }
    p.attempts++;
    p.inFlight = true;
    const done = (err, ack) => {
      p.inFlight = false;
      clearTimeout(p.timer);
      if (!err) return this._finish(p, null, ack);
      if (err.code && !RETRYABLE.has(err.code) && err.code !== "disconnected" && err.code !== "timeout") {
        return this._finish(p, err);
      }
      // Retried with the same msg_id: now if connected, else after reconnecting.
      const wait = Math.random() * Math.min(this.options.backoffMaxMs, this.options.backoffInitialMs * 2 ** p.attempts);
      p.timer = setTimeout(() => {
        if (this.state === "open") this._sendPublish(p);
      }, wait);
    };
    p.timer = setTimeout(() => done(new GatewayError("timeout", "no acknowledgement in time")), this.options.publishTimeoutMs);
    if (this.transport === "ws") {
      this._request({ ...p.frame }).then((ok) => done(null, ok), (e) => done(e));
    } else {
      this._restPublish(p.frame).then((ok) => done(null, ok), (e) => done(e));
    }
  }

  async _restPublish(frame) {
    const body = { ...frame };
    delete body.op;
    delete body.id;
    const headers = { "content-type": "application/json" };
    if (this.options.clientId) headers["x-client-id"] = this.options.clientId;
    let r;
    try {
      r = await fetch(new URL("/api/v1/publish", this.baseUrl), { method: "POST", headers, body: JSON.stringify(body) });
    } catch (e) {
      throw new GatewayError("disconnected", String(e));
    }
    let j = null;
    try {
      j = await r.json();
    } catch (e) {
      throw new GatewayError("unavailable", `HTTP ${r.status}`);
    }
    if (!r.ok) throw new GatewayError(j && j.code ? j.code : "unavailable", j && j.message);
    return j;
  }

  // ---- presence ----

  /**
   * Watches who is online among client ids matching `filter`. `handlers`: { onEnter(member),
   * onLeave(member, reason), onSync(members) }. Returns { members (Map id -> member), stop() }.
   */
  presence(filter, handlers = {}) {
    const rec = { filter, handlers, members: new Map() };
    this._presence.set(filter, rec);
    if (this.state === "open" && this.transport === "ws") this._send({ op: "presence", filter });
    else if (this.state === "open" && this.transport === "sse") this._reopenSse();
    else this.connect();
    return {
      members: rec.members,
      stop: () => {
        this._presence.delete(filter);
        if (this.transport === "ws") this._send({ op: "presence", filter, enabled: false });
      },
    };
  }

  _onPresence(f) {
    const rec = this._presence.get(f.filter);
    if (!rec) return;
    const key = (m) => `${m.kind}:${m.id}`;
    if (f.action === "present") {
      rec.members.clear();
      for (const m of f.members) rec.members.set(key(m), m);
      if (rec.handlers.onSync) rec.handlers.onSync([...rec.members.values()]);
    } else if (f.action === "enter") {
      rec.members.set(key(f.member), f.member);
      if (rec.handlers.onEnter) rec.handlers.onEnter(f.member);
    } else if (f.action === "leave") {
      rec.members.delete(key(f.member));
      if (rec.handlers.onLeave) rec.handlers.onLeave(f.member, f.reason);
    }
  }
}
