/*
 * The little that plain HTML and htmx attributes cannot do. Every page works without this file:
 * forms post normally and the server answers with whole pages.
 *
 * - The CSRF header for htmx requests comes from hx-headers on <body>, not from here.
 * - htmx does not swap 4xx/5xx answers; say so in the messages area instead of failing silently.
 * - Upload progress: a <progress data-upload-progress> inside a form that htmx submits follows the upload.
 */
(function () {
  "use strict";

  function flash(text, level) {
    var area = document.getElementById("messages");
    if (!area) {
      return;
    }
    var box = document.createElement("div");
    box.className = "alert alert--" + (level || "error");
    box.setAttribute("role", level === "error" ? "alert" : "status");
    box.textContent = text;
    area.appendChild(box);
  }

  function describe(status) {
    if (status === 403) {
      return "You do not have permission to do that.";
    }
    if (status === 404) {
      return "That page or item no longer exists.";
    }
    if (status === 413) {
      return "That file is too large to upload.";
    }
    return "Something went wrong (HTTP " + status + "). Please try again, or reload the page.";
  }

  document.addEventListener("htmx:responseError", function (event) {
    flash(describe(event.detail.xhr.status), "error");
  });

  document.addEventListener("htmx:sendError", function () {
    flash("The server could not be reached. Check your connection and try again.", "error");
  });

  document.addEventListener("htmx:xhr:progress", function (event) {
    var form = event.target;
    var bar = form && form.querySelector ? form.querySelector("progress[data-upload-progress]") : null;
    if (!bar || !event.detail.lengthComputable) {
      return;
    }
    bar.hidden = false;
    bar.max = event.detail.total;
    bar.value = event.detail.loaded;
  });
})();
