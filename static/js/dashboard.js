// The dashboard's title says how many proposals wait for the organizer, refreshed with the table;
// a refresh that fails says so, with the time of the figures shown (they would look current).
(() => {
  const title = document.title;
  let shownAt = new Date();
  const clock = (date) => [date.getHours(), date.getMinutes(), date.getSeconds()]
    .map((part) => String(part).padStart(2, "0")).join(":"); // as the live view writes times
  function showWaiting() {
    const node = document.getElementById("waiting-total");
    const total = node ? Number(node.dataset.total) : 0;
    document.title = total ? `(${total}) ${title}` : title;
  }
  function refreshed(event) {
    if (event.detail.target.id !== "sessions") return;
    shownAt = new Date();
    document.getElementById("sessions-stale").hidden = true;
    showWaiting();
  }
  function failed(event) {
    if (event.detail.elt.id !== "sessions") return;
    const stale = document.getElementById("sessions-stale");
    stale.textContent = `Could not refresh: these figures are from ${clock(shownAt)}. Trying again every 5 s.`;
    stale.hidden = false;
  }
  showWaiting();
  document.body.addEventListener("htmx:afterSwap", refreshed);
  document.body.addEventListener("htmx:responseError", failed);
  document.body.addEventListener("htmx:sendError", failed);
})();
