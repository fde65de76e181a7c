"use strict";
// The onboarding page: upload a style, poll its job, stylize a photo with it.
// Plain browser APIs only (fetch, FormData, object URLs), so it works offline.

const $ = (id) => document.getElementById(id);
let resultUrl = null;
let pending = null; // AbortController of the stylize request in flight

function showError(message = "") {
  $("error").textContent = message;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      detail = (await response.json()).detail || detail;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new Error(detail);
  }
  return response;
}

function updateButtons() {
  $("learn").disabled = !$("style-file").files.length;
  $("delete-style").disabled = !$("style-select").value;
}

async function loadStyles(selectId) {
  const styles = await (await api("/styles")).json();
  $("style-select").replaceChildren(...styles.map((s) =>
    new Option(`${s.name} (${new Date(s.created * 1000).toLocaleString()})`, s.id)));
  if (selectId) $("style-select").value = selectId;
  updateButtons();
}

function describe(job) {
  if (job.state === "queued") return "waiting for a free worker…";
  if (job.state === "done") return "done";
  if (job.state === "failed") return "failed";
  const loss = job.loss === null ? "" : `, loss ${job.loss.toFixed(3)}`;
  const eta = job.eta_seconds === null ? "" : `, about ${Math.ceil(job.eta_seconds)} s left`;
  return `learning: step ${job.step}/${job.steps}${loss}${eta}`;
}

async function poll(jobId) {
  for (;;) {
    const job = await (await api(`/jobs/${jobId}`)).json();
    $("progress").max = job.steps;
    $("progress").value = job.step;
    $("job-status").textContent = describe(job);
    if (job.state === "done") return;
    if (job.state === "failed") throw new Error(job.error);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function learn() {
  showError();
  $("learn").disabled = true;
  try {
    const form = new FormData();
    form.append("style", $("style-file").files[0]);
    if ($("match-tone").checked) form.append("colour_weight", "10");
    const job = await (await api("/styles", { method: "POST", body: form })).json();
    await poll(job.job_id);
    await loadStyles(job.style_id);
    await stylize();
  } catch (error) {
    $("job-status").textContent = "";
    showError(error.message);
  } finally {
    updateButtons();
  }
}

async function stylize() {
  const styleId = $("style-select").value;
  const photo = $("photo-file").files[0];
  if (!styleId || !photo) return;
  if (pending) pending.abort();
  pending = new AbortController();
  const form = new FormData();
  form.append("photo", photo);
  form.append("strength", $("strength").value);
  form.append("preserve_colour", $("preserve-colour").checked);
  form.append("max_size", "1024");
  showError();
  $("result-status").textContent = "stylizing…";
  try {
    const url = `/styles/${styleId}/stylize`;
    const blob = await (await api(url, { method: "POST", body: form, signal: pending.signal })).blob();
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = URL.createObjectURL(blob);
    $("result").src = resultUrl;
    $("download").href = resultUrl;
    $("download").hidden = false;
    $("result-status").textContent = "";
  } catch (error) {
    if (error.name === "AbortError") return; // replaced by a newer request
    $("result-status").textContent = "";
    showError(error.message);
  }
}

async function deleteStyle() {
  showError();
  try {
    await api(`/styles/${$("style-select").value}`, { method: "DELETE" });
    await loadStyles();
  } catch (error) {
    showError(error.message);
  }
}

$("style-file").addEventListener("change", updateButtons);
$("learn").addEventListener("click", learn);
$("delete-style").addEventListener("click", deleteStyle);
$("style-select").addEventListener("change", () => { updateButtons(); stylize(); });
$("photo-file").addEventListener("change", stylize);
$("preserve-colour").addEventListener("change", stylize);
$("strength").addEventListener("input", () => {
  $("strength-value").textContent = Number($("strength").value).toFixed(2);
});
$("strength").addEventListener("change", stylize); // on release: each request is a full pass
loadStyles().catch((error) => showError(error.message));
