// The page of `saliency serve`: send the image picked or dropped to /predict, show what comes back
// (the image beside its map, mask and cut-out, each downloadable), or the server's one-line error.
// The body's data-state says where it is: idle, busy, done or error.
"use strict";

const input = document.getElementById("file");
const drop = document.getElementById("drop");
const statusLine = document.getElementById("status");
const errorBox = document.getElementById("error");
const results = document.getElementById("results");
const panels = document.getElementById("panels");
let maxUploadBytes = null; // from /settings; the server checks again
let latest = 0; // the newest request: an older answer arriving late is dropped
let objectUrls = []; // the current downloads and preview, released when replaced

function megabytes(bytes) {
  return Number((bytes / 1048576).toPrecision(3)) + " MB";
}

function setState(state, message) {
  document.body.dataset.state = state;
  statusLine.textContent = message || "";
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
  results.hidden = true;
  setState("error", "");
}

function stemOf(name) {
  const base = name.replace(/^.*[\\/]/, "").replace(/\.[^.]*$/, "");
  return base || "image";
}

// A download link's target: a Blob URL of the PNG (long data: URLs are fragile as link targets).
function blobUrl(dataUrl) {
  const bytes = atob(dataUrl.slice(dataUrl.indexOf(",") + 1));
  const array = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) array[i] = bytes.charCodeAt(i);
  const url = URL.createObjectURL(new Blob([array], { type: "image/png" }));
  objectUrls.push(url);
  return url;
}

function panel(label, src, id) {
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = label;
  if (id) img.id = id;
  const caption = document.createElement("figcaption");
  const title = document.createElement("span");
  title.textContent = label;
  caption.append(title);
  figure.append(caption, img);
  panels.append(figure);
  return { figure, img, caption };
}

function show(answer, file) {
  objectUrls.forEach((url) => URL.revokeObjectURL(url));
  objectUrls = [];
  panels.replaceChildren();
  const stem = stemOf(file.name);
  document.getElementById("result-title").textContent = `${file.name} (${answer.width} × ${answer.height})`;
  const preview = URL.createObjectURL(file);
  objectUrls.push(preview);
  const original = panel("Image", preview, "result-image");
  original.img.addEventListener("error", () => original.figure.remove()); // a TIFF: the browser cannot show it
  for (const output of answer.outputs) {
    const { img, caption } = panel(output.label, output.url, `result-${output.format}`);
    if (output.format === "cutout") img.classList.add("transparent");
    const link = document.createElement("a");
    link.id = `download-${output.format}`;
    link.href = blobUrl(output.url);
    link.download = `${stem}-${output.format}.png`;
    link.textContent = "Download";
    caption.append(link);
  }
  errorBox.hidden = true;
  results.hidden = false;
  setState("done", `Done: ${file.name}.`);
}

async function upload(file) {
  const request = ++latest;
  if (maxUploadBytes !== null && file.size > maxUploadBytes) {
    showError(`${file.name} is ${megabytes(file.size)}; this server takes files up to ${megabytes(maxUploadBytes)}`);
    return;
  }
  errorBox.hidden = true;
  setState("busy", `Computing the saliency of ${file.name}…`);
  const body = new FormData();
  body.append("image", file, file.name);
  let response;
  let answer = null;
  try {
    response = await fetch("predict", { method: "POST", body });
    answer = await response.json().catch(() => null);
  } catch (failure) {
    if (request === latest) showError("The server did not answer: is saliency serve still running?");
    return;
  }
  if (request !== latest) return;
  if (!response.ok || answer === null || answer.error) {
    showError(answer && answer.error ? answer.error : `The server answered ${response.status} ${response.statusText}.`);
    return;
  }
  show(answer, file);
}

input.addEventListener("change", () => {
  const file = input.files[0];
  input.value = ""; // picking the same file again is a change too
  if (file) upload(file);
});

// Dropping anywhere on the page takes the file (a browser would otherwise open it in place of the page).
document.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
document.addEventListener("dragleave", (event) => {
  if (event.relatedTarget === null) drop.classList.remove("over");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) upload(file);
});

fetch("settings")
  .then((response) => response.json())
  .then((settings) => {
    maxUploadBytes = settings.max_upload_bytes;
    const inference = settings.inference;
    document.getElementById("limit").textContent = `JPEG, PNG or TIFF, up to ${megabytes(maxUploadBytes)}`;
    document.getElementById("settings").textContent =
      `U-Net ${settings.checkpoint_sha256.slice(0, 12)} · shorter side ${inference.shorter_side} px · ` +
      `${inference.activation} · offset ${inference.offset} · flip ${inference.flip ? "on" : "off"} · ` +
      `${inference.precision} · refine ${settings.refine}`;
  })
  .catch(() => {
    document.getElementById("settings").textContent = "";
  });
