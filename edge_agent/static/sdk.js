/* p13n SDK: page views, item clicks, scroll depth, visible time; batched beacons.
   Consent-aware: events wait in memory until the visitor's choice is known, and
   Global Privacy Control means nothing beyond "necessary". Follows the site's consent
   platform when there is one: IAB TCF (__tcfapi) and Google Consent Mode (gtag
   'consent' calls), mapped to our categories with the edge's tables. No dependencies. */
(function (w, d) {
  "use strict";
  var cfg = w.__p13n_config || {}, endpoint = cfg.endpoint || "/_p13n/collect";
  var consentEndpoint = cfg.consentEndpoint || "/_p13n/consent";
  var queue = [], pending = [], consent = null, timer = 0, shown = 0, visibleMs = 0, sent = {}, choosing = false;
  var MAX_PENDING = 200, FLUSH_MS = 3000, BATCH = 20;

  function id() {
    if (w.crypto && crypto.randomUUID) return crypto.randomUUID().replace(/-/g, "");
    var s = "", i;
    for (i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16);
    return s;
  }
  function cookie(name) {
    var m = d.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function gpc() { return navigator.globalPrivacyControl === true || navigator.doNotTrack === "1"; }
  function readConsent() {
    if (gpc()) return ["necessary"];
    var c = cookie(cfg.consentCookie || "p13n_consent");
    if (c) return c.split(".");
    return cfg.consent && useful(cfg.consent) ? cfg.consent : null;
  }
  // analytics stores events; personalization alone lets them shape this visit on the
  // edge (session only, never stored): either is worth sending, the edge decides
  function useful(c) { return c.indexOf("analytics") >= 0 || c.indexOf("personalization") >= 0; }
  function allowed(type) { return type === "consent" || (consent && useful(consent)); }

  function send(batch, viaBeacon) {
    if (!batch.length) return;
    var body = JSON.stringify({ events: batch });
    if (viaBeacon && navigator.sendBeacon && navigator.sendBeacon(endpoint, new Blob([body], { type: "application/json" }))) return;
    try {
      fetch(endpoint, { method: "POST", body: body, keepalive: true, credentials: "same-origin", headers: { "Content-Type": "application/json" } });
    } catch (e) { /* the page must never break because of analytics */ }
  }
  function flush(viaBeacon) {
    if (choosing && !viaBeacon) return;  // the consent call issues the visitor id first
    clearTimeout(timer); timer = 0;
    while (queue.length) send(queue.splice(0, BATCH), viaBeacon);
  }
  function track(type, props, ctx) {
    var e = { event_id: id(), type: type, ts: Date.now(), url: location.href, context: { tz_offset: -new Date().getTimezoneOffset() } };
    if (d.referrer) e.referrer = d.referrer;
    for (var k in props) if (Object.prototype.hasOwnProperty.call(props, k)) e[k] = props[k];
    for (var c in ctx) if (Object.prototype.hasOwnProperty.call(ctx, c)) e.context[c] = ctx[c];
    if (consent === null && type !== "consent") {  // decision unknown: wait in memory
      if (pending.length < MAX_PENDING) pending.push(e);
      return;
    }
    if (!allowed(type)) return;
    queue.push(e);
    if (queue.length >= BATCH) flush(false);
    else if (!timer) timer = setTimeout(function () { flush(false); }, FLUSH_MS);
  }
  // The choice goes to the edge's consent endpoint, which records it, sets the consent
  // cookie and issues the visitor id when the choice allows one; events wait for its
  // answer so that the first page view is already attributed. Should the call fail,
  // the choice is kept in the cookie and recorded through the collect endpoint.
  function setConsent(categories, source) {
    var src = String(gpc() ? "gpc" : source || "sdk").slice(0, 32);
    consent = gpc() ? ["necessary"] : ["necessary"].concat((categories || []).filter(function (c) { return c !== "necessary"; }));
    var waiting = pending; pending = [];
    if (allowed("page_view")) for (var i = 0; i < waiting.length; i++) { queue.push(waiting[i]); }
    var chosen = consent;
    function fallback() {
      d.cookie = (cfg.consentCookie || "p13n_consent") + "=" + chosen.join(".") + "; path=/; max-age=31536000; samesite=lax";
      queue.unshift({ event_id: id(), type: "consent", ts: Date.now(), url: location.href, categories: chosen, source: src });
    }
    function done() { choosing = false; flush(false); }
    choosing = true;
    try {
      fetch(consentEndpoint, {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ categories: chosen, source: src })
      }).then(function (r) { if (!r.ok) fallback(); }, fallback).then(done, done);
    } catch (e) { fallback(); done(); }
  }

  function onScroll() {
    var h = d.documentElement, max = h.scrollHeight - w.innerHeight;
    var pct = max <= 0 ? 100 : Math.round(100 * (w.scrollY || h.scrollTop) / max);
    [25, 50, 75, 100].forEach(function (depth) {
      if (pct >= depth && !sent[depth]) { sent[depth] = 1; track("scroll", { depth: depth }); }
    });
  }
  function onVisibility() {
    if (d.visibilityState === "visible") shown = Date.now();
    else if (shown) { visibleMs += Date.now() - shown; shown = 0; }
  }
  function onLeave() {
    if (shown) { visibleMs += Date.now() - shown; shown = 0; }
    if (visibleMs > 0 && !sent.time) { sent.time = 1; track("time_on_page", { seconds: Math.round(visibleMs / 100) / 10 }); }
    flush(true);
  }

  // A consent platform's choice, as categories: each needs every purpose (TCF) or
  // consent type (Consent Mode) its table names. Recorded only when it changes what
  // the consent cookie says, so a platform that reports on every page costs nothing.
  function fromPlatform(table, granted, source) {
    var out = [];
    for (var c in table) if (table[c].every(granted)) out.push(c);
    var known = (cookie(cfg.consentCookie || "p13n_consent") || "").split(".").sort().join(".");
    if (known !== ["necessary"].concat(out).sort().join(".")) setConsent(out, source);
  }
  function watchTcf() {
    if (typeof w.__tcfapi !== "function" || watchTcf.on) return;
    watchTcf.on = 1;
    w.__tcfapi("addEventListener", 2, function (tc, ok) {
      if (!ok || !tc || tc.gdprApplies === false) return;
      if (tc.eventStatus !== "tcloaded" && tc.eventStatus !== "useractioncomplete") return;
      var p = (tc.purpose && tc.purpose.consents) || {}, v = (tc.vendor && tc.vendor.consents) || {};
      if (cfg.tcfVendor && !v[cfg.tcfVendor]) return fromPlatform({}, null, "tcf");
      fromPlatform(cfg.tcf || {}, function (n) { return p[n] === true; }, "tcf");
    });
  }
  var gcm = {};
  function onGtag(a) {  // gtag('consent', 'default' | 'update', {analytics_storage: 'granted', …})
    if (!a || a[0] !== "consent" || typeof a[2] !== "object") return;
    for (var k in a[2]) gcm[k] = a[2][k];
    var granted = function (t) { return gcm[t] === "granted"; };
    if (a[1] === "update") fromPlatform(cfg.gcm || {}, granted, "gcm");
    else if (consent === null || !cookie(cfg.consentCookie || "p13n_consent")) {  // a default is no choice
      consent = ["necessary"];
      for (var c in cfg.gcm || {}) if (cfg.gcm[c].every(granted)) consent.push(c);
    }
  }
  function watchGcm() {
    var dl = w.dataLayer = w.dataLayer || [], push = dl.push;
    for (var i = 0; i < dl.length; i++) onGtag(dl[i]);
    dl.push = function () {
      for (var j = 0; j < arguments.length; j++) onGtag(arguments[j]);
      return push.apply(dl, arguments);
    };
  }

  // A CMP's TC string already in its cookie (a choice made on another page): the edge
  // reads it; ask it once what it grants, instead of waiting for the CMP to report.
  function askEdge() {
    if (consent !== null || !cfg.tcfCookie || !cookie(cfg.tcfCookie)) return;
    try {
      fetch(consentEndpoint, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (b) {
        if (consent !== null || !b || !b.categories || !useful(b.categories)) return;
        consent = b.categories;
        var waiting = pending; pending = [];
        for (var i = 0; i < waiting.length; i++) queue.push(waiting[i]);
        flush(false);
      }, function () {});
    } catch (e) { /* never break the page */ }
  }

  consent = readConsent();
  if (d.visibilityState === "visible") shown = Date.now();
  d.addEventListener("click", function (ev) {
    var el = ev.target && ev.target.closest ? ev.target.closest("[data-p13n-item]") : null;
    var slot = el && el.closest("[data-slot]");  // the slot it was shown in: its click-through
    if (el) track("click", { item_id: el.getAttribute("data-p13n-item") }, slot ? { slot: slot.getAttribute("data-slot") } : null);
  }, true);
  w.addEventListener("scroll", onScroll, { passive: true });
  d.addEventListener("visibilitychange", onVisibility);
  w.addEventListener("pagehide", onLeave);
  track("page_view", { title: d.title.slice(0, 500) });
  watchGcm(); watchTcf(); askEdge();
  w.addEventListener("load", watchTcf);  // a CMP that defines __tcfapi after the SDK

  w.p13n = {
    track: track,
    consent: setConsent,
    // token: a short-lived JWT your backend signs for the logged-in user (docs/SECURITY.md)
    identify: function (token) { track("identify", { user_token: String(token) }); },
    flush: function () { flush(false); }
  };
})(window, document);
