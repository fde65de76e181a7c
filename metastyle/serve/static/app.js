"use strict";
// The onboarding page: upload a style, poll its job, stylize a photo with it.
// With an encoder-decoder base a style is usable at once: the page shows the zero-shot
// (k = 0) result right after the upload and swaps in the adapted one when the job is done.
// Plain browser APIs only (fetch, FormData, object URLs), so it works offline.

const $ = (id) => document.getElementById(id);
let resultUrl = null;
let pending = null; // AbortController of the stylize request in flight
let styles = new Map(); // id -> record of GET /styles
let learning = false; // a job of this page is running: one at a time
let defaultsShownFor = null; // the style whose defaults the sliders were last set to

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
  $("learn").disabled = learning || !$("style-file").files.length;
  const style = styles.get($("style-select").value);
  $("delete-style").disabled = !style || style.zero_shot; // the server refuses until it is done
}

function styleLabel(style) {
  const when = style.zero_shot ? "learning…" : new Date(style.created * 1000).toLocaleString();
  return `${style.name} (${when})`;
}

async function loadStyles(selectId) {
  const list = await (await api("/styles")).json();
  styles = new Map(list.map((s) => [s.id, s]));
  $("style-select").replaceChildren(...list.map((s) => new Option(styleLabel(s), s.id)));
  if (selectId) $("style-select").value = selectId;
  updateButtons();
  if ($("style-select").value !== defaultsShownFor) showDefaults();
}

function showKnob(knob) {
  $(`${knob}-value`).textContent = Number($(knob).value).toFixed(2);
}

// The sliders start at the selected style's model defaults and keep the user's values while
// that style stays selected (its adapted model replacing k = 0 included). A Johnson style has
// no palette and no detail; records stored before the service recorded defaults have none:
// strength 1, and the model's own palette and detail.
function showDefaults() {
  const style = styles.get($("style-select").value);
  if (!style) return;
  defaultsShownFor = style.id;
  $("strength").value = style.strength ?? 1;
  showKnob("strength");
  for (const knob of ["palette", "detail"]) {
    $(`${knob}-row`).hidden = style[knob] == null;
    if (style[knob] != null) $(knob).value = style[knob];
    showKnob(knob);
  }
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
  learning = true;
  updateButtons();
  let job = null;
  try {
    const form = new FormData();
    form.append("style", $("style-file").files[0]);
    if ($("match-tone").checked) form.append("colour_weight", "10");
    job = await (await api("/styles", { method: "POST", body: form })).json();
    if (job.zero_shot) { // usable now: show k = 0 while the job refines it
      await loadStyles(job.style_id);
      stylize();
    }
    await poll(job.job_id);
    await loadStyles(job.style_id);
    await stylize();
  } catch (error) {
    $("job-status").textContent = "";
    showError(error.message);
    if (job && job.zero_shot) { // a failed style is no longer served: take it off the list
      loadStyles().catch((listError) => showError(`${error.message}\n${listError.message}`));
    }
  } finally {
    learning = false;
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
  for (const knob of ["palette", "detail"]) {
    if (!$(`${knob}-row`).hidden) form.append(knob, $(knob).value);
  }
  form.append("preserve_colour", $("preserve-colour").checked);
  form.append("max_size", "1024");
  showError();
  $("result-status").textContent = "stylizing…";
  try {
    const url = `/styles/${styleId}/stylize`;
    const response = await api(url, { method: "POST", body: form, signal: pending.signal });
    const blob = await response.blob();
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = URL.createObjectURL(blob);
    $("result").src = resultUrl;
    $("result-stage").textContent = response.headers.get("X-Metastyle-Stage") === "zero-shot"
      ? "k = 0 (instant)" : `k = ${styles.get(styleId).steps} (adapted)`;
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
$("style-select").addEventListener("change", () => {
  updateButtons();
  showDefaults();
  stylize();
});
$("photo-file").addEventListener("change", stylize);
$("preserve-colour").addEventListener("change", stylize);
for (const knob of ["strength", "palette", "detail"]) {
  $(knob).addEventListener("input", () => showKnob(knob));
  $(knob).addEventListener("change", stylize); // on release: each request is a full pass
}
loadStyles().catch((error) => showError(error.message));
