// The demo page: calls the service's own API from the browser, nothing else.
// POST /recommend for the chosen user; POST /interactions (with the typed API key) on "Like",
// then the list again: the liked item leaves it (exclude_seen) and new ones are marked.
"use strict";

const $ = (selector) => document.querySelector(selector);
let shown = [];  // item ids of the list on screen, to mark the ones that enter

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((entry) => entry.msg).join("; ");
  } catch (_) { /* not JSON: fall through to the status line */ }
  return `${response.status} ${response.statusText}`;
}

async function loadUsers() {
  const response = await fetch("/demo/users?limit=50");
  if (!response.ok) return setStatus(`could not list users: ${await errorText(response)}`, true);
  const pick = $("#user-pick");
  for (const user of (await response.json()).users) {
    const option = document.createElement("option");
    option.value = option.textContent = user;
    pick.append(option);
  }
}

async function itemDetails(ids) {
  if (ids.length === 0) return new Map();
  const query = ids.map((id) => `item_id=${encodeURIComponent(id)}`).join("&");
  const response = await fetch(`/demo/items?${query}`);
  if (!response.ok) return new Map();
  return new Map((await response.json()).items.map((item) => [item.item_id, item]));
}

async function recommend(userId, previous = shown) {
  const k = Number($("#k").value) || 10;
  const started = performance.now();
  const response = await fetch("/recommend", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: userId, k, exclude_seen: true }),
  });
  const latency = performance.now() - started;
  if (!response.ok) return setStatus(`recommend failed: ${await errorText(response)}`, true);
  const answer = await response.json();
  const details = await itemDetails(answer.items.map((item) => item.item_id));
  render(answer, details, latency, response.headers.get("X-Request-ID"), previous);
  return answer;
}

function render(answer, details, latency, requestId, previous) {
  $("#fact-user").textContent = answer.user_id;
  $("#fact-version").textContent = answer.model_version;
  $("#fact-latency").textContent = `${latency.toFixed(1)} ms (round trip)`;
  $("#fact-fallback").textContent =
    answer.fallback === null ? "personal" : `fallback: ${answer.fallback} (unknown user)`;
  $("#fact-request").textContent = requestId || "";
  const list = $("#recs");
  list.replaceChildren(...answer.items.map((item) => row(item, details.get(item.item_id),
    previous.length > 0 && !previous.includes(item.item_id))));
  shown = answer.items.map((item) => item.item_id);
  $("#result").hidden = false;
}

function row(item, detail, isNew) {
  const node = $("#rec-template").content.firstElementChild.cloneNode(true);
  node.dataset.itemId = item.item_id;
  node.classList.toggle("new", isNew);
  node.querySelector(".title").textContent = detail?.title || `item ${item.item_id}`;
  node.querySelector(".item-id").textContent = `id ${item.item_id}`;
  node.querySelector(".score").textContent = item.score.toFixed(3);
  const placeholder = node.querySelector(".placeholder");
  placeholder.textContent = item.item_id.slice(-4);
  if (detail?.image) {
    const img = node.querySelector("img");
    img.src = detail.image;
    img.hidden = false;
    placeholder.hidden = true;
  }
  node.querySelector(".like").addEventListener("click", () => like(item.item_id));
  return node;
}

async function like(itemId) {
  const userId = $("#fact-user").textContent;
  const key = $("#api-key").value;
  const response = await fetch("/interactions", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-API-Key": key },
    body: JSON.stringify({ user_id: userId, item_ids: [itemId] }),
  });
  if (!response.ok) {
    const hint = response.status === 401 ? " (type the service's API key above)" : "";
    return setStatus(`like failed: ${await errorText(response)}${hint}`, true);
  }
  const before = shown;
  const answer = await recommend(userId, before);
  if (!answer) return;
  const entered = answer.items.map((item) => item.item_id).filter((id) => !before.includes(id));
  setStatus(`liked ${itemId}; entered the list: ${entered.join(", ") || "none"}`);
}

async function show(event) {
  event?.preventDefault();
  const userId = $("#user-id").value.trim();
  if (!userId) return setStatus("type or pick a user id", true);
  setStatus("");
  await recommend(userId, []);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#who").addEventListener("submit", show);
  $("#user-pick").addEventListener("change", () => {
    if (!$("#user-pick").value) return;
    $("#user-id").value = $("#user-pick").value;
    show();
  });
  const fromUrl = new URLSearchParams(location.search).get("user");
  loadUsers().then(() => {
    if (fromUrl) {
      $("#user-id").value = fromUrl;
      show();
    }
  });
});
