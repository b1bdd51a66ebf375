// The join page (and, with data-screen, the presenter screen): one socket, /ws/j/<code>/.
// Everything shown is set as text, never as HTML: what attendees write stays text.
(function () {
  "use strict";

  const root = document.getElementById("room");
  const code = root.dataset.code;
  const screen = root.dataset.screen === "1";
  const seen = new Set(); // delivery ids: a resent intervention is shown once
  const polls = new Map(); // intervention id -> results
  const myVotes = new Map(); // intervention id -> choice
  const questions = new Map();
  const upvoted = new Set();
  let current = null; // the intervention shown under "Now"
  let sortBy = "votes";
  let socket = null;
  let retries = 0;

  function text(tag, value, className) {
    const node = document.createElement(tag);
    node.textContent = value;
    if (className) node.className = className;
    return node;
  }
  const byId = (id) => document.getElementById(id);
  const clientId = () => (crypto.randomUUID ? crypto.randomUUID()
    : `${Date.now()}-${Math.random().toString(16).slice(2)}`);

  function notice(message) {
    const node = byId("notice");
    if (!node) return;
    node.textContent = message;
    node.hidden = !message;
  }
  function send(message) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      notice("Not connected: reconnecting…");
      return false;
    }
    socket.send(JSON.stringify(message));
    return true;
  }

  // -- polls --------------------------------------------------------------------------------
  function resultsList(result, chosen) {
    const list = document.createElement("ol");
    list.className = "results";
    result.options.forEach((option, index) => {
      const votes = result.votes[index] || 0;
      const share = result.total ? Math.round((votes / result.total) * 100) : 0;
      const item = document.createElement("li");
      if (index === chosen) item.className = "chosen";
      const bar = text("span", "", "bar");
      bar.style.width = `${share}%`;
      item.append(text("span", option, "option"), text("span", `${share}% (${votes})`, "share"), bar);
      list.append(item);
    });
    return list;
  }

  function pollCard(poll) {
    const card = document.createElement("div");
    card.className = "poll";
    card.dataset.id = poll.id;
    card.append(text("p", poll.content.question, "question"));
    const chosen = myVotes.get(poll.id);
    const options = document.createElement("div");
    options.className = "options";
    poll.content.options.forEach((option, index) => {
      const button = text("button", option, index === chosen ? "primary" : "");
      button.type = "button";
      button.setAttribute("aria-pressed", String(index === chosen));
      button.addEventListener("click", () => {
        if (send({ type: "vote", intervention: poll.id, choice: index })) {
          myVotes.set(poll.id, index);
          showCurrent();
        }
      });
      options.append(button);
    });
    card.append(options);
    const result = polls.get(poll.id);
    if (chosen !== undefined && result) {
      card.append(text("p", `${result.total} ${result.total === 1 ? "vote" : "votes"} so far`, "muted"),
        resultsList(result, chosen));
    } else if (chosen !== undefined) {
      card.append(text("p", "Thanks! Results are coming…", "muted"));
    }
    return card;
  }

  // -- what the stage sends -----------------------------------------------------------------
  function showCurrent() {
    const holder = byId("current");
    if (!holder || !current) return;
    const c = current.content;
    if (current.intervention_type === "poll") {
      holder.replaceChildren(pollCard({ id: current.id, content: c }));
    } else if (current.intervention_type === "gamification") {
      holder.replaceChildren(text("p", c.challenge, "challenge"), text("p", `+${c.points} points`, "points"));
    }
  }

  function receiveIntervention(message) {
    if (seen.has(message.delivery_id)) return;
    seen.add(message.delivery_id);
    const c = message.content;
    const kind = message.intervention_type;
    if (screen) {
      if (kind === "poll") showScreenPoll({ intervention: message.id, question: c.question,
        options: c.options, votes: c.options.map(() => 0), total: 0 });
      return;
    }
    if (kind === "poll" || kind === "gamification") {
      current = message;
      showCurrent();
      byId("now").scrollIntoView({ behavior: "smooth", block: "start" });
    } else if (kind === "chat_prompt") {
      const prompt = byId("chat-prompt");
      prompt.textContent = c.text;
      prompt.hidden = false;
      byId("say-text").focus({ preventScroll: true });
    } else if (kind === "qna_prompt") {
      const prompt = byId("qna-prompt");
      prompt.textContent = c.text;
      prompt.hidden = false;
    } else if (kind === "broadcast") {
      const banner = byId("banner");
      banner.replaceChildren(text("strong", c.headline), text("span", ` — ${c.call_to_action}`));
      banner.hidden = false;
    } else if (kind === "notification") {
      const toast = byId("toast");
      toast.replaceChildren(text("strong", c.title), text("p", c.body));
      toast.hidden = false;
      setTimeout(() => { toast.hidden = true; }, 8000);
    }
  }

  // -- the room: chat and questions ---------------------------------------------------------
  function addChat(message) {
    const list = byId("chat");
    if (!list || message.hidden) {
      const old = list && list.querySelector(`li[data-id="${message.id}"]`);
      if (old) old.remove();
      return;
    }
    if (list.querySelector(`li[data-id="${message.id}"]`)) return;
    const item = document.createElement("li");
    item.dataset.id = message.id;
    item.append(text("strong", `${message.name}: `), text("span", message.text));
    list.append(item);
    while (list.children.length > 100) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  function renderQuestions() {
    const list = byId("questions");
    if (!list) return;
    const shown = [...questions.values()].filter((q) => !q.hidden);
    shown.sort((a, b) => (b.pinned - a.pinned)
      || (sortBy === "votes" ? b.votes - a.votes || (a.at < b.at ? -1 : 1) : (a.at < b.at ? 1 : -1)));
    list.replaceChildren(...shown.slice(0, screen ? 5 : 100).map((q) => {
      const item = document.createElement("li");
      item.dataset.id = q.id;
      if (q.answered) item.classList.add("answered");
      if (q.pinned) item.classList.add("pinned");
      item.append(text("span", q.text, "text"), text("span", ` — ${q.name}`, "muted"));
      if (q.pinned) item.append(text("span", " · pinned", "tag"));
      if (q.answered) item.append(text("span", " · answered", "tag"));
      if (screen) {
        item.append(text("span", ` ▲ ${q.votes}`, "votes"));
      } else {
        const up = text("button", `▲ ${q.votes}`, upvoted.has(q.id) ? "upvote primary" : "upvote");
        up.type = "button";
        up.setAttribute("aria-label", `Upvote (${q.votes})`);
        up.disabled = upvoted.has(q.id);
        up.addEventListener("click", () => {
          if (send({ type: "upvote", question: q.id })) {
            upvoted.add(q.id);
            renderQuestions();
          }
        });
        item.prepend(up);
      }
      return item;
    }));
  }

  // -- the presenter screen -----------------------------------------------------------------
  let screenPoll = null;
  function showScreenPoll(result) {
    if (screenPoll !== null && result.intervention < screenPoll) return; // an older poll
    screenPoll = result.intervention;
    byId("poll-question").textContent = result.question;
    byId("poll-results").replaceWith(Object.assign(resultsList(result, -1), { id: "poll-results" }));
  }

  function onResults(result) {
    polls.set(result.intervention, result);
    if (screen) showScreenPoll(result);
    else if (current && current.id === result.intervention) showCurrent();
  }

  // -- the socket ---------------------------------------------------------------------------
  function setConnection(label, state) {
    const node = byId("connection");
    if (!node) return;
    node.textContent = label;
    node.className = `socket socket-${state}`;
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${window.location.host}/ws/j/${code}/${screen ? "?screen=1" : ""}`);
    socket.addEventListener("open", () => {
      retries = 0;
      setConnection("Connected", "live");
      notice("");
      const name = localStorage.getItem("conductor-name");
      if (name && !screen) send({ type: "name", name });
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "room") {
        for (const result of message.data.polls.slice().reverse()) onResults(result);
        for (const m of message.data.chat) addChat(m);
        for (const q of message.data.questions) questions.set(q.id, q);
        renderQuestions();
      } else if (message.type === "intervention") {
        receiveIntervention(message);
      } else if (message.type === "poll.results") {
        onResults(message.data);
      } else if (message.type === "chat.message") {
        addChat(message.data);
      } else if (message.type === "question.updated") {
        questions.set(message.data.id, message.data);
        renderQuestions();
      } else if (message.type === "error") {
        notice(message.message);
      } else if (message.type === "ack") {
        notice("");
      }
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4410) {
        setConnection("This session has ended.", "ended");
        window.location.reload(); // the server's page says it ended
        return;
      }
      if (event.code === 4403) {
        setConnection("This code is not valid any more.", "down");
        return;
      }
      const delay = Math.min(30000, 1000 * 2 ** retries++);
      setConnection(`Reconnecting in ${Math.ceil(delay / 1000)} s…`, "down");
      setTimeout(connect, delay);
    });
  }

  // -- what the attendee does ---------------------------------------------------------------
  if (!screen) {
    byId("say").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = byId("say-text");
      if (input.value.trim() && send({ type: "chat", id: clientId(), text: input.value })) input.value = "";
    });
    byId("ask").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = byId("ask-text");
      if (input.value.trim() && send({ type: "question", id: clientId(), text: input.value })) input.value = "";
    });
    for (const button of document.querySelectorAll("[data-reaction]")) {
      button.addEventListener("click", () => send({ type: "reaction", id: clientId(), kind: button.dataset.reaction }));
    }
    for (const button of document.querySelectorAll("[data-sort]")) {
      button.addEventListener("click", () => {
        sortBy = button.dataset.sort;
        for (const other of document.querySelectorAll("[data-sort]")) {
          other.setAttribute("aria-pressed", String(other === button));
        }
        renderQuestions();
      });
    }
    const name = byId("name");
    name.value = localStorage.getItem("conductor-name") || "";
    name.addEventListener("change", () => {
      localStorage.setItem("conductor-name", name.value.trim());
      send({ type: "name", name: name.value.trim() });
    });
  }
  connect();
})();
