/* procsync dashboard: live from <prefix>/api/events (fetch + stream reader, so a token header can be sent). */
(function () {
  "use strict";

  var BASE = document.body.getAttribute("data-base") || "";
  var API = BASE + "/api";
  var TOKEN_KEY = "procsync-token:" + BASE;
  var LOG_MAX_LINES = 2000;

  // Maps keyed by server id are Map objects: an id such as "constructor" or
  // "__proto__" must not meet Object.prototype.
  var servers = new Map(); // id -> status object
  var order = [];          // ids in the server's order
  var rows = new Map();    // id -> {tr, orphan, cells...}
  var sections = new Map(); // group name ("" for the servers in no group) -> {tbody, head, ...}
  var selected = null;
  var lastEventId = null;
  var eventsAbort = null;
  var logAbort = null;
  var needsLogin = false;
  var refreshTimers = new Map();  // id -> timer

  var $ = function (id) { return document.getElementById(id); };

  // ---------------------------------------------------------------- helpers

  function token() { try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; } }

  // a host (Django) that serves this page behind its login hands over its CSRF header and token
  var CSRF_HEADER = document.body.getAttribute("data-csrf-header");
  var CSRF_TOKEN = document.body.getAttribute("data-csrf-token");

  function headers(extra) {
    var h = extra || {};
    var t = token();
    if (t) h["Authorization"] = "Bearer " + t;
    if (CSRF_HEADER && CSRF_TOKEN) h[CSRF_HEADER] = CSRF_TOKEN;
    return h;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function setText(node, text) {
    text = text === null || text === undefined ? "" : String(text);
    if (node.textContent !== text) node.textContent = text;
  }

  function fmtUptime(seconds) {
    if (seconds === null || seconds === undefined || seconds < 0) return "—";
    seconds = Math.floor(seconds);
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600),
        m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + s + "s";
    return s + "s";
  }

  function fmtBytes(n) {
    if (!n) return "—";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  function fmtCpu(p, running) {
    if (!running || p === null || p === undefined) return "—";
    return (p >= 10 ? p.toFixed(0) : p.toFixed(1)) + "%";
  }

  function stateTone(state) {
    switch (state) {
      case "running": return "ok";
      case "completed": return "done";     // a job that finished with a success code
      case "waiting": return "wait";       // waits for its dependencies
      case "starting": case "stopping": case "backoff": return "warn";
      case "skipped": return "skip";       // a dependency failed: see its message
      case "fatal": case "crashed": return "bad";
      default: return "idle";
    }
  }

  function isActive(s) {                 // a process runs, or a start is under way
    return s.running || s.status === "starting" || s.status === "backoff" ||
      s.status === "stopping" || s.status === "waiting";
  }

  function needsAttention(s) {
    var tone = stateTone(s.status);
    return tone === "bad" || tone === "skip" || s.orphaned;
  }

  function dependsText(s) {
    var deps = s.depends_on || {};
    var parts = Object.keys(deps).map(function (d) { return d + " (" + deps[d] + ")"; });
    return parts.length ? "depends on: " + parts.join(", ") : "";
  }

  function healthTone(h) {
    switch (h) {
      case "healthy": return "ok";
      case "unhealthy": return "warn";
      case "unresponsive": case "dead": return "bad";
      default: return "idle";
    }
  }

  function toast(title, message, tone) {
    var box = el("div", "toast");
    box.setAttribute("data-tone", tone || "ok");
    box.setAttribute("role", tone === "bad" ? "alert" : "status");
    var body = el("div");
    body.appendChild(el("strong", null, title));
    if (message) body.appendChild(el("p", null, message));
    var close = el("button", "btn btn-quiet close", "×");
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss");
    close.addEventListener("click", function () { box.remove(); });
    box.appendChild(body);
    box.appendChild(close);
    $("toasts").appendChild(box);
    var list = $("toasts").children;
    while (list.length > 4) list[0].remove();
    setTimeout(function () { box.remove(); }, tone === "bad" ? 12000 : 3000);
  }

  function setConn(state, text) {
    $("conn").setAttribute("data-state", state);
    setText($("conn-text"), text);
  }

  function ApiError(status, body) {
    this.status = status;
    this.code = body && body.error || "error";
    this.message = body && body.message || ("HTTP " + status);
    this.body = body || {};
  }

  function showLogin(message) {
    needsLogin = true;
    $("login").hidden = false;
    setText($("login-error"), message || "");
    setConn("down", "Token needed");
    $("token").focus();
  }

  function api(method, path, body) {
    var init = { method: method, headers: headers({ "Accept": "application/json" }), cache: "no-store" };
    if (method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    return fetch(API + path, init).then(function (resp) {
      return resp.json().catch(function () { return null; }).then(function (data) {
        if (resp.status === 401) {
          showLogin(token() ? "That token was refused." : "");
        }
        if (!resp.ok) throw new ApiError(resp.status, data);
        return data;
      });
    });
  }

  // ---------------------------------------------------------------- SSE over fetch

  function readEvents(resp, onEvent) {
    var reader = resp.body.getReader();
    var decoder = new TextDecoder();
    var buf = "";
    function dispatch(block) {
      var name = "message", data = [], id = null;
      block.split("\n").forEach(function (line) {
        if (!line || line.charAt(0) === ":") return;
        var i = line.indexOf(":");
        var field = i < 0 ? line : line.slice(0, i);
        var value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
        else if (field === "id") id = value;
      });
      if (id !== null) lastEventId = id;
      if (!data.length) return;
      var payload;
      try { payload = JSON.parse(data.join("\n")); } catch (e) { return; }
      onEvent(name, payload);
    }
    function pump() {
      return reader.read().then(function (r) {
        if (r.done) return;
        buf += decoder.decode(r.value, { stream: true }).replace(/\r\n?/g, "\n");
        var i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          dispatch(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
        return pump();
      });
    }
    return pump();
  }

  function openStream(url, extraHeaders, signal) {
    return fetch(url, {
      headers: headers(Object.assign({ "Accept": "text/event-stream" }, extraHeaders || {})),
      cache: "no-store",
      signal: signal
    }).then(function (resp) {
      if (resp.status === 401) {
        showLogin(token() ? "That token was refused." : "");
        throw new ApiError(401, null);
      }
      if (!resp.ok || !resp.body) {
        return resp.json().catch(function () { return null; }).then(function (b) {
          throw new ApiError(resp.status, b);
        });
      }
      return resp;
    });
  }

  // ---------------------------------------------------------------- live events

  var retryDelay = 1000;

  function connectEvents() {
    if (eventsAbort) eventsAbort.abort();
    noteResume();
    var ctl = new AbortController();
    eventsAbort = ctl;
    setConn("connecting", "Connecting…");
    var extra = lastEventId !== null ? { "Last-Event-ID": lastEventId } : {};
    openStream(API + "/events", extra, ctl.signal).then(function (resp) {
      retryDelay = 1000;
      setConn("live", "Live");
      return readEvents(resp, onEvent);
    }).then(function () {
      if (ctl.signal.aborted) return;
      scheduleReconnect("Connection closed");
    }).catch(function (err) {
      if (ctl.signal.aborted) return;
      if (err instanceof ApiError && err.status === 401) return;  // wait for the token form
      if (err instanceof ApiError && err.status !== 0) {
        scheduleReconnect(err.message);
      } else {
        scheduleReconnect("Server unreachable");
      }
    });
  }

  function scheduleReconnect(why) {
    setConn("down", why + " — retrying");
    var delay = retryDelay;
    retryDelay = Math.min(retryDelay * 2, 10000);
    setTimeout(function () { if (!needsLogin) connectEvents(); }, delay);
  }

  function renderInstance(info) {
    var box = $("instance");
    if (!info || !info.name) return;
    box.hidden = false;
    box.textContent = "";
    box.appendChild(el("span", "muted", "instance "));
    box.appendChild(el("strong", null, info.name));
    if (info.is_leader) {
      box.appendChild(el("span", "leader-badge", "leader"));
    } else {
      box.appendChild(el("span", "muted", " · leader: " + (info.leader || "none")));
    }
  }

  function onEvent(name, data) {
    if (name === "snapshot" || name === "status") {
      replaceAll(data.servers || []);
      renderInstance(data.instance);
      syncSeries(name === "snapshot");   // a snapshot opens every (re)connection: fill the gap
      return;
    }
    if (name === "health_check") {
      (data.statuses || []).forEach(function (st) {
        var s = servers.get(st.id);
        if (!s) return;
        s.cpu_percent = st.cpu_percent;
        s.memory_rss = st.memory_rss;
        if (s.running && st.health) s.health = st.health;
        renderRow(st.id);
      });
      onHealthCheck(data.statuses || []);
      return;
    }
    if (name === "process_exit") onProcessExit(data);
    var id = data.id;
    if (id && servers.has(id)) {
      refreshSoon(id);
      if (id === selected && name !== "status_change") refreshHistorySoon();
    } else if (name === "initialized") {
      refreshAll();
    }
    if (name === "server_fatal") {
      toast((servers.has(id) && servers.get(id).name || id) + " gave up restarting",
            "It exited " + (data.restarts || 0) + " times in a row.", "bad");
    }
    if (name === "process_error" && data.error) {
      toast("Could not start " + (id || "a server"), data.error, "bad");
    }
    if (name === "server_skipped") {
      toast((servers.has(id) && servers.get(id).name || id) + " was skipped",
            data.reason || "A dependency failed.", "bad");
    }
    if (name === "memory_limit_exceeded") {
      toast((servers.has(id) && servers.get(id).name || id) + " passed its memory limit",
            fmtBytes(data.rss) + " of " + fmtBytes(data.limit) + ": " + (data.action || ""), "bad");
    }
  }

  function refreshSoon(id) {
    if (refreshTimers.has(id)) return;
    refreshTimers.set(id, setTimeout(function () {
      refreshTimers.delete(id);
      api("GET", "/servers/" + encodeURIComponent(id)).then(function (s) {
        if (!rows.has(id)) return;       // removed meanwhile
        var before = servers.get(id);
        servers.set(id, s);
        if (!before || (before.group || "") !== (s.group || "")) {
          replaceAll(order.map(function (i) { return servers.get(i); }));  // moved to another group
          return;
        }
        renderRow(id);
        renderSummary();
      }).catch(function () { /* shown by the next snapshot */ });
    }, 120));
  }

  function refreshAll() {
    return api("GET", "/servers").then(function (data) {
      replaceAll(data.servers || []);
      renderInstance(data.instance);
      syncSeries(false);
    });
  }

  // ---------------------------------------------------------------- table

  function replaceAll(list) {
    var ids = list.map(function (s) { return s.id; });
    var now = new Map();
    list.forEach(function (s) { now.set(s.id, s); });
    rows.forEach(function (r, id) {
      if (!now.has(id)) {
        r.tr.remove();
        r.orphan.remove();
        rows.delete(id);
      }
    });
    servers = now;
    order = ids;
    // Sections: one per group, in the order of their first server, then the servers in no group.
    var names = [];
    ids.forEach(function (id) {
      var g = now.get(id).group || "";
      if (g && names.indexOf(g) < 0) names.push(g);
    });
    sections.forEach(function (sec, g) {
      if (g && names.indexOf(g) < 0) { sec.tbody.remove(); sections.delete(g); }
    });
    var table = $("servers");
    names.concat([""]).forEach(function (g) { table.appendChild(section(g).tbody); });
    ids.forEach(function (id) {
      if (!rows.has(id)) rows.set(id, buildRow(id));
      var r = rows.get(id);
      var tbody = section(now.get(id).group || "").tbody;
      tbody.appendChild(r.tr);             // re-append keeps server order
      tbody.appendChild(r.orphan);
      renderRow(id);
    });
    var ungrouped = section("");
    ungrouped.head.hidden = !names.length || !ids.some(function (id) { return !now.get(id).group; });
    sections.forEach(function (sec, g) { renderGroup(g); });
    $("servers").classList.toggle("has-reload", ids.some(function (id) { return !!now.get(id).reload_signal; }));
    $("empty").hidden = ids.length > 0;
    if (selected !== null && !servers.has(selected)) closeDetail();
    renderSummary();
  }

  // ---------------------------------------------------------------- groups

  function section(g) {
    if (sections.has(g)) return sections.get(g);
    var tbody = g ? el("tbody", "group") : $("rows");
    tbody.setAttribute("data-group", g);
    var head = el("tr", "group-head");
    var th = el("th");
    th.colSpan = 10;
    th.scope = "rowgroup";
    var bar = el("div", "group-bar");
    var sec = { tbody: tbody, head: head, busy: false };
    bar.appendChild(el("span", "group-name", g || "Not in a group"));
    sec.count = el("span", "group-count muted");
    bar.appendChild(sec.count);
    if (g) {
      var act = el("div", "actions");
      ["start", "stop", "restart"].forEach(function (action) {
        var label = action.charAt(0).toUpperCase() + action.slice(1);
        var b = button(label, action === "start" ? "btn-primary" : "", function () { groupAct(g, action, b); });
        b.setAttribute("data-group-action", action);
        b.setAttribute("aria-label", label + " group " + g);
        b.title = label + " every server of " + g + " in dependency order";
        sec[action] = b;
        act.appendChild(b);
      });
      bar.appendChild(act);
    }
    th.appendChild(bar);
    head.appendChild(th);
    tbody.insertBefore(head, tbody.firstChild);
    sections.set(g, sec);
    return sec;
  }

  function members(g) {
    return order.filter(function (id) { var s = servers.get(id); return s && (s.group || "") === g; });
  }

  function renderGroup(g) {
    var sec = sections.get(g);
    if (!sec) return;
    var ids = members(g);
    var active = ids.filter(function (id) { return isActive(servers.get(id)); }).length;
    var running = ids.filter(function (id) { return servers.get(id).running; }).length;
    setText(sec.count, ids.length + (ids.length === 1 ? " server" : " servers") + " · " + running + " running");
    if (!g) return;
    sec.start.disabled = sec.busy || active === ids.length;
    sec.stop.disabled = sec.busy || active === 0;
    sec.restart.disabled = sec.busy;
  }

  function groupAct(g, action, btn) {
    var sec = sections.get(g);
    if (!sec || sec.busy) return;
    sec.busy = true;
    btn.setAttribute("aria-busy", "true");
    renderGroup(g);
    api("POST", "/groups/" + encodeURIComponent(g) + "/" + action, {}).then(function (res) {
      toast("Group " + g + ": " + action + " done", resultsText(res.results), "ok");
    }).catch(function (err) {
      if (err.status === 401) return;
      toast("Could not " + action + " group " + g, err.message, "bad");
    }).then(function () {
      sec.busy = false;
      btn.removeAttribute("aria-busy");
      members(g).forEach(refreshSoon);
      renderGroup(g);
    });
  }

  function resultsText(results) {
    return Object.keys(results || {}).map(function (id) {
      return id + ": " + results[id].message;
    }).join("\n");
  }

  function renderSummary() {
    var running = 0, trouble = 0;
    order.forEach(function (id) {
      var s = servers.get(id);
      if (!s) return;
      if (s.running) running++;
      if (needsAttention(s)) trouble++;
    });
    var text = order.length ? running + " of " + order.length + " running" : "";
    if (trouble) text += " · " + trouble + (trouble === 1 ? " needs" : " need") + " attention";
    setText($("summary"), text);
  }

  function cell(tr, cls, label) {
    var td = el("td", cls);
    if (label) td.setAttribute("data-label", label);
    tr.appendChild(td);
    return td;
  }

  function button(text, cls, onClick) {
    var b = el("button", "btn " + (cls || ""), text);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function buildRow(id) {
    var tr = el("tr", "server");
    tr.setAttribute("data-id", id);
    var r = { tr: tr };

    var nameTd = cell(tr, "cell-name");
    var nameBtn = el("button", "name-btn");
    nameBtn.type = "button";
    r.swatch = el("span", "swatch");
    r.name = el("span", "name-text");
    nameBtn.appendChild(r.swatch);
    nameBtn.appendChild(r.name);
    nameBtn.addEventListener("click", function () { select(id); });
    r.nameBtn = nameBtn;
    nameTd.appendChild(nameBtn);
    r.sub = el("span", "sub");           // second line: [job] id · depends on: ...
    r.kind = el("span", "tag", "job");
    r.kind.setAttribute("data-role", "kind");
    r.kind.title = "A job: meant to run to its end";
    r.command = el("span");
    r.sub.appendChild(r.kind);
    r.sub.appendChild(r.command);
    nameTd.appendChild(r.sub);
    r.message = el("span", "message");
    nameTd.appendChild(r.message);

    r.state = el("span", "badge");
    r.state.setAttribute("data-role", "state");
    cell(tr, "cell-state", "State").appendChild(r.state);
    r.health = el("span", "health");
    cell(tr, "cell-health", "Health").appendChild(r.health);
    r.pid = cell(tr, "num cell-pid", "PID");
    r.uptime = cell(tr, "num cell-uptime", "Uptime");
    r.ports = el("div", "ports");
    cell(tr, "cell-ports", "Ports").appendChild(r.ports);
    r.restarts = cell(tr, "num cell-restarts", "Restarts");
    var cpuTd = cell(tr, "num cell-cpu", "CPU"), memTd = cell(tr, "num cell-mem", "Memory");
    r.cpu = el("span", "metric-value");
    r.mem = el("span", "metric-value");
    r.cpuSpark = sparkline("cpu");
    r.memSpark = sparkline("mem");
    cpuTd.appendChild(r.cpu);
    cpuTd.appendChild(r.cpuSpark.svg);
    memTd.appendChild(r.mem);
    memTd.appendChild(r.memSpark.svg);

    var act = el("div", "actions");
    r.start = button("Start", "btn-primary", function () { act_(id, "start", r.start); });
    r.stop = button("Stop", "", function () { act_(id, "stop", r.stop); });
    r.restart = button("Restart", "", function () { act_(id, "restart", r.restart); });
    r.start.setAttribute("data-action", "start");
    r.stop.setAttribute("data-action", "stop");
    r.restart.setAttribute("data-action", "restart");
    r.reload = button("Reload", "", function () { act_(id, "reload", r.reload); });
    r.reload.setAttribute("data-action", "reload");
    act.appendChild(r.start);
    act.appendChild(r.stop);
    act.appendChild(r.restart);
    act.appendChild(r.reload);
    cell(tr, "cell-actions").appendChild(act);

    var orphan = el("tr", "orphan-row");
    orphan.hidden = true;
    var otd = el("td");
    otd.colSpan = 10;
    var box = el("div", "orphan");
    box.setAttribute("role", "alert");
    r.orphanText = el("span");
    r.kill = button("Kill orphan", "btn-danger", function () { killOrphan(id); });
    box.appendChild(r.orphanText);
    box.appendChild(r.kill);
    otd.appendChild(box);
    orphan.appendChild(otd);
    r.orphan = orphan;
    return r;
  }

  function uptimeOf(s) {
    if (!s.running) return null;
    if (s.started_at) {
      var t = Date.parse(s.started_at);
      if (!isNaN(t)) return Math.max(0, (Date.now() - t) / 1000);
    }
    return s.uptime;
  }

  function renderRow(id) {
    var s = servers.get(id), r = rows.get(id);
    if (!s || !r) return;
    r.tr.setAttribute("data-state", s.status);
    setText(r.name, s.name || s.id);
    r.swatch.style.background = s.color || "";
    r.kind.hidden = s.kind !== "job";
    var ended = !s.running && s.status !== "stopped" && s.last_exit_code !== null &&
      s.last_exit_code !== undefined ? "exit code " + s.last_exit_code : "";
    var sub = [s.name && s.name !== s.id ? s.id : "", ended, dependsText(s)].filter(Boolean).join(" · ");
    setText(r.command, sub);
    r.sub.title = sub;
    r.nameBtn.title = (s.command || "") + "\n(show log and history)";
    var tone = stateTone(s.status);
    // a completed job's message only says it exited with a success code: its line shows instead
    var msg = !s.running && tone !== "done" && s.message ? s.message : "";
    setText(r.message, msg);
    r.message.title = msg;
    r.message.hidden = !msg;
    r.message.setAttribute("data-tone", tone);
    r.sub.hidden = !!msg;                // two lines at most: the row height never changes
    setText(r.state, s.status);
    r.state.title = ended;
    r.state.setAttribute("data-tone", tone);
    var live = s.running || s.status === "starting";
    setText(r.health, live ? s.health : "—");
    r.health.setAttribute("data-tone", live ? healthTone(s.health) : "idle");
    setText(r.pid, s.pid || "—");
    setText(r.uptime, fmtUptime(uptimeOf(s)));
    setText(r.restarts, s.restarts || 0);
    setText(r.cpu, fmtCpu(s.cpu_percent, s.running));
    setText(r.mem, s.running ? fmtBytes(s.memory_rss) : "—");
    renderPorts(r, s);
    var busy = r.tr.getAttribute("data-busy") === "1";
    var active = isActive(s);
    r.start.disabled = busy || active;
    r.stop.disabled = busy || !active;
    r.restart.disabled = busy || s.status === "stopping";
    r.reload.hidden = !s.reload_signal;
    r.reload.disabled = busy || !s.running;
    r.reload.title = s.reload_signal ? "Send " + s.reload_signal + " (reload without a restart)" : "";
    r.orphan.hidden = !s.orphaned;
    if (s.orphaned) {
      setText(r.orphanText, "Port held by process " + s.orphaned_pid +
              ", which procsync does not manage. " + (s.name || s.id) + " cannot start until it is gone.");
    }
    r.tr.classList.toggle("selected", id === selected);
    renderGroup(s.group || "");
  }

  function renderPorts(r, s) {
    var listening = s.listening || [];
    var key = (s.ports || []).join(",") + "|" + s.running + "|" + listening.join(",");
    if (r.portsKey === key) return;
    r.portsKey = key;
    r.ports.textContent = "";
    (s.ports || []).forEach(function (p) {
      var a;
      if (s.running && listening.indexOf(p) >= 0) {
        a = el("a", null, ":" + p);
        a.href = location.protocol + "//" + location.hostname + ":" + p + "/";
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        a.title = "Open port " + p;
      } else if (s.running) {
        a = el("span", "port-idle", ":" + p);
        a.title = s.ports_required === false
          ? "Not listening on port " + p + " (it need not: the port is offered, not required)"
          : "Not listening on port " + p;
      } else {
        a = el("span", null, ":" + p);
      }
      r.ports.appendChild(a);
    });
    if (!(s.ports || []).length) r.ports.appendChild(el("span", "muted", "—"));
  }

  function act_(id, action, btn) {
    var r = rows.get(id);
    if (!r) return;
    r.tr.setAttribute("data-busy", "1");
    btn.setAttribute("aria-busy", "true");
    renderRow(id);
    var name = servers.has(id) ? servers.get(id).name || id : id;
    api("POST", "/servers/" + encodeURIComponent(id) + "/" + action, {}).then(function (res) {
      toast(name + ": " + action + " done", res.message, "ok");
    }).catch(function (err) {
      if (err.status === 401) return;
      var text = err.message;
      if (err.body && err.body.log_tail && err.body.log_tail.length) {
        text += "\n\n" + err.body.log_tail.slice(-8).join("\n");
      }
      toast("Could not " + action + " " + name, text, "bad");
    }).then(function () {
      r.tr.removeAttribute("data-busy");
      btn.removeAttribute("aria-busy");
      refreshSoon(id);
      renderRow(id);
    });
  }

  function killOrphan(id) {
    var s = servers.get(id);
    if (!s || !s.orphaned_pid) return;
    if (!window.confirm("Kill process " + s.orphaned_pid + " holding the ports of " + (s.name || id) + "?")) return;
    var r = rows.get(id);
    if (!r) return;
    r.kill.disabled = true;
    api("POST", "/servers/" + encodeURIComponent(id) + "/kill-orphan", { pid: s.orphaned_pid })
      .then(function (res) { toast("Orphan killed", res.message, "ok"); })
      .catch(function (err) { if (err.status !== 401) toast("Could not kill the orphan", err.message, "bad"); })
      .then(function () { r.kill.disabled = false; refreshSoon(id); });
  }

  // ---------------------------------------------------------------- resource charts
  //
  // Each server's recent CPU and memory samples, kept here as parallel arrays:
  // loaded from <prefix>/api/servers/<id>/metrics, then extended by every
  // health_check event. A row draws two sparklines; the detail panel a chart
  // of the window (an hour by default) with starts, exits and health changes
  // marked on its time axis. All drawing happens in one animation frame.

  // The SVG namespace, read from a parsed <svg> rather than spelled out here.
  var SVG_NS = (function () {
    var probe = document.createElement("div");
    probe.innerHTML = "<svg></svg>";
    return probe.firstChild.namespaceURI;
  })();
  var FETCH_PARALLEL = 6;   // metrics requests at once: 200 servers must not stall the page
  var SPARK_SPAN = 300;     // seconds a row's sparklines cover at most
  var MIN_TICKS = 20;       // a time axis covers at least this many ticks
  var MAX_MARKS = 256;      // per server, as the server keeps
  var HEALTHS = ["unknown", "healthy", "unhealthy", "unresponsive", "dead"];

  var series = new Map();      // id -> {t, cpu, mem, health, pid, marks, interval, window, loaded, ...}
  var fetchQueue = [];         // ids waiting for a metrics request
  var fetchPending = new Map(); // id -> since (unix s) or null for everything
  var fetchInflight = new Set();
  var clockOffset = 0;         // the server's clock minus this browser's, seconds
  var drawPending = false;

  function svg(tag, attrs, parent) {
    var e = document.createElementNS(SVG_NS, tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(e);
    return e;
  }

  function setAttr(node, name, value) {
    value = String(value);
    if (node.getAttribute(name) !== value) node.setAttribute(name, value);
  }

  function parseTime(iso) {     // ISO 8601 (microseconds allowed) -> unix seconds, or NaN
    return iso ? Date.parse(String(iso).replace(/(\.\d{3})\d+/, "$1")) / 1000 : NaN;
  }

  function serverNow() { return Date.now() / 1000 + clockOffset; }

  function newSeries() {
    return { t: [], cpu: [], mem: [], health: [], pid: [], marks: [], interval: 0, window: 3600,
             loaded: false, lastPid: 0, lastHealth: null };
  }

  function seriesOf(id) {
    var s = series.get(id);
    if (!s) { s = newSeries(); series.set(id, s); }
    return s;
  }

  function tickOf(ser) {        // the monitor's interval, or a guess from the last two samples
    if (ser.interval > 0) return ser.interval;
    var n = ser.t.length;
    return n > 1 && ser.t[n - 1] > ser.t[n - 2] ? ser.t[n - 1] - ser.t[n - 2] : 3;
  }

  function lowerBound(arr, value) {
    var lo = 0, hi = arr.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (arr[mid] < value) lo = mid + 1; else hi = mid; }
    return lo;
  }

  function trimSeries(ser) {    // keep the window (and window / interval samples); cut in batches
    var n = ser.t.length;
    var oldest = n ? ser.t[n - 1] - ser.window : 0;
    var cut = ser.window > 0 ? lowerBound(ser.t, ser.t[n - 1] - ser.window) : n;
    if (ser.interval > 0) cut = Math.max(cut, n - Math.ceil(ser.window / ser.interval) - 1);
    if (cut > 0 && (cut >= 64 || cut * 16 >= n)) {
      ["t", "cpu", "mem", "health", "pid"].forEach(function (k) { ser[k].splice(0, cut); });
    }
    while (ser.marks.length && (ser.marks.length > MAX_MARKS || ser.marks[0].time < oldest)) ser.marks.shift();
  }

  // A mark the server would also have made; one seen twice (here and in a fetch) is kept once,
  // at the server's time.
  function addMark(ser, m, fromServer) {
    var mark = { time: m.time, kind: m.kind, pid: m.pid || null, detail: m.detail || "", server: !!fromServer };
    var near = Math.max(tickOf(ser), 1);
    for (var i = ser.marks.length - 1; i >= 0; i--) {
      var o = ser.marks[i];
      if (o.time < mark.time - near) break;
      if (o.time <= mark.time + near && o.kind === mark.kind && o.pid === mark.pid && o.detail === mark.detail) {
        if (fromServer && !o.server) {
          o.server = true;
          o.time = mark.time;
          ser.marks.sort(function (a, b) { return a.time - b.time; });
        }
        return;
      }
    }
    var at = ser.marks.length;
    while (at > 0 && ser.marks[at - 1].time > mark.time) at--;
    ser.marks.splice(at, 0, mark);
  }

  // The marks the server's ring makes for a sample: a new pid, a health change.
  function sampleMarks(ser, at, pid, health, mark) {
    if (mark && pid && pid !== ser.lastPid) {
      addMark(ser, { time: at, kind: "start", pid: pid, detail: "pid " + pid + " running" });
    }
    if (mark && ser.lastHealth !== null && health !== ser.lastHealth) {
      addMark(ser, { time: at, kind: "health", pid: pid, detail: ser.lastHealth + " -> " + health });
    }
    if (pid) ser.lastPid = pid;
    ser.lastHealth = health;
  }

  // One health_check status as a sample (marked once the series is loaded: the fetch sets
  // where the server's marks end and ours begin).
  function addSample(ser, st) {
    var at = parseTime(st.last_check);
    var n = ser.t.length;
    if (isNaN(at) || (n && at <= ser.t[n - 1])) return;   // replayed, or older than what we have
    var pid = st.alive && st.pid ? st.pid : 0;
    var health = HEALTHS.indexOf(st.health) >= 0 ? st.health : "unknown";
    sampleMarks(ser, at, pid, health, ser.loaded);
    ser.t.push(at);
    ser.cpu.push(+st.cpu_percent || 0);
    ser.mem.push(+st.memory_rss || 0);
    ser.health.push(health);
    ser.pid.push(pid);
    trimSeries(ser);
  }

  function exitDetail(data) {    // the words the server's ring uses for the same exit
    if (data.expected) return "pid " + data.pid + " stopped";
    if (data.signal) return "pid " + data.pid + " was killed by " + data.signal;
    return "pid " + data.pid + " exited with code " + data.exit_code;
  }

  // A fetched history (samples from `since` on; null: all) merged into what the events brought
  // meanwhile, one sample per tick.
  function mergeFetched(ser, data, since) {
    ser.interval = +data.interval || 0;
    ser.window = +data.window >= 0 ? +data.window : 3600;
    var rowsIn = [], i;
    for (i = 0; i < ser.t.length; i++) rowsIn.push([ser.t[i], ser.cpu[i], ser.mem[i], ser.health[i], ser.pid[i]]);
    var times = data.times || [];
    for (i = 0; i < times.length; i++) {
      rowsIn.push([times[i], +data.cpu_percent[i] || 0, +data.memory_rss[i] || 0,
                   data.health[i] || "unknown", data.pids[i] || 0]);
    }
    rowsIn.sort(function (a, b) { return a[0] - b[0]; });
    var same = Math.max(0.4 * tickOf(ser), 0.02);   // the event's and the ring's time of one tick
    var fresh = newSeries();
    rowsIn.forEach(function (r) {
      var n = fresh.t.length;
      if (n && r[0] - fresh.t[n - 1] < same) return;
      fresh.t.push(r[0]); fresh.cpu.push(r[1]); fresh.mem.push(r[2]); fresh.health.push(r[3]); fresh.pid.push(r[4]);
    });
    ["t", "cpu", "mem", "health", "pid"].forEach(function (k) { ser[k] = fresh[k]; });
    // The server marked its samples; mark the ones only the events brought, as it would have.
    // Our own marks in the fetched span are dropped (a start seen after a gap was guessed);
    // an exit newer than the answer stays.
    var served = times.length ? times[times.length - 1] + same : -Infinity;
    var from = since === null ? -Infinity : since;
    ser.marks = ser.marks.filter(function (m) {
      return m.server || m.time < from || (m.kind === "exit" && m.time > served);
    });
    (data.marks || []).forEach(function (m) { addMark(ser, m, true); });
    ser.lastPid = 0;
    ser.lastHealth = null;
    for (i = 0; i < ser.t.length; i++) sampleMarks(ser, ser.t[i], ser.pid[i], ser.health[i], ser.t[i] > served);
    ser.loaded = true;
    if (ser.t.length) trimSeries(ser);
  }

  // since: null for everything kept, else unix seconds (a gap to fill after a reconnect).
  function requestMetrics(id, since, urgent) {
    if (since === null && fetchInflight.has(id)) return;   // what comes back covers it
    var queued = fetchPending.has(id);
    if (queued) {
      var before = fetchPending.get(id);
      fetchPending.set(id, before === null || since === null ? null : Math.min(before, since));
    } else {
      fetchPending.set(id, since);
    }
    if (fetchInflight.has(id)) return;                      // asked again once it ends
    var at = fetchQueue.indexOf(id);
    if (at >= 0 && urgent) fetchQueue.splice(at, 1);
    if (at < 0 || urgent) { if (urgent) fetchQueue.unshift(id); else fetchQueue.push(id); }
    pumpFetches();
  }

  function pumpFetches() {
    while (fetchInflight.size < FETCH_PARALLEL && fetchQueue.length && !needsLogin) {
      var id = fetchQueue.shift();
      var since = fetchPending.get(id);
      fetchPending.delete(id);
      if (servers.has(id)) fetchMetrics(id, since === undefined ? null : since);
    }
  }

  function fetchMetrics(id, since) {
    fetchInflight.add(id);
    var path = "/servers/" + encodeURIComponent(id) + "/metrics" + (since !== null ? "?since=" + since : "");
    api("GET", path).then(function (data) {
      if (!servers.has(id)) return;
      mergeFetched(seriesOf(id), data, since);
      scheduleDraw();
    }).catch(function () { /* 404: removed meanwhile; else the next status event asks again */ })
      .then(function () {
        fetchInflight.delete(id);
        if (fetchPending.has(id) && fetchQueue.indexOf(id) < 0) fetchQueue.push(id);
        pumpFetches();
      });
  }

  // Before (re)connecting: where each series stood (the replay comes before the snapshot and
  // may already add samples from after the gap).
  function noteResume() {
    series.forEach(function (ser) {
      if (ser.loaded && ser.resumeFrom === undefined) ser.resumeFrom = ser.t.length ? ser.t[ser.t.length - 1] : null;
    });
  }

  // After a list of servers: forget removed ones, load new ones; after a (re)connect, fill the gap.
  function syncSeries(reconnected) {
    series.forEach(function (_, id) { if (!servers.has(id)) series.delete(id); });
    order.forEach(function (id) {
      var ser = series.get(id);
      if (!ser || !ser.loaded) {
        requestMetrics(id, null, id === selected);
      } else if (reconnected) {
        var since = ser.resumeFrom !== undefined ? ser.resumeFrom : ser.t.length ? ser.t[ser.t.length - 1] : null;
        ser.resumeFrom = undefined;
        requestMetrics(id, since, id === selected);
      }
    });
  }

  function onHealthCheck(statuses) {
    var newest = NaN;
    statuses.forEach(function (st) {
      if (!servers.has(st.id)) return;
      addSample(seriesOf(st.id), st);
      var at = parseTime(st.last_check);
      if (!isNaN(at) && !(at <= newest)) newest = at;
    });
    if (!isNaN(newest)) clockOffset = newest - Date.now() / 1000;
    scheduleDraw();
  }

  function onProcessExit(data) {
    if (!data.id || !servers.has(data.id) || !data.pid) return;
    addMark(seriesOf(data.id), { time: serverNow(), kind: "exit", pid: data.pid, detail: exitDetail(data) });
    scheduleDraw();
  }

  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(function () {
      drawPending = false;
      var now = serverNow();
      rows.forEach(function (r, id) {
        var ser = series.get(id);
        drawSpark(r.cpuSpark, ser, now);
        drawSpark(r.memSpark, ser, now);
      });
      if (selected !== null && !$("detail").hidden) drawDetail(now);
    });
  }

  // Samples of `col` in [t0, t1] as runs of [x, value], x in 0..width: one point per unit of x
  // (the highest), a run broken where the server did not run or ticks are missing.
  function project(ser, col, t0, t1, width) {
    var runs = [], run = null, prev = null, lastX = -1;
    var gap = 2.5 * tickOf(ser), scale = width / Math.max(t1 - t0, 1e-6);
    var t = ser.t, v = ser[col], pid = ser.pid;
    for (var i = lowerBound(t, t0); i < t.length && t[i] <= t1; i++) {
      if (!pid[i] || (prev !== null && t[i] - prev > gap)) run = null;
      prev = t[i];
      if (!pid[i]) continue;
      var x = (t[i] - t0) * scale;
      if (!run) { run = []; runs.push(run); lastX = -1; }
      if (run.length && Math.floor(x) === lastX) {
        var last = run[run.length - 1];
        if (v[i] > last[1]) last[1] = v[i];
        continue;
      }
      run.push([x, v[i]]);
      lastX = Math.floor(x);
    }
    return runs;
  }

  function runsRange(runs) {
    var lo = Infinity, hi = -Infinity, n = 0;
    runs.forEach(function (run) {
      run.forEach(function (p) { if (p[1] < lo) lo = p[1]; if (p[1] > hi) hi = p[1]; n++; });
    });
    return { lo: lo, hi: hi, count: n };
  }

  function num(v) { return Math.round(v * 10) / 10; }

  // Path data for `runs` (x shifted by `left`): the line, and the area down to `base`.
  function paths(runs, yOf, base, left) {
    var line = [], area = [];
    left = left || 0;
    runs.forEach(function (run) {
      var pts = run.map(function (p) { return num(left + p[0]) + " " + num(yOf(p[1])); });
      line.push("M" + pts.join("L"));
      var first = num(left + run[0][0]), last = num(left + run[run.length - 1][0]);
      area.push("M" + first + " " + base + "L" + pts.join("L") + "L" + last + " " + base + "Z");
    });
    return { line: line.join(""), area: area.join("") };
  }

  function spanOf(ser, now, most) {   // [t0, t1]: the newest `most` seconds, or since the first sample
    var min = MIN_TICKS * tickOf(ser);
    var first = ser && ser.t.length ? ser.t[0] : now;
    var t1 = Math.max(now, ser && ser.t.length ? ser.t[ser.t.length - 1] : now);
    var t0 = Math.max(t1 - most, Math.min(first, t1 - min));
    return [t0, t1];
  }

  function fmtSpan(seconds) {
    if (seconds >= 5400) return (seconds / 3600).toFixed(seconds % 3600 ? 1 : 0) + " h";
    if (seconds >= 90) return Math.round(seconds / 60) + " min";
    return Math.round(seconds) + " s";
  }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function fmtCpuValue(v) { return (v >= 10 ? v.toFixed(0) : v.toFixed(1)) + "%"; }
  function fmtMemValue(v) { return v ? fmtBytes(v) : "0"; }

  function sparkline(kind) {
    var s = svg("svg", { "class": "spark spark-" + kind, viewBox: "0 0 100 24", preserveAspectRatio: "none",
                         role: "img", focusable: "false", "data-series": kind });
    var title = svg("title", null, s);
    var area = svg("path", { "class": "spark-area", d: "" }, s);
    var line = svg("path", { "class": "spark-line", d: "", "vector-effect": "non-scaling-stroke" }, s);
    return { svg: s, title: title, area: area, line: line, kind: kind, label: null };
  }

  function drawSpark(sp, ser, now) {
    var col = sp.kind === "cpu" ? "cpu" : "mem";
    var what = sp.kind === "cpu" ? "CPU" : "Memory";
    var label, d = { line: "", area: "" }, count = 0;
    if (!ser || !ser.t.length) {
      label = what + ": no samples yet";
    } else {
      var span = spanOf(ser, now, Math.min(SPARK_SPAN, ser.window || SPARK_SPAN));
      var runs = project(ser, col, span[0], span[1], 100);
      var r = runsRange(runs);
      count = r.count;
      if (!count) {
        label = what + ", last " + fmtSpan(span[1] - span[0]) + ": not running";
      } else {
        var lo, hi;
        if (col === "cpu") { lo = 0; hi = Math.max(r.hi * 1.1, 5); } else {
          hi = r.hi; lo = Math.max(0, Math.min(r.lo, hi * 0.9)); // a steady size stays a flat line
          if (hi <= lo) hi = lo + 1;
        }
        d = paths(runs, function (v) { return 22 - (v - lo) / (hi - lo) * 20; }, 24);
        var fmt = col === "cpu" ? fmtCpuValue : fmtMemValue;
        var lastRun = runs[runs.length - 1];
        label = what + ", last " + fmtSpan(span[1] - span[0]) + ": now " + fmt(lastRun[lastRun.length - 1][1]) +
          ", peak " + fmt(r.hi);
      }
    }
    setAttr(sp.line, "d", d.line);
    setAttr(sp.area, "d", d.area);
    setAttr(sp.svg, "data-points", count);
    if (sp.label !== label) {
      sp.label = label;
      sp.svg.setAttribute("aria-label", label);
      sp.title.textContent = label;
    }
  }

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
  }

  function niceBytes(v) {
    if (!(v > 0)) return 1024 * 1024;
    var unit = 1;
    while (v >= unit * 1024 && unit < Math.pow(1024, 4)) unit *= 1024;
    return niceCeil(v / unit) * unit;
  }

  function pad2(n) { return n < 10 ? "0" + n : String(n); }

  function clock(t, seconds) {
    var d = new Date((t - clockOffset) * 1000);   // in this browser's time zone and clock
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + (seconds ? ":" + pad2(d.getSeconds()) : "");
  }

  var TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];

  var MARK_LOOK = {
    start: { name: "start", shape: "M0 -5L4.5 3L-4.5 3Z" },
    exit: { name: "exit", shape: "M-3.5 -3.5L3.5 -3.5L3.5 3.5L-3.5 3.5Z" },
    health: { name: "health change", shape: "M0 -4.5L4.5 0L0 4.5L-4.5 0Z" }
  };

  function healthClass(h) { return "hs-" + healthTone(h); }

  var chart = null;   // the detail chart's nodes, kept across redraws (a hovered mark keeps its tooltip)

  function buildChart() {
    var root = svg("svg", { "class": "chart", role: "img", focusable: "false" });
    var c = { root: root, markNodes: new Map() };
    c.grid = svg("g", { "class": "chart-grid" }, root);
    c.labels = svg("g", { "class": "chart-labels" }, root);
    var strip = svg("g", { "class": "health-strip" }, root);
    svg("title", null, strip).textContent = "Health at each tick";
    c.strip = svg("g", null, strip);
    c.cpuArea = svg("path", { "class": "chart-area cpu" }, root);
    c.cpuLine = svg("path", { "class": "chart-line cpu", "data-series": "cpu" }, root);
    c.memArea = svg("path", { "class": "chart-area mem" }, root);
    c.memLine = svg("path", { "class": "chart-line mem", "data-series": "mem" }, root);
    c.marks = svg("g", { "class": "marks" }, root);
    return c;
  }

  function text(parent, attrs, value) { svg("text", attrs, parent).textContent = value; }

  function drawDetail(now) {
    var id = selected, box = $("res-chart"), ser = series.get(id);
    var s = servers.get(id);
    var name = s && s.name || id;
    setText($("res-name"), "— " + name);
    var empty = "";
    if (!ser || (!ser.loaded && !ser.t.length)) empty = "Loading…";
    else if (ser.loaded && ser.window === 0) empty = "Resource history is off ([procsync] history = 0).";
    else if (!ser.t.length) empty = "No samples yet: the monitor records one each tick while the server runs.";
    setText($("res-empty"), empty);
    $("res-empty").hidden = !empty;
    box.hidden = !!empty;
    if (empty) { setText($("res-now"), ""); setText($("res-span"), ""); return; }
    if (!chart) chart = buildChart();
    if (chart.root.parentNode !== box) box.appendChild(chart.root);
    var c = chart;

    var W = Math.max(320, Math.round(box.clientWidth || 800)), H = 252;
    var L = 62, R = 14, plotW = W - L - R;
    var cpuTop = 22, panelH = 78, memTop = 128, stripY = memTop + panelH + 6, axisY = stripY + 16;
    var span = spanOf(ser, now, ser.window || 3600), t0 = span[0], t1 = span[1];
    var xOf = function (t) { return L + (t - t0) / Math.max(t1 - t0, 1e-6) * plotW; };
    setAttr(c.root, "viewBox", "0 0 " + W + " " + H);
    setAttr(c.root, "width", W);
    setAttr(c.root, "height", H);

    var cpuRuns = project(ser, "cpu", t0, t1, plotW), memRuns = project(ser, "mem", t0, t1, plotW);
    var cpuR = runsRange(cpuRuns), memR = runsRange(memRuns);
    var cpuMax = niceCeil(Math.max(cpuR.count ? cpuR.hi : 0, 5));
    var memMax = niceBytes(memR.count ? memR.hi : 0);
    setAttr(c.root, "data-points", cpuR.count);

    c.grid.textContent = "";
    c.labels.textContent = "";
    var axisCpu = function (v) { return v ? +v.toFixed(1) + "%" : "0"; };
    var axisMem = function (v) { return v ? fmtBytes(v).replace(".0 ", " ") : "0"; };
    [[cpuTop, cpuMax, axisCpu, "CPU % of one core (whole process tree)"],
     [memTop, memMax, axisMem, "Memory (RSS, whole process tree)"]].forEach(function (p) {
      var top = p[0];
      text(c.labels, { "class": "chart-title", x: L, y: top - 8 }, p[3]);
      [0, 0.5, 1].forEach(function (f) {
        var y = num(top + panelH - f * panelH);
        svg("line", { x1: L, x2: W - R, y1: y, y2: y, "class": f ? "grid" : "grid base" }, c.grid);
        text(c.labels, { "class": "chart-label", x: L - 7, y: y + 4, "text-anchor": "end" }, p[2](p[1] * f));
      });
    });

    var step = TIME_STEPS[TIME_STEPS.length - 1];
    for (var k = 0; k < TIME_STEPS.length; k++) {
      if ((t1 - t0) / TIME_STEPS[k] <= Math.max(2, Math.floor(plotW / 110))) { step = TIME_STEPS[k]; break; }
    }
    var local = -new Date().getTimezoneOffset() * 60;   // steps land on round local times
    for (var tt = Math.ceil((t0 - clockOffset + local) / step) * step - local + clockOffset; tt <= t1; tt += step) {
      var x = num(xOf(tt));
      svg("line", { x1: x, x2: x, y1: cpuTop, y2: stripY + 6, "class": "grid" }, c.grid);
      text(c.labels, { "class": "chart-label", x: x, y: H - 4, "text-anchor": "middle" }, clock(tt, step < 60));
    }

    // health, as a strip of colour under the memory panel
    c.strip.textContent = "";
    var runStart = null, runHealth = null, lastT = null, gap = 2.5 * tickOf(ser);
    var flush = function (end) {
      if (runStart === null) return;
      var x0 = xOf(runStart), x1 = Math.max(xOf(Math.min(end, t1)), x0 + 1);
      svg("rect", { x: num(x0), y: stripY, width: num(x1 - x0), height: 6, "class": healthClass(runHealth),
                    "data-health": runHealth }, c.strip);
      runStart = null;
    };
    for (var i = lowerBound(ser.t, t0); i < ser.t.length && ser.t[i] <= t1; i++) {
      var h = ser.pid[i] ? ser.health[i] : null;
      if (runStart !== null && (h !== runHealth || ser.t[i] - lastT > gap)) {
        flush(h === null || ser.t[i] - lastT > gap ? lastT + tickOf(ser) : ser.t[i]);
      }
      if (h !== null && runStart === null) { runStart = ser.t[i]; runHealth = h; }
      lastT = ser.t[i];
    }
    if (lastT !== null) flush(lastT + tickOf(ser));

    var cpuD = paths(cpuRuns, function (v) { return cpuTop + panelH - v / cpuMax * panelH; }, cpuTop + panelH, L);
    var memD = paths(memRuns, function (v) { return memTop + panelH - v / memMax * panelH; }, memTop + panelH, L);
    setAttr(c.cpuArea, "d", cpuD.area);
    setAttr(c.cpuLine, "d", cpuD.line);
    setAttr(c.memArea, "d", memD.area);
    setAttr(c.memLine, "d", memD.line);

    var counts = { start: 0, exit: 0, health: 0 }, seen = new Set();
    ser.marks.forEach(function (m) {
      if (m.time < t0 || m.time > t1 || !MARK_LOOK[m.kind]) return;
      counts[m.kind]++;
      var key = m.kind + "|" + m.pid + "|" + m.detail + "|" + m.time;
      seen.add(key);
      var node = c.markNodes.get(key);
      if (!node) {
        node = { g: svg("g", { "class": "mark mark-" + m.kind, "data-kind": m.kind, "data-pid": m.pid || "" }) };
        svg("title", null, node.g).textContent = clock(m.time, true) + " — " + MARK_LOOK[m.kind].name + ": " + m.detail;
        node.line = svg("line", { "class": "mark-line" }, node.g);
        node.shape = svg("path", { d: MARK_LOOK[m.kind].shape, "class": "mark-shape" }, node.g);
        node.hit = svg("line", { "class": "mark-hit" }, node.g);
        c.markNodes.set(key, node);
        c.marks.appendChild(node.g);
      }
      var x = num(xOf(m.time));
      [node.line, node.hit].forEach(function (ln) {
        setAttr(ln, "x1", x); setAttr(ln, "x2", x); setAttr(ln, "y1", cpuTop);
      });
      setAttr(node.line, "y2", stripY + 6);
      setAttr(node.hit, "y2", axisY + 6);
      setAttr(node.shape, "transform", "translate(" + x + " " + axisY + ")");
    });
    c.markNodes.forEach(function (node, key) {
      if (!seen.has(key)) { node.g.remove(); c.markNodes.delete(key); }
    });

    var n = ser.t.length, running = !!ser.pid[n - 1];
    var nowText = running ? "CPU " + fmtCpuValue(ser.cpu[n - 1]) + " · memory " + fmtMemValue(ser.mem[n - 1])
      : "not running";
    var spanText = "last " + fmtSpan(t1 - t0);
    setAttr(c.root, "aria-label", "CPU and memory of " + name + ", " + spanText + ": " + nowText +
      (cpuR.count ? "; CPU peak " + fmtCpuValue(cpuR.hi) + ", memory peak " + fmtMemValue(memR.hi) : "") +
      "; marked: " + plural(counts.start, "start") + ", " + plural(counts.exit, "exit") + ", " +
      plural(counts.health, "health change") + ".");
    setText($("res-now"), nowText);
    setText($("res-span"), spanText);
  }

  // ---------------------------------------------------------------- log + history

  function select(id) {
    if (selected === id) return;
    var prev = selected;
    selected = id;
    if (prev !== null && rows.has(prev)) renderRow(prev);
    renderRow(id);
    $("detail").hidden = false;
    setText($("log-name"), "— " + (servers.has(id) && servers.get(id).name || id));
    followLog(id);
    loadHistory();
    var ser = series.get(id);
    if (!ser || !ser.loaded) requestMetrics(id, null, true);   // first in line
    scheduleDraw();
  }

  function closeDetail() {
    var prev = selected;
    selected = null;
    if (logAbort) logAbort.abort();
    logAbort = null;
    $("detail").hidden = true;
    if (prev !== null && rows.has(prev)) { renderRow(prev); rows.get(prev).nameBtn.focus(); }
  }

  function appendLog(lines, cls) {
    var pre = $("log");
    var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
    var frag = document.createDocumentFragment();
    lines.forEach(function (line) {
      var span = el("span", cls || null, line + "\n");
      frag.appendChild(span);
    });
    pre.appendChild(frag);
    while (pre.childNodes.length > LOG_MAX_LINES) pre.removeChild(pre.firstChild);
    if ($("log-follow").checked && atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function followLog(id, retry) {
    if (logAbort) logAbort.abort();
    var ctl = new AbortController();
    logAbort = ctl;
    if (!retry) $("log").textContent = "";
    var lines = retry ? 0 : 200;
    setText($("log-state"), "Connecting to the log…");
    var url = API + "/servers/" + encodeURIComponent(id) + "/logs/stream?lines=" + lines;
    openStream(url, {}, ctl.signal).then(function (resp) {
      setText($("log-state"), "Following live");
      return readEvents(resp, function (name, data) {
        if (name === "lines") appendLog(data.lines || []);
        else if (name === "rotated") appendLog(["— log rotated —"], "rot");
      });
    }).then(function () {
      if (!ctl.signal.aborted) retryLog(id, ctl);
    }).catch(function (err) {
      if (ctl.signal.aborted) return;
      if (err instanceof ApiError && err.status === 401) return;
      if (err instanceof ApiError && err.status === 404) { setText($("log-state"), err.message); return; }
      retryLog(id, ctl);
    });
  }

  function retryLog(id, ctl) {
    setText($("log-state"), "Log connection lost — retrying");
    setTimeout(function () {
      if (selected === id && logAbort === ctl && !needsLogin) followLog(id, true);
    }, 2000);
  }

  var historyTimer = null;
  function refreshHistorySoon() {
    if (historyTimer) return;
    historyTimer = setTimeout(function () { historyTimer = null; loadHistory(); }, 300);
  }

  function historyTone(ev) {
    switch (ev) {
      case "started": case "adopted": return "ok";
      case "crashed": case "fatal": case "orphan_killed": return "bad";
      default: return "";
    }
  }

  function loadHistory() {
    var id = selected;
    if (!id) return;
    api("GET", "/servers/" + encodeURIComponent(id) + "/history?limit=30").then(function (data) {
      if (selected !== id) return;
      var list = $("history");
      list.textContent = "";
      (data.history || []).forEach(function (h) {
        var li = el("li");
        var ev = el("span", "ev", h.event.replace(/_/g, " "));
        ev.setAttribute("data-tone", historyTone(h.event));
        li.appendChild(ev);
        var when = el("time", null, h.at ? new Date(h.at).toLocaleString() : "");
        if (h.at) when.dateTime = h.at;
        li.appendChild(when);
        var bits = [];
        if (h.pid) bits.push("pid " + h.pid);
        if (h.exit_code !== null && h.exit_code !== undefined) bits.push("exit " + h.exit_code);
        if (h.reason) bits.push(h.reason);
        if (bits.length) li.appendChild(el("span", "why", bits.join(" · ")));
        list.appendChild(li);
      });
      $("history-empty").hidden = (data.history || []).length > 0;
    }).catch(function () { /* the next event retries */ });
  }

  // ---------------------------------------------------------------- wiring

  $("log-clear").addEventListener("click", function () { $("log").textContent = ""; });
  $("detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && selected && !$("detail").hidden) closeDetail();
  });

  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var value = $("token").value.trim();
    if (!value) return;
    try { sessionStorage.setItem(TOKEN_KEY, value); } catch (err) { /* private mode */ }
    $("token").value = "";
    needsLogin = false;
    $("login").hidden = true;
    refreshAll().then(function () {
      connectEvents();
      if (selected) followLog(selected);
    }).catch(function (err) {
      if (err.status !== 401) { toast("Cannot reach the API", err.message, "bad"); connectEvents(); }
    });
  });

  setInterval(function () {              // uptime ticks locally; no network
    order.forEach(function (id) {
      var s = servers.get(id), r = rows.get(id);
      if (s && r && s.running) setText(r.uptime, fmtUptime(uptimeOf(s)));
    });
    scheduleDraw();                      // the time axes move on between ticks too
  }, 1000);
  window.addEventListener("resize", scheduleDraw);

  connectEvents();
})();
