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

  function headers(extra) {
    var h = extra || {};
    var t = token();
    if (t) h["Authorization"] = "Bearer " + t;
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
      return;
    }
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
    r.cpu = cell(tr, "num cell-cpu", "CPU");
    r.mem = cell(tr, "num cell-mem", "Memory");

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
    var key = (s.ports || []).join(",") + "|" + s.running;
    if (r.portsKey === key) return;
    r.portsKey = key;
    r.ports.textContent = "";
    (s.ports || []).forEach(function (p) {
      var a;
      if (s.running) {
        a = el("a", null, ":" + p);
        a.href = location.protocol + "//" + location.hostname + ":" + p + "/";
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        a.title = "Open port " + p;
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
  }, 1000);

  connectEvents();
})();
