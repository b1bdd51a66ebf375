// The join page (and, with data-screen, the presenter screen): one socket, /ws/j/<code>/.
// Everything shown is set as text, never as HTML: what attendees write stays text.
(function () {
  "use strict";

  const root = document.getElementById("room");
  const code = root.dataset.code;
  const screen = root.dataset.screen === "1";
  const seen = new Set(); // delivery ids: a resent intervention is shown once
  const polls = new Map(); // intervention id -> results
  const myVotes = new Map(); // intervention id -> choice, or a word cloud's words
  const taken = new Map(); // challenge id -> points awarded
  const CHALLENGE_OPEN_MS = 10 * 60 * 1000; // participation.CHALLENGE_OPEN
  let openChallenge = null; // { id, content, until }: the challenge one can still take
  const questions = new Map();
  const upvoted = new Set();
  let current = null; // the intervention shown under "Now"
  let sortBy = "votes";
  let socket = null;
  let retries = 0;
  let me = null; // who this attendee is on the leaderboard
  let leaders = [];
  let heartbeat = null;
  // Actions sent with an id, until the server's ack or error for it: what each then does.
  const awaiting = new Map();
  const HEARTBEAT_MS = Number(root.dataset.heartbeat) || 20000;

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
      const share = result.shares ? result.shares[index] : 0; // adding up to 100, from the server
      const item = document.createElement("li");
      if (index === chosen) item.className = "chosen";
      const bar = text("span", "", "bar");
      bar.style.width = `${share}%`;
      item.append(text("span", option, "option"), text("span", `${share}% (${votes})`, "share"), bar);
      list.append(item);
    });
    return list;
  }

  // A word cloud: each word's size by its count, the largest at most 2.6 times the smallest.
  function cloud(result, mine) {
    const box = document.createElement("p");
    box.className = "cloud";
    box.setAttribute("aria-label", "Word cloud");
    const most = Math.max(1, ...result.words.map((w) => w.count));
    for (const { word, count } of result.words) {
      const item = text("span", word, mine && mine.includes(word) ? "word mine" : "word");
      item.style.fontSize = `${(1 + 1.6 * ((count - 1) / Math.max(1, most - 1))).toFixed(2)}em`;
      item.title = `${word}: ${count}`;
      item.dataset.count = count;
      box.append(item, " ");
    }
    if (!result.words.length) box.append(text("span", "No words yet.", "muted"));
    return box;
  }
  const answered = (total, noun) => `${total} ${total === 1 ? noun : `${noun}s`} so far`;

  function cloudCard(poll) {
    const card = document.createElement("div");
    card.className = "poll words";
    card.dataset.id = poll.id;
    card.append(text("p", poll.content.question, "question"));
    const mine = myVotes.get(poll.id);
    const form = document.createElement("form");
    form.className = "compose";
    const label = text("label", "One to three words");
    const input = document.createElement("input");
    input.name = "words";
    input.maxLength = 80;
    input.autocomplete = "off";
    input.value = mine ? mine.join(" ") : "";
    label.append(input);
    const button = text("button", mine ? "Change my words" : "Send my words", "primary");
    button.type = "submit";
    // What is wrong with the words, next to them (the page's notice may be out of view).
    const problem = text("p", "", "error");
    problem.hidden = true;
    const say = (message) => { problem.textContent = message; problem.hidden = !message; };
    form.append(label, button, problem);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      // As the server keeps them: lowercase, without the punctuation around each word.
      const words = input.value.split(/[\s,]+/)
        .map((w) => w.replace(/^[.,;:!?"'()[\]{}«»“”‘’¡¿…]+|[.,;:!?"'()[\]{}«»“”‘’¡¿…]+$/g, "").toLowerCase())
        .filter(Boolean);
      if (!words.length) return say("Write a word first.");
      if (words.length > 3) return say("At most three words.");
      if (words.some((w) => w.length > 24)) return say("At most 24 characters a word.");
      const id = clientId();
      // Answered once the server says so (its ack); its error is said here, and the card stays
      // as it was.
      if (send({ type: "words", id, intervention: poll.id, words })) {
        say("");
        awaiting.set(id, {
          accepted() {
            myVotes.set(poll.id, words);
            input.value = words.join(" ");
            button.textContent = "Change my words";
            fillCloud(card);
          },
          refused: say,
        });
      }
    });
    const holder = document.createElement("div");
    holder.className = "cloud-holder";
    card.append(form, holder);
    fillCloud(card);
    return card;
  }
  // Only the cloud changes as answers arrive: what the attendee is typing stays.
  function fillCloud(card) {
    const id = Number(card.dataset.id);
    const mine = myVotes.get(id);
    const result = polls.get(id);
    const holder = card.querySelector(".cloud-holder");
    if (mine && result) {
      holder.replaceChildren(text("p", answered(result.total, "answer"), "muted"), cloud(result, mine));
    } else if (mine) {
      holder.replaceChildren(text("p", "Thanks! The cloud is coming…", "muted"));
    }
  }

  function pollCard(poll) {
    if (poll.content.kind === "words") return cloudCard(poll);
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
      card.append(text("p", answered(result.total, "vote"), "muted"), resultsList(result, chosen));
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
    const shownCloud = holder.querySelector(`.poll.words[data-id="${current.id}"]`);
    if (shownCloud) {
      fillCloud(shownCloud);
    } else if (current.intervention_type === "poll") {
      holder.replaceChildren(pollCard({ id: current.id, content: c }), ...stillOpen());
    } else if (current.intervention_type === "gamification") {
      holder.replaceChildren(challengeCard(current.id, c));
    }
  }

  // A challenge stays open for its ten minutes: a poll sent after it shows above it, not
  // instead of it.
  function stillOpen() {
    if (!openChallenge || openChallenge.until <= Date.now()) return [];
    if (current && current.id === openChallenge.id) return [];
    return [challengeCard(openChallenge.id, openChallenge.content)];
  }

  // -- challenges and the leaderboard --------------------------------------------------------
  function challengeCard(id, c) {
    const card = document.createElement("div");
    card.className = "challenge-card";
    card.dataset.id = id;
    card.append(text("p", c.challenge, "challenge"), text("p", `+${c.points} points`, "points"));
    if (taken.has(id)) {
      card.append(text("p", `Done: +${taken.get(id)} points. You have ${me ? me.points : taken.get(id)} points.`, "done"));
      return card;
    }
    const button = text("button", "I did it", "primary");
    button.type = "button";
    button.addEventListener("click", () => {
      if (send({ type: "challenge", intervention: id })) button.disabled = true;
    });
    card.append(button);
    return card;
  }

  function renderLeaders() {
    const list = byId("leaderboard");
    if (!list) return;
    const card = byId("leaderboard-card");
    if (card) card.hidden = !leaders.length && !(current && current.intervention_type === "gamification");
    list.replaceChildren(...(leaders.length ? leaders.map((leader) => {
      const item = document.createElement("li");
      const mine = me && leader.id === me.id;
      if (mine) item.className = "me";
      item.append(text("span", leader.name + (mine ? " (you)" : ""), "name"),
        text("span", `${leader.points} points`, "points"));
      return item;
    }) : [text("li", "No points yet: take a challenge!", "muted empty")]));
  }

  function receiveIntervention(message) {
    if (seen.has(message.delivery_id)) return;
    seen.add(message.delivery_id);
    const c = message.content;
    const kind = message.intervention_type;
    if (screen) {
      if (kind === "poll" && c.kind === "words") {
        showScreenPoll({ intervention: message.id, question: c.question, kind: "words", words: [], total: 0 });
      } else if (kind === "poll") {
        showScreenPoll({ intervention: message.id, question: c.question,
          options: c.options, votes: c.options.map(() => 0), total: 0 });
      } else if (kind === "gamification") {
        showScreenChallenge({ intervention: message.id, challenge: c.challenge, points: c.points });
      }
      return;
    }
    if (kind === "gamification") {
      openChallenge = { id: message.id, content: c, until: Date.parse(message.sent_at) + CHALLENGE_OPEN_MS };
    }
    if (kind === "poll" || kind === "gamification") {
      current = message;
      showCurrent();
      renderLeaders();
      byId("now").scrollIntoView({ behavior: "smooth", block: "start" });
    } else if (kind === "notification") {
      const toast = byId("toast");
      toast.replaceChildren(text("strong", c.title), text("p", c.body));
      toast.hidden = false;
      setTimeout(() => { toast.hidden = true; }, 8000);
    } else {
      showPrompt(kind, c);
      if (kind === "chat_prompt") byId("say-text").focus({ preventScroll: true });
    }
  }

  // The stage's words above the chat or the questions, or its banner: as sent, or again from
  // the room's state when the page (re)connects.
  function showPrompt(kind, c) {
    if (kind === "chat_prompt") {
      const prompt = byId("chat-prompt");
      prompt.textContent = c.text;
      prompt.hidden = false;
    } else if (kind === "qna_prompt") {
      const prompt = byId("qna-prompt");
      prompt.textContent = c.text;
      prompt.hidden = false;
    } else if (kind === "broadcast") {
      const banner = byId("banner");
      const target = ctaTarget(c.call_to_action);
      let action = text("span", c.call_to_action);
      if (target) { // a call to action that names a place on this page leads there
        action = text("button", c.call_to_action, "link cta");
        action.type = "button";
        action.addEventListener("click", () => {
          byId(target.card).scrollIntoView({ behavior: "smooth", block: "start" });
          const input = target.input && byId(target.input);
          if (input && !input.disabled) input.focus({ preventScroll: true });
        });
      }
      banner.replaceChildren(text("strong", c.headline), text("span", " — "), action);
      banner.hidden = false;
    }
  }

  // Where a broadcast's call to action leads, when it names a part of the page.
  function ctaTarget(words) {
    if (/chat|say hi|join in/i.test(words)) return { card: "chat-card", input: "say-text" };
    if (/ask|question/i.test(words)) return { card: "questions-card", input: "ask-text" };
    if (/vote|poll|answer/i.test(words)) return { card: "now" };
    return null;
  }

  // -- a scheduled session: the page waits for its start ------------------------------------
  function setStatus(status) {
    root.dataset.status = status;
    const waiting = status === "scheduled";
    const card = byId("waiting");
    if (card) card.hidden = !waiting;
    // Only the name may be set before the start: anything else would start the session early.
    for (const control of root.querySelectorAll("[data-reaction], #ask button, #ask textarea, #say button, #say input")) {
      control.disabled = waiting;
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
    const shown = result.kind === "words" ? cloud(result, null) : resultsList(result, -1);
    byId("poll-results").replaceWith(Object.assign(shown, { id: "poll-results" }));
  }
  function showScreenChallenge(challenge) {
    const node = byId("challenge");
    node.replaceChildren(text("span", challenge.challenge), text("strong", ` +${challenge.points} points`, "points"));
    node.hidden = false;
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
      // A light heartbeat: an attendee silent past the server's timeout is counted gone.
      clearInterval(heartbeat);
      if (!screen) heartbeat = setInterval(() => send({ type: "ping" }), HEARTBEAT_MS);
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "room") {
        const room = message.data;
        if (!screen && room.status) setStatus(room.status);
        for (const result of room.polls.slice().reverse()) onResults(result);
        for (const m of room.chat) addChat(m);
        for (const q of room.questions) questions.set(q.id, q);
        renderQuestions();
        if (room.you) {
          me = room.you;
          for (const entry of room.you.challenges) taken.set(entry.intervention, entry.points);
          for (const answer of room.you.answers || []) {
            myVotes.set(answer.intervention, answer.choice === null ? answer.words : answer.choice);
          }
        }
        if (room.challenge && screen) showScreenChallenge(room.challenge);
        if (room.challenge) {
          const open = room.challenge;
          openChallenge = { id: open.intervention, until: Date.parse(open.open_until),
            content: { challenge: open.challenge, points: open.points } };
        }
        // The stage's last poll or challenge is still "now" for a phone that joins late,
        // reloads, or comes back after a poll was sent while its socket was down.
        if (room.now && !screen && (!current || room.now.id > current.id)) {
          current = room.now;
          showCurrent();
        }
        // And the prompts and the banner, which a phone back from a reload had lost.
        if (!screen) for (const prompt of room.prompts || []) showPrompt(prompt.intervention_type, prompt.content);
        leaders = room.leaderboard.leaders;
        renderLeaders();
      } else if (message.type === "session") {
        if (!screen) setStatus(message.data.status);
      } else if (message.type === "intervention") {
        receiveIntervention(message);
      } else if (message.type === "poll.results") {
        onResults(message.data);
      } else if (message.type === "chat.message") {
        addChat(message.data);
      } else if (message.type === "question.updated") {
        questions.set(message.data.id, message.data);
        renderQuestions();
      } else if (message.type === "leaderboard") {
        leaders = message.data.leaders;
        renderLeaders();
      } else if (message.type === "points") {
        taken.set(message.data.intervention, message.data.points);
        if (me) me.points = message.data.total;
        showCurrent();
        renderLeaders();
      } else if (message.type === "error") {
        const waiting = awaiting.get(message.id);
        awaiting.delete(message.id);
        if (waiting) waiting.refused(message.message);
        else notice(message.message);
        if (current && current.intervention_type === "gamification") showCurrent(); // enable again
      } else if (message.type === "ack") {
        const waiting = awaiting.get(message.id);
        awaiting.delete(message.id);
        if (waiting) waiting.accepted();
        notice("");
      }
    });
    socket.addEventListener("close", (event) => {
      clearInterval(heartbeat);
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
    setStatus(root.dataset.status);
    // What was typed stays until the server takes it: a refusal ("Slow down a little") keeps
    // it to send again instead of losing it.
    function post(formId, inputId, type) {
      byId(formId).addEventListener("submit", (event) => {
        event.preventDefault();
        const input = byId(inputId);
        const typed = input.value;
        const id = clientId();
        if (!typed.trim() || !send({ type, id, text: typed })) return;
        awaiting.set(id, {
          accepted() { if (input.value === typed) input.value = ""; },
          refused: notice,
        });
      });
    }
    post("say", "say-text", "chat");
    post("ask", "ask-text", "question");
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
