// The live view of one session: one websocket, the API for actions and for catching up.
(function () {
  "use strict";

  const root = document.getElementById("live");
  const sessionId = root.dataset.session;
  const csrf = root.dataset.csrf;
  const api = "/api/v1";
  const WINDOW_SECONDS = 600; // the chart shows the last 10 minutes
  const BAND_LABELS = {
    very_high: "very high", high: "high", moderate: "moderate", low: "low", very_low: "very low",
  };
  const TYPE_LABELS = {
    poll: "Poll", chat_prompt: "Chat prompt", qna_prompt: "Q&A prompt", broadcast: "Broadcast",
    notification: "Notification", gamification: "Gamification",
  };
  const STATUS_LABELS = { // vocabulary.STATUS_LABELS
    pending: "waiting", executed: "sent", rejected: "rejected", expired: "expired", failed: "failed",
    held: "held back",
  };
  const SOURCE_LABELS = {
    llm: "written by the LLM", template: "from a template", manual: "sent by hand", policy: "policy",
  };
  // Without an LLM configured its fake writes sample texts: the page's note says so, the label too.
  if (root.dataset.llm === "sample") SOURCE_LABELS.llm = "sample text (no LLM configured)";
  const COMPONENTS = ["active", "chat", "polls", "questions", "reactions", "leaves"];
  const COLORS = ["#2457c5", "#2a9d8f", "#e9c46a", "#8e44ad", "#f4a261", "#c0392b", "#555"];

  const state = { samples: [], interventions: new Map(), anomalies: new Map(), lastAt: null };
  const room = { polls: new Map(), chat: new Map(), questions: new Map(), leaders: [] };
  let socket = null;
  let retries = 0;
  let chart = null;

  // -- formatting for people ------------------------------------------------------------------
  const percent = (value) => (value == null ? "–" : `${Math.round(value * 100)}%`);
  function relative(iso) {
    if (!iso) return "never";
    const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (seconds < 5) return "just now";
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    return clock(iso); // as every other time on the page (24 h, not the locale's "1:11:33 PM")
  }
  // A relative time that stays current: the clock below refreshes every `.ago` each second.
  function ago(iso, before = "", after = "", className = "") {
    const node = document.createElement("span");
    if (className) node.className = className;
    const when = document.createElement("time");
    when.className = "ago";
    when.dateTime = iso;
    when.textContent = relative(iso);
    node.append(before, when, after);
    return node;
  }
  function countdown(iso) {
    const left = Math.max(0, Math.round((new Date(iso).getTime() - Date.now()) / 1000));
    return `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  }
  function text(tag, value, className) {
    const node = document.createElement(tag);
    node.textContent = value;
    if (className) node.className = className;
    return node;
  }
  // Until the first catch-up has answered, an empty list knows nothing yet and says so: a page
  // whose first load failed (an outage) read "No decisions yet" while decisions were waiting.
  const loaded = { decisions: false, room: false };
  function empty(tag, message, part = "decisions") {
    return text(tag, loaded[part] ? message : "Loading…", "muted");
  }
  function describe(content) {
    if (!content) return "";
    if (content.question && content.kind === "words") return `${content.question} (word cloud)`;
    if (content.question) return `${content.question} (${(content.options || []).join(" / ")})`;
    if (content.headline) return `${content.headline} — ${content.call_to_action}`;
    if (content.challenge) return `${content.challenge} (+${content.points} points)`;
    if (content.title) return `${content.title}: ${content.body}`;
    return content.text || "";
  }

  // -- talking to the API ---------------------------------------------------------------------
  function notice(message) {
    const node = document.getElementById("notice");
    node.textContent = message;
    node.hidden = !message;
  }
  async function call(method, path, body) {
    const response = await fetch(api + path, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 || response.status === 403) {
      // The session cookie expired: log in again and come back here.
      window.location.href = `/login/?next=${encodeURIComponent(window.location.pathname)}`;
      throw new Error("not logged in");
    }
    const payload = response.status === 204 ? null : await response.json();
    if (!response.ok) {
      const error = new Error(payload && payload.error ? payload.error.message : response.statusText);
      error.status = response.status;
      error.details = (payload && payload.error && payload.error.details) || [];
      throw error;
    }
    return payload;
  }

  // -- rendering ------------------------------------------------------------------------------
  function addSamples(samples) {
    for (const sample of samples) {
      if (state.lastAt && sample.at <= state.lastAt) continue;
      state.samples.push(sample);
      state.lastAt = sample.at;
    }
    const cutoff = Date.now() / 1000 - WINDOW_SECONDS;
    state.samples = state.samples.filter((s) => new Date(s.at).getTime() / 1000 >= cutoff);
    root.dataset.points = String(state.samples.length); // for people reading the DOM, and tests
    renderScore();
    renderChart();
  }

  function renderScore() {
    const latest = state.samples[state.samples.length - 1];
    if (!latest) return;
    document.getElementById("score").textContent = percent(latest.score);
    const band = document.getElementById("band");
    band.textContent = BAND_LABELS[latest.band] || latest.band;
    band.className = `band band-${latest.band}`;
    // An ended session's last sample is what the room was at its end, not now.
    document.getElementById("presence-when").textContent =
      root.dataset.status === "ended" ? "At its end: " : "";
    document.getElementById("present").textContent = latest.present;
    document.getElementById("active").textContent = latest.active;
    document.getElementById("updated").textContent = relative(latest.at);
    const rates = latest.rates || {};
    document.getElementById("rates").textContent = [
      ["chat", "chat"], ["reactions", "reactions"], ["questions", "questions"],
      ["poll_votes", "votes"], ["leaves", "leaves"],
    ].filter(([key]) => key in rates)
      .map(([key, label]) => `${label} ${Math.round(rates[key])}/min`).join(" · ");
    const list = document.getElementById("components");
    list.replaceChildren(
      ...COMPONENTS.filter((name) => name in latest.components).map((name) => {
        // Each component's share of the score, in points out of 100 like the score itself.
        const value = Math.round(latest.components[name] * 100) || 0; // never "-0"
        const item = text("li", `${name} ${value > 0 ? "+" : ""}${value} ${pointWord(value)}`);
        item.className = value < 0 ? "negative" : "";
        return item;
      })
    );
  }

  // Samples further apart than this are not joined: nothing was measured between them (the
  // server stopped, the session was paused), and a line across would show a level nobody saw.
  const GAP_SECONDS = 30;

  function chartData() {
    const rows = [];
    let previous = null;
    for (const s of state.samples) {
      const x = new Date(s.at).getTime() / 1000;
      if (previous !== null && x - previous > GAP_SECONDS) {
        rows.push([(previous + x) / 2, null, ...COMPONENTS.map(() => null)]); // uPlot breaks here
      }
      rows.push([x, s.score, ...COMPONENTS.map((name) => (s.components || {})[name] ?? null)]);
      previous = x;
    }
    root.dataset.gaps = String(rows.length - state.samples.length); // for tests
    // uPlot wants columns: x, the score, then each component.
    return Array.from({ length: COMPONENTS.length + 2 }, (_, i) => rows.map((row) => row[i]));
  }

  function renderChart() {
    const node = document.getElementById("chart");
    const showComponents = document.getElementById("show-components").checked;
    const width = Math.max(260, node.clientWidth || 600);
    if (!chart) {
      chart = new uPlot({
        width, height: 220,
        // Engagement is a share: the axis runs 0-100 % whatever the data.
        scales: { x: { time: true }, y: { range: [0, 1] } },
        // The legend names the lines; the values are in the headline and the chips below.
        legend: { live: false },
        axes: [
          // Clock times at least 80 px apart ("12:03:40pm" labels overlapped); seconds only
          // when the ticks are less than a minute apart (the first minute of a session), and
          // a time said once (ticks under a second apart).
          {
            space: 80,
            values: (u, ticks, axis, space, incr) => ticks
              .map((t) => clock(t * 1000).slice(0, incr < 60 ? 8 : 5))
              .map((label, k, labels) => (k && label === labels[k - 1] ? "" : label)),
          },
          { values: (u, ticks) => ticks.map((t) => `${Math.round(t * 100)}%`) },
        ],
        series: [
          {},
          { label: "score", stroke: COLORS[0], width: 2 },
          ...COMPONENTS.map((name, i) => ({ label: name, stroke: COLORS[i + 1], show: showComponents })),
        ],
        hooks: { draw: [markChart] },
      }, chartData(), node);
      return;
    }
    COMPONENTS.forEach((_, i) => chart.setSeries(i + 2, { show: showComponents }));
    chart.setSize({ width, height: 220 });
    chart.setData(chartData());
  }

  // -- the chart's marks: drops and the interventions sent, at their times ----------------------
  // Drawn as elements over uPlot's plot area, so each has a title (hover) and a click or tap
  // shows its details under the chart. Fed by what the socket and the API already carry: an
  // anomaly's detected_at, an intervention's delivered_at (or executed_at while it is sending).
  const chartDetail = text("p", "", "chart-detail muted");
  chartDetail.id = "chart-detail";
  chartDetail.setAttribute("aria-live", "polite");
  document.getElementById("chart").after(chartDetail);

  function chartMarks() {
    const drops = [...state.anomalies.values()].map((a) => ({
      kind: "drop", id: a.id, at: a.detected_at,
      title: `${a.severity === "CRITICAL" ? "Critical" : "Warning"}: `
        + `${a.type.replace("_", " ").toLowerCase()} at ${clock(a.detected_at)} — ${a.message}`,
    }));
    const sent = [...state.interventions.values()]
      .filter((i) => i.status === "executed" && i.type !== "hold")
      .map((i) => {
        const outcome = outcomeLine(i);
        const what = describe(i.content);
        const at = i.delivered_at || i.executed_at;
        return {
          kind: "intervention", id: i.id, at,
          title: [`${TYPE_LABELS[i.type] || i.type} at ${clock(at)}`, what && `“${what}”`,
            outcome ? outcome.textContent : "outcome not measured yet"].filter(Boolean).join(" · "),
        };
      });
    return [...drops, ...sent];
  }

  function markChart(u) {
    const plot = u || chart;
    if (!plot) return;
    const { min, max } = plot.scales.x;
    const marks = chartMarks().filter((m) => {
      const t = new Date(m.at).getTime() / 1000;
      return min != null && t >= min && t <= max;
    });
    for (const node of plot.over.querySelectorAll(".chart-marker")) node.remove();
    plot.over.append(...marks.map((m) => {
      const node = document.createElement("span");
      node.className = `chart-marker chart-marker-${m.kind}`;
      node.dataset.id = m.id;
      node.title = m.title;
      node.tabIndex = 0;
      node.setAttribute("role", "img");
      node.setAttribute("aria-label", m.title);
      node.style.left = `${plot.valToPos(new Date(m.at).getTime() / 1000, "x")}px`;
      const show = () => { chartDetail.textContent = m.title; };
      node.addEventListener("click", show);
      node.addEventListener("focus", show);
      return node;
    }));
  }

  function renderAnomalies() {
    markChart();
    const list = document.getElementById("anomalies");
    const items = [...state.anomalies.values()].sort((a, b) => (a.detected_at < b.detected_at ? 1 : -1));
    if (!items.length) {
      list.replaceChildren(empty("li", "No drops so far."));
      return;
    }
    list.replaceChildren(...items.slice(0, 30).map((a) => {
      const item = document.createElement("li");
      item.append(
        text("span", a.severity === "CRITICAL" ? "Critical" : "Warning", `severity severity-${a.severity}`),
        text("strong", ` ${a.type.replace("_", " ").toLowerCase()} `),
        ago(a.detected_at, "", ` — ${a.message}`),
      );
      if (a.skipped_reason) item.append(text("p", a.skipped_reason, "muted skipped"));
      // What became of the drop's decision, whatever it was: a proposal rejected or expired
      // left the drop saying nothing.
      for (const i of state.interventions.values()) {
        if (i.anomaly !== a.id) continue;
        const what = i.type === "hold" ? "Held back on purpose" : TYPE_LABELS[i.type] || i.type;
        const why = i.status === "expired" && i.decision_reason ? ` (${i.decision_reason})` : "";
        item.append(text("p", `${what}: ${STATUS_LABELS[i.status] || i.status}${why}`, "muted answered-by"));
      }
      return item;
    }));
  }

  // Engagement scores and lifts are fractions of 1; organizers read them as points out of 100.
  const points = (value) => Math.round(value * 100) || 0; // never "-0"
  const signed = (n) => (n > 0 ? `+${n}` : `${n}`);
  const pointWord = (n) => (Math.abs(n) === 1 ? "point" : "points");
  function clock(iso) {
    const at = new Date(iso);
    return [at.getHours(), at.getMinutes(), at.getSeconds()]
      .map((part) => String(part).padStart(2, "0")).join(":");
  }

  // What the engagement did after the decision: for a hold, the natural recovery; for a sent
  // intervention, its lift and its reward (the lift over what doing nothing recovers there).
  function outcomeLine(i) {
    const o = i.outcome;
    if (!o || o.lift == null) return null;
    const lift = points(o.lift);
    const moved = `engagement ${signed(lift)} ${pointWord(lift)}`
      + (o.engagement_before == null || o.engagement_after == null ? ""
        : ` (from ${points(o.engagement_before)} to ${points(o.engagement_after)})`);
    if (i.type === "hold") return text("p", `Natural recovery: ${moved}`, "outcome");
    const tone = (n) => (n > 0 ? "outcome outcome-gain" : n < 0 ? "outcome outcome-loss" : "outcome");
    if (o.reward == null) return text("p", `Outcome: ${moved}`, tone(lift));
    const over = points(o.reward);
    const versus = over > 0 ? `${over} ${pointWord(over)} over doing nothing`
      : over < 0 ? `${-over} ${pointWord(over)} below doing nothing` : "no better than doing nothing";
    return text("p", `Outcome: ${moved}, ${versus}`, tone(over));
  }

  function deliveryLine(i) {
    if (i.status === "failed") {
      return text("p", `Failed: ${i.failure_reason || "no reason given"}`, "delivery delivery-failed");
    }
    if (i.status !== "executed") return null;
    if (i.delivered_at) return text("p", `Delivered ${clock(i.delivered_at)}`, "delivery delivery-done");
    return text("p", "Sending…", "delivery delivery-sending");
  }

  function holdHead(i) {
    // `holdout` tells a drop left alone to measure the natural recovery from a policy choice.
    const [what, why] = i.holdout === true
      ? ["Held back on purpose", "holdout: measuring the natural recovery"]
      : i.holdout === false
        ? ["Did nothing", "the policy expected no intervention to beat the natural recovery"]
        : ["Did nothing on purpose", "nothing was sent"];
    const chance = i.propensity == null ? ""
      : ` · chosen with probability ${i.propensity < 0.01 ? "under 1%" : percent(i.propensity)}`;
    return [
      text("strong", what),
      text("span", ` (${why})`, "status status-held"),
      ago(i.created_at, `${chance} · `, "", "muted"),
    ];
  }

  // The one rendering of an intervention, fed by its API shape (conductor.live.interventions
  // .serialize): the catch-up over HTTP and the websocket's intervention.updated both land here.
  function interventionItem(i) {
    const item = document.createElement("li");
    item.dataset.id = i.id;
    item.className = `intervention intervention-${i.status}`;
    const head = document.createElement("div");
    if (i.type === "hold") {
      head.append(...holdHead(i));
      item.append(head);
    } else {
      head.append(
        text("strong", TYPE_LABELS[i.type] || i.type),
        text("span", ` ${STATUS_LABELS[i.status] || i.status}`, `status status-${i.status}`),
        ago(i.created_at, ` · ${SOURCE_LABELS[i.source] || i.source} · `, "", "muted"),
      );
      item.append(head, text("p", describe(i.content), "content"));
      if (i.original_content) {
        item.append(text("p", `Edited by ${i.edited_by} before approval; proposed: ${describe(i.original_content)}`, "muted edited"));
      }
    }
    const delivery = deliveryLine(i);
    if (delivery) item.append(delivery);
    if (i.reasoning) item.append(text("p", i.reasoning, "reasoning"));
    const stats = statistics(i);
    if (stats) item.append(stats);
    const outcome = outcomeLine(i);
    if (outcome) item.append(outcome);
    if (i.decided_by) item.append(text("p", `Decided by ${i.decided_by}${i.decision_reason ? ` (${i.decision_reason})` : ""}`, "muted"));
    // Nobody decided an expired one: say why it went (time ran out, engagement recovered, ...).
    else if (i.status === "expired") item.append(text("p", `Expired: ${i.decision_reason || "not decided in time"}`, "muted"));
    if (i.status === "pending" && i.type !== "hold") {
      const actions = document.createElement("div");
      actions.className = "actions";
      const timer = text("span", `expires in ${countdown(i.expires_at)}`, "countdown");
      timer.dataset.expires = i.expires_at;
      const approve = text("button", "Approve", "primary");
      approve.addEventListener("click", () => decide(i.id, "approve"));
      const edit = text("button", "Edit", "secondary");
      edit.addEventListener("click", () => {
        editing.set(i.id, { draft: { ...i.content }, errors: [] });
        renderInterventions();
        const first = document.querySelector(`li[data-id="${i.id}"] form.edit [name]`);
        if (first) first.focus();
      });
      const reject = text("button", "Reject", "secondary");
      reject.addEventListener("click", () => decide(i.id, "reject"));
      actions.append(approve, edit, reject, timer);
      item.append(editing.has(i.id) ? editForm(i) : actions);
      if (editing.has(i.id)) item.append(timer);
    }
    return item;
  }

  // The statistics behind a decision, for who wants them: each option's expected change over
  // the room's recovery, the chance the choice is the best, and the probability of the action.
  function statistics(i) {
    const posterior = i.posterior || {};
    const arms = Object.entries(posterior).sort((a, b) => b[1].mean - a[1].mean);
    if (!arms.length && i.confidence == null) return null;
    const box = document.createElement("details");
    box.className = "statistics";
    box.append(text("summary", "Details"));
    if (i.confidence != null) {
      box.append(text("p", `Chance this is the best choice now: ${percent(i.confidence)}`
        + (i.propensity == null ? "" : ` · probability of this action: ${percent(i.propensity)} (holdout included)`)));
    }
    if (arms.length) {
      const list = document.createElement("ul");
      for (const [arm, belief] of arms) {
        const expected = points(belief.mean);
        // `n` counts the one pseudo-outcome every option starts from (no change expected).
        const measured = Math.max(0, Math.round(belief.n - 1));
        list.append(text("li", `${TYPE_LABELS[arm] || (arm === "hold" ? "Doing nothing" : arm)}: `
          + `${signed(expected)} ${pointWord(expected)} expected (± ${Math.round(belief.sd * 100)}), `
          + (measured ? `from about ${measured} measured ${measured === 1 ? "outcome" : "outcomes"}` : "nothing measured yet")));
      }
      box.append(text("p", "Expected change in engagement after a drop like this:"), list);
    }
    return box;
  }

  // -- editing a proposal before approving it ---------------------------------------------------
  // Drafts survive the list's re-rendering (a new proposal, a catch-up); the focus comes back.
  const editing = new Map();
  const FIELD_LABELS = {
    question: "Question", options: "Options (one per line, 2 to 6)", text: "Text",
    headline: "Headline", call_to_action: "Call to action", title: "Title", body: "Message",
    challenge: "Challenge", points: "Points",
  };
  function editForm(i) {
    const { draft, errors } = editing.get(i.id);
    const form = document.createElement("form");
    form.className = "edit";
    for (const [name, value] of Object.entries(draft)) {
      // A poll stays what it is: a word cloud (no options) or a poll with options.
      if (name === "kind" || (name === "options" && draft.kind === "words")) continue;
      const label = text("label", FIELD_LABELS[name] || name);
      const input = document.createElement(Array.isArray(value) ? "textarea" : "input");
      input.name = name;
      if (Array.isArray(value)) input.rows = Math.max(3, value.length);
      if (typeof value === "number") input.type = "number";
      input.value = Array.isArray(value) ? value.join("\n") : String(value);
      input.addEventListener("input", () => {
        draft[name] = Array.isArray(value)
          ? input.value.split("\n").map((line) => line.trim()).filter(Boolean)
          : typeof value === "number" ? Number(input.value) : input.value;
      });
      label.append(input);
      for (const error of errors.filter((e) => e.field === name)) {
        label.append(text("span", error.message, "field-error"));
      }
      form.append(label);
    }
    for (const error of errors.filter((e) => !(e.field in draft))) {
      form.append(text("p", error.message, "field-error"));
    }
    const send = text("button", "Approve as edited", "primary");
    send.type = "submit";
    const cancel = text("button", "Cancel", "secondary");
    cancel.type = "button";
    cancel.addEventListener("click", () => {
      editing.delete(i.id);
      renderInterventions();
    });
    form.append(send, cancel);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const started = ++latestAction;
      try {
        const updated = await call("POST", `/interventions/${i.id}/approve/`, { content: draft });
        editing.delete(i.id);
        state.interventions.set(updated.id, updated);
        succeeded(started);
      } catch (error) {
        editing.get(i.id).errors = (error.details || []).map((detail) => ({
          field: (detail.field || "").replace(/^content\.?/, "").replace(/\.\d+$/, ""),
          message: detail.message,
        }));
        notice(error.status === 400 && error.details && error.details.length
          ? "Not approved: see what to fix in the edited proposal."
          : `Could not approve: ${error.message}`);
        if (error.status === 409) {
          editing.delete(i.id);
          await refreshInterventions();
        }
      }
      renderInterventions();
    });
    return form;
  }

  // A proposal waiting shows in the tab's title; with the organizer's permission, a new one
  // also raises a browser notification while the tab is in the background.
  let pageTitle = document.title;
  const seenPending = new Set();
  let pendingKnown = false;
  function signalPending(pending) {
    document.title = pending.length ? `(${pending.length}) ${pageTitle}` : pageTitle;
    const fresh = pending.filter((i) => !seenPending.has(i.id));
    for (const i of fresh) seenPending.add(i.id);
    const allowed = "Notification" in window && Notification.permission === "granted";
    if (pendingKnown && fresh.length && allowed && document.hidden) {
      new Notification("A proposal is waiting for you", {
        body: `${TYPE_LABELS[fresh[0].type] || fresh[0].type}: ${describe(fresh[0].content)}`,
        tag: `conductor-session-${sessionId}`,
      });
    }
    pendingKnown = true;
  }
  const notify = document.getElementById("notify");
  if ("Notification" in window && Notification.permission === "default") {
    notify.hidden = false;
    notify.addEventListener("click", async () => {
      await Notification.requestPermission();
      notify.hidden = true;
    });
  }

  function renderInterventions() {
    const all = [...state.interventions.values()].sort((a, b) => b.id - a.id);
    const pending = all.filter((i) => i.status === "pending");
    signalPending(pending);
    for (const id of editing.keys()) {
      if (!pending.some((i) => i.id === id)) editing.delete(id); // decided elsewhere, or expired
    }
    const pendingList = document.getElementById("pending");
    const focused = document.activeElement && pendingList.contains(document.activeElement)
      && document.activeElement.name ? document.activeElement : null;
    const restore = focused && {
      id: focused.closest("li").dataset.id, name: focused.name,
      start: focused.selectionStart, end: focused.selectionEnd,
    };
    pendingList.replaceChildren(...(pending.length
      ? pending.map(interventionItem)
      : [empty("li", "Nothing is waiting.")]));
    const again = restore && pendingList.querySelector(`li[data-id="${restore.id}"] [name="${restore.name}"]`);
    if (again) {
      again.focus();
      if (restore.start != null && again.setSelectionRange) again.setSelectionRange(restore.start, restore.end);
    }
    const decided = all.filter((i) => i.status !== "pending");
    const decisionList = document.getElementById("decisions");
    decisionList.replaceChildren(...(decided.length
      ? decided.slice(0, 50).map(interventionItem)
      : [empty("li", "No decisions yet.")]));
    renderAnomalies(); // each drop says what became of its decision; it marks the chart too
  }

  // -- actions --------------------------------------------------------------------------------
  // A success clears the notice only if no action started after it: a slow answer must not
  // erase what a later action had to say.
  let latestAction = 0;
  function succeeded(action) {
    if (action === latestAction) notice("");
  }

  // A proposal being decided: a second click (a double click) waits for the first's answer
  // instead of being refused as "no longer pending".
  const deciding = new Set();
  async function decide(id, action) {
    if (deciding.has(id)) return;
    deciding.add(id);
    const started = ++latestAction;
    try {
      const updated = await call("POST", `/interventions/${id}/${action}/`, {});
      state.interventions.set(updated.id, updated);
      succeeded(started);
    } catch (error) {
      // Decided elsewhere (another tab, expiry): say so and show its real state.
      notice(`Could not ${action}: ${error.message}`);
      await refreshInterventions().catch(() => {});
    } finally {
      deciding.delete(id);
    }
    renderInterventions();
  }

  // The mode the session has: a change that fails shows it again, not the one that did not take.
  const modeSelect = document.getElementById("mode");
  let savedMode = modeSelect.value;
  modeSelect.addEventListener("change", async (event) => {
    const started = ++latestAction;
    try {
      const updated = await call("PATCH", `/sessions/${sessionId}/`, { mode: event.target.value });
      savedMode = updated.mode;
      succeeded(started);
      const saved = document.getElementById("mode-saved");
      saved.textContent = "Saved: from now on, " + event.target.selectedOptions[0].textContent.toLowerCase();
      saved.hidden = false;
      clearTimeout(saved.timer);
      saved.timer = setTimeout(() => { saved.hidden = true; }, 6000);
    } catch (error) {
      modeSelect.value = savedMode;
      notice(`Could not change the mode: ${error.message}`);
    }
  });

  // -- sending by hand: what the organizer typed, for every type --------------------------------
  const manual = document.getElementById("manual");
  function manualFields() {
    const type = manual.elements.type.value;
    return [...manual.querySelectorAll("fieldset")].find(
      (set) => set.dataset.for.split(" ").includes(type));
  }
  function showManualFields() {
    for (const set of manual.querySelectorAll("fieldset")) set.hidden = set !== manualFields();
  }
  function typedContent(type) {
    const value = (name) => manual.elements[name].value.trim();
    if (type === "poll") {
      if (manual.elements.words.checked) {
        return value("question") ? { question: value("question"), kind: "words" } : null;
      }
      const options = value("options").split("\n").map((line) => line.trim()).filter(Boolean);
      return value("question") || options.length ? { question: value("question"), options } : null;
    }
    if (type === "chat_prompt" || type === "qna_prompt") {
      return value("text") ? { text: value("text") } : null;
    }
    if (type === "broadcast") {
      return value("headline")
        ? { headline: value("headline"), call_to_action: value("call_to_action") || "Join in" }
        : null;
    }
    if (type === "notification") {
      return value("title") || value("body") ? { title: value("title"), body: value("body") } : null;
    }
    if (type === "gamification") {
      return value("challenge")
        ? { challenge: value("challenge"), points: Number(value("points") || 50) }
        : null;
    }
    return null;
  }
  function showManualErrors(details) {
    const list = document.getElementById("manual-errors");
    list.replaceChildren(...details.map((detail) => {
      const field = (detail.field || "").replace(/^content\.?/, "").replace(/\.(\d+)$/, " $1");
      return text("li", field ? `${field}: ${detail.message}` : detail.message);
    }));
    list.hidden = !details.length;
  }
  showManualFields(); // the browser may have kept another type selected across a reload
  applyStatus(root.dataset.status);
  manual.elements.type.addEventListener("change", () => {
    showManualFields();
    showManualErrors([]);
  });
  // A word cloud has no options to write.
  manual.elements.words.addEventListener("change", () => {
    manual.elements.options.disabled = manual.elements.words.checked;
  });
  manual.addEventListener("reset", () => { manual.elements.options.disabled = false; });
  // One key per send: a double click, or a retry after a timeout, sends it once (the server
  // answers the first one's intervention again). A new key once it is sent.
  const newKey = () => (window.crypto && crypto.randomUUID
    ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`);
  let manualKey = newKey();
  manual.addEventListener("submit", async (event) => {
    event.preventDefault();
    const send = manual.querySelector("button[type=submit]");
    if (send.disabled) return;
    const type = manual.elements.type.value;
    const body = { type, idempotency_key: manualKey };
    const content = typedContent(type);
    if (content) body.content = content;
    const started = ++latestAction;
    send.disabled = true;
    try {
      const created = await call("POST", `/sessions/${sessionId}/interventions/`, body);
      state.interventions.set(created.id, created);
      manualKey = newKey();
      manual.reset();
      showManualFields();
      showManualErrors([]);
      succeeded(started);
      renderInterventions();
    } catch (error) {
      // Under the form either way: the banner at the top may be out of view from here.
      const details = error.details && error.details.length ? error.details : [];
      showManualErrors(details.length ? details : [{ message: `Not sent: ${error.message}` }]);
      notice(details.length ? "Not sent: see what to fix below the form." : `Not sent: ${error.message}`);
      // What was refused can be fixed and sent: with another key, as another send.
      if (error.status && error.status < 500) manualKey = newKey();
    } finally {
      send.disabled = false;
    }
  });

  document.getElementById("show-components").addEventListener("change", renderChart);
  window.addEventListener("resize", renderChart);

  // -- the room: what attendees answer, say and ask, with moderation ---------------------------
  async function refreshRoom() {
    const current = await call("GET", `/sessions/${sessionId}/room/`);
    loaded.room = true;
    if (current.waiting != null && root.dataset.status === "scheduled") {
      // No tick counts a room that waits: who is on the join page, from the room itself.
      document.getElementById("presence-when").textContent = "Waiting: ";
      document.getElementById("present").textContent = current.waiting;
      document.getElementById("updated").textContent = "just now";
    }
    room.leaders = current.leaderboard.leaders;
    for (const p of current.polls) room.polls.set(p.intervention, p);
    for (const m of current.chat) room.chat.set(m.id, m);
    for (const q of current.questions) room.questions.set(q.id, q);
    renderRoom();
  }

  async function moderate(path, body, store) {
    const started = ++latestAction;
    try {
      const updated = await call("PATCH", path, body);
      store.set(updated.id, updated);
      succeeded(started);
    } catch (error) {
      notice(`Could not change it: ${error.message}`);
    }
    renderRoom();
  }

  function toggle(label, pressed, onClick) {
    const button = text("button", label, "secondary small");
    button.type = "button";
    button.setAttribute("aria-pressed", String(pressed));
    button.addEventListener("click", onClick);
    return button;
  }

  // A word cloud: each word's size by its count (as on the join page), written as text.
  function wordCloud(result) {
    const box = document.createElement("p");
    box.className = "cloud";
    const most = Math.max(1, ...result.words.map((w) => w.count));
    for (const { word, count } of result.words) {
      const item = text("span", word, "word");
      item.style.fontSize = `${(1 + 1.6 * ((count - 1) / Math.max(1, most - 1))).toFixed(2)}em`;
      item.title = `${word}: ${count}`;
      item.dataset.count = count;
      box.append(item, " ");
    }
    if (!result.words.length) box.append(text("span", "No words yet.", "muted"));
    return box;
  }

  function renderRoom() {
    const polls = [...room.polls.values()].sort((a, b) => b.intervention - a.intervention).slice(0, 3);
    document.getElementById("room-polls").replaceChildren(...(polls.length ? polls.map((p) => {
      const box = document.createElement("div");
      box.className = "room-poll";
      box.dataset.id = p.intervention;
      if (p.kind === "words") {
        box.append(text("p", `${p.question} · ${p.total} ${p.total === 1 ? "answer" : "answers"}`, "question"), wordCloud(p));
        return box;
      }
      box.append(text("p", `${p.question} · ${p.total} ${p.total === 1 ? "vote" : "votes"}`, "question"));
      const list = document.createElement("ul");
      p.options.forEach((option, index) => {
        const votes = p.votes[index] || 0;
        const share = p.shares ? p.shares[index] : 0; // adding up to 100, from the server
        list.append(text("li", `${option}: ${share}% (${votes})`));
      });
      box.append(list);
      return box;
    }) : [empty("p", "No poll answered yet.", "room")]));

    document.getElementById("room-leaders").replaceChildren(...(room.leaders.length
      ? room.leaders.map((leader, index) => text("li", `${index + 1}. ${leader.name}: ${leader.points} points`))
      : [empty("li", "No points yet.", "room")]));

    const questions = [...room.questions.values()]
      .sort((a, b) => (b.pinned - a.pinned) || (b.votes - a.votes) || (a.id - b.id));
    document.getElementById("room-questions").replaceChildren(...(questions.length ? questions.map((q) => {
      const item = document.createElement("li");
      item.dataset.id = q.id;
      if (q.hidden) item.className = "hidden-item";
      item.append(text("span", `▲ ${q.votes} `, "votes"), text("span", q.text), text("span", ` — ${q.name}`, "muted"));
      // What the room sees of it, as the phones mark it.
      const marks = [q.pinned && "pinned", q.answered && "answered", q.hidden && "hidden from the room"].filter(Boolean);
      if (marks.length) item.append(text("span", ` · ${marks.join(" · ")}`, "marks"));
      const actions = document.createElement("div");
      actions.className = "actions";
      const path = `/questions/${q.id}/`;
      actions.append(
        toggle(q.pinned ? "Unpin" : "Pin", q.pinned, () => moderate(path, { pinned: !q.pinned }, room.questions)),
        toggle(q.answered ? "Mark unanswered" : "Mark answered", q.answered, () => moderate(path, { answered: !q.answered }, room.questions)),
        toggle(q.hidden ? "Show" : "Hide", q.hidden, () => moderate(path, { hidden: !q.hidden }, room.questions)),
      );
      item.append(actions);
      return item;
    }) : [empty("li", "No questions yet.", "room")]));

    // As many as a phone keeps (join.js): whatever the room still sees, the organizer can hide.
    const chat = [...room.chat.values()].sort((a, b) => a.id - b.id).slice(-100);
    document.getElementById("room-chat").replaceChildren(...(chat.length ? chat.map((m) => {
      const item = document.createElement("li");
      item.dataset.id = m.id;
      if (m.hidden) item.className = "hidden-item";
      item.append(text("strong", `${m.name}: `), text("span", m.text), text("span", " "),
        toggle(m.hidden ? "Show" : "Hide", m.hidden, () => moderate(`/messages/${m.id}/`, { hidden: !m.hidden }, room.chat)));
      return item;
    }) : [empty("li", "Nothing said yet.", "room")]));
  }

  // -- catching up through the API ------------------------------------------------------------
  async function refreshInterventions() {
    const page = await call("GET", `/sessions/${sessionId}/interventions/?limit=100`);
    for (const i of page.results) state.interventions.set(i.id, i);
  }
  async function catchUp() {
    const since = state.lastAt || new Date(Date.now() - WINDOW_SECONDS * 1000).toISOString();
    const [engagement, anomalies] = await Promise.all([
      call("GET", `/sessions/${sessionId}/engagement/?since=${encodeURIComponent(since)}`),
      call("GET", `/sessions/${sessionId}/anomalies/?limit=50`),
      refreshInterventions(),
    ]);
    addSamples(engagement.samples);
    loaded.decisions = true; // the decisions and drops are in: an empty list now means none
    await refreshRoom();
    for (const a of anomalies.results) state.anomalies.set(a.id, a);
    renderAnomalies();
    renderInterventions();
  }

  // Caught up, or trying again every 5 s until it is: a page whose first load failed (an
  // outage) would otherwise say "No decisions yet" until a reload.
  let catchingUp = null;
  function catchUpUntilDone() {
    if (catchingUp) return catchingUp;
    catchingUp = catchUp().then(() => {
      catchingUp = null;
      if (/^Could not catch up/.test(document.getElementById("notice").textContent)) notice("");
    }, (error) => {
      notice(`Could not catch up: ${error.message} Trying again in 5 s.`);
      return new Promise((resolve) => setTimeout(resolve, 5000)).then(() => {
        catchingUp = null;
        return catchUpUntilDone();
      });
    });
    return catchingUp;
  }

  // -- the websocket --------------------------------------------------------------------------
  // Only a live session takes interventions; an ended one is read-only, and its socket is no
  // longer "live" (nothing more will come).
  function applyStatus(status) {
    root.dataset.status = status;
    // Nobody joins an ended session, and no proposal will arrive to be notified of.
    for (const id of ["joining", "join-qr", "notify"]) {
      if (status === "ended") document.getElementById(id).hidden = true;
    }
    if (status !== "scheduled" && !state.samples.length) { // the room counted by its samples now
      document.getElementById("presence-when").textContent = "";
      document.getElementById("present").textContent = "–";
    }
    const closed = document.getElementById("manual-closed");
    manual.hidden = status !== "live";
    closed.hidden = status === "live";
    closed.textContent = status === "ended"
      ? "The session has ended: nothing more is sent."
      : "Interventions can be sent once the session is live.";
    document.getElementById("mode").disabled = status === "ended";
    for (const form of document.querySelectorAll("form.session-status")) {
      form.hidden = form.dataset.when !== status; // Go live, End the session, or neither
    }
    if (document.getElementById("socket").classList.contains("socket-live")) connectedAs(status);
    renderScore();
  }
  // The pill says what a connected page watches: a live session, one not started, or the end.
  function connectedAs(status) {
    if (status === "ended") setSocket("ended", "Ended");
    else if (status === "scheduled") setSocket("live", "Not started yet");
    else setSocket("live", "Live");
  }

  function setSocket(stateName, label) {
    const node = document.getElementById("socket");
    node.className = `socket socket-${stateName}`;
    node.textContent = label;
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${window.location.host}/ws/sessions/${sessionId}/`);
    let opened = false;
    socket.addEventListener("open", async () => {
      opened = true;
      retries = 0;
      connectedAs(root.dataset.status);
      await catchUpUntilDone();
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "engagement.sample") addSamples([message.data]);
      if (message.type === "anomaly.detected" || message.type === "anomaly.updated") {
        state.anomalies.set(message.data.id, message.data);
        renderAnomalies();
      }
      if (message.type === "poll.results") {
        room.polls.set(message.data.intervention, message.data);
        renderRoom();
      }
      if (message.type === "chat.message") {
        room.chat.set(message.data.id, message.data);
        renderRoom();
      }
      if (message.type === "question.updated") {
        room.questions.set(message.data.id, message.data);
        renderRoom();
      }
      if (message.type === "leaderboard") {
        room.leaders = message.data.leaders;
        renderRoom();
      }
      if (message.type === "intervention.updated") {
        state.interventions.set(message.data.id, message.data);
        renderInterventions();
      }
      if (message.type === "session.updated") {
        document.getElementById("mode").value = message.data.mode;
        savedMode = message.data.mode;
        // Renamed elsewhere (another tab, the API): the page follows.
        document.getElementById("session-title").textContent = message.data.title;
        document.getElementById("session-topic").textContent = message.data.topic;
        pageTitle = `${message.data.title} · Conductor`;
        const waiting = document.title.match(/^\(\d+\) /);
        document.title = (waiting ? waiting[0] : "") + pageTitle;
        const status = document.getElementById("status");
        // As the page first wrote it (LiveSession.Status's labels), not the value.
        status.textContent = message.data.status.charAt(0).toUpperCase() + message.data.status.slice(1);
        status.className = `status status-${message.data.status}`;
        applyStatus(message.data.status);
      }
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401) {
        window.location.href = `/login/?next=${encodeURIComponent(window.location.pathname)}`;
        return;
      }
      if (event.code === 4403) {
        setSocket("down", "No access");
        return;
      }
      // This socket never opened (Redis down, a proxy refusing the upgrade): its open handler
      // did not catch up, so do it here over HTTP, once per failed attempt, so the organizer
      // still sees the session and its pending interventions (and new ones at each retry).
      // A socket that did open caught up then; the next open catches up again.
      if (!opened) catchUpUntilDone();
      // Exponential backoff with a ceiling; what was missed is fetched on reconnect.
      const delay = Math.min(30000, 500 * 2 ** retries) * (0.5 + Math.random() / 2);
      retries += 1;
      setSocket("down", `Disconnected — reconnecting in ${Math.ceil(delay / 1000)} s`);
      setTimeout(connect, delay);
    });
  }

  setInterval(() => {
    for (const node of document.querySelectorAll(".countdown")) {
      node.textContent = `expires in ${countdown(node.dataset.expires)}`;
    }
    for (const node of document.querySelectorAll("time.ago")) {
      node.textContent = relative(node.dateTime);
    }
    const latest = state.samples[state.samples.length - 1];
    if (latest) document.getElementById("updated").textContent = relative(latest.at);
  }, 1000);
  // While the session waits for its start, who is on the join page, every 10 s.
  setInterval(() => {
    if (root.dataset.status === "scheduled" && loaded.room) refreshRoom().catch(() => {});
  }, 10000);

  // The first load is the socket's first catch-up: subscribed first, then fetched, so nothing
  // published in between is missed (and nothing is fetched twice). Without a socket, the first
  // load happens when its first attempt fails.
  connect();
})();
