// Warrantor console: the only script. Submits the explorer's filters when a select changes.
document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
  el.addEventListener("change", function () { el.form.submit(); });
});
