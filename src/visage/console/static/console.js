// The Visage console's only script: drag and drop onto file inputs, the names of the
// files chosen, and "select all" boxes. Every page works without it.
"use strict";

function showChosen(input) {
  const output = input.parentElement.querySelector("output.chosen");
  if (!output) return;
  const names = Array.from(input.files || []).map((f) => f.name);
  output.textContent = names.length ? names.length + " chosen: " + names.join(", ") : "";
}

document.querySelectorAll(".dropzone").forEach((zone) => {
  const input = zone.querySelector("input[type=file]");
  if (!input) return;
  input.addEventListener("change", () => showChosen(input));
  ["dragenter", "dragover"].forEach((type) =>
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    })
  );
  ["dragleave", "drop"].forEach((type) =>
    zone.addEventListener(type, () => zone.classList.remove("over"))
  );
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!files || !files.length) return;
    const transfer = new DataTransfer();
    Array.from(files)
      .filter((f) => /^image\/(jpeg|png)$/.test(f.type))
      .slice(0, input.multiple ? files.length : 1)
      .forEach((f) => transfer.items.add(f));
    input.files = transfer.files;
    showChosen(input);
  });
});

document.querySelectorAll("input.select-all").forEach((box) => {
  box.addEventListener("change", () => {
    const form = box.closest("form");
    form.querySelectorAll("input[type=checkbox][name='" + box.dataset.for + "']").forEach((b) => {
      b.checked = box.checked;
    });
  });
});
