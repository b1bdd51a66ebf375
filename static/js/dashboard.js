// The dashboard's title says how many proposals wait for the organizer, refreshed with the table.
(() => {
  const title = document.title;
  function showWaiting() {
    const node = document.getElementById("waiting-total");
    const total = node ? Number(node.dataset.total) : 0;
    document.title = total ? `(${total}) ${title}` : title;
  }
  showWaiting();
  document.body.addEventListener("htmx:afterSwap", showWaiting);
})();
