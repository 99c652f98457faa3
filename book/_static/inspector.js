/* pskin's prediction inspector for the static book (book/static_inspector.py writes its data).
 *
 * Every div.pskin-static-inspector on the page holds its data in a JSON script element, script.pskin-static-data:
 * the classes, the confusion matrix, and per image its probabilities, a JPEG thumbnail and maybe a Grad-CAM JPEG
 * (each JPEG without the header bytes all of its kind share, stored once). This script draws, inside each: the
 * confusion matrix as buttons, filters for the true class, the predicted class and correctness, a gallery of
 * thumbnails shown a page at a time, and a detail pane for the thumbnail clicked. Plain JavaScript, nothing
 * fetched: it works with no kernel and no network.
 */
(function () {
  "use strict";

  var PAGE = 48; // thumbnails added per "show more": the page's DOM stays small
  var ALL = "all";

  function element(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      if (name === "text") node.textContent = attributes[name];
      else node.setAttribute(name, attributes[name]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function images(n) {  // "1 image", "1,338 images"
    return n.toLocaleString("en-US") + (n === 1 ? " image" : " images");
  }

  function percent(p, digits) {
    return (100 * p).toFixed(digits) + "%";
  }

  // An image's JPEG: the bytes every image of its kind starts with (stored once) and then its own.
  function jpeg(data, kind, image) {
    return "data:image/jpeg;base64," + data.jpeg_heads[kind] + image[kind];
  }

  function option(value, label) {
    return element("option", { value: value, text: label });
  }

  function enhance(root) {
    if (!root || root.getAttribute("data-ready") === "true") return;
    var source = root.querySelector("script.pskin-static-data");
    if (!source) return;
    var data = JSON.parse(source.textContent);
    root.setAttribute("data-ready", "true");
    var fallback = root.querySelector(".pskin-static-fallback");
    if (fallback) fallback.remove();

    var codes = data.classes.map(function (c) { return c.code; });
    var byCode = {};
    data.classes.forEach(function (c) { byCode[c.code] = c; });
    var state = { true: ALL, predicted: ALL, correct: ALL, shown: PAGE, selected: null };
    var id = root.id || "pskin-static-inspector";

    // --- The confusion matrix: rows true, columns predicted; a cell's button selects its images.
    var cells = [];
    var head = element("tr", {}, [element("th", { scope: "col", text: "true ↓ predicted →" })]);
    data.classes.forEach(function (c) {
      head.appendChild(element("th", { scope: "col", title: c.name, style: "color:" + c.colour, text: c.code }));
    });
    var body = element("tbody");
    data.counts.forEach(function (row, i) {
      var total = row.reduce(function (a, b) { return a + b; }, 0);
      var tr = element("tr", {}, [element("th", {
        scope: "row", title: data.classes[i].name, style: "color:" + data.classes[i].colour, text: codes[i] })]);
      row.forEach(function (count, j) {
        var share = total ? count / total : 0;
        var button = element("button", {
          type: "button", class: "pskin-cm-cell" + (i === j ? " pskin-cm-diagonal" : ""),
          "data-true": codes[i], "data-predicted": codes[j], "data-count": String(count), "aria-pressed": "false",
          // a class with no image in this set has no share of its row: a dash, not 0 %
          title: "true " + codes[i] + ", predicted " + codes[j] + ": " + images(count) + ", " +
            (total ? percent(share, 0) + " of true " + codes[i] : "no true " + codes[i] + " image in this set"),
          style: "background:hsl(210,65%," + (96 - 56 * share).toFixed(0) + "%);color:" +
            (share > 0.5 ? "white" : "black")
        }, [element("span", { class: "pskin-cm-count", text: String(count) }),
            element("span", { class: "pskin-cm-share", text: total ? percent(share, 0) : "—" })]);
        button.addEventListener("click", function () {
          setFilters(codes[i], codes[j], ALL);
        });
        cells.push(button);
        tr.appendChild(element("td", {}, [button]));
      });
      body.appendChild(tr);
    });
    var showAll = element("button", { type: "button", class: "pskin-show-all", text: "all images" });
    showAll.addEventListener("click", function () { setFilters(ALL, ALL, ALL); });
    var matrix = element("div", { class: "pskin-cm" }, [
      element("p", { class: "pskin-cm-note",
        text: "Confusion matrix (rows: true class, columns: predicted class; each cell's share of its row). " +
          "Click a cell to show its images." }),
      element("table", { class: "pskin-cm-table" }, [element("thead", {}, [head]), body]),
      showAll]);

    // --- The filters.
    var selects = {};
    function filter(name, label, options) {
      var select = element("select", { class: "pskin-filter", "data-filter": name, id: id + "-" + name });
      options.forEach(function (o) { select.appendChild(option(o[0], o[1])); });
      select.addEventListener("change", function () {
        state[name] = select.value;
        state.shown = PAGE;
        render();
      });
      selects[name] = select;
      return element("label", { for: select.id }, [label + " ", select]);
    }
    var classOptions = [[ALL, "all"]].concat(data.classes.map(function (c) {
      return [c.code, c.code + " (" + c.name + ")"];
    }));
    var filters = element("div", { class: "pskin-filters" }, [
      filter("true", "true class", classOptions),
      filter("predicted", "predicted class", classOptions),
      filter("correct", "prediction", [[ALL, "all"], ["correct", "correct"], ["wrong", "wrong"]])]);

    // --- The gallery and the detail pane.
    var status = element("p", { class: "pskin-gallery-status", "aria-live": "polite" });
    var gallery = element("div", { class: "pskin-gallery" });
    var more = element("button", { type: "button", class: "pskin-more" });
    more.addEventListener("click", function () { state.shown += PAGE; render(); });
    var detail = element("div", { class: "pskin-detail", "aria-live": "polite" }, [
      element("p", { class: "pskin-detail-empty",
        text: "Click a thumbnail to see the image with each class's probability" +
          (data.gradcam === "none" ? "." : " and the Grad-CAM map of the predicted class.") })]);
    root.insertBefore(element("div", { class: "pskin-si" }, [
      matrix, filters, status,
      element("div", { class: "pskin-si-browse" }, [element("div", { class: "pskin-si-gallery" }, [gallery, more]),
                                                   detail])]), root.firstChild);

    function setFilters(trueCode, predictedCode, correct) {
      state.true = trueCode;
      state.predicted = predictedCode;
      state.correct = correct;
      state.shown = PAGE;
      render();
    }

    function matches(image) {
      return (state.true === ALL || image.true === state.true) &&
        (state.predicted === ALL || image.predicted === state.predicted) &&
        (state.correct === ALL || (image.true === image.predicted) === (state.correct === "correct"));
    }

    function thumbnail(image) {
      var wrong = image.true !== image.predicted;
      var confidence = image.p[codes.indexOf(image.predicted)];
      var button = element("button", {
        type: "button", class: "pskin-thumb " + (wrong ? "pskin-wrong" : "pskin-correct"), "data-id": image.id,
        "data-true": image.true, "data-predicted": image.predicted,
        "aria-pressed": String(image.id === state.selected),
        title: image.id + ": true " + image.true + ", predicted " + image.predicted + " (" +
          percent(confidence, 1) + ")"
      }, [element("img", { src: jpeg(data, "thumb", image), alt: image.id + ", true " + image.true + ", predicted " +
                           image.predicted }),
          element("span", { class: "pskin-thumb-label" }, [
            element("span", { style: "color:" + byCode[image.true].colour, text: image.true }), " → ",
            element("span", { style: "color:" + byCode[image.predicted].colour, text: image.predicted })]),
          element("span", { class: "pskin-thumb-p", text: percent(confidence, 0) })]);
      button.addEventListener("click", function () { select(image); });
      return button;
    }

    function render() {
      Object.keys(selects).forEach(function (name) { selects[name].value = state[name]; });
      cells.forEach(function (cell) {
        var on = state.correct === ALL && cell.getAttribute("data-true") === state.true &&
          cell.getAttribute("data-predicted") === state.predicted;
        cell.setAttribute("aria-pressed", String(on));
      });
      var rows = data.images.filter(matches);
      var page = rows.slice(0, state.shown);
      gallery.replaceChildren.apply(gallery, page.map(thumbnail));
      var what = [];
      if (state.true !== ALL) what.push("true " + state.true);
      if (state.predicted !== ALL) what.push("predicted " + state.predicted);
      if (state.correct !== ALL) what.push(state.correct);
      var text = "Showing " + page.length.toLocaleString("en-US") + " of " + images(rows.length) +
        (what.length ? " (" + what.join(", ") + ")" : "") + ", the most confident first.";
      if (state.true !== ALL && state.predicted !== ALL && state.correct === ALL) {
        var count = data.counts[codes.indexOf(state.true)][codes.indexOf(state.predicted)];
        if (count !== rows.length) text += " The page stores " + rows.length.toLocaleString("en-US") + " of this cell's " + images(count) + ".";
      }
      status.textContent = text;
      more.hidden = page.length >= rows.length;
      more.textContent = "show " + Math.min(PAGE, rows.length - page.length) + " more";
    }

    function select(image) {
      state.selected = image.id;
      gallery.querySelectorAll(".pskin-thumb").forEach(function (b) {
        b.setAttribute("aria-pressed", String(b.getAttribute("data-id") === image.id));
      });
      var wrong = image.true !== image.predicted;
      var pictures = [element("figure", { class: "pskin-detail-photo" }, [
        element("img", { src: jpeg(data, "thumb", image), alt: image.id }),
        element("figcaption", { text: "the photograph (thumbnail)" })])];
      if (image.cam) {
        pictures.push(element("figure", { class: "pskin-detail-cam" }, [
          element("img", { src: jpeg(data, "cam", image),
                           alt: "Grad-CAM map of " + image.predicted + " over " + image.id }),
          element("figcaption", { class: "pskin-detail-caption", text: data.cam_captions[image.predicted] })]));
      } else if (data.gradcam === "errors") {
        pictures.push(element("p", { class: "pskin-detail-nocam", text: "Grad-CAM maps are stored for the errors." }));
      }
      var probabilities = element("div", { class: "pskin-probs" });
      data.classes.forEach(function (c, k) {
        var p = image.p[k];
        var marks = [];
        if (c.code === image.true) marks.push("true");
        if (c.code === image.predicted) marks.push("predicted");
        probabilities.appendChild(element("div", {
          class: "pskin-prob", "data-class": c.code, "data-value": String(p) }, [
          element("span", { class: "pskin-prob-code", title: c.name, text: c.code }),
          element("span", { class: "pskin-prob-bar" }, [
            element("span", { style: "width:" + percent(p, 1) + ";background:" + c.colour })]),
          element("span", { class: "pskin-prob-value", text: percent(p, 1) }),
          element("span", { class: "pskin-prob-mark", text: marks.join(" · ") })]));
      });
      var title = element("p", { class: "pskin-detail-title" }, [
        element("b", { text: image.id }), ": true ", element("b", { text: image.true }), ", predicted ",
        element("b", { text: image.predicted }), " (" + (wrong ? "wrong" : "correct") + ")"]);
      detail.setAttribute("data-id", image.id);
      detail.replaceChildren(title, element("div", { class: "pskin-detail-pictures" }, pictures), probabilities);
      // Below the gallery on a narrow page: bring the pane into view.
      if (detail.scrollIntoView) detail.scrollIntoView({ block: "nearest" });
    }

    render();
  }

  function enhanceAll() {
    document.querySelectorAll(".pskin-static-inspector").forEach(enhance);
  }

  // Embedded in a block (static_inspector(..., standalone=True)), the script draws its own block at once.
  var here = document.currentScript && document.currentScript.closest(".pskin-static-inspector");
  if (window.pskinStaticInspector) {
    window.pskinStaticInspector.enhance(here);
    return;
  }
  window.pskinStaticInspector = { enhance: enhance, enhanceAll: enhanceAll };
  if (here) enhance(here);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", enhanceAll);
  else enhanceAll();
})();
