// A run's page follows the run: every 1.5 s it asks for the run's state and, when it changed,
// swaps in what the page shows of it, until the run has finished. It leaves alone an approval
// the organizer is editing (typed in, or has focus in) and swaps at a later tick.
(() => {
  const box = document.getElementById("run-progress");
  if (!box || box.hasAttribute("data-finished")) return;
  const url = box.dataset.progressUrl;
  const every = 1500;
  let editing = false;

  box.addEventListener("input", () => { editing = true; });

  function busy() {
    const focused = document.activeElement;
    return editing || (focused !== null && box.contains(focused) && focused.closest("form") !== null);
  }

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const data = await response.json();
        if (data.version !== box.dataset.version && !busy()) {
          box.innerHTML = data.html;
          box.dataset.version = data.version;
        }
        if (data.finished && data.version === box.dataset.version) {
          box.setAttribute("data-finished", "");
          return;
        }
      }
    } catch (error) {
      // The network blinked: try again at the next tick.
    }
    setTimeout(poll, every);
  }
  setTimeout(poll, every);
})();
