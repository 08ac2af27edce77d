// The console's only script: parts of a page that change (a bot's latest decisions, a
// backtest's progress) replace themselves with a fresh fragment from the server. A part with
// `data-stream` gets it over Server-Sent Events each time it changes; without a stream, or
// when the stream fails, a part asks for it every few seconds (`data-poll`). Reads only;
// every write is a form carrying its CSRF token.
"use strict";

async function refresh(element) {
  // The element now in the page, or null to try again later.
  let reply;
  try {
    reply = await fetch(element.dataset.poll, {headers: {"X-Console-Fragment": "1"}, credentials: "same-origin"});
  } catch (error) {
    return element;  // the server is restarting, say
  }
  if (reply.status === 401) {
    window.location.assign("/console/sign-in?ended=1");
    return null;
  }
  if (!reply.ok) {
    return element;
  }
  return replace(element, await reply.text());
}

function replace(element, html) {
  const holder = document.createElement("div");
  holder.innerHTML = html;
  const fresh = holder.firstElementChild;
  element.replaceWith(fresh);
  if (fresh.dataset.reload !== undefined) {
    window.location.reload();
    return null;
  }
  return fresh;
}

function poll(element) {
  const every = Number(element.dataset.pollS || "3") * 1000;
  setTimeout(async () => {
    const now = await refresh(element);
    if (now && now.dataset.poll) {
      poll(now);
    }
  }, every);
}

function stream(element) {
  let current = element;
  const source = new EventSource(element.dataset.stream);
  // What changed while the stream was not open (before it, or between two connections).
  source.addEventListener("open", async () => {
    current = (await refresh(current)) || current;
  });
  source.addEventListener("decisions", (event) => {
    current = replace(current, event.data) || current;
  });
  source.addEventListener("error", () => {
    // The browser reconnects by itself unless the stream was refused (signed out, say):
    // then the part polls, which also tells a signed-out page to sign in again.
    if (source.readyState === EventSource.CLOSED) {
      poll(current);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach((element) => {
    if (element.dataset.stream && window.EventSource) {
      stream(element);
    } else {
      poll(element);
    }
  });
});
