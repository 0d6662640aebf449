// guidedinv ui: the page's script (no framework). A canvas brush over the uploaded image paints the
// mask (white = fill / edit) or colour strokes (edit); the form goes to POST /api/jobs as JSON, the job
// is polled for its progress, and the result, its recipe and the comparison are shown.
"use strict";

const $ = (id) => document.getElementById(id);
const HELP = {
  inpaint: "Paint the region to fill (or upload a mask, white = fill, or give a generated mask).",
  edit: "Paint colour strokes on the image (SDEdit turns them into the picture); optionally paint or upload an edit mask: only there is changed.",
  superres: "Upload a low-resolution image; the result is --scale times larger.",
  deblur: "Upload a blurred image and choose its kernel (or upload a kernel file).",
  denoise: "Upload a noisy image and give its noise level on the [0, 1] scale.",
};
const state = { config: null, task: "inpaint", image: null, painted: { strokes: false, mask: false }, files: {}, poll: null };

function message(text) {
  const line = text ? String(text).split("\n").join(" ") : "";
  $("message").textContent = line;
  $("message").className = line ? "error" : "";
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ name: file.name, type: file.type, data: String(reader.result).split(",", 2)[1] || "" });
    reader.onerror = () => reject(new Error(`${file.name}: cannot read the file`));
    reader.readAsDataURL(file);
  });
}

// -- tabs and defaults ----------------------------------------------------------------------------
function showTask(task) {
  state.task = task;
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.task === task));
  for (const el of document.querySelectorAll(".for")) el.hidden = !el.classList.contains(task);
  $("task-help").textContent = HELP[task];
  const t = state.config.tasks[task];
  const method = $("method");
  method.replaceChildren(...Object.keys(t.methods).map((name) => new Option(name, name)));
  method.value = t.method;
  methodChanged();
  const form = $("form");
  form.elements.scale.value = t.operator.scale ?? "";
  form.elements.mode.value = t.operator.mode ?? "bicubic";
  form.elements.kernel.value = t.operator.kernel ?? "";
  form.elements.kernel_size.value = t.operator.size ?? "";
  form.elements.sigma.value = task === "denoise" ? t.sigma_y : "";
  form.elements.sigma_y.value = task === "denoise" ? "" : t.sigma_y;
  form.elements.strength.value = t.strength ?? "";
  setLayer(task === "inpaint" ? "mask" : document.querySelector("input[name=layer]:checked").value);
  message("");
}

function methodChanged() {
  const m = state.config.tasks[state.task].methods[$("method").value];
  $("steps").value = m && m.network ? m.steps : "";
  $("steps").disabled = !(m && m.network);
  $("steps").placeholder = m && m.network ? "" : "no steps (classical)";
}

// -- image and painting ---------------------------------------------------------------------------
function loadImage(upload) {
  state.image = upload;
  state.painted = { strokes: false, mask: false };
  const img = new Image();
  img.onload = () => {
    for (const id of ["photo", "strokes", "mask"]) { $(id).width = img.naturalWidth; $(id).height = img.naturalHeight; }
    $("photo").getContext("2d").drawImage(img, 0, 0);
    $("canvas-wrap").className = "";
    $("canvas-note").textContent = `${upload.name}: ${img.naturalWidth}x${img.naturalHeight}`;
  };
  img.onerror = () => {  // the server reads it (TIFF, ...) or says why not
    $("canvas-wrap").className = "empty";
    $("canvas-note").textContent = `${upload.name}: the browser cannot show it; the server will read it`;
  };
  img.src = dataUrl(upload);
}

function setLayer(layer) {
  state.layer = layer;
  $("mask").style.pointerEvents = layer === "mask" ? "auto" : "none";
  $("strokes").style.pointerEvents = layer === "strokes" ? "auto" : "none";
}

function paintable(canvas, layer) {
  let last = null;
  const point = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  const draw = (from, to) => {
    const ctx = canvas.getContext("2d");
    ctx.strokeStyle = ctx.fillStyle = layer === "mask" ? "#ff2d55" : $("brush-colour").value;
    ctx.lineWidth = Number($("brush-size").value);
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(...from); ctx.lineTo(...to); ctx.stroke();
    state.painted[layer] = true;
  };
  canvas.addEventListener("pointerdown", (e) => { last = point(e); draw(last, last); canvas.setPointerCapture?.(e.pointerId); e.preventDefault(); });
  canvas.addEventListener("pointermove", (e) => { if (last) { const p = point(e); draw(last, p); last = p; } });
  for (const end of ["pointerup", "pointercancel", "pointerleave"]) canvas.addEventListener(end, () => { last = null; });
}

function dataUrl(upload) { return `data:${upload.type || "image/png"};base64,${upload.data}`; }

function canvasData(canvas) { return canvas.toDataURL("image/png").split(",", 2)[1]; }

function maskUpload() {  // the painted layer as a black/white PNG of the image's size (white = fill / edit)
  const src = $("mask");
  const out = document.createElement("canvas");
  out.width = src.width; out.height = src.height;
  const pixels = src.getContext("2d").getImageData(0, 0, src.width, src.height);
  const d = pixels.data;
  for (let i = 0; i < d.length; i += 4) { const v = d[i + 3] >= 128 ? 255 : 0; d[i] = d[i + 1] = d[i + 2] = v; d[i + 3] = 255; }
  out.getContext("2d").putImageData(pixels, 0, 0);
  return { name: "painted-mask.png", type: "image/png", data: canvasData(out) };
}

function strokedImage() {  // the image with the colour strokes on it (what SDEdit starts from)
  const out = document.createElement("canvas");
  out.width = $("photo").width; out.height = $("photo").height;
  const ctx = out.getContext("2d");
  ctx.drawImage($("photo"), 0, 0); ctx.drawImage($("strokes"), 0, 0);
  return { name: state.image.name.replace(/\.[^.]*$/, "") + "-with-strokes.png", type: "image/png", data: canvasData(out) };
}

// -- running --------------------------------------------------------------------------------------
async function submit(event) {
  event.preventDefault();
  message("");
  if (!state.image) return message("choose an image to upload first");
  const form = $("form"), task = state.task;
  const names = ["method", "steps", "seed"];
  if (task === "inpaint" || task === "edit") names.push("mask_spec");
  if (task === "edit") names.push("strength", "class", "guidance_scale");
  if (task === "superres") names.push("scale", "mode");
  if (task === "deblur") names.push("kernel", "kernel_size");
  if (task === "denoise") names.push("sigma");
  if (task !== "edit" && task !== "denoise") names.push("sigma_y");
  if (task !== "edit") names.push("samples");
  const options = Object.fromEntries(names.map((n) => [n, form.elements[n].disabled ? "" : form.elements[n].value]));
  const payload = { task, options, image: state.image, mask: null, kernel: null, trajectory: $("trajectory").checked };
  const paintOn = task === "inpaint" || task === "edit";
  if (paintOn && state.files.mask) payload.mask = state.files.mask;
  else if (paintOn && (state.painted.mask || (task === "inpaint" && !options.mask_spec))) payload.mask = maskUpload();
  if (task === "edit" && state.painted.strokes) payload.image = strokedImage();
  if (task === "deblur" && state.files.kernel) payload.kernel = state.files.kernel;
  state.before = dataUrl(payload.image);
  $("run").disabled = true;
  try {
    const answer = await fetch("/api/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
    const job = await answer.json();
    if (!answer.ok) { $("run").disabled = false; return message(job.error); }
    follow(job);
  } catch (err) {
    $("run").disabled = false;
    message(`the server did not answer (${err.message}); is guidedinv ui still running?`);
  }
}

function follow(job) {
  $("progress-row").hidden = false;
  const p = $("progress"), text = $("progress-text");
  if (job.state === "queued") { p.removeAttribute("value"); text.textContent = `queued: ${job.position} job(s) before this one`; }
  if (job.state === "running") {
    if (job.total) { p.max = job.total; p.value = job.step; text.textContent = `step ${job.step} / ${job.total}`; }
    else { p.removeAttribute("value"); text.textContent = "loading the model / starting"; }
  }
  if (job.state === "failed") { $("run").disabled = false; $("progress-row").hidden = true; return message(job.error); }
  if (job.state === "done") { $("run").disabled = false; p.max = 1; p.value = 1; text.textContent = `done in ${job.seconds} s`; return show(job); }
  state.poll = setTimeout(async () => {
    try { follow(await (await fetch(`/api/jobs/${job.id}`)).json()); }
    catch (err) { $("run").disabled = false; message(`lost the server (${err.message})`); }
  }, 250);
}

async function show(job) {
  const f = job.files;
  $("output-panel").hidden = false;
  $("before").src = state.before;
  $("after").src = f.result;
  $("compare").src = f.compare;
  $("download-result").href = f.result + "?download=1";
  $("download-recipe").href = f.recipe + "?download=1";
  $("download-mask").hidden = !f.mask;
  if (f.mask) $("download-mask").href = f.mask + "?download=1";
  $("trajectory-box").hidden = !f.trajectory;
  if (f.trajectory) $("trajectory-img").src = f.trajectory;
  $("uncertainty-box").hidden = !f.uncertainty;  // with --samples N >= 2: the samples' per-pixel standard deviation
  if (f.uncertainty) $("uncertainty-img").src = f.uncertainty;
  const steps = job.steps ? `${job.steps} steps` : "no network";
  const mean = job.samples > 1 ? `, mean of ${job.samples} samples` : "";
  $("result-info").textContent = `${job.method}, ${steps}${mean}, seed ${job.seed}: ${job.size[0]}x${job.size[1]} input, ${job.seconds} s`;
  $("recipe-text").textContent = await (await fetch(f.recipe)).text();
}

// -- start ----------------------------------------------------------------------------------------
async function start() {
  state.config = await (await fetch("/api/config")).json();
  $("model-name").textContent = `model: ${state.config.model}`;
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTask(b.dataset.task));
  $("method").addEventListener("change", methodChanged);
  for (const r of document.querySelectorAll("input[name=layer]")) r.addEventListener("change", () => setLayer(r.value));
  $("image-file").addEventListener("change", async (e) => { if (e.target.files[0]) loadImage(await readFile(e.target.files[0])); });
  $("mask-file").addEventListener("change", async (e) => { state.files.mask = e.target.files[0] ? await readFile(e.target.files[0]) : null; });
  $("kernel-file").addEventListener("change", async (e) => { state.files.kernel = e.target.files[0] ? await readFile(e.target.files[0]) : null; });
  $("clear").addEventListener("click", () => {
    for (const id of ["strokes", "mask"]) $(id).getContext("2d").clearRect(0, 0, $(id).width, $(id).height);
    state.painted = { strokes: false, mask: false };
  });
  $("slider").addEventListener("input", (e) => { $("after-clip").style.clipPath = `inset(0 0 0 ${e.target.value}%)`; });
  $("after-clip").style.clipPath = "inset(0 0 0 50%)";
  paintable($("strokes"), "strokes");
  paintable($("mask"), "mask");
  $("form").addEventListener("submit", submit);
  showTask(location.hash.slice(1) in state.config.tasks ? location.hash.slice(1) : "inpaint");
  document.body.dataset.ready = "1";
}

start().catch((err) => message(`the page could not start: ${err.message}`));
