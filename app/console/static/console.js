// The console's only script: parts of a page that change (a bot's latest decisions, a
// backtest's progress) ask the server for their fragment every few seconds and replace
// themselves with it. Polls are reads; every write is a form carrying its CSRF token.
"use strict";

function poll(element) {
  const url = element.dataset.poll;
  const every = Number(element.dataset.pollS || "3") * 1000;
  const timer = setTimeout(async () => {
    let reply;
    try {
      reply = await fetch(url, {headers: {"X-Console-Fragment": "1"}, credentials: "same-origin"});
    } catch (error) {
      poll(element);  // the server is restarting, say: try again later
      return;
    }
    if (reply.status === 401) {
      window.location.assign("/console/sign-in?ended=1");
      return;
    }
    if (!reply.ok) {
      poll(element);
      return;
    }
    const holder = document.createElement("div");
    holder.innerHTML = await reply.text();
    const fresh = holder.firstElementChild;
    element.replaceWith(fresh);
    if (fresh.dataset.reload !== undefined) {
      window.location.reload();
    } else if (fresh.dataset.poll) {
      poll(fresh);
    }
  }, every);
  return timer;
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(poll);
});
