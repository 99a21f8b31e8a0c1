// The Cat/Dog page: predict, label, train (live progress over Server-Sent Events), reset. No build step.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const $$ = (sel) => Array.from(document.querySelectorAll(sel));
  const APP = JSON.parse(document.body.dataset.app || "{}");
  let current = null; // {file: File} or {sample: "cat/x.jpg"}
  let events = null;
  const timers = {};

  // Messages sit in the page's flow, next to what they are about: they never cover anything.
  function say(id, message, isError) {
    const el = $("#" + id);
    el.textContent = message;
    el.classList.toggle("error", !!isError);
    el.hidden = false;
    clearTimeout(timers[id]);
    if (!isError) timers[id] = setTimeout(() => { el.hidden = true; }, 5000);
  }

  function hush(id) { clearTimeout(timers[id]); $("#" + id).hidden = true; }

  async function api(method, url, body) {
    let res;
    try {
      res = await fetch(url, { method, body, headers: { Accept: "application/json", "X-Requested-With": "mlupdate" } });
    } catch (e) {
      throw new Error("The server cannot be reached. Is mlupdate still running?");
    }
    if (res.status === 204) return null;
    let data = null;
    try { data = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) {
      const detail = data && data.detail ? data.detail : `The server answered ${res.status}.`;
      const err = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function photoForm() {
    const fd = new FormData();
    if (current && current.file) fd.append("image", current.file, current.file.name);
    else if (current && current.sample) fd.append("sample", current.sample);
    return fd;
  }

  function setBadge(personalized) {
    const b = $("#model-badge");
    b.textContent = personalized ? "Personalised model" : "Original model";
    b.classList.toggle("badge-personal", personalized);
    $("#download").hidden = !personalized;
  }

  function showPreview(ok) {
    $("#preview").hidden = !ok;
    $("#no-preview").hidden = ok;
  }

  // -- predicting ---------------------------------------------------------------------------
  function clearBars() {
    for (const bar of $$(".bar")) {
      bar.querySelector(".bar-fill").style.width = "0";
      bar.querySelector(".bar-value").textContent = "–";
    }
  }

  async function predict() {
    if (!current) return;
    hush("msg-result");
    $("#empty").hidden = true;
    $("#prediction").hidden = false;
    $("#label").textContent = "…";
    $("#label").className = "";
    $("#answered-by").textContent = "";
    try {
      const p = await api("POST", "/api/predict", photoForm());
      $("#label").textContent = p.label;
      $("#label").className = p.label;
      for (const bar of $$(".bar")) {
        const v = p.probabilities[bar.dataset.label] || 0;
        bar.querySelector(".bar-fill").style.width = (v * 100).toFixed(1) + "%";
        bar.querySelector(".bar-value").textContent = (v * 100).toFixed(1) + "%";
      }
      $("#answered-by").textContent = p.personalized ? "Answered by your personalised model." :
        "Answered by the original model.";
      setBadge(p.personalized);
      $$(".label-btn").forEach((b) => { b.disabled = false; });
    } catch (e) {
      $("#label").textContent = "?";
      clearBars();
      if (e.status === 400) showPreview(false);
      $$(".label-btn").forEach((b) => { b.disabled = true; });
      say("msg-result", e.message, true);
    }
  }

  function choose(sel) {
    current = sel;
    const img = $("#preview");
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    showPreview(true);
    if (sel.file) {
      img.dataset.url = URL.createObjectURL(sel.file);
      img.src = img.dataset.url;
    } else {
      img.dataset.url = "";
      img.src = "/samples/" + sel.sample.split("/").map(encodeURIComponent).join("/");
    }
    $$(".sample").forEach((b) => b.classList.toggle("selected", b.dataset.name === sel.sample));
    if (window.matchMedia("(max-width: 720px)").matches) {
      $("#result").scrollIntoView({ behavior: "smooth", block: "start" });
    }
    predict();
  }

  $("#preview").addEventListener("error", () => showPreview(false)); // never a broken-image icon
  $("#file").addEventListener("change", (ev) => {
    const f = ev.target.files && ev.target.files[0];
    if (f) choose({ file: f });
    ev.target.value = ""; // so that choosing the same file again is noticed
  });
  const drop = $("#drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (ev) => {
    ev.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    if (f) choose({ file: f });
  });
  const gallery = $("#gallery");
  if (gallery) {
    gallery.addEventListener("click", (ev) => {
      const b = ev.target.closest(".sample");
      if (b) choose({ sample: b.dataset.name });
    });
    $("#filter").addEventListener("input", (ev) => {
      const q = ev.target.value.trim().toLowerCase();
      $$(".sample").forEach((b) => { b.hidden = q && !b.dataset.name.toLowerCase().includes(q); });
    });
  }

  // -- the training set ---------------------------------------------------------------------
  function renderExamples(list) {
    $("#count").textContent = list.count;
    $("#examples-empty").hidden = list.count > 0;
    $("#count-word").textContent = list.count === 1 ? "photo" : "photos";
    $("#counts").textContent = list.count ?
      "(" + Object.entries(list.counts).map(([k, v]) => `${v} ${k}`).join(", ") + ")" : "";
    // Training on photos that all carry one label pulls every prediction toward it (BENCHMARKS.md, app scenario).
    const used = Object.entries(list.counts || {}).filter(([, v]) => v > 0);
    $("#one-sided").hidden = !(list.count > 0 && used.length === 1);
    if (used.length === 1) {
      $("#one-sided").textContent = `All ${list.count} photo${list.count === 1 ? "" : "s"} say “${used[0][0]}”. ` +
        "Training on one label pulls every prediction toward it: add a few photos of the other class too " +
        "(ones the model already gets right are fine).";
    }
    $("#examples").replaceChildren(...list.examples.map((e) => {
      const li = document.createElement("li");
      li.dataset.id = e.id;
      const img = document.createElement("img");
      img.src = e.image_url; img.alt = e.name; img.title = e.name;
      const chip = document.createElement("span");
      chip.className = "chip " + e.label; chip.textContent = e.label;
      const rm = document.createElement("button");
      rm.type = "button"; rm.className = "remove"; rm.textContent = "×";
      rm.title = "Remove"; rm.setAttribute("aria-label", "Remove " + e.name);
      li.append(img, chip, rm);
      return li;
    }));
  }

  async function refreshExamples() {
    try { renderExamples(await api("GET", "/api/examples")); } catch (e) { say("msg-training", e.message, true); }
  }

  $$(".label-btn").forEach((btn) => btn.addEventListener("click", async () => {
    if (!current) return;
    const fd = photoForm();
    fd.append("label", btn.dataset.label);
    btn.disabled = true;
    try {
      await api("POST", "/api/examples", fd);
      await refreshExamples();
      say("msg-result", `Added as ${btn.dataset.label}. Add a few more, then press Train.`);
    } catch (e) {
      say("msg-result", e.message, true);
    } finally {
      btn.disabled = false;
    }
  }));

  $("#examples").addEventListener("click", async (ev) => {
    const rm = ev.target.closest(".remove");
    if (!rm) return;
    try {
      await api("DELETE", "/api/examples/" + encodeURIComponent(rm.closest("li").dataset.id));
      await refreshExamples();
    } catch (e) { say("msg-training", e.message, true); }
  });

  // -- training -----------------------------------------------------------------------------
  const run = { points: [], steps: 1, batches: 1 };

  function log(text, cls) {
    const li = document.createElement("li");
    li.textContent = text;
    if (cls) li.className = cls;
    $("#log").append(li);
    $("#log").scrollTop = $("#log").scrollHeight;
  }

  function progress(fraction, phase) {
    const bar = $("#bar");
    bar.max = 100;
    if (fraction === null) bar.removeAttribute("value"); // an indeterminate bar while there is no count
    else bar.value = Math.round(fraction * 1000) / 10;
    $("#phase").textContent = phase;
  }

  const handlers = {
    preparing: (d) => progress(null, `Preparing ${d.examples} photo${d.examples === 1 ? "" : "s"}…`),
    training_begin: (d) => {
      run.points = []; run.batches = d.batches; run.steps = d.epochs * d.batches;
      LossChart.draw($("#chart"), run.points, run.steps, run.batches);
      progress(0.05, `Training on ${d.examples} photos: epoch 1 of ${d.epochs}`);
      log(`Training started on ${d.examples} photo${d.examples === 1 ? "" : "s"}, ${d.epochs} epochs…`);
    },
    mini_batch_end: (d) => {
      run.points.push({ step: d.step, loss: d.loss });
      LossChart.draw($("#chart"), run.points, run.steps, run.batches);
      progress(0.05 + 0.85 * d.step / d.steps, `Epoch ${d.epoch}, mini-batch ${d.batch} of ${d.batches}: ` +
        `loss ${d.loss.toFixed(4)}`);
    },
    epoch_end: (d) => log(`Epoch ${d.epoch}/${d.epochs}: loss ${d.loss.toFixed(4)}`),
    saving: () => progress(0.92, "Saving the personalised model…"),
    completed: async (d) => {
      stop();
      progress(1, "Done.");
      log(`Done in ${d.duration_s.toFixed(1)} s: the model is personalised and saved.`, "done");
      setBadge(true);
      await refreshExamples();
      if (current) predict();
    },
    failed: (d) => {
      stop();
      progress(0, "Training failed.");
      log("Training failed: " + d.error, "error");
      say("msg-training", "Training failed: " + d.error, true);
    },
    idle: () => stop(),
  };

  function follow() {
    if (events) events.close();
    $("#progress").hidden = false;
    $("#train").disabled = true;
    events = new EventSource("/api/train/events");
    for (const [name, fn] of Object.entries(handlers)) {
      events.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
    }
    events.onerror = () => { if (events && events.readyState === EventSource.CLOSED) stop(); };
  }

  function stop() {
    if (events) { events.close(); events = null; }
    $("#train").disabled = false;
  }

  $("#train").addEventListener("click", async () => {
    $("#train").disabled = true;
    hush("msg-training");
    try {
      await api("POST", "/api/train");
      $("#log").replaceChildren();
      follow();
    } catch (e) {
      $("#train").disabled = false;
      say("msg-training", e.message, true);
      if (e.status === 409) follow();
    }
  });

  $("#reset").addEventListener("click", async () => {
    if (!window.confirm("Forget everything the model learned here and go back to the original model?")) return;
    try {
      const r = await api("POST", "/api/reset");
      setBadge(false);
      say("msg-foot", r.reset ? "Back to the original model." : "The original model was already in use.");
      if (current) predict();
    } catch (e) { say("msg-foot", e.message, true); }
  });

  if (APP.status && APP.status.state === "running") follow();
  if (APP.warning) say("msg-page", APP.warning, true);
  refreshExamples();
})();
