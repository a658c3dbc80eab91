/* app.js -- Concord's web UI: services, nodes and key/value, drawn from the agent's own /v1
 * HTTP API with fetch().
 *
 * Routes live in the path, as in Consul's UI, so every view has a link of its own:
 *   /ui/<dc>/services             /ui/<dc>/services/<name>
 *   /ui/<dc>/nodes                /ui/<dc>/nodes/<name>
 *   /ui/<dc>/kv/<prefix>/         /ui/<dc>/kv/<key>
 * The agent answers every /ui/ path with this page, and the script draws the view.
 *
 * Views follow changes with blocking queries (?index=<X-Consul-Index>&wait=...): each watched
 * endpoint has a loop that asks again as soon as an answer comes, and the view redraws from
 * the latest answers. Leaving a view aborts its loops.
 *
 * Every name, tag, output and value comes from whoever can write to the catalog or the KV
 * store, so the DOM is only ever built with createElement/textContent (the el() helper); no
 * data goes through innerHTML, and links are built from fixed prefixes plus encoded parts. */
"use strict";

const WAIT = "5m";          /* blocking query wait; the agent caps it at 10m */
const RETRY_MS = 3000;      /* after a failed request */

/* ---- DOM helpers ---- */

/* el("a", {href: "/x", class: "c"}, "text", child...): strings become text nodes. */
function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") n.className = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (k === "value") n.value = v;
    else n.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    n.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return n;
}

function replace(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c)));
}

const main = () => document.getElementById("main");

/* An in-app link: navigates without reloading. */
function link(href, text, cls) {
  return el("a", {href: href, class: cls, "data-nav": true}, text);
}

function tags(list) {
  return (list || []).map((t) => el("span", {class: "tag"}, t));
}

function statusBadge(s) {
  return el("span", {class: "status " + (s === "passing" || s === "warning" || s === "critical" ? s : "")}, s || "");
}

function counts(c) {
  return [
    el("span", {class: "count passing", title: "passing"}, String(c.passing)),
    el("span", {class: "count warning", title: "warning"}, String(c.warning)),
    el("span", {class: "count critical", title: "critical"}, String(c.critical)),
  ];
}

function tally(checks) {
  const c = {passing: 0, warning: 0, critical: 0};
  for (const ch of checks || []) {
    if (ch.Status in c) c[ch.Status]++;
    else c.critical++; /* maintenance and unknown states count as failing */
  }
  return c;
}

/* The worst of a list of checks' states, as Consul aggregates health. */
function worst(checks) {
  const c = tally(checks);
  return c.critical ? "critical" : c.warning ? "warning" : "passing";
}

function errorBox(msg) {
  return el("p", {class: "error"}, msg);
}

/* ---- paths and the API ---- */

/* A key or name as URL path segments: each part encoded, the slashes kept. */
function encPath(s) {
  return s.split("/").map(encodeURIComponent).join("/");
}

const state = {dc: "", view: null, defaultDc: ""};

function uiPath(section, rest) {
  return "/ui/" + encodeURIComponent(state.dc) + "/" + section + (rest === undefined ? "" : "/" + rest);
}

function apiUrl(path, params) {
  const q = new URLSearchParams(params || {});
  if (state.dc) q.set("dc", state.dc);
  const s = q.toString();
  return path + (s ? "?" + s : "");
}

class HttpError extends Error {
  constructor(status, text) {
    super(text ? status + ": " + text : "HTTP " + status);
    this.status = status;
  }
}

/* One request; answers {status, text, index} whatever the status. */
async function request(method, path, params, body, signal) {
  const r = await fetch(apiUrl(path, params), {method: method, body: body, signal: signal,
                                               cache: "no-store"});
  const text = await r.text();
  return {status: r.status, text: text, index: Number(r.headers.get("X-Consul-Index") || 0)};
}

/* One request that must succeed (2xx), else an HttpError with the agent's message. */
async function api(method, path, params, body, signal) {
  const r = await request(method, path, params, body, signal);
  if (r.status < 200 || r.status > 299) throw new HttpError(r.status, r.text.trim());
  return r;
}

async function getJSON(path, params, signal) {
  const r = await api("GET", path, params, undefined, signal);
  return JSON.parse(r.text);
}

/* A view's lifetime: its AbortController stops every loop and fetch it started. */
class View {
  constructor() {
    this.ctl = new AbortController();
    this.live = true;
  }
  stop() {
    this.live = false;
    this.ctl.abort();
  }
  /* Keeps `path` watched with blocking queries; onData(json or null for 404, index) runs for
   * the first answer and every change. */
  watch(path, params, onData) {
    let index = 0;
    const loop = async () => {
      while (this.live) {
        try {
          const p = Object.assign({}, params || {});
          if (index) {
            p.index = String(index);
            p.wait = WAIT;
          }
          const r = await request("GET", path, p, undefined, this.ctl.signal);
          /* 404 (no such key or prefix) is an answer too, and carries an index to block on */
          if (r.status !== 404 && (r.status < 200 || r.status > 299))
            throw new HttpError(r.status, r.text.trim());
          const data = r.status === 404 || !r.text ? null : JSON.parse(r.text);
          const got = r.index;
          if (!this.live) return;
          const changed = index === 0 || got !== index;
          /* an index that goes backwards (a restored snapshot) starts over, as Consul advises */
          index = got > 0 && got >= index ? got : 0;
          if (changed) onData(data, index);
          if (!index) await sleep(1000, this.ctl.signal);
        } catch (e) {
          if (!this.live || e.name === "AbortError") return;
          onData(undefined, 0, e);
          await sleep(RETRY_MS, this.ctl.signal).catch(() => {});
        }
      }
    };
    loop();
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(t); reject(new DOMException("aborted", "AbortError")); });
  });
}

/* ---- views ---- */

function servicesView(view) {
  const filter = el("input", {type: "search", placeholder: "Filter by name or tag", id: "filter",
                              "aria-label": "Filter services"});
  const body = el("tbody", {id: "services-body"});
  const status = el("p", {class: "muted"}, "Loading…");
  replace(main(), el("h1", {}, "Services"), el("div", {class: "toolbar"}, filter), status,
          el("table", {id: "services"},
             el("thead", {}, el("tr", {}, el("th", {}, "Service"), el("th", {}, "Instances"),
                                el("th", {}, "Health checks"), el("th", {}, "Tags"))),
             body));
  let services = null;  /* name -> tags, from /v1/catalog/services */
  let health = {};      /* name -> /v1/health/service/<name> entries */
  let gen = 0;

  const draw = () => {
    if (!services) return;
    const q = filter.value.trim().toLowerCase();
    const names = Object.keys(services).sort();
    const rows = [];
    for (const name of names) {
      const t = services[name] || [];
      if (q && !name.toLowerCase().includes(q) && !t.some((x) => x.toLowerCase().includes(q))) continue;
      const entries = health[name] || [];
      const checks = entries.flatMap((e) => e.Checks || []);
      rows.push(el("tr", {"data-service": name},
                   el("td", {}, link(uiPath("services", encodeURIComponent(name)), name)),
                   el("td", {class: "instances"}, String(entries.length)),
                   el("td", {class: "health"}, counts(tally(checks))),
                   el("td", {}, tags(t))));
    }
    replace(body, rows);
    replace(status, names.length ? "" : "No services.");
  };
  /* The list and the health of every service: a change to either refetches each service's
   * health (one request per service; fine for the sizes a UI shows). */
  const refresh = async () => {
    const my = ++gen;
    const names = Object.keys(services || {});
    const fresh = {};
    try {
      await Promise.all(names.map(async (n) => {
        fresh[n] = await getJSON("/v1/health/service/" + encodeURIComponent(n), {}, view.ctl.signal);
      }));
    } catch (e) {
      if (e.name !== "AbortError" && view.live) replace(status, errorBox(String(e.message)));
      return;
    }
    if (my !== gen || !view.live) return;
    health = fresh;
    draw();
  };
  filter.addEventListener("input", draw);
  view.watch("/v1/catalog/services", {}, (data, idx, err) => {
    if (err) return replace(status, errorBox("Could not load services: " + err.message));
    services = data || {};
    refresh();
  });
  view.watch("/v1/health/state/any", {}, (data, idx, err) => {
    if (!err && services) refresh();
  });
}

function serviceView(view, name) {
  const box = el("div", {id: "instances"}, el("p", {class: "muted"}, "Loading…"));
  replace(main(), el("p", {class: "crumbs"}, link(uiPath("services"), "Services"), " / "),
          el("h1", {}, name), box);
  view.watch("/v1/health/service/" + encodeURIComponent(name), {}, (data, idx, err) => {
    if (err) return replace(box, errorBox("Could not load " + name + ": " + err.message));
    const entries = (data || []).slice().sort((a, b) =>
      (a.Node.Node + a.Service.ID).localeCompare(b.Node.Node + b.Service.ID));
    if (!entries.length) return replace(box, el("p", {class: "muted"}, "No instances of this service."));
    replace(box, entries.map((e) => {
      const s = e.Service, n = e.Node;
      const addr = (s.Address || n.Address) + ":" + s.Port;
      return el("section", {class: "instance", "data-instance": s.ID},
        el("h2", {}, s.ID, " ", statusBadge(worst(e.Checks))),
        el("p", {}, "Node ", link(uiPath("nodes", encodeURIComponent(n.Node)), n.Node),
           " · ", el("span", {class: "addr"}, addr), " ", tags(s.Tags)),
        checksTable(e.Checks));
    }));
  });
}

function checksTable(checks) {
  if (!checks || !checks.length) return el("p", {class: "muted"}, "No health checks.");
  return el("table", {class: "checks"},
    el("thead", {}, el("tr", {}, el("th", {}, "Check"), el("th", {}, "Status"),
                       el("th", {}, "Service"), el("th", {}, "Output"))),
    el("tbody", {}, checks.map((c) => el("tr", {"data-check": c.CheckID},
      el("td", {}, c.Name || c.CheckID, el("div", {class: "muted"}, c.CheckID)),
      el("td", {}, statusBadge(c.Status)),
      el("td", {}, c.ServiceName || (c.ServiceID ? c.ServiceID : "(node)")),
      el("td", {}, el("pre", {}, c.Output || ""))))));
}

function nodesView(view) {
  const filter = el("input", {type: "search", placeholder: "Filter by name or address", id: "filter",
                              "aria-label": "Filter nodes"});
  const body = el("tbody", {id: "nodes-body"});
  const status = el("p", {class: "muted"}, "Loading…");
  replace(main(), el("h1", {}, "Nodes"), el("div", {class: "toolbar"}, filter), status,
          el("table", {id: "nodes"},
             el("thead", {}, el("tr", {}, el("th", {}, "Node"), el("th", {}, "Address"),
                                el("th", {}, "Health"), el("th", {}, "Checks"))),
             body));
  let nodes = null, checks = [];
  const draw = () => {
    if (!nodes) return;
    const q = filter.value.trim().toLowerCase();
    const byNode = {};
    for (const c of checks) (byNode[c.Node] = byNode[c.Node] || []).push(c);
    const list = nodes.slice().sort((a, b) => a.Node.localeCompare(b.Node));
    replace(body, list.filter((n) => !q || n.Node.toLowerCase().includes(q) ||
                                     String(n.Address).toLowerCase().includes(q))
      .map((n) => el("tr", {"data-node": n.Node},
        el("td", {}, link(uiPath("nodes", encodeURIComponent(n.Node)), n.Node)),
        el("td", {}, n.Address),
        el("td", {}, statusBadge(worst(byNode[n.Node]))),
        el("td", {}, counts(tally(byNode[n.Node]))))));
    replace(status, list.length ? "" : "No nodes.");
  };
  filter.addEventListener("input", draw);
  view.watch("/v1/catalog/nodes", {}, (data, idx, err) => {
    if (err) return replace(status, errorBox("Could not load nodes: " + err.message));
    nodes = data || [];
    draw();
  });
  view.watch("/v1/health/state/any", {}, (data, idx, err) => {
    if (err) return;
    checks = data || [];
    draw();
  });
}

function nodeView(view, name) {
  const head = el("p", {class: "muted"}, "Loading…");
  const svc = el("div", {id: "node-services"});
  const chk = el("div", {id: "node-checks"});
  replace(main(), el("p", {class: "crumbs"}, link(uiPath("nodes"), "Nodes"), " / "),
          el("h1", {}, name), head, el("h2", {}, "Services"), svc, el("h2", {}, "Health checks"), chk);
  view.watch("/v1/catalog/node/" + encodeURIComponent(name), {}, (data, idx, err) => {
    if (err) return replace(head, errorBox("Could not load " + name + ": " + err.message));
    if (!data || !data.Node) {
      replace(head, errorBox("No node named " + name + "."));
      return replace(svc);
    }
    replace(head, "Address ", el("span", {class: "addr"}, data.Node.Address),
            " · Datacenter ", data.Node.Datacenter || state.dc);
    const list = Object.values(data.Services || {}).sort((a, b) => a.ID.localeCompare(b.ID));
    if (!list.length) return replace(svc, el("p", {class: "muted"}, "No services on this node."));
    replace(svc, el("table", {class: "services"},
      el("thead", {}, el("tr", {}, el("th", {}, "ID"), el("th", {}, "Service"),
                         el("th", {}, "Address"), el("th", {}, "Tags"))),
      el("tbody", {}, list.map((s) => el("tr", {"data-service": s.ID},
        el("td", {}, s.ID),
        el("td", {}, link(uiPath("services", encodeURIComponent(s.Service)), s.Service)),
        el("td", {}, (s.Address || data.Node.Address) + ":" + s.Port),
        el("td", {}, tags(s.Tags)))))));
  });
  view.watch("/v1/health/node/" + encodeURIComponent(name), {}, (data, idx, err) => {
    if (err) return replace(chk, errorBox("Could not load checks: " + err.message));
    replace(chk, checksTable(data || []));
  });
}

/* Base64 (the KV API's Value) to text; bytes that are not UTF-8 show as U+FFFD. */
function b64text(v) {
  if (!v) return "";
  const bin = atob(v);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

function kvCrumbs(key) {
  const parts = key.split("/");
  const out = [link(uiPath("kv", ""), "Key/Value"), " / "];
  let acc = "";
  for (let i = 0; i < parts.length - 1; i++) {
    acc += parts[i] + "/";
    out.push(link(uiPath("kv", encPath(acc)), parts[i]), " / ");
  }
  return el("p", {class: "crumbs"}, out);
}

/* A folder: the keys and sub-folders directly under prefix ("" or ending in "/"). */
function kvFolderView(view, prefix) {
  const list = el("div", {id: "kv-list"}, el("p", {class: "muted"}, "Loading…"));
  const msg = el("div", {});
  const name = el("input", {type: "text", id: "kv-new-key", placeholder: "key (end with / for a folder)"});
  const value = el("textarea", {id: "kv-new-value"});
  const flags = el("input", {type: "text", id: "kv-new-flags", value: "0", size: 20});
  const form = el("form", {class: "kv", id: "kv-create"},
    el("h2", {}, "Create a key under " + (prefix || "/")),
    el("label", {}, "Key ", name), el("label", {}, "Value ", value),
    el("label", {}, "Flags ", flags),
    el("button", {type: "submit"}, "Create"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const k = prefix + name.value;
    if (!name.value) return replace(msg, errorBox("A key needs a name."));
    if (!/^\d+$/.test(flags.value)) return replace(msg, errorBox("Flags must be a number."));
    try {
      await api("PUT", "/v1/kv/" + encPath(k), {flags: flags.value},
                k.endsWith("/") ? "" : value.value);
      name.value = value.value = "";
      navigate(uiPath("kv", encPath(k)));
    } catch (e) {
      replace(msg, errorBox("Could not create " + k + ": " + e.message));
    }
  });
  const title = prefix ? prefix : "Key/Value";
  const del = prefix ? el("button", {class: "danger", id: "kv-delete-folder", type: "button"},
                          "Delete folder") : null;
  if (del) del.addEventListener("click", async () => {
    if (!window.confirm("Delete " + prefix + " and every key under it?")) return;
    try {
      await api("DELETE", "/v1/kv/" + encPath(prefix), {recurse: ""});
      const up = prefix.slice(0, -1).lastIndexOf("/");
      navigate(uiPath("kv", encPath(prefix.slice(0, up + 1))));
    } catch (e) {
      replace(msg, errorBox("Could not delete " + prefix + ": " + e.message));
    }
  });
  replace(main(), prefix ? kvCrumbs(prefix) : null, el("h1", {}, title), msg, list,
          el("div", {class: "toolbar"}, del), form);
  view.watch("/v1/kv/" + encPath(prefix), {keys: "", separator: "/"}, (data, idx, err) => {
    if (err) return replace(list, errorBox("Could not list keys: " + err.message));
    /* the prefix's own entry (a folder created as "prefix/") is not a child */
    const keys = (data || []).filter((k) => k !== prefix).sort();
    if (!keys.length) return replace(list, el("p", {class: "muted"}, "No keys."));
    replace(list, el("table", {id: "kv-keys"},
      el("thead", {}, el("tr", {}, el("th", {}, "Key"))),
      el("tbody", {}, keys.map((k) => el("tr", {"data-key": k},
        el("td", {}, link(uiPath("kv", encPath(k)), k.slice(prefix.length) || k,
                          k.endsWith("/") ? "folder" : "key")))))));
  });
}

/* One key: its value (editable), flags, and delete. */
function kvKeyView(view, key) {
  const msg = el("div", {});
  const meta = el("p", {class: "muted", id: "kv-meta"}, "Loading…");
  const value = el("textarea", {id: "kv-value"});
  const flags = el("input", {type: "text", id: "kv-flags", size: 20});
  const save = el("button", {type: "submit"}, "Save");
  const del = el("button", {type: "button", class: "danger", id: "kv-delete"}, "Delete");
  const form = el("form", {class: "kv", id: "kv-edit"},
    el("label", {}, "Value ", value), el("label", {}, "Flags ", flags), save, del);
  let dirty = false;
  value.addEventListener("input", () => { dirty = true; });
  flags.addEventListener("input", () => { dirty = true; });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!/^\d+$/.test(flags.value)) return replace(msg, errorBox("Flags must be a number."));
    try {
      await api("PUT", "/v1/kv/" + encPath(key), {flags: flags.value}, value.value);
      dirty = false;
      replace(msg, el("p", {class: "muted"}, "Saved."));
    } catch (e) {
      replace(msg, errorBox("Could not save: " + e.message));
    }
  });
  del.addEventListener("click", async () => {
    if (!window.confirm("Delete " + key + "?")) return;
    try {
      await api("DELETE", "/v1/kv/" + encPath(key));
      navigate(uiPath("kv", encPath(key.slice(0, key.lastIndexOf("/") + 1))));
    } catch (e) {
      replace(msg, errorBox("Could not delete: " + e.message));
    }
  });
  replace(main(), kvCrumbs(key), el("h1", {}, key), msg, meta, form);
  view.watch("/v1/kv/" + encPath(key), {}, (data, idx, err) => {
    if (err) return replace(meta, errorBox("Could not load " + key + ": " + err.message));
    const e = data && data[0];
    if (!e) {
      replace(meta, "This key does not exist (yet): saving creates it.");
      return;
    }
    replace(meta, "Flags ", el("span", {id: "kv-flags-shown"}, String(e.Flags)),
            " · ModifyIndex ", String(e.ModifyIndex),
            e.Session ? " · locked by session " + e.Session : "");
    /* a change on the server replaces the form only while the user has not typed in it */
    if (!dirty) {
      value.value = b64text(e.Value);
      flags.value = String(e.Flags);
    } else {
      replace(msg, el("p", {class: "muted"}, "The key changed on the server since you began editing."));
    }
  });
}

/* ---- routing ---- */

function parseRoute(pathname) {
  /* /ui/<dc>/<section>/<rest...>; parts are decoded one by one so an encoded "/" stays in
   * a name */
  const raw = pathname.replace(/^\/ui\/?/, "");
  const parts = raw.split("/");
  const dec = (s) => { try { return decodeURIComponent(s); } catch (e) { return s; } };
  return {
    dc: parts[0] ? dec(parts[0]) : "",
    section: parts[1] || "",
    rest: parts.slice(2).map(dec).join("/"),
  };
}

function route() {
  if (state.view) state.view.stop();
  const r = parseRoute(location.pathname);
  if (!r.dc) {
    state.dc = state.defaultDc;
    history.replaceState(null, "", uiPath("services"));
    return route();
  }
  state.dc = r.dc;
  const view = (state.view = new View());
  for (const id of ["services", "nodes", "kv"]) {
    const a = document.getElementById("nav-" + id);
    a.setAttribute("href", uiPath(id, id === "kv" ? "" : undefined));
    a.className = r.section === id ? "active" : "";
  }
  document.getElementById("brand").setAttribute("href", uiPath("services"));
  syncDcPicker();
  switch (r.section) {
  case "services":
    document.title = (r.rest ? r.rest + " - " : "") + "Services - Concord";
    return r.rest ? serviceView(view, r.rest) : servicesView(view);
  case "nodes":
    document.title = (r.rest ? r.rest + " - " : "") + "Nodes - Concord";
    return r.rest ? nodeView(view, r.rest) : nodesView(view);
  case "kv":
    document.title = "Key/Value - Concord";
    /* a trailing slash (or nothing) is a folder, anything else a key */
    return r.rest === "" || r.rest.endsWith("/") ? kvFolderView(view, r.rest) : kvKeyView(view, r.rest);
  default:
    history.replaceState(null, "", uiPath("services"));
    return route();
  }
}

function navigate(href) {
  history.pushState(null, "", href);
  route();
}

let dcs = [];
function syncDcPicker() {
  const sel = document.getElementById("dc");
  const list = dcs.includes(state.dc) ? dcs : dcs.concat([state.dc]);
  if (sel.options.length !== list.length || [...sel.options].some((o, i) => o.value !== list[i])) {
    replace(sel, list.map((d) => el("option", {value: d}, d)));
  }
  sel.value = state.dc;
}

async function start() {
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest && ev.target.closest("a[data-nav], header a");
    if (!a || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    navigate(a.getAttribute("href"));
  });
  window.addEventListener("popstate", route);
  /* Leaving the page (or its going into the back/forward cache) ends the view's blocking
   * queries: a browser allows a few connections per host, and queries left waiting by pages
   * the user has left would soon hold them all. Coming back starts the view again. */
  window.addEventListener("pagehide", () => { if (state.view) state.view.stop(); });
  window.addEventListener("pageshow", (ev) => { if (ev.persisted) route(); });
  document.getElementById("dc").addEventListener("change", (ev) => {
    const r = parseRoute(location.pathname);
    state.dc = ev.target.value;
    /* the same section in the other datacenter; names need not exist there */
    navigate(uiPath(r.section || "services", r.section === "kv" ? "" : undefined));
  });
  try {
    const self = await getJSON("/v1/agent/self");
    state.defaultDc = (self.Config && self.Config.Datacenter) || "";
  } catch (e) { /* the datacenter list below still gives one */ }
  try {
    dcs = await getJSON("/v1/catalog/datacenters");
  } catch (e) {
    dcs = [];
  }
  if (!Array.isArray(dcs)) dcs = [];
  dcs = dcs.map(String);
  if (!state.defaultDc) state.defaultDc = dcs[0] || "dc1";
  if (!dcs.includes(state.defaultDc)) dcs.unshift(state.defaultDc);
  route();
}

start();
