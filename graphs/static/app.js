// Upload, job list with progress, transcript with speakers, export, rename a segment's speaker.
const $ = (id) => document.getElementById(id);
$("key").value = localStorage.getItem("key") || "";
$("key").onchange = () => localStorage.setItem("key", $("key").value);
const headers = () => ($("key").value ? { Authorization: "Bearer " + $("key").value } : {});
async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) } });
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error(body.detail || r.statusText);
  return body;
}
const text = (s) => { const d = document.createElement("span"); d.textContent = s; return d.innerHTML; };
$("upload").onsubmit = async (e) => {
  e.preventDefault();
  const form = new FormData();
  form.append("file", $("file").files[0]);
  if ($("language").value) form.append("language", $("language").value);
  if ($("max").value) form.append("max_speakers", $("max").value);
  try { await api("/api/transcribe", { method: "POST", body: form }); $("msg").textContent = ""; refresh(); }
  catch (err) { $("msg").textContent = err.message; }
};
async function refresh() {
  try {
    const jobs = await api("/api/jobs");
    $("jobs").tBodies[0].innerHTML = jobs.map((j) => `<tr><td>${text(j.filename)}</td><td>${j.status}` +
      `${j.error ? " (" + text(j.error) + ")" : ""}</td><td><progress max="1" value="${j.progress}"></progress></td>` +
      `<td>${j.status === "completed" ? `<a href="#" data-id="${j.id}">open</a>` : ""}</td></tr>`).join("");
    document.querySelectorAll("#jobs a[data-id]").forEach((a) => (a.onclick = (e) => { e.preventDefault(); show(a.dataset.id); }));
  } catch (err) { $("msg").textContent = err.message; }
}
async function show(id) {
  const r = await api("/api/transcriptions/" + id);
  $("view").hidden = false;
  $("title").textContent = `${r.filename} — ${r.unique_speakers.join(", ")}`;
  for (const f of ["srt", "vtt", "txt", "json"]) $(f).href = `/api/export/${id}?format=${f}`;
  $("segments").innerHTML = r.segments.map((s) => `<div class="seg"><span class="t">${s.start.toFixed(1)}s</span> ` +
    `<span class="who" data-seg="${s.id}">${text(s.speaker_name)}</span>: ${text(s.text)}</div>`).join("");
  document.querySelectorAll(".who").forEach((w) => (w.onclick = async () => {
    const name = prompt("Speaker name", w.textContent);
    if (!name) return;
    const form = new FormData(); form.append("speaker_name", name);
    await api(`/api/transcriptions/${id}/segments/${w.dataset.seg}/speaker`, { method: "PUT", body: form });
    show(id);
  }));
}
refresh(); setInterval(refresh, 2000);
